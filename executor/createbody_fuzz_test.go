package executor

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/fleetdeploy/fleet/inventory"
	"github.com/fleetdeploy/fleet/plan"
)

// Every value of a service ends up in one place on a host: the body of the
// Engine API's container-create request, JSON sent inside the SSH
// connection. No shell reads it: the socket is forwarded by sshd, and the
// relay that stands in for it is a fixed argument vector (docker system
// dial-stdio, perhaps through sudo -n) with no value in it. These targets
// show that whatever a value holds, it arrives in its own JSON field, exactly,
// or is refused; never cut short, altered, or spilled into another field or
// into the HTTP framing around the body.
//
// The way from fleet.yaml to the request crosses three packages: plan
// decodes the file and makes the template, rollout turns the template into
// a ContainerSpec (containerSpec, unexported), and createBody (unexported,
// here) makes the request. No package sees both unexported ends, so the way
// is fuzzed in two cuts:
//
//   - FuzzCreateBody puts arbitrary strings straight into every string field
//     of a ContainerSpec, including what decode would refuse, so createBody
//     is shown safe on its own.
//   - FuzzServiceToCreateBody puts them into every string field of a service
//     in fleet.yaml and takes them through the real decode (plan.ParseProject)
//     and plan (plan.Compute), then through specOf, a copy of rollout's
//     containerSpec, to createBody: what decode accepts arrives exactly.

// createRequest is the container-create request as the engine reads it.
// Decoded with unknown fields disallowed, it also shows that no value made a
// field of its own.
type createRequest struct {
	Image        string
	Cmd          []string
	Entrypoint   []string
	Env          []string
	Labels       map[string]string
	User         string
	WorkingDir   string
	StopTimeout  *int
	ExposedPorts map[string]struct{}
	HostConfig   struct {
		PortBindings map[string][]struct{ HostIp, HostPort string }
		Mounts       []struct {
			Type, Source, Target string
			ReadOnly             bool
		}
		RestartPolicy *struct {
			Name              string
			MaximumRetryCount int
		}
		NanoCpus    int64
		Memory      int64
		NetworkMode string
	}
	NetworkingConfig *struct {
		EndpointsConfig map[string]struct{}
	}
}

// overTheWire makes the HTTP request Engine.Create sends for spec, as
// bytes, reads it back as the engine would and returns its body: exactly
// one request, to the create path, with spec's name as its only query.
func overTheWire(t *testing.T, spec ContainerSpec, body map[string]any) createRequest {
	t.Helper()
	path := "/containers/create" // as Create builds it
	if spec.Name != "" {
		path += "?name=" + url.QueryEscape(spec.Name)
	}
	hr, err := request{method: "POST", path: path, body: body}.http()
	if err != nil {
		t.Fatalf("making the request: %v", err)
	}
	var raw bytes.Buffer
	if err := hr.Write(&raw); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(&raw)
	got, err := http.ReadRequest(br)
	if err != nil {
		t.Fatalf("the engine cannot read the request: %v", err)
	}
	data, err := io.ReadAll(got.Body)
	if err != nil {
		t.Fatal(err)
	}
	if rest, _ := io.ReadAll(br); len(rest) > 0 {
		t.Fatalf("%d bytes after the request: %q", len(rest), rest)
	}
	q := got.URL.Query()
	if got.Method != "POST" || got.URL.Path != "/containers/create" || q.Get("name") != spec.Name || len(q) > 1 {
		t.Fatalf("request %s %s, want POST /containers/create?name=%s", got.Method, got.URL, spec.Name)
	}
	if !json.Valid(data) {
		t.Fatalf("not JSON: %q", data)
	}
	var cr createRequest
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&cr); err != nil {
		t.Fatalf("%v in %s", err, data)
	}
	return cr
}

