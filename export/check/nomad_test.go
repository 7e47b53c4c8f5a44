package check

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"text/template"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"
)

// Nomad's own parser (github.com/hashicorp/nomad/jobspec2) lives in
// Nomad's main module, which the Go module proxy does not serve, and
// Nomad is not packaged for Debian. So the job is parsed with HashiCorp's
// HCL, the parser jobspec2 is built on, and checked against jobspec: the
// blocks and arguments below are those of Nomad's job specification
// (developer.hashicorp.com/nomad/docs/job-specification) for the parts the
// export writes, each argument with its type. An unknown block or
// argument, a missing label, a value of the wrong type, a duration Go
// cannot read, or a reference to a port or volume the group does not
// declare is an error.

type kind int

const (
	str kind = iota
	num
	boolean
	strList
	strMap
	duration
)

type blockSpec struct {
	labels   int
	attrs    map[string]kind
	required []string
	blocks   map[string]*blockSpec
	many     bool // may appear more than once
}

var (
	constraintSpec = &blockSpec{many: true, attrs: map[string]kind{"attribute": str, "operator": str, "value": str}}
	checkSpec      = &blockSpec{many: true, attrs: map[string]kind{
		"type": str, "path": str, "port": str, "command": str, "args": strList,
		"interval": duration, "timeout": duration, "failures_before_critical": num, "success_before_passing": num,
	}, required: []string{"type", "interval", "timeout"}}
	taskSpec = &blockSpec{labels: 1, many: true, attrs: map[string]kind{"driver": str, "user": str, "kill_timeout": duration}, required: []string{"driver"},
		blocks: map[string]*blockSpec{
			"config": {attrs: map[string]kind{
				"image": str, "force_pull": boolean, "entrypoint": strList, "command": str, "args": strList,
				"ports": strList, "work_dir": str, "labels": strMap,
			}, required: []string{"image"}, blocks: map[string]*blockSpec{
				"mount": {many: true, attrs: map[string]kind{"type": str, "source": str, "target": str, "readonly": boolean}},
			}},
			"env":          {attrs: nil}, // any identifier, string values
			"volume_mount": {many: true, attrs: map[string]kind{"volume": str, "destination": str, "read_only": boolean}, required: []string{"volume", "destination"}},
			"template":     {many: true, attrs: map[string]kind{"data": str, "destination": str, "env": boolean}, required: []string{"destination"}},
			"resources":    {attrs: map[string]kind{"cpu": num, "cores": num, "memory": num, "memory_max": num}},
			"service": {many: true, attrs: map[string]kind{"name": str, "port": str, "tags": strList, "provider": str},
				blocks: map[string]*blockSpec{"check": checkSpec}},
		}}
	groupSpec = &blockSpec{labels: 1, many: true, attrs: map[string]kind{"count": num},
		blocks: map[string]*blockSpec{
			"constraint": constraintSpec,
			"spread":     {many: true, attrs: map[string]kind{"attribute": str, "weight": num}, required: []string{"attribute"}},
			"update": {attrs: map[string]kind{
				"max_parallel": num, "health_check": str, "min_healthy_time": duration, "healthy_deadline": duration,
				"progress_deadline": duration, "auto_revert": boolean, "auto_promote": boolean, "canary": num, "stagger": duration,
			}},
			"restart": {attrs: map[string]kind{"attempts": num, "mode": str, "delay": duration, "interval": duration}},
			"network": {blocks: map[string]*blockSpec{
				"port": {labels: 1, many: true, attrs: map[string]kind{"static": num, "to": num, "host_network": str}},
			}},
			"volume": {labels: 1, many: true, attrs: map[string]kind{"type": str, "source": str, "read_only": boolean}, required: []string{"type", "source"}},
			"task":   taskSpec,
		}}
	jobSpec = &blockSpec{labels: 1, attrs: map[string]kind{"datacenters": strList, "type": str, "region": str, "namespace": str},
		blocks: map[string]*blockSpec{"group": groupSpec, "constraint": constraintSpec}}
)

// interpolation is what Nomad itself fills in at run time, such as
// ${meta.zone}: unknown here, of any type.
var interpolation = &hcl.EvalContext{Variables: map[string]cty.Value{
	"meta": cty.DynamicVal, "node": cty.DynamicVal, "attr": cty.DynamicVal, "NOMAD_ALLOC_ID": cty.DynamicVal,
}}

