package inventory

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"unicode"

	"gopkg.in/yaml.v3"

	"github.com/fleetdeploy/fleet/internal/diag"
	"github.com/fleetdeploy/fleet/internal/yamlfile"
)

// Ansible inventories are read as Ansible reads them: INI or YAML, host
// ranges, groups with children, group and host variables with Ansible's
// precedence (all, then parent groups, then child groups, then the host;
// groups of equal depth by ansible_group_priority, then name), and the
// host_vars/ and group_vars/ directories beside the file. The connection
// variables become the host's SSH settings; other plain variables become
// labels, so "role=web" selects hosts whose inventory says role=web.
//
// A directory is read as several files of one inventory (see dir.go): each
// file adds its hosts, groups and variables to the same ansibleInventory,
// and finish runs once at the end.

// ansibleVar is one variable with where it was set.
type ansibleVar struct {
	value string
	pos   diag.Pos
	plain bool // a scalar, usable as a label
}

type ansibleGroup struct {
	name     string
	pos      diag.Pos
	hosts    []string
	children []string
	vars     map[string]ansibleVar
}

type ansibleHost struct {
	name string
	pos  diag.Pos
	vars map[string]ansibleVar
}

type ansibleInventory struct {
	file    string // the inventory as given: a file or a directory
	format  string
	varsDir string   // where group_vars/ and host_vars/ are
	files   []string // every file read, in reading order
	groups  map[string]*ansibleGroup
	hosts   map[string]*ansibleHost
	order   []string // hosts in file order
}

// newAnsibleInventory starts an inventory read from file, whose variable
// directories are in varsDir.
func newAnsibleInventory(file, format, varsDir string) *ansibleInventory {
	a := &ansibleInventory{file: file, format: format, varsDir: varsDir, groups: map[string]*ansibleGroup{}, hosts: map[string]*ansibleHost{}}
	a.group("all", diag.Pos{File: file})
	a.group("ungrouped", diag.Pos{File: file})
	return a
}

func (a *ansibleInventory) group(name string, pos diag.Pos) *ansibleGroup {
	g := a.groups[name]
	if g == nil {
		g = &ansibleGroup{name: name, pos: pos, vars: map[string]ansibleVar{}}
		a.groups[name] = g
	} else if g.pos.Line == 0 {
		g.pos = pos
	}
	return g
}

func (a *ansibleInventory) host(name string, pos diag.Pos) *ansibleHost {
	h := a.hosts[name]
	if h == nil {
		h = &ansibleHost{name: name, pos: pos, vars: map[string]ansibleVar{}}
		a.hosts[name] = h
		a.order = append(a.order, name)
	}
	return h
}

func appendOnce(list []string, s string) []string {
	for _, x := range list {
		if x == s {
			return list
		}
	}
	return append(list, s)
}

// parseAnsibleINI reads Ansible's INI inventory format.
func parseAnsibleINI(file string, data []byte, errs *diag.List) *rawInventory {
	a := newAnsibleInventory(file, "ansible-ini", filepath.Dir(file))
	a.readINI(file, data, errs)
	return a.finish(errs)
}