func FuzzCreateBody(f *testing.F) {
	f.Add("shop-web-1-r1-abc123", "nginx:1.27", "--port", "RAILS_ENV", "production", "1000:1000", "/app", "data", "/var/lib/app", "backend", "on-failure:3", "127.0.0.1", "udp")
	f.Add("x", "$(id)", "'; rm -rf / #", "A", "a\x00b", "root", "/", "/srv/up loads", "/up\nloads", "host", "always", "::1", "tcp")
	f.Add("a&b=c", "img", "\xff\xfe", "K", "\"},\"Privileged\":true,\"x\":{\"", "u", "/w", "/s", "/t", "n\"", "no", "", "")
	f.Fuzz(func(t *testing.T, name, image, arg, key, value, user, workdir, source, target, network, restart, hostIP, proto string) {
		spec := ContainerSpec{
			Name: name, Image: image,
			Labels:     map[string]string{key: value, "fleet.template": value},
			Env:        map[string]string{key: value},
			Command:    []string{arg, value},
			Entrypoint: []string{arg},
			User:       user, Workdir: workdir,
			Volumes:  []Mount{{Source: source, Target: target, ReadOnly: true}},
			Networks: []string{network, network + "-2"},
			Restart:  restart,
			Ports:    []Port{{HostIP: hostIP, HostPort: 8080, ContainerPort: 80, Protocol: proto}},
		}
		body, err := createBody(spec)
		if err != nil {
			return // refused: nothing is sent
		}
		for _, s := range []string{image, arg, key, value, user, workdir, source, target, network, restart, hostIP, proto} {
			if !utf8.ValidString(s) {
				t.Fatalf("accepted %q, which is not UTF-8: JSON would carry it altered", s)
			}
		}
		got := overTheWire(t, spec, body)
		if got.Image != image || got.User != user || got.WorkingDir != workdir {
			t.Errorf("image %q, user %q, workdir %q; want %q, %q, %q", got.Image, got.User, got.WorkingDir, image, user, workdir)
		}
		if !slices.Equal(got.Cmd, spec.Command) || !slices.Equal(got.Entrypoint, spec.Entrypoint) {
			t.Errorf("cmd %q, entrypoint %q", got.Cmd, got.Entrypoint)
		}
		if !slices.Equal(got.Env, []string{key + "=" + value}) {
			t.Errorf("env %q, want [%q]", got.Env, key+"="+value)
		}
		if !maps.Equal(got.Labels, spec.Labels) {
			t.Errorf("labels %q, want %q", got.Labels, spec.Labels)
		}
		checkMounts(t, got, spec.Volumes)
		if got.HostConfig.NetworkMode != network || len(got.NetworkingConfig.EndpointsConfig) != 1 {
			t.Errorf("network %q, endpoints %v; want %q alone", got.HostConfig.NetworkMode, got.NetworkingConfig.EndpointsConfig, network)
		}
		if _, ok := got.NetworkingConfig.EndpointsConfig[network]; !ok {
			t.Errorf("endpoints %v, want %q", got.NetworkingConfig.EndpointsConfig, network)
		}
		checkRestart(t, got, restart)
		checkPorts(t, got, spec.Ports)
	})
}

func checkMounts(t *testing.T, got createRequest, want []Mount) {
	t.Helper()
	if len(got.HostConfig.Mounts) != len(want) {
		t.Fatalf("mounts %+v, want %+v", got.HostConfig.Mounts, want)
	}
	for i, m := range got.HostConfig.Mounts {
		typ := "volume"
		if strings.HasPrefix(want[i].Source, "/") {
			typ = "bind"
		}
		if m.Type != typ || m.Source != want[i].Source || m.Target != want[i].Target || m.ReadOnly != want[i].ReadOnly {
			t.Errorf("mount %+v, want %s %+v", m, typ, want[i])
		}
	}
}

func checkRestart(t *testing.T, got createRequest, restart string) {
	t.Helper()
	rp := got.HostConfig.RestartPolicy
	if restart == "" {
		if rp != nil {
			t.Errorf("restart policy %+v, want none", rp)
		}
		return
	}
	name, count, hasCount := strings.Cut(restart, ":")
	n, _ := strconv.Atoi(count)
	if rp == nil || rp.Name != name || (hasCount && rp.MaximumRetryCount != n) {
		t.Errorf("restart policy %+v, want %q", rp, restart)
	}
}

