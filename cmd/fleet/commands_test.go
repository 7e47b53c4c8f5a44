package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/alecthomas/kong"

	"github.com/fleetdeploy/fleet/inventory"
	"github.com/fleetdeploy/fleet/plan"
	"github.com/fleetdeploy/fleet/rollout"
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

// Load balancers: a proxied service that names one is refused; one that
// routes nothing for the project is warned of; --lb makes one as lb: true
// does, and a --lb that matches nothing is refused.
func TestValidateLoadBalancers(t *testing.T) {
	inv := "hosts:\n  web1: {address: 203.0.113.10}\n  lb1: {address: 203.0.113.20, lb: true}\n"
	proxied := "project: shop\nservices:\n  web:\n    image: nginx:1.27\n    hosts: [web1, lb1]\n    proxy: {host: shop.example.com, port: 80}\n"
	_, errOut, code := inDir(t, map[string]string{"inventory.yaml": inv, "fleet.yaml": proxied}, "validate")
	if code != 1 || !strings.Contains(errOut, `fleet.yaml:5:12: service web.hosts: "web1,lb1" selects lb1, a load balancer (lb: true)`) {
		t.Errorf("a proxied service on a load balancer: exit %d:\n%s", code, errOut)
	}
	plain := "project: shop\nservices:\n  web: {image: nginx:1.27}\n"
	_, errOut, code = inDir(t, map[string]string{"inventory.yaml": inv, "fleet.yaml": plain}, "validate")
	if code != 0 || !strings.Contains(errOut, "inventory.yaml: warning: lb1: load balancer (lb: true, or --lb), but no service of project shop has proxy:") {
		t.Errorf("a load balancer with nothing to route: exit %d:\n%s", code, errOut)
	}
	noLB := "hosts:\n  web1: {address: 203.0.113.10}\n  lb1: {address: 203.0.113.20}\n"
	_, errOut, code = inDir(t, map[string]string{"inventory.yaml": noLB, "fleet.yaml": proxied}, "--lb", "lb1", "validate")
	if code != 1 || !strings.Contains(errOut, "selects lb1, a load balancer") {
		t.Errorf("--lb lb1: exit %d:\n%s", code, errOut)
	}
	_, errOut, code = inDir(t, map[string]string{"inventory.yaml": noLB, "fleet.yaml": proxied}, "--lb", "role=lb", "validate")
	if code != 1 || !strings.Contains(errOut, `--lb "role=lb": no host has a label "role"`) {
		t.Errorf("--lb that matches nothing: exit %d:\n%s", code, errOut)
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

func TestStatusWithoutFleetYAMLAsksForTheProject(t *testing.T) {
	_, errOut, code := inDir(t, map[string]string{"inventory.yaml": "hosts:\n  h1: {address: 127.0.0.1, port: 1}\n"}, "status")
	if code != 1 || !strings.Contains(errOut, "fleet.yaml") || !strings.Contains(errOut, "--project NAME") {
		t.Errorf("exit %d: %s", code, errOut)
	}
}

// TestStatusWithProjectNeedsOnlyTheInventory reads a host that refuses
// the connection: status gets as far as the hosts without fleet.yaml.
func TestStatusWithProjectNeedsOnlyTheInventory(t *testing.T) {
	out, errOut, code := inDir(t, map[string]string{"inventory.yaml": "hosts:\n  h1: {address: 127.0.0.1, port: 1}\n"}, "status", "--project", "shop")
	if code != 1 || !strings.Contains(out, "No instance of project shop on the hosts that answered (0 of 1).") ||
		!strings.Contains(out, "host h1 unreachable") || !strings.Contains(errOut, "1 of 1 hosts unreachable") {
		t.Errorf("exit %d:\n%s%s", code, out, errOut)
	}
}

func historyRevisions() []rollout.Revision {
	when := time.Date(2025, 3, 1, 12, 0, 0, 0, time.Local)
	return []rollout.Revision{
		{Service: "web", Revision: 1, When: when, Who: "alice@laptop", Template: plan.Template{Image: "ghcr.io/acme/web:1.4.2", StopGrace: 90 * time.Second},
			Resources: plan.Resources{CPUs: 1.5, Memory: 512 << 20}, Restart: plan.Restart{Policy: "on-failure", MaxRetries: 3},
			Cause: "first release", Outcome: "deployed"},
		{Service: "web", Revision: 12, When: when.Add(time.Hour), Who: "root@cron-box", Template: plan.Template{Image: "ghcr.io/acme/web:1.5.0"},
			Cause: "image ghcr.io/acme/web:1.4.2 → ghcr.io/acme/web:1.5.0; env.COLOR changed", Outcome: "rolled back"},
	}
}

func TestHistoryTable(t *testing.T) {
	var b strings.Builder
	if err := writeHistory(&b, historyRevisions(), 0); err != nil {
		t.Fatal(err)
	}
	want := `REV  WHEN              WHO            IMAGE                   OUTCOME      CAUSE
1    2025-03-01 12:00  alice@laptop   ghcr.io/acme/web:1.4.2  deployed     first release
12   2025-03-01 13:00  root@cron-box  ghcr.io/acme/web:1.5.0  rolled back  image ghcr.io/acme/web:1.4.2 → ghcr.io/acme/web:1.5.0; env.COLOR changed
`
	if b.String() != want {
		t.Errorf("got:\n%s\nwant:\n%s", b.String(), want)
	}
	// On a terminal the cause is cut to fit, where enough of it is left.
	b.Reset()
	writeHistory(&b, historyRevisions(), 100)
	for _, line := range strings.Split(strings.TrimSpace(b.String()), "\n") {
		if n := utf8.RuneCountInString(line); n > 100 {
			t.Errorf("%d columns: %s", n, line)
		}
	}
	if !strings.Contains(b.String(), "rolled back  image ghcr.io/acme/web:1…\n") {
		t.Errorf("the long cause is not cut with an ellipsis:\n%s", b.String())
	}
	b.Reset()
	writeHistory(&b, historyRevisions(), 80)
	if b.String() != want {
		t.Errorf("80 columns leave too little of the cause to cut it, yet:\n%s", b.String())
	}
}

func TestHistoryJSONKeysAndDurations(t *testing.T) {
	b, err := json.Marshal(entryOf(historyRevisions()[0]))
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	json.Unmarshal(b, &doc)
	var check func(path string, v any)
	check = func(path string, v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, x := range v {
				if k != strings.ToLower(k) || strings.Contains(k, "-") {
					t.Errorf("key %s%s is not snake_case", path, k)
				}
				check(path+k+".", x)
			}
		case []any:
			for _, x := range v {
				check(path, x)
			}
		}
	}
	check("", doc)
	tmpl := doc["template"].(map[string]any)
	res := doc["resources"].(map[string]any)
	if tmpl["stop_grace"] != "1m30s" || res["memory"] != "512M" || res["cpus"] != 1.5 || doc["restart"] != "on-failure:3" || doc["image"] != "ghcr.io/acme/web:1.4.2" {
		t.Errorf("history --json entry: %s", b)
	}
}

func TestWhoNameNamesANumericUserOfThisMachine(t *testing.T) {
	here, err := os.Hostname()
	if err != nil {
		t.Skip(err)
	}
	for who, want := range map[string]string{
		"0@" + here:        "root@" + here,
		"0@elsewhere":      "0@elsewhere", // its user 0 is not ours to name
		"alice@" + here:    "alice@" + here,
		"99999999@" + here: "99999999@" + here, // no such user
	} {
		if got := whoName(who); got != want {
			t.Errorf("whoName(%q) = %q, want %q", who, got, want)
		}
	}
}

// TestConnectTimeoutReachesTheConnections: --connect-timeout, or
// FLEET_CONNECT_TIMEOUT, is the executor's connect time-out; 10s without.
func TestConnectTimeoutReachesTheConnections(t *testing.T) {
	for _, c := range []struct {
		args []string
		env  string
		want time.Duration
	}{
		{nil, "", 10 * time.Second},
		{[]string{"--connect-timeout", "1500ms"}, "", 1500 * time.Millisecond},
		{nil, "3s", 3 * time.Second},
	} {
		t.Setenv("FLEET_CONNECT_TIMEOUT", c.env)
		if c.env == "" {
			os.Unsetenv("FLEET_CONNECT_TIMEOUT")
		}
		var cl cli
		parser, err := kong.New(&cl, kong.Name("fleet"))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := parser.Parse(append(c.args, "version")); err != nil {
			t.Fatal(err)
		}
		if got := cl.globals.executorOptions(&inventory.Inventory{}).ConnectTimeout; got != c.want {
			t.Errorf("%v with FLEET_CONNECT_TIMEOUT=%q: connect time-out %s, want %s", c.args, c.env, got, c.want)
		}
	}
}