// readINI adds one INI file to the inventory.
func (a *ansibleInventory) readINI(file string, data []byte, errs *diag.List) {
	a.files = append(a.files, file)
	section, kind := "ungrouped", "hosts"
	for i, line := range strings.Split(string(data), "\n") {
		lineNo := i + 1
		pos := func(col int) diag.Pos { return diag.Pos{File: file, Line: lineNo, Col: col} }
		text := strings.TrimRightFunc(line, unicode.IsSpace)
		trimmed := strings.TrimSpace(text)
		indent := len(text) - len(strings.TrimLeftFunc(text, unicode.IsSpace))
		if trimmed == "" || trimmed[0] == '#' || trimmed[0] == ';' {
			continue
		}
		if trimmed[0] == '[' {
			if !strings.HasSuffix(trimmed, "]") {
				errs.Add(pos(indent+1), "section header %q: missing ']'", trimmed)
				continue
			}
			name, suffix, _ := strings.Cut(trimmed[1:len(trimmed)-1], ":")
			switch suffix {
			case "":
				kind = "hosts"
			case "vars", "children":
				kind = suffix
			default:
				e := errs.Add(pos(indent+1), "section [%s:%s]: unknown section type %q", name, suffix, suffix)
				e.Hint = diag.Suggest(suffix, []string{"vars", "children"})
				kind = "skip" // its lines would only add confusing errors
				continue
			}
			if problem := checkHostName(name); problem != "" {
				errs.Add(pos(indent+2), "group %q %s", name, problem)
				kind = "skip"
				continue
			}
			section = name
			a.group(name, pos(indent+2))
			continue
		}
		switch kind {
		case "skip":
		case "vars":
			key, value, ok := strings.Cut(trimmed, "=")
			key = strings.TrimSpace(key)
			if !ok || key == "" {
				errs.Add(pos(indent+1), "[%s:vars]: want key=value, got %q", section, trimmed)
				continue
			}
			a.groups[section].vars[key] = ansibleVar{value: iniValue(strings.TrimSpace(value)), pos: pos(indent + 1), plain: true}
		case "children":
			child := trimmed
			if problem := checkHostName(child); problem != "" {
				errs.Add(pos(indent+1), "[%s:children]: group %q %s", section, child, problem)
				continue
			}
			a.group(child, pos(indent+1))
			g := a.groups[section]
			g.children = appendOnce(g.children, child)
		default:
			tokens, cols, err := splitINI(text)
			if err != nil {
				errs.Add(pos(indent+1), "%v", err)
				continue
			}
			if len(tokens) == 0 {
				continue
			}
			names, port, err := expandHostPattern(tokens[0])
			if err != nil {
				errs.Add(pos(cols[0]), "host %q: %v", tokens[0], err)
				continue
			}
			vars := map[string]ansibleVar{}
			if port != "" {
				vars["ansible_port"] = ansibleVar{value: port, pos: pos(cols[0]), plain: true}
			}
			for j, tok := range tokens[1:] {
				key, value, ok := strings.Cut(tok, "=")
				if !ok || key == "" {
					errs.Add(pos(cols[j+1]), "host %s: want key=value, got %q", tokens[0], tok).Hint = "quote values that contain spaces"
					continue
				}
				vars[key] = ansibleVar{value: value, pos: pos(cols[j+1]), plain: true}
			}
			for _, name := range names {
				h := a.host(name, pos(cols[0]))
				for k, v := range vars {
					h.vars[k] = v
				}
				g := a.groups[section]
				g.hosts = appendOnce(g.hosts, name)
			}
		}
	}
}

// iniValue reads a [group:vars] value as Ansible does: quotes around the
// whole value are removed.
func iniValue(v string) string {
	if len(v) >= 2 && (v[0] == '"' || v[0] == '\'') && v[len(v)-1] == v[0] {
		return v[1 : len(v)-1]
	}
	return v
}

// splitINI splits a host line into words as Python's shlex does with
// comments on: quotes group, backslash escapes, '#' at a word's start
// ends the line. It returns each word's 1-based column.
func splitINI(line string) ([]string, []int, error) {
	var words []string
	var cols []int
	var cur strings.Builder
	inWord, quote, start := false, rune(0), 0
	runes := []rune(line)
	for i := 0; i < len(runes); i++ {
		r := runes[i]
		switch {
		case quote != 0:
			if r == quote {
				quote = 0
			} else if r == '\\' && quote == '"' && i+1 < len(runes) {
				i++
				cur.WriteRune(runes[i])
			} else {
				cur.WriteRune(r)
			}
		case r == '#' && !inWord:
			i = len(runes)
		case unicode.IsSpace(r):
			if inWord {
				words, cols = append(words, cur.String()), append(cols, start+1)
				cur.Reset()
				inWord = false
			}
		default:
			if !inWord {
				inWord, start = true, i
			}
			switch r {
			case '"', '\'':
				quote = r
			case '\\':
				if i+1 < len(runes) {
					i++
					cur.WriteRune(runes[i])
				}
			default:
				cur.WriteRune(r)
			}
		}
	}
	if quote != 0 {
		return nil, nil, fmt.Errorf("unterminated %c quote", quote)
	}
	if inWord {
		words, cols = append(words, cur.String()), append(cols, start+1)
	}
	return words, cols, nil
}