var enums = map[string][]string{
	"job.type":            {"service", "batch", "system", "sysbatch"},
	"constraint.operator": {"=", "!=", ">", ">=", "<", "<=", "distinct_hosts", "distinct_property", "regexp", "set_contains", "set_contains_any", "version", "semver", "is_set", "is_not_set"},
	"update.health_check": {"checks", "task_states", "manual"},
	"restart.mode":        {"delay", "fail"},
	"volume.type":         {"host", "csi"},
	"check.type":          {"http", "tcp", "script", "grpc"},
	"task.driver":         {"docker"},
	"mount.type":          {"bind", "volume", "tmpfs"},
}

// checkNomad parses a job and checks it against the spec above.
func checkNomad(src []byte) error {
	f, diags := hclsyntax.ParseConfig(src, "job.nomad.hcl", hcl.InitialPos)
	if diags.HasErrors() {
		return diags
	}
	c := &nomadChecker{}
	content, diags := f.Body.Content(&hcl.BodySchema{Blocks: []hcl.BlockHeaderSchema{{Type: "job", LabelNames: []string{"name"}}}})
	if diags.HasErrors() {
		return diags
	}
	if len(content.Blocks) != 1 {
		return fmt.Errorf("%d job blocks, want 1", len(content.Blocks))
	}
	c.block(content.Blocks[0], jobSpec, "job")
	return errors.Join(c.errs...)
}

type nomadChecker struct {
	errs []error
	// per group: the port labels and volumes it declares, and those its
	// tasks refer to
	ports, volumes map[string]bool
	refs           []ref
}

type ref struct {
	what, name string
	ports      bool
}

func (c *nomadChecker) fail(format string, args ...any) {
	c.errs = append(c.errs, fmt.Errorf(format, args...))
}

func (c *nomadChecker) block(b *hcl.Block, spec *blockSpec, path string) {
	if b.Type == "group" {
		c.ports, c.volumes, c.refs = map[string]bool{}, map[string]bool{}, nil
		defer c.resolve(path)
	}
	if b.Type == "port" {
		c.ports[b.Labels[0]] = true
	}
	if b.Type == "volume" {
		c.volumes[b.Labels[0]] = true
	}
	schema := &hcl.BodySchema{}
	for name := range spec.attrs {
		schema.Attributes = append(schema.Attributes, hcl.AttributeSchema{Name: name})
	}
	for _, name := range spec.required {
		for i := range schema.Attributes {
			if schema.Attributes[i].Name == name {
				schema.Attributes[i].Required = true
			}
		}
	}
	for name, child := range spec.blocks {
		labels := make([]string, child.labels)
		for i := range labels {
			labels[i] = "label"
		}
		schema.Blocks = append(schema.Blocks, hcl.BlockHeaderSchema{Type: name, LabelNames: labels})
	}
	var attrs hcl.Attributes
	var blocks hcl.Blocks
	if spec.attrs == nil && spec.blocks == nil { // env: any identifiers
		var diags hcl.Diagnostics
		attrs, diags = b.Body.JustAttributes()
		if diags.HasErrors() {
			c.errs = append(c.errs, diags)
			return
		}
		for name, a := range attrs {
			c.value(path+"."+name, a, str)
		}
		return
	}
	content, diags := b.Body.Content(schema)
	if diags.HasErrors() {
		c.errs = append(c.errs, diags)
	}
	if content == nil {
		return
	}
	attrs, blocks = content.Attributes, content.Blocks
	for name, a := range attrs {
		v := c.value(path+"."+name, a, spec.attrs[name])
		if allowed, ok := enums[b.Type+"."+name]; ok && v.IsKnown() && v.Type() == cty.String {
			found := false
			for _, e := range allowed {
				found = found || e == v.AsString()
			}
			if !found {
				c.fail("%s.%s: %q is none of %s", path, name, v.AsString(), strings.Join(allowed, ", "))
			}
		}
		if v.IsKnown() && v.Type() == cty.String {
			switch {
			case b.Type == "template" && name == "data":
				if _, err := template.New("").Option("missingkey=zero").Funcs(template.FuncMap{"nomadVar": func(string) any { return nil }, "toJSON": func(any) string { return "" }}).Parse(v.AsString()); err != nil {
					c.fail("%s.data: %v", path, err)
				}
			case (b.Type == "check" || b.Type == "service") && name == "port":
				c.refs = append(c.refs, ref{path + ".port", v.AsString(), true})
			case b.Type == "volume_mount" && name == "volume":
				c.refs = append(c.refs, ref{path + ".volume", v.AsString(), false})
			}
		}
		if b.Type == "config" && name == "ports" && v.IsKnown() {
			for _, p := range v.AsValueSlice() {
				c.refs = append(c.refs, ref{path + ".ports", p.AsString(), true})
			}
		}
	}
	count := map[string]int{}
	for _, child := range blocks {
		cs := spec.blocks[child.Type]
		count[child.Type]++
		if count[child.Type] > 1 && !cs.many {
			c.fail("%s: more than one %s block", path, child.Type)
		}
		p := path + "." + child.Type
		if len(child.Labels) > 0 {
			p += "[" + child.Labels[0] + "]"
		}
		c.block(child, cs, p)
	}
}

