package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// inDir runs fleet in dir with the given files written there first.
func inDir(t *testing.T, files map[string]string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	wd, _ := os.Getwd()
	if err := os.Chdir(dir); err != nil {
		t.Fatal(err)
	}
	defer os.Chdir(wd)
	return fleet(t, append([]string{"--ssh-config", "none"}, args...)...)
}

func TestInitWritesFilesThatValidate(t *testing.T) {
	dir := t.TempDir()
	_, errOut, code := fleet(t, "init", "--dir", dir)
	if code != 0 {
		t.Fatalf("init: exit %d: %s", code, errOut)
	}
	out, errOut, code := fleet(t, "--ssh-config", "none", "-f", filepath.Join(dir, "fleet.yaml"), "-i", filepath.Join(dir, "inventory.yaml"), "validate")
	if code != 0 {
		t.Fatalf("the starter files do not validate: %s%s", out, errOut)
	}
	if _, errOut, code := fleet(t, "init", "--dir", dir); code != 1 || !strings.Contains(errOut, "exists") {
		t.Errorf("a second init: exit %d, %q; want a refusal", code, errOut)
	}
}

func TestValidateReportsEveryErrorWithPositions(t *testing.T) {
	_, errOut, code := inDir(t, map[string]string{
		"inventory.yaml": "hosts:\n  web1: {address: 203.0.113.10, labels: {role: web}}\n  web2: {prot: 22}\n",
		"fleet.yaml":     "project: shop\nservices:\n  web:\n    image: nginx:1.27\n    hosts: role=wbe\n    healthcheck: {http: /up, port: 80, timeout: 2}\n",
	}, "validate")
	if code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
	want := `fleet.yaml:6:49: service web.healthcheck.timeout: want a duration such as 30s, 2m or 500ms, got the number 2
    hint: add a unit: 2s
inventory.yaml:3:10: host web2: unknown key "prot"
    hint: did you mean "port"?
fleet: 2 errors in fleet.yaml and inventory.yaml; no host was contacted
`
	if errOut != want {
		t.Errorf("stderr:\n%s\nwant:\n%s", errOut, want)
	}
}

func TestValidateChecksAgainstTheInventory(t *testing.T) {
	_, errOut, code := inDir(t, map[string]string{
		"inventory.yaml": "hosts:\n  web1: {address: 203.0.113.10, labels: {role: web}}\n",
		"fleet.yaml":     "project: shop\nservices:\n  web:\n    image: nginx:1.27\n    hosts: role=wbe\n",
	}, "validate")
	if code != 1 || !strings.Contains(errOut, "fleet.yaml:5:12: service web.hosts: no host has role=wbe\n    hint: did you mean \"web\"?") {
		t.Errorf("exit %d:\n%s", code, errOut)
	}
}

func TestValidateJSON(t *testing.T) {
	out, _, code := inDir(t, map[string]string{
		"inventory.yaml": "hosts:\n  web1: {}\n",
		"fleet.yaml":     "project: shop\nservices:\n  web: {image: nginx:1.27, replicas: 3}\n",
	}, "validate", "--json")
	var v validation
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if code != 1 || v.Valid || len(v.Errors) != 1 || v.Errors[0].Line != 3 || !strings.Contains(v.Errors[0].Message, "3 replicas do not fit") {
		t.Errorf("exit %d, %+v", code, v)
	}
}

func TestMissingFilesSayWhatToDo(t *testing.T) {
	_, errOut, code := inDir(t, nil, "validate")
	if code != 1 || !strings.Contains(errOut, "inventory.yaml") || !strings.Contains(errOut, "fleet init") {
		t.Errorf("exit %d: %s", code, errOut)
	}
}

func TestInventoryJSONShape(t *testing.T) {
	out, _, code := inDir(t, map[string]string{
		"hosts.ini": "[web]\nweb[1:2] ansible_host=203.0.113.1 ansible_user=deploy\n[web:vars]\nrole=web\n[db]\ndb1 ansible_port=2222 ansible_become=true ansible_ssh_common_args='-J ops@gw'\n",
	}, "-i", "hosts.ini", "inventory", "--json", "--hosts", "role=web")
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	var got map[string]map[string]map[string]any
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatal(err)
	}
	if len(got["hosts"]) != 2 {
		t.Fatalf("--hosts role=web listed %v", got["hosts"])
	}
	h := got["hosts"]["web1"]
	for _, key := range []string{"address", "port", "user", "identity_file", "jump", "sudo", "labels", "groups"} {
		if _, ok := h[key]; !ok {
			t.Errorf("web1 lacks %q: %v", key, h)
		}
	}
	if h["address"] != "203.0.113.1" || h["user"] != "deploy" || h["port"] != float64(22) {
		t.Errorf("web1: %v", h)
	}
}

func TestInventoryTable(t *testing.T) {
	out, _, code := inDir(t, map[string]string{
		"inventory.yaml": "hosts:\n  web1: {address: 203.0.113.10, port: 2222, user: deploy, labels: {role: web}}\ngroups:\n  web: [web1]\n",
	}, "inventory")
	if code != 0 || !strings.Contains(out, "web1  203.0.113.10:2222  deploy") || !strings.Contains(out, "role=web") {
		t.Errorf("exit %d:\n%s", code, out)
	}
}

// TestExamplesValidate keeps the examples in examples/ valid.
func TestExamplesValidate(t *testing.T) {
	dirs, _ := filepath.Glob("../../examples/*/fleet.yaml")
	if len(dirs) == 0 {
		t.Fatal("no example found")
	}
	for _, f := range dirs {
		dir := filepath.Dir(f)
		out, errOut, code := fleet(t, "--ssh-config", "none", "-f", f, "-i", filepath.Join(dir, "inventory.yaml"), "validate")
		if code != 0 {
			t.Errorf("%s: exit %d\n%s%s", dir, code, out, errOut)
		}
	}
}