// expandHostPattern expands Ansible's host ranges ("web[01:10].example.com",
// "db-[a:c]", with an optional stride "[1:10:2]") and splits off a ":port".
func expandHostPattern(pattern string) (names []string, port string, err error) {
	// "host:port": the last colon outside a range's brackets.
	depth, colon := 0, -1
	for i, c := range pattern {
		switch c {
		case '[':
			depth++
		case ']':
			depth--
		case ':':
			if depth == 0 {
				colon = i
			}
		}
	}
	if colon >= 0 {
		pattern, port = pattern[:colon], pattern[colon+1:]
		if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
			return nil, "", fmt.Errorf("port %q: want 1 to 65535", port)
		}
	}
	names, err = expandRanges(pattern)
	if err != nil {
		return nil, "", err
	}
	for _, n := range names {
		if problem := checkHostName(n); problem != "" {
			return nil, "", fmt.Errorf("%s", problem)
		}
	}
	return names, port, nil
}

func expandRanges(pattern string) ([]string, error) {
	open := strings.IndexByte(pattern, '[')
	if open < 0 {
		return []string{pattern}, nil
	}
	end := strings.IndexByte(pattern[open:], ']')
	if end < 0 {
		return nil, fmt.Errorf("range without ']'")
	}
	end += open
	head, spec, tail := pattern[:open], pattern[open+1:end], pattern[end+1:]
	parts := strings.Split(spec, ":")
	if len(parts) < 2 || len(parts) > 3 || parts[0] == "" || parts[1] == "" {
		return nil, fmt.Errorf("range [%s]: want [start:end] or [start:end:stride]", spec)
	}
	stride := 1
	if len(parts) == 3 {
		s, err := strconv.Atoi(parts[2])
		if err != nil || s < 1 {
			return nil, fmt.Errorf("range [%s]: stride %q must be a positive number", spec, parts[2])
		}
		stride = s
	}
	var items []string
	if lo, err := strconv.Atoi(parts[0]); err == nil {
		hi, err := strconv.Atoi(parts[1])
		if err != nil || hi < lo {
			return nil, fmt.Errorf("range [%s]: the end must be a number not below the start", spec)
		}
		if (hi-lo)/stride > 10000 {
			return nil, fmt.Errorf("range [%s] makes more than 10000 hosts", spec)
		}
		width := 0
		if len(parts[0]) > 1 && parts[0][0] == '0' {
			width = len(parts[0])
		}
		for i := lo; i <= hi; i += stride {
			items = append(items, fmt.Sprintf("%0*d", width, i))
		}
	} else {
		if len(parts[0]) != 1 || len(parts[1]) != 1 || parts[0][0] > parts[1][0] {
			return nil, fmt.Errorf("range [%s]: want numbers, or single letters in order such as [a:f]", spec)
		}
		for c := parts[0][0]; c <= parts[1][0]; c += byte(stride) {
			items = append(items, string(c))
			if int(c)+stride > 255 {
				break
			}
		}
	}
	rest, err := expandRanges(tail)
	if err != nil {
		return nil, err
	}
	if len(items)*len(rest) > 10000 {
		// Each range alone is bounded, but their product is not:
		// h[0:9999][0:9999][0:9999] would be a trillion names.
		return nil, fmt.Errorf("its ranges make more than 10000 hosts")
	}
	var out []string
	for _, it := range items {
		for _, r := range rest {
			out = append(out, head+it+r)
		}
	}
	return out, nil
}

// parseAnsibleYAML reads Ansible's YAML inventory format: groups at the
// top, each with hosts, vars and children.
func parseAnsibleYAML(file string, data []byte, errs *diag.List) *rawInventory {
	a := newAnsibleInventory(file, "ansible-yaml", filepath.Dir(file))
	if !a.readYAML(file, data, errs) {
		return nil
	}
	return a.finish(errs)
}