func (c *nomadChecker) value(path string, a *hcl.Attribute, k kind) cty.Value {
	v, diags := a.Expr.Value(interpolation)
	if diags.HasErrors() {
		c.errs = append(c.errs, diags)
		return cty.DynamicVal
	}
	want := map[kind]cty.Type{str: cty.String, num: cty.Number, boolean: cty.Bool, strList: cty.List(cty.String), strMap: cty.Map(cty.String), duration: cty.String}[k]
	if !v.IsWhollyKnown() {
		return v
	}
	if (k == str || k == duration) && v.Type() != cty.String || k == num && v.Type() != cty.Number || k == boolean && v.Type() != cty.Bool {
		c.fail("%s: want %s, got %s", path, want.FriendlyName(), v.Type().FriendlyName())
		return cty.DynamicVal
	}
	conv, err := convert.Convert(v, want)
	if err != nil {
		c.fail("%s: want %s: %v", path, want.FriendlyName(), err)
		return cty.DynamicVal
	}
	if k == duration {
		if _, err := time.ParseDuration(conv.AsString()); err != nil {
			c.fail("%s: %v", path, err)
		}
	}
	return conv
}

func (c *nomadChecker) resolve(group string) {
	for _, r := range c.refs {
		if r.ports && !c.ports[r.name] {
			c.fail("%s: no port %q in %s's network block", r.what, r.name, group)
		}
		if !r.ports && !c.volumes[r.name] {
			c.fail("%s: no volume %q in %s", r.what, r.name, group)
		}
	}
}

func TestNomadExportsParseAndFollowTheJobspec(t *testing.T) {
	for name, pi := range projects(t) {
		t.Run(name, func(t *testing.T) {
			out := render(t, "nomad", pi)
			if err := checkNomad(out); err != nil {
				t.Errorf("%v\n%s", err, out)
			}
			if name != "hostile" {
				return
			}
			// HCL reads the value back as fleet.yaml has it.
			f, diags := hclsyntax.ParseConfig(out, "job.nomad.hcl", hcl.InitialPos)
			if diags.HasErrors() {
				t.Fatal(diags)
			}
			found := false
			hclsyntax.VisitAll(f.Body.(*hclsyntax.Body), func(n hclsyntax.Node) hcl.Diagnostics {
				if a, ok := n.(*hclsyntax.Attribute); ok && a.Name == "X" {
					v, d := a.Expr.Value(nil)
					found = !d.HasErrors() && v.AsString() == hostile
				}
				return nil
			})
			if !found {
				t.Error("env X does not read back as the value in fleet.yaml")
			}
		})
	}
}

// TestNomadCheckerRejectsBrokenJobs shows that the checker can fail.
func TestNomadCheckerRejectsBrokenJobs(t *testing.T) {
	out := string(render(t, "nomad", projects(t)["shop"]))
	for name, broken := range map[string]string{
		"syntax":                  strings.Replace(out, `image = "postgres:16.4"`, `image = "postgres:16.4`, 1),
		"unknown argument":        strings.Replace(out, "max_parallel", "max_paralel", 1),
		"unknown block":           strings.Replace(out, "volume_mount {", "volume_mnt {", 1),
		"wrong type":              strings.Replace(out, "auto_revert       = true", `auto_revert       = "yes"`, 1),
		"bad duration":            strings.Replace(out, `min_healthy_time  = "30s"`, `min_healthy_time  = "30 seconds"`, 1),
		"unknown port label":      strings.Replace(out, `ports = ["p5432"]`, `ports = ["p5433"]`, 1),
		"unknown volume":          strings.Replace(out, `volume      = "pgdata"`, `volume      = "pgdta"`, 1),
		"unescaped interpolation": strings.Replace(out, `image = "postgres:16.4"`, `image = "${postgres}"`, 1),
		"bad operator":            strings.Replace(out, `operator  = "="`, `operator  = "=="`, 1),
	} {
		t.Run(name, func(t *testing.T) {
			if broken == out {
				t.Fatal("the test's edit found nothing to change")
			}
			if err := checkNomad([]byte(broken)); err == nil {
				t.Error("the checker accepted it")
			} else {
				t.Log(err)
			}
		})
	}
}
