package inventory

import (
	"encoding/json"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// TestAgreesWithAnsible loads realistic Ansible inventories with fleet and
// with Ansible's own ansible-inventory, and checks that every host resolves
// to the address, port, user, key, sudo, labels and groups that Ansible
// would use: a file (ranges, children, group and host vars, group_vars/ and
// host_vars/, group priorities) and a directory (several files, INI and
// YAML, a subdirectory, files Ansible passes over, later files winning).
func TestAgreesWithAnsible(t *testing.T) {
	if _, err := exec.LookPath("ansible-inventory"); err != nil {
		t.Skip("ansible-inventory is not installed (scripts/deps installs Debian's ansible-core)")
	}
	for _, source := range []string{"testdata/ansible/inventory.ini", "testdata/ansible-dir"} {
		t.Run(filepath.Base(source), func(t *testing.T) { agreesWithAnsible(t, source) })
	}
}

func agreesWithAnsible(t *testing.T, source string) {
	t.Setenv("HOME", t.TempDir())
	abs, err := filepath.Abs(source)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("ansible-inventory", "-i", abs, "--list")
	// ansible-inventory also reads the group_vars/ of the directory it
	// runs in: run it where there are none.
	cmd.Dir = t.TempDir()
	cmd.Env = append(cmd.Environ(), "ANSIBLE_LOCAL_TEMP="+t.TempDir(), "ANSIBLE_HOME="+t.TempDir())
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("ansible-inventory: %v", err)
	}
	var ansible map[string]json.RawMessage
	if err := json.Unmarshal(out, &ansible); err != nil {
		t.Fatal(err)
	}
	var meta struct {
		Hostvars map[string]map[string]any `json:"hostvars"`
	}
	json.Unmarshal(ansible["_meta"], &meta)

	// With no ssh_config, what Ansible leaves unset falls to OpenSSH's
	// defaults: the host's name, port 22, the current user.
	inv, err := Load(source, Options{SSHConfig: "none"})
	if err != nil {
		t.Fatal(err)
	}
	if len(inv.Hosts) != len(meta.Hostvars) {
		t.Errorf("fleet has %d hosts, Ansible %d", len(inv.Hosts), len(meta.Hostvars))
	}
	def := defaultSSH("x")
	for name, vars := range meta.Hostvars {
		h := inv.Host(name)
		if h == nil {
			t.Errorf("Ansible has host %s, fleet does not", name)
			continue
		}
		str := func(key, fallback string) string {
			if v, ok := vars[key]; ok {
				return scalar(v)
			}
			return fallback
		}
		want := map[string]string{
			"address": str("ansible_host", name),
			"port":    str("ansible_port", "22"),
			"user":    str("ansible_user", def.user),
			"key":     expandHome(str("ansible_ssh_private_key_file", "")),
			"sudo":    strconv.FormatBool(ansibleBool(str("ansible_become", "false"))),
		}
		got := map[string]string{
			"address": h.Address, "port": strconv.Itoa(h.Port), "user": h.User,
			"key": h.IdentityFile, "sudo": strconv.FormatBool(h.Sudo),
		}
		// Every other variable with a plain value is a label, written as
		// the inventory writes it (Ansible's true may be fleet's "True").
		for k, v := range vars {
			switch v.(type) {
			case map[string]any, []any, nil:
				continue
			}
			if !strings.HasPrefix(k, "ansible_") {
				want["label "+k] = strings.ToLower(scalar(v))
			}
		}
		for k, v := range h.Labels {
			got["label "+k] = strings.ToLower(v)
		}
		for k := range want {
			if got[k] != want[k] {
				t.Errorf("%s: %s is %q, Ansible says %q", name, k, got[k], want[k])
			}
		}
		for k := range got {
			if _, ok := want[k]; !ok {
				t.Errorf("%s: %s is %q, Ansible has no such variable", name, k, got[k])
			}
		}
	}

	// Group membership, children included, as "ansible-inventory --graph"
	// would show it.
	members := func(group string) []string {
		var g struct {
			Hosts    []string `json:"hosts"`
			Children []string `json:"children"`
		}
		json.Unmarshal(ansible[group], &g)
		seen := map[string]bool{}
		var walk func(string)
		walk = func(group string) {
			var g struct {
				Hosts    []string `json:"hosts"`
				Children []string `json:"children"`
			}
			json.Unmarshal(ansible[group], &g)
			for _, h := range g.Hosts {
				seen[h] = true
			}
			for _, c := range g.Children {
				walk(c)
			}
		}
		walk(group)
		return slices.Sorted(maps.Keys(seen))
	}
	for group := range ansible {
		if group == "_meta" || group == "all" || group == "ungrouped" {
			continue
		}
		want := members(group)
		got := append([]string(nil), inv.Groups[group]...)
		sort.Strings(got)
		if strings.Join(got, " ") != strings.Join(want, " ") {
			t.Errorf("group %s: fleet has %v, Ansible %v", group, got, want)
		}
	}
	varsDir := filepath.Dir(source)
	if fi, err := os.Stat(source); err == nil && fi.IsDir() {
		varsDir = source
	}
	if matches, _ := filepath.Glob(filepath.Join(varsDir, "group_vars/*")); len(matches) == 0 {
		t.Error("the test inventory lost its group_vars")
	}
}

// scalar writes a scalar variable's value from Ansible's JSON as text.
func scalar(v any) string {
	switch v := v.(type) {
	case string:
		return v
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64)
	case bool:
		return strconv.FormatBool(v)
	}
	return ""
}