// readYAML adds one YAML file to the inventory; false if the file is not
// a mapping of groups at all.
func (a *ansibleInventory) readYAML(file string, data []byte, errs *diag.List) bool {
	a.files = append(a.files, file)
	d := &yamlfile.Doc{File: file, Errs: errs}
	root := d.Parse(data)
	if root == nil {
		return false
	}
	pairs, ok := d.Pairs(root, "inventory")
	if !ok {
		return false
	}
	for _, p := range pairs {
		if p.Key == "plugin" {
			if v := yamlfile.Resolve(p.Value); v.Kind == yaml.ScalarNode && v.Tag != "!!null" {
				// Ansible hands such a file to the plugin it names (aws_ec2,
				// constructed, ...), which computes the inventory.
				d.Errorf(p.KeyN, "the configuration of Ansible's inventory plugin %q, not an inventory: fleet reads static inventories", v.Value).Hint =
					"give fleet what the plugin lists: ansible-inventory -i " + file + " --list --yaml > hosts.yml"
				return false
			}
		}
	}
	for _, p := range pairs {
		if !a.yamlGroup(d, p.Key, p.KeyN, p.Value) {
			continue
		}
		if p.Key != "all" {
			a.groups["all"].children = appendOnce(a.groups["all"].children, p.Key)
		}
	}
	return true
}

// yamlGroup reads one group and its children; false if its name is bad.
func (a *ansibleInventory) yamlGroup(d *yamlfile.Doc, name string, keyN, v *yaml.Node) bool {
	if problem := checkHostName(name); problem != "" {
		d.Errorf(keyN, "group %q %s", name, problem)
		return false
	}
	g := a.group(name, d.Pos(keyN))
	what := "group " + name
	d.Fields(v, what, map[string]func(*yaml.Node){
		"hosts": func(v *yaml.Node) {
			pairs, _ := d.Pairs(v, what+".hosts")
			for _, p := range pairs {
				names, port, err := expandHostPattern(p.Key)
				if err != nil {
					d.Errorf(p.KeyN, "host %q: %v", p.Key, err)
					continue
				}
				vars := yamlVars(d, p.Value, "host "+p.Key)
				if port != "" {
					vars["ansible_port"] = ansibleVar{value: port, pos: d.Pos(p.KeyN), plain: true}
				}
				for _, n := range names {
					h := a.host(n, d.Pos(p.KeyN))
					for k, v := range vars {
						h.vars[k] = v
					}
					g.hosts = appendOnce(g.hosts, n)
				}
			}
		},
		"vars": func(v *yaml.Node) {
			for k, val := range yamlVars(d, v, what+".vars") {
				g.vars[k] = val
			}
		},
		"children": func(v *yaml.Node) {
			pairs, _ := d.Pairs(v, what+".children")
			for _, p := range pairs {
				if a.yamlGroup(d, p.Key, p.KeyN, p.Value) {
					g.children = appendOnce(g.children, p.Key)
				}
			}
		},
	})
	return true
}

// yamlVars reads a mapping of variables; values that are not scalars are
// kept out of labels but do not make the inventory wrong.
func yamlVars(d *yamlfile.Doc, v *yaml.Node, what string) map[string]ansibleVar {
	vars := map[string]ansibleVar{}
	pairs, _ := d.Pairs(v, what)
	for _, p := range pairs {
		n := yamlfile.Resolve(p.Value)
		plain := n.Kind == yaml.ScalarNode && n.Tag != "!!null"
		vars[p.Key] = ansibleVar{value: n.Value, pos: d.Pos(p.KeyN), plain: plain}
	}
	return vars
}