func checkPorts(t *testing.T, got createRequest, want []Port) {
	t.Helper()
	exposed, bound := 0, 0
	for _, p := range want {
		proto := p.Protocol
		if proto == "" {
			proto = "tcp"
		}
		key := strconv.Itoa(p.ContainerPort) + "/" + proto
		if _, ok := got.ExposedPorts[key]; !ok {
			t.Errorf("exposed %v, want %q", got.ExposedPorts, key)
		}
		b := got.HostConfig.PortBindings[key]
		if len(b) != 1 || b[0].HostIp != p.HostIP || b[0].HostPort != strconv.Itoa(p.HostPort) {
			t.Errorf("bindings of %q: %+v, want %+v", key, b, p)
		}
		exposed++
		bound++
	}
	if len(got.ExposedPorts) != exposed || len(got.HostConfig.PortBindings) != bound {
		t.Errorf("exposed %v, bindings %v, want %+v", got.ExposedPorts, got.HostConfig.PortBindings, want)
	}
}

// fuzzInventory is the one host the fuzzed services are planned on.
const fuzzInventory = "hosts:\n  h1: {address: 203.0.113.10}\n"

// serviceField is one string field of a service: where a value goes in
// fleet.yaml (q is the value as a YAML double-quoted scalar), and what the
// create request must hold once decode accepts it.
type serviceField struct {
	name  string
	yaml  func(q string) string
	check func(t *testing.T, v string, got createRequest, sp *plan.ServicePlan)
}

// service is a fleet.yaml with one service, web, and extra under it.
func service(extra string) string {
	return "project: shop\nnetworks: {backend: {}}\nvolumes: {data: {}}\nservices:\n  web:\n    image: nginx:1.27\n" + extra
}

func wantEnv(t *testing.T, got createRequest, want ...string) {
	t.Helper()
	if !slices.Equal(got.Env, want) {
		t.Errorf("env %q, want %q", got.Env, want)
	}
}

// The secret every fuzzed service may name, and its value.
const fuzzSecret = "s3cr3t"

