package main

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/fleetdeploy/fleet/plan"
	"github.com/fleetdeploy/fleet/rollout"
)

// sampleLine is a sample as the textfile collector takes it: a name,
// labels, a value, and no timestamp.
var sampleLine = regexp.MustCompile(`^fleet_[a-z_]+\{[a-z_]+="(\\.|[^"\\])*"(,[a-z_]+="(\\.|[^"\\])*")*\} -?[0-9.e+]+$`)

func TestMetricsFileFormat(t *testing.T) {
	path := filepath.Join(t.TempDir(), "fleet.prom")
	m, err := newMetrics(path)
	if err != nil {
		t.Fatal(err)
	}
	m.project, m.read, m.up, m.down = `sh"op`, true, 4, 1
	m.services = []string{"web", "worker"}
	m.drift = map[[2]string]int{{"web", "start"}: 2}
	m.desired = map[string]int{"web": 3, "worker": 1}
	m.running = map[string]int{"web": 3}
	m.revision = map[string]int{"web": 7}
	m.proxyPending = 3
	m.applied(&rollout.Result{Outcomes: []rollout.Outcome{{Service: "web", ByKind: map[plan.Kind]int{plan.Start: 2}}}, ProxyUpgraded: []string{"h1", "h2"}})
	if err := m.write(0); err != nil {
		t.Fatal(err)
	}
	text := string(read(t, path))
	for _, line := range strings.Split(strings.TrimSpace(text), "\n") {
		if !strings.HasPrefix(line, "# HELP ") && !strings.HasPrefix(line, "# TYPE ") && !sampleLine.MatchString(line) {
			t.Errorf("not a sample the textfile collector takes: %q", line)
		}
	}
	for _, want := range []string{
		`fleet_exit_code{project="sh\"op"} 0`,
		`fleet_hosts{project="sh\"op",state="up"} 4`,
		`fleet_hosts{project="sh\"op",state="unreachable"} 1`,
		`fleet_drift{project="sh\"op",service="web",kind="start"} 2`,
		`fleet_drift{project="sh\"op",service="web",kind="remove"} 0`,
		`fleet_changes{project="sh\"op",service="web",kind="start"} 2`,
		`fleet_changes{project="sh\"op",service="worker",kind="create"} 0`,
		`fleet_instances{project="sh\"op",service="web",state="desired"} 3`,
		`fleet_instances{project="sh\"op",service="worker",state="running"} 0`,
		`fleet_revision{project="sh\"op",service="web"} 7`,
		`fleet_lock_held{project="sh\"op"} 0`,
		`fleet_proxy_upgrades{project="sh\"op",state="found"} 3`,
		`fleet_proxy_upgrades{project="sh\"op",state="upgraded"} 2`,
	} {
		if !strings.Contains(text, want+"\n") {
			t.Errorf("no line %s in:\n%s", want, text)
		}
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o644 {
		t.Errorf("the file's mode: %v %v, want 0644: the collector runs as another user", fi.Mode(), err)
	}
	if entries, _ := os.ReadDir(filepath.Dir(path)); len(entries) != 1 {
		t.Errorf("the directory holds %d files, want the metrics file alone", len(entries))
	}
}

// TestMetricsKeepTheLastSuccess: a failed run says when the last
// successful one was, from the file as that one left it, and for the same
// project even when this one could not read fleet.yaml.
func TestMetricsKeepTheLastSuccess(t *testing.T) {
	path := filepath.Join(t.TempDir(), "fleet.prom")
	m, _ := newMetrics(path)
	m.project = "shop"
	m.write(0)
	first := lastSuccessLine(t, path)

	m, _ = newMetrics(path)
	if err := m.write(4); err != nil {
		t.Fatal(err)
	}
	text := string(read(t, path))
	if got := lastSuccessLine(t, path); got != first {
		t.Errorf("after a failed run: %s, want the earlier success kept: %s", got, first)
	}
	for _, want := range []string{`fleet_exit_code{project="shop"} 4`, `fleet_lock_held{project="shop"} 1`} {
		if !strings.Contains(text, want) {
			t.Errorf("no %s in:\n%s", want, text)
		}
	}
	if strings.Contains(text, "fleet_hosts") {
		t.Errorf("a run that read no host says how many were up:\n%s", text)
	}
}

func lastSuccessLine(t *testing.T, path string) string {
	t.Helper()
	for _, line := range strings.Split(string(read(t, path)), "\n") {
		if strings.HasPrefix(line, "fleet_last_success_timestamp_seconds{") {
			if strings.HasSuffix(line, " 0") {
				t.Fatalf("no success recorded: %s", line)
			}
			return line
		}
	}
	t.Fatalf("no last success in %s", path)
	return ""
}

func TestMetricsFileWhereItCannotBeWritten(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct{ path, want string }{
		{filepath.Join(dir, "missing", "fleet.prom"), "cannot write in " + filepath.Join(dir, "missing")},
		{dir, "is a directory: name a file in it"},
	} {
		if _, err := newMetrics(c.path); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("--metrics-file %s: %v, want %q", c.path, err, c.want)
		}
	}
}