// finish applies group_vars/ and host_vars/, computes every host's
// variables with Ansible's precedence and turns them into raw hosts.
func (a *ansibleInventory) finish(errs *diag.List) *rawInventory {
	before := errs.Len()
	a.loadVarsDirs(errs)
	// Hosts in no group other than all belong to ungrouped.
	member := map[string]bool{}
	for name, g := range a.groups {
		if name == "all" || name == "ungrouped" {
			continue
		}
		for _, h := range g.hosts {
			member[h] = true
		}
	}
	for _, h := range a.order {
		if !member[h] {
			a.groups["ungrouped"].hosts = appendOnce(a.groups["ungrouped"].hosts, h)
		}
	}
	a.groups["all"].children = appendOnce(a.groups["all"].children, "ungrouped")
	for name, g := range a.groups {
		for _, c := range g.children {
			if c == name {
				errs.Add(g.pos, "group %s lists itself among its children", name)
			}
		}
	}
	depth, err := a.depths()
	if err != nil {
		errs.Add(a.groups[err.group].pos, "%s", err.msg)
	}
	if errs.Len() > before {
		return nil
	}

	raw := &rawInventory{file: a.file, format: a.format, files: a.files, groups: map[string][]string{}, groupPos: map[string]diag.Pos{}}
	// Every host's groups: the ones that list it, and all their ancestors.
	parents := map[string][]string{}
	for name, g := range a.groups {
		for _, c := range g.children {
			parents[c] = append(parents[c], name)
		}
	}
	hostGroups := map[string]map[string]bool{}
	var climb func(host, group string)
	climb = func(host, group string) {
		if hostGroups[host][group] {
			return
		}
		hostGroups[host][group] = true
		for _, p := range parents[group] {
			climb(host, p)
		}
	}
	for _, h := range a.order {
		hostGroups[h] = map[string]bool{}
	}
	for name, g := range a.groups {
		for _, h := range g.hosts {
			climb(h, name)
		}
	}
	for name, g := range a.groups {
		if name == "all" || name == "ungrouped" {
			continue
		}
		raw.groupPos[name] = g.pos
		raw.groups[name] = nil
		for _, h := range a.order {
			if hostGroups[h][name] {
				raw.groups[name] = append(raw.groups[name], h)
			}
		}
	}

	for _, name := range a.order {
		ah := a.hosts[name]
		groups := slices.Sorted(maps.Keys(hostGroups[name]))
		groups = appendOnce(groups, "all")
		sort.SliceStable(groups, func(i, j int) bool {
			gi, gj := groups[i], groups[j]
			if depth[gi] != depth[gj] {
				return depth[gi] < depth[gj]
			}
			pi, pj := a.priority(gi), a.priority(gj)
			if pi != pj {
				return pi < pj
			}
			return gi < gj
		})
		vars := map[string]ansibleVar{}
		for _, g := range groups {
			for k, v := range a.groups[g].vars {
				vars[k] = v
			}
		}
		for k, v := range ah.vars {
			vars[k] = v
		}
		raw.hosts = append(raw.hosts, ansibleRawHost(ah, vars, raw))
	}
	return raw
}

func (a *ansibleInventory) priority(group string) int {
	if v, ok := a.groups[group].vars["ansible_group_priority"]; ok {
		if p, err := strconv.Atoi(v.value); err == nil {
			return p
		}
	}
	return 1
}

type groupError struct{ group, msg string }

// depths gives each group its depth below all (the longest way down
// through children), finding loops. Groups that are no one's child are
// children of all, as in Ansible.
func (a *ansibleInventory) depths() (map[string]int, *groupError) {
	hasParent := map[string]bool{}
	for _, g := range a.groups {
		for _, c := range g.children {
			hasParent[c] = true
		}
	}
	for _, name := range slices.Sorted(maps.Keys(a.groups)) {
		if name != "all" && !hasParent[name] {
			a.groups["all"].children = appendOnce(a.groups["all"].children, name)
		}
	}
	depth := map[string]int{}
	var walk func(name string, d int, path []string) *groupError
	walk = func(name string, d int, path []string) *groupError {
		for _, p := range path {
			if p == name {
				return &groupError{name, "groups form a loop through children: " + strings.Join(append(path, name), " → ")}
			}
		}
		if cur, seen := depth[name]; seen && cur >= d {
			return nil
		}
		depth[name] = d
		for _, c := range a.groups[name].children {
			if err := walk(c, d+1, append(path, name)); err != nil {
				return err
			}
		}
		return nil
	}
	if err := walk("all", 0, nil); err != nil {
		return nil, err
	}
	for _, name := range slices.Sorted(maps.Keys(a.groups)) {
		if _, ok := depth[name]; !ok {
			// Unreachable from all only when every way in is a loop:
			// walking down from it finds that loop.
			if err := walk(name, 1, nil); err != nil {
				return nil, err
			}
			return nil, &groupError{name, "group " + name + " is only reachable through a loop of children"}
		}
	}
	return depth, nil
}