var serviceFields = []serviceField{
	{"image", func(q string) string { return "project: shop\nservices:\n  web:\n    image: " + q + "\n" },
		func(t *testing.T, v string, got createRequest, _ *plan.ServicePlan) {
			if got.Image != v {
				t.Errorf("image %q, want %q", got.Image, v)
			}
		}},
	{"command", func(q string) string { return service("    command: [" + q + ", " + q + "]\n") },
		func(t *testing.T, v string, got createRequest, _ *plan.ServicePlan) {
			if !slices.Equal(got.Cmd, []string{v, v}) {
				t.Errorf("cmd %q, want [%q %q]", got.Cmd, v, v)
			}
		}},
	{"entrypoint", func(q string) string { return service("    entrypoint: [" + q + "]\n") },
		func(t *testing.T, v string, got createRequest, _ *plan.ServicePlan) {
			if !slices.Equal(got.Entrypoint, []string{v}) {
				t.Errorf("entrypoint %q, want [%q]", got.Entrypoint, v)
			}
		}},
	{"env value", func(q string) string { return service("    env: {VALUE: " + q + "}\n") },
		func(t *testing.T, v string, got createRequest, _ *plan.ServicePlan) { wantEnv(t, got, "VALUE="+v) }},
	{"env name", func(q string) string { return service("    env: {" + q + ": x}\n") },
		func(t *testing.T, v string, got createRequest, _ *plan.ServicePlan) { wantEnv(t, got, v+"=x") }},
	{"secret name", func(q string) string { return service("    secrets: {" + q + ": env:FLEET_FUZZ}\n") },
		func(t *testing.T, v string, got createRequest, _ *plan.ServicePlan) {
			wantEnv(t, got, v+"="+fuzzSecret)
		}},
	{"label value", func(q string) string { return service("    labels: {team: " + q + "}\n") },
		func(t *testing.T, v string, got createRequest, _ *plan.ServicePlan) {
			if got.Labels["team"] != v {
				t.Errorf("label team %q, want %q", got.Labels["team"], v)
			}
		}},
	{"label name", func(q string) string { return service("    labels: {" + q + ": x}\n") },
		func(t *testing.T, v string, got createRequest, _ *plan.ServicePlan) {
			if got.Labels[v] != "x" {
				t.Errorf("labels %q, want %q: x", got.Labels, v)
			}
		}},
	{"user", func(q string) string { return service("    user: " + q + "\n") },
		func(t *testing.T, v string, got createRequest, _ *plan.ServicePlan) {
			if got.User != v {
				t.Errorf("user %q, want %q", got.User, v)
			}
		}},
	{"workdir", func(q string) string { return service("    workdir: " + q + "\n") },
		func(t *testing.T, v string, got createRequest, _ *plan.ServicePlan) {
			if got.WorkingDir != v {
				t.Errorf("workdir %q, want %q", got.WorkingDir, v)
			}
		}},
	{"volume", func(q string) string { return service("    volumes: [" + q + "]\n") },
		func(t *testing.T, v string, got createRequest, _ *plan.ServicePlan) {
			if len(got.HostConfig.Mounts) != 1 {
				t.Fatalf("mounts %+v", got.HostConfig.Mounts)
			}
			m := got.HostConfig.Mounts[0]
			source := m.Source
			if m.Type == "volume" {
				var named bool
				if source, named = strings.CutPrefix(source, "shop_"); !named {
					t.Errorf("volume %q is not the project's", m.Source)
				}
			}
			text := source + ":" + m.Target
			if v != text && v != text+":rw" && !(m.ReadOnly && v == text+":ro") {
				t.Errorf("mount %+v, from %q", m, v)
			}
		}},
	{"port", func(q string) string { return service("    ports: [" + q + "]\n") },
		func(t *testing.T, v string, got createRequest, sp *plan.ServicePlan) {
			p := sp.Template.Ports[0]
			if !strings.Contains(v, p.HostIP) {
				t.Errorf("host address %q, from %q", p.HostIP, v)
			}
			checkPorts(t, got, []Port{{HostIP: p.HostIP, HostPort: p.Host, ContainerPort: p.Container, Protocol: p.Proto}})
		}},
	{"network", func(q string) string {
		return "project: shop\nnetworks: {" + q + ": {}}\nservices:\n  web:\n    image: nginx:1.27\n    networks: [" + q + "]\n"
	}, func(t *testing.T, v string, got createRequest, _ *plan.ServicePlan) {
		if got.HostConfig.NetworkMode != "shop_"+v || len(got.NetworkingConfig.EndpointsConfig) != 1 {
			t.Errorf("network %q, endpoints %v; want shop_%s", got.HostConfig.NetworkMode, got.NetworkingConfig.EndpointsConfig, v)
		}
	}},
	{"service name", func(q string) string { return "project: shop\nservices:\n  " + q + ": {image: nginx:1.27}\n" },
		func(t *testing.T, v string, got createRequest, _ *plan.ServicePlan) {
			if got.Labels[plan.LabelService] != v {
				t.Errorf("service label %q, want %q", got.Labels[plan.LabelService], v)
			}
		}},
	{"project", func(q string) string { return "project: " + q + "\nservices:\n  web: {image: nginx:1.27}\n" },
		func(t *testing.T, v string, got createRequest, _ *plan.ServicePlan) {
			if got.Labels[plan.LabelProject] != v {
				t.Errorf("project label %q, want %q", got.Labels[plan.LabelProject], v)
			}
		}},
	{"restart", func(q string) string { return service("    restart: " + q + "\n") },
		func(t *testing.T, v string, got createRequest, sp *plan.ServicePlan) {
			checkRestart(t, got, sp.Restart.String())
		}},
	{"memory", func(q string) string { return service("    resources: {memory: " + q + "}\n") },
		func(t *testing.T, v string, got createRequest, sp *plan.ServicePlan) {
			if m := got.HostConfig.Memory; m != sp.Resources.Memory || m < 6<<20 || m > 1<<50 {
				t.Errorf("memory %d from %q, plan %d", m, v, sp.Resources.Memory)
			}
		}},
	{"stop_grace", func(q string) string { return service("    stop_grace: " + q + "\n") },
		func(t *testing.T, v string, got createRequest, sp *plan.ServicePlan) {
			if s := got.StopTimeout; sp.Template.StopGrace > 0 && (s == nil || *s < 0) {
				t.Errorf("stop timeout %v from %q", s, v)
			}
		}},
}