// TestReconcileOfFilesThatDoNotValidate: exit 1, nothing contacted, and
// the metrics file says so, for the project an earlier run named.
func TestReconcileOfFilesThatDoNotValidate(t *testing.T) {
	dir := t.TempDir()
	prom := filepath.Join(dir, "fleet.prom")
	os.WriteFile(prom, []byte("fleet_last_success_timestamp_seconds{project=\"shop\"} 1700000000\n"), 0o644)
	_, errOut, code := inDir(t, map[string]string{
		"inventory.yaml": "hosts:\n  web1: {address: 203.0.113.10}\n",
		"fleet.yaml":     "project: shop\nservices:\n  web:\n    image: nginx:1.27\n    replicas: many\n",
	}, "reconcile", "--metrics-file", prom)
	if code != 1 || !strings.Contains(errOut, "fleet.yaml:5:") {
		t.Errorf("exit %d, %s; want 1 and the error at its line", code, errOut)
	}
	text := string(read(t, prom))
	for _, want := range []string{`fleet_exit_code{project="shop"} 1`, `fleet_last_success_timestamp_seconds{project="shop"} 1700000000`} {
		if !strings.Contains(text, want+"\n") {
			t.Errorf("no %s in:\n%s", want, text)
		}
	}

	_, errOut, code = inDir(t, map[string]string{"inventory.yaml": "hosts: {}\n", "fleet.yaml": "project: shop\n"},
		"reconcile", "--metrics-file", filepath.Join(dir, "nowhere", "fleet.prom"))
	if code != 1 || !strings.Contains(errOut, "cannot write in") {
		t.Errorf("a metrics file in a missing directory: exit %d, %s", code, errOut)
	}
	for _, bad := range [][]string{{"--max-changes", "-1"}, {"--jitter", "-5s"}} {
		if _, errOut, code := inDir(t, map[string]string{}, append([]string{"reconcile"}, bad...)...); code != 1 || !strings.Contains(errOut, bad[0]) {
			t.Errorf("reconcile %v: exit %d, %s", bad, code, errOut)
		}
	}
}

// TestSecondReconcileOnOneMachine: while a reconcile of a project runs on
// this machine, another of the same project and inventory exits 4 at
// once, naming the first; one of another project, or of the same on
// another inventory, goes on; once the first ends, the next one may run.
func TestSecondReconcileOnOneMachine(t *testing.T) {
	t.Setenv("XDG_RUNTIME_DIR", t.TempDir())
	release, err := reconcileLock("shop", "inventory.yaml")
	if err != nil {
		t.Fatal(err)
	}
	_, err = reconcileLock("shop", "./inventory.yaml")
	if exitCodeOf(err) != 4 || !strings.Contains(err.Error(), fmt.Sprintf("held by another fleet reconcile (pid %d, since", os.Getpid())) {
		t.Errorf("a second reconcile: %v (exit %d), want exit 4 naming the first", err, exitCodeOf(err))
	}
	for _, other := range [][2]string{{"blog", "inventory.yaml"}, {"shop", "staging.yaml"}} {
		if release, err := reconcileLock(other[0], other[1]); err != nil {
			t.Errorf("a reconcile of %s on %s: %v", other[0], other[1], err)
		} else {
			release()
		}
	}
	release()
	again, err := reconcileLock("shop", "inventory.yaml")
	if err != nil {
		t.Fatalf("once the first ended: %v", err)
	}
	again()
}