// loadVarsDirs reads group_vars/ and host_vars/ beside the inventory file
// (in the inventory directory itself, when that was given): NAME.yml,
// NAME.yaml, NAME.json, NAME (YAML) or a directory NAME/ of such files.
// Their values override the inventory's own for that group or host.
func (a *ansibleInventory) loadVarsDirs(errs *diag.List) {
	base := a.varsDir
	var read []string
	load := func(dir, name string) map[string]ansibleVar {
		vars := map[string]ansibleVar{}
		var files []string
		for _, ext := range []string{"", ".yml", ".yaml", ".json"} {
			p := filepath.Join(base, dir, name+ext)
			if fi, err := os.Stat(p); err == nil {
				if fi.IsDir() {
					entries, _ := os.ReadDir(p)
					for _, e := range entries {
						if !e.IsDir() && (strings.HasSuffix(e.Name(), ".yml") || strings.HasSuffix(e.Name(), ".yaml") || strings.HasSuffix(e.Name(), ".json")) {
							files = append(files, filepath.Join(p, e.Name()))
						}
					}
				} else {
					files = append(files, p)
				}
			}
		}
		read = append(read, files...)
		for _, f := range files {
			data, err := yamlfile.ReadFile(f)
			var tooLarge *diag.List
			switch {
			case errors.As(err, &tooLarge):
				errs.Merge(tooLarge)
				continue
			case err != nil:
				errs.Add(diag.Pos{File: f}, "%v", err)
				continue
			}
			d := &yamlfile.Doc{File: f, Errs: errs}
			if root := d.Parse(data); root != nil {
				for k, v := range yamlVars(d, root, "variables") {
					vars[k] = v
				}
			}
		}
		return vars
	}
	for name, g := range a.groups {
		for k, v := range load("group_vars", name) {
			g.vars[k] = v
		}
	}
	for name, h := range a.hosts {
		for k, v := range load("host_vars", name) {
			h.vars[k] = v
		}
	}
	sort.Strings(read)
	a.files = append(a.files, read...)
}

// ansibleRawHost maps a host's variables to fleet's host settings.
func ansibleRawHost(ah *ansibleHost, vars map[string]ansibleVar, raw *rawInventory) *rawHost {
	h := &rawHost{name: ah.name, pos: ah.pos, labels: map[string]string{}}
	warn := func(v ansibleVar, format string, args ...any) {
		raw.warnings = append(raw.warnings, &diag.Error{Pos: v.pos, Msg: fmt.Sprintf("host %s: ", ah.name) + fmt.Sprintf(format, args...)})
	}
	str := func(v ansibleVar) *string { s := v.value; return &s }
	first := func(keys ...string) (ansibleVar, bool) {
		for _, k := range keys {
			if v, ok := vars[k]; ok {
				return v, true
			}
		}
		return ansibleVar{}, false
	}
	if v, ok := first("ansible_host", "ansible_ssh_host"); ok {
		if problem := checkAddress(v.value); problem != "" {
			warn(v, "ansible_host %q %s; using the host name", v.value, problem)
		} else {
			h.address = str(v)
		}
	}
	if v, ok := first("ansible_port", "ansible_ssh_port"); ok {
		if p, err := strconv.Atoi(v.value); err == nil && p >= 1 && p <= 65535 {
			h.port = &p
		} else {
			warn(v, "ansible_port %q is not a port; using ssh_config's", v.value)
		}
	}
	if v, ok := first("ansible_user", "ansible_ssh_user"); ok {
		h.user = str(v)
	}
	if v, ok := first("ansible_ssh_private_key_file", "ansible_private_key_file"); ok {
		h.identityFile = str(v)
	}
	if v, ok := vars["ansible_become"]; ok {
		b := ansibleBool(v.value)
		h.sudo = &b
		if m, ok := vars["ansible_become_method"]; ok && m.value != "sudo" && b {
			warn(m, "ansible_become_method %s: fleet becomes root with sudo", m.value)
		}
	}
	for _, key := range []string{"ansible_ssh_common_args", "ansible_ssh_extra_args"} {
		if v, ok := vars[key]; ok {
			jump, ignored := jumpFromSSHArgs(v.value)
			if jump != nil {
				h.jump, h.jumpSet, h.jumpPos = jump, true, v.pos
			}
			if len(ignored) > 0 {
				warn(v, "%s: fleet uses only ProxyJump and ProxyCommand \"ssh -W\"; ignoring %s", key, strings.Join(ignored, " "))
			}
		}
	}
	if v, ok := vars["ansible_connection"]; ok && v.value != "ssh" && v.value != "smart" && v.value != "paramiko" {
		warn(v, "ansible_connection=%s: fleet always connects over SSH", v.value)
	}
	for k, v := range vars {
		if strings.HasPrefix(k, "ansible_") || !v.plain || checkLabelKey(k) != "" {
			continue
		}
		h.labels[k] = v.value
	}
	return h
}