// yamlQuote writes s as a YAML double-quoted scalar that reads back as s:
// what YAML allows in a file as it is, the rest as escapes, line breaks
// among them (U+2028 and U+2029 are line breaks to YAML, and folded).
func yamlQuote(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == 0x2028 || r == 0x2029:
			fmt.Fprintf(&b, `\u%04x`, r)
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r >= 0x20 && r <= 0x7e, r >= 0xa0 && r <= 0xd7ff, r >= 0xe000 && r <= 0xfffd && r != 0xfeff, r >= 0x10000:
			b.WriteRune(r)
		case r <= 0xffff:
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			fmt.Fprintf(&b, `\U%08x`, r)
		}
	}
	b.WriteByte('"')
	return b.String()
}

func FuzzServiceToCreateBody(f *testing.F) {
	for _, s := range []string{
		"nginx:1.27", "bundle exec puma", "RAILS_ENV", "a=b", "$(id)", "'; rm -rf / #", "`id`", "\"},\"Privileged\":true,\"x\":{\"",
		"line1\nline2", "tab\there", "nul\x00byte", "\xff\xfe", "ünïcødé ✓", "/srv/uploads:/uploads:ro", "data:/var/lib/app",
		"127.0.0.1:8080:80/udp", "[::1]:53:53/udp", "1000:1000", "/app", "backend", "on-failure:3", "99999999999999999999G", "512M", "30s",
		"-e", "--privileged", "~root", "../../etc", "fleet.service", "*", "<<",
	} {
		f.Add(s)
	}
	inv, err := inventory.Parse("inventory.yaml", []byte(fuzzInventory), inventory.Options{SSHConfig: "none"})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, v string) {
		if !utf8.ValidString(v) {
			return // not text: no YAML file can hold it
		}
		for _, field := range serviceFields {
			p, err := plan.ParseProject("fleet.yaml", []byte(field.yaml(yamlQuote(v))), inv)
			if err != nil {
				continue // refused, with a file:line:col error
			}
			pl := plan.Compute(plan.Input{
				Project: p, Inventory: inv, Scope: inv.Hosts,
				Live:    plan.Live{Hosts: map[string]*plan.LiveHost{"h1": {MemAvailable: 1 << 40, CPUs: 64}}},
				Secrets: map[string]map[string]string{p.Services[0].Name: secretValues(p.Services[0])},
			})
			sp := pl.Services[0]
			spec := specOf(p.Name, p.Services[0], sp, 1, secretValues(p.Services[0]))
			body, err := createBody(spec)
			if err != nil {
				t.Fatalf("%s %q: validate accepts it, but apply would fail: %v", field.name, v, err)
			}
			got := overTheWire(t, spec, body)
			field.check(t, v, got, sp)
			// The template travels as JSON inside a JSON label: it reads back
			// as the plan's own, so a later plan compares like with like.
			label := got.Labels[plan.LabelTemplate]
			if tmpl, err := plan.ParseTemplate(label); err != nil || label != sp.Template.JSON() || tmpl.JSON() != label {
				t.Errorf("%s %q: template label %q reads back as %+v, %v", field.name, v, label, tmpl, err)
			}
			if t.Failed() {
				t.Fatalf("%s %q, in fleet.yaml:\n%s", field.name, v, field.yaml(yamlQuote(v)))
			}
		}
	})
}

func secretValues(s *plan.Service) map[string]string {
	values := map[string]string{}
	for name := range s.Secrets {
		values[name] = fuzzSecret
	}
	return values
}

