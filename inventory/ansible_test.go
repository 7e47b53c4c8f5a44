package inventory

import (
	"encoding/json"
	"maps"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// TestAgreesWithAnsible loads a realistic Ansible inventory (ranges,
// children, group and host vars, group_vars/ and host_vars/, group
// priorities) with fleet and with Ansible's own ansible-inventory, and
// checks that every host resolves to the address, port, user, key, sudo and
// groups that Ansible would use.
func TestAgreesWithAnsible(t *testing.T) {
	if _, err := exec.LookPath("ansible-inventory"); err != nil {
		t.Skip("ansible-inventory is not installed (scripts/deps installs Debian's ansible)")
	}
	const file = "testdata/ansible/inventory.ini"
	t.Setenv("HOME", t.TempDir())
	cmd := exec.Command("ansible-inventory", "-i", file, "--list")
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
	inv, err := Load(file, Options{SSHConfig: "none"})
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
				switch v := v.(type) {
				case string:
					return v
				case float64:
					return strconv.Itoa(int(v))
				case bool:
					return strconv.FormatBool(v)
				}
			}
			return fallback
		}
		want := map[string]string{
			"address": str("ansible_host", name),
			"port":    str("ansible_port", "22"),
			"user":    str("ansible_user", def.user),
			"key":     expandHome(str("ansible_ssh_private_key_file", "")),
			"sudo":    strconv.FormatBool(ansibleBool(str("ansible_become", "false"))),
			"tier":    str("tier", ""),
			"color":   str("color", ""),
			"role":    str("role", ""),
		}
		got := map[string]string{
			"address": h.Address, "port": strconv.Itoa(h.Port), "user": h.User,
			"key": h.IdentityFile, "sudo": strconv.FormatBool(h.Sudo),
			"tier": h.Labels["tier"], "color": h.Labels["color"], "role": h.Labels["role"],
		}
		for k := range want {
			if got[k] != want[k] {
				t.Errorf("%s: %s is %q, Ansible says %q", name, k, got[k], want[k])
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
	if matches, _ := filepath.Glob("testdata/ansible/group_vars/*"); len(matches) == 0 {
		t.Error("the test inventory lost its group_vars")
	}
}