// ansibleBool reads a boolean as Ansible's boolean filter does.
func ansibleBool(s string) bool {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "yes", "on", "1", "true", "y", "t":
		return true
	}
	return false
}

// jumpFromSSHArgs finds the jump hosts in ssh arguments written for
// Ansible: -J HOSTS, -o ProxyJump=HOSTS, or -o ProxyCommand="ssh -W %h:%p
// [-q] [-p PORT] [-l USER] [USER@]HOST". It returns the rest as ignored.
func jumpFromSSHArgs(args string) (jump, ignored []string) {
	words, _, err := splitINI(args)
	if err != nil {
		return nil, []string{args}
	}
	option := func(o string) {
		key, value, ok := strings.Cut(o, "=")
		if !ok {
			key, value, _ = strings.Cut(o, " ")
		}
		switch strings.ToLower(strings.TrimSpace(key)) {
		case "proxyjump":
			jump = strings.Split(strings.TrimSpace(value), ",")
		case "proxycommand":
			if hop := proxyCommandHop(value); hop != "" {
				jump = []string{hop}
			} else {
				ignored = append(ignored, "-o "+o)
			}
		default:
			ignored = append(ignored, "-o "+o)
		}
	}
	for i := 0; i < len(words); i++ {
		w := words[i]
		switch {
		case w == "-J" && i+1 < len(words):
			i++
			jump = strings.Split(words[i], ",")
		case strings.HasPrefix(w, "-J") && len(w) > 2:
			jump = strings.Split(w[2:], ",")
		case w == "-o" && i+1 < len(words):
			i++
			option(words[i])
		case strings.HasPrefix(w, "-o") && len(w) > 2:
			option(w[2:])
		default:
			ignored = append(ignored, w)
		}
	}
	return jump, ignored
}

// proxyCommandHop reads "ssh -W %h:%p [-q] [-p PORT] [-l USER] [USER@]HOST"
// as the jump host it names, or "" for any other command.
func proxyCommandHop(cmd string) string {
	words, _, err := splitINI(cmd)
	if err != nil || len(words) < 2 || filepath.Base(words[0]) != "ssh" {
		return ""
	}
	var host, user, port string
	sawW := false
	for i := 1; i < len(words); i++ {
		switch w := words[i]; {
		case w == "-W" && i+1 < len(words):
			i++
			sawW = words[i] == "%h:%p" || words[i] == "[%h]:%p"
		case w == "-q" || w == "-T":
		case w == "-p" && i+1 < len(words):
			i++
			port = words[i]
		case w == "-l" && i+1 < len(words):
			i++
			user = words[i]
		case strings.HasPrefix(w, "-"):
			return ""
		default:
			if host != "" {
				return ""
			}
			host = w
		}
	}
	if !sawW || host == "" {
		return ""
	}
	if user != "" && !strings.Contains(host, "@") {
		host = user + "@" + host
	}
	if port != "" {
		host += ":" + port
	}
	return host
}