// TestSpecOfIsRolloutsContainerSpec: the copy makes what rollout's
// containerSpec makes, checked against rollout's own golden file for it.
func TestSpecOfIsRolloutsContainerSpec(t *testing.T) {
	src, err := os.ReadFile("../rollout/testdata/containerspec.yaml")
	if err != nil {
		t.Fatal(err)
	}
	inv, err := inventory.Parse("inventory.yaml", []byte(fuzzInventory), inventory.Options{SSHConfig: "none"})
	if err != nil {
		t.Fatal(err)
	}
	p, err := plan.ParseProject("containerspec.yaml", src, inv)
	if err != nil {
		t.Fatal(err)
	}
	secrets := map[string]string{"TOKEN": "s3cr3t"}
	pl := plan.Compute(plan.Input{Project: p, Inventory: inv, Scope: inv.Hosts,
		Live:    plan.Live{Hosts: map[string]*plan.LiveHost{"h1": {MemAvailable: 1 << 40, CPUs: 64}}},
		Secrets: map[string]map[string]string{"web": secrets}})
	spec := specOf(p.Name, p.Services[0], pl.Services[0], 1, secrets)
	spec.Name = strings.TrimSuffix(spec.Name, "abc123") + "SUFFIX"
	got, err := json.MarshalIndent(spec, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile("../rollout/testdata/containerspec.golden")
	if err != nil {
		t.Fatal(err)
	}
	if string(got)+"\n" != string(want) {
		t.Errorf("specOf has drifted from rollout's containerSpec: change it as containerSpec changed\n--- rollout's\n%s--- specOf's\n%s", want, got)
	}
}

// specOf is rollout's containerSpec, copied: the container for one instance
// of a service's revision (see the comment at the top), kept the same by
// TestSpecOfIsRolloutsContainerSpec.
func specOf(project string, s *plan.Service, sp *plan.ServicePlan, slot int, secrets map[string]string) ContainerSpec {
	t := sp.Template
	labels := maps.Clone(t.Labels)
	if labels == nil {
		labels = map[string]string{}
	}
	replicas := ""
	if s.ReplicasSet {
		replicas = strconv.Itoa(s.Replicas)
	}
	labels[plan.LabelProject] = project
	labels[plan.LabelService] = s.Name
	labels[plan.LabelSlot] = strconv.Itoa(slot)
	labels[plan.LabelRevision] = strconv.Itoa(sp.Revision)
	labels[plan.LabelSpec] = sp.Spec
	labels[plan.LabelTemplate] = t.JSON()
	labels[plan.LabelReplicas] = replicas
	env := maps.Clone(t.Env)
	if env == nil {
		env = map[string]string{}
	}
	for _, name := range t.Secrets {
		env[name] = secrets[name]
	}
	spec := ContainerSpec{
		Name:  fmt.Sprintf("%s-%s-%d-r%d-%s", project, s.Name, slot, sp.Revision, "abc123"),
		Image: t.Image, Labels: labels, Env: env, Command: t.Command, Entrypoint: t.Entrypoint,
		Restart: sp.Restart.String(), User: t.User, Workdir: t.Workdir,
		CPUs: sp.Resources.CPUs, Memory: sp.Resources.Memory, StopGrace: t.StopGrace,
	}
	for _, p := range t.Ports {
		spec.Ports = append(spec.Ports, Port{HostIP: p.HostIP, HostPort: p.Host, ContainerPort: p.Container, Protocol: p.Proto})
	}
	for _, m := range t.Volumes {
		src := m.Source
		if m.Named {
			src = project + "_" + src
		}
		spec.Volumes = append(spec.Volumes, Mount{Source: src, Target: m.Target, ReadOnly: m.ReadOnly})
	}
	for _, n := range t.Networks {
		spec.Networks = append(spec.Networks, project+"_"+n)
	}
	return spec
}

// TestCreateBodyRefusesWhatJSONCannotCarry: a value that is not UTF-8 (a
// secret read from a binary file, say) is refused, naming where it is
// but not showing it, rather than sent with its bytes replaced.
func TestCreateBodyRefusesWhatJSONCannotCarry(t *testing.T) {
	for _, c := range []struct {
		spec ContainerSpec
		want string
	}{
		{ContainerSpec{Image: "x", Env: map[string]string{"TOKEN": "s3\xffcret"}}, `env "TOKEN" is not UTF-8 text`},
		{ContainerSpec{Image: "x", Env: map[string]string{"K\xc3": "\xa9"}}, `env "K\xc3" is not UTF-8 text`},
		{ContainerSpec{Image: "x", Command: []string{"run", "\xfe"}}, "command[1] is not UTF-8 text"},
		{ContainerSpec{Image: "x", Labels: map[string]string{"team": "\xff"}}, `label "team" is not UTF-8 text`},
		{ContainerSpec{Image: "x", Volumes: []Mount{{Source: "/srv\xff", Target: "/data"}}}, "volume[0] is not UTF-8 text"},
	} {
		_, err := createBody(c.spec)
		if err == nil || !strings.HasPrefix(err.Error(), c.want) || strings.Contains(err.Error(), "s3") {
			t.Errorf("%+v: %v, want %q", c.spec, err, c.want)
		}
	}
}
