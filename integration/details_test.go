package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/fleetdeploy/fleet/integration/testfleet"
)

// runIn runs fleet against the shared fleet's inventory in dir, with env
// as its whole environment, and returns its output and exit code.
func runIn(t *testing.T, dir string, env []string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, fleetBin, append([]string{"--ssh-config", "none", "--no-color", "-i", fleet.Inventory}, args...)...)
	cmd.Dir, cmd.Env = dir, env
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		return out.String(), errb.String(), ee.ExitCode()
	}
	if err != nil {
		t.Fatalf("fleet %v: %v", args, err)
	}
	return out.String(), errb.String(), 0
}

// withoutUser is this process's environment without $USER and $LOGNAME,
// as cron and systemd timers often run.
func withoutUser() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "USER=") && !strings.HasPrefix(kv, "LOGNAME=") {
			env = append(env, kv)
		}
	}
	return env
}

// forget removes a project's containers and its state on the hosts when
// the test ends.
func forget(t *testing.T, project string) {
	cleanupProject(t, project)
	t.Cleanup(func() {
		eachHost(t, func(h *testfleet.Host) error {
			_, err := h.Run(context.Background(), "rm", "-rf", "/var/lib/fleet/"+project)
			return err
		})
	})
}

// hostsRunning names the hosts that run a container of the project.
func hostsRunning(t *testing.T, project string) []string {
	t.Helper()
	var names []string
	for _, h := range fleet.Hosts {
		out, err := h.Run(context.Background(), "docker", "ps", "-q", "--filter", "label=fleet.project="+project)
		if err != nil {
			t.Fatal(err)
		}
		if strings.TrimSpace(string(out)) != "" {
			names = append(names, h.Name)
		}
	}
	return names
}

func TestDetailsVersionFlag(t *testing.T) {
	flag, _, code := runIn(t, t.TempDir(), os.Environ(), "--version")
	cmd, _, _ := runIn(t, t.TempDir(), os.Environ(), "version")
	if code != 0 || flag != cmd || !strings.HasPrefix(flag, "fleet ") {
		t.Errorf("fleet --version: exit %d, %q; fleet version: %q", code, flag, cmd)
	}
}

const detailsYAML = `project: PROJECT
services:
  web:
    image: fleet-example/hello:1
    pull: never
    stop_grace: 30s
    resources: {memory: 256M}
    healthcheck: {http: /up, port: 8080}
    update: {parallelism: 5, monitor: 0s}
`

// TestDetailsHistoryAndStatus deploys from an environment without $USER
// and reads the history back: a header row, the user by name, and JSON in
// one key style with durations written as in fleet.yaml. Then status
// lists the instances from the inventory alone, given the project.
func TestDetailsHistoryAndStatus(t *testing.T) {
	forget(t, "dethist")
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "fleet.yaml"), []byte(strings.Replace(detailsYAML, "PROJECT", "dethist", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, errOut, code := runIn(t, dir, withoutUser(), "apply", "--yes", "-m", "first release"); code != 0 {
		t.Fatalf("apply: exit %d\n%s%s", code, out, errOut)
	}
	me, _ := os.Hostname()

	out, errOut, code := runIn(t, dir, withoutUser(), "history", "web")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != 0 || len(lines) != 2 {
		t.Fatalf("history: exit %d\n%s%s", code, out, errOut)
	}
	if !regexp.MustCompile(`^REV\s+WHEN\s+WHO\s+IMAGE\s+OUTCOME\s+CAUSE$`).MatchString(lines[0]) {
		t.Errorf("no header row: %q", lines[0])
	}
	if !regexp.MustCompile(`^1\s+\d{4}-\d\d-\d\d \d\d:\d\d\s+root@` + regexp.QuoteMeta(me) + `\s+fleet-example/hello:1\s+deployed\s+first release$`).MatchString(lines[1]) {
		t.Errorf("revision 1: %q", lines[1])
	}
	// The columns line up under the header.
	if strings.Index(lines[0], "IMAGE") != strings.Index(lines[1], "fleet-example") {
		t.Errorf("columns do not line up:\n%s", out)
	}

	out, _, code = runIn(t, dir, withoutUser(), "history", "web", "--json")
	var revs []map[string]any
	if err := json.Unmarshal([]byte(out), &revs); code != 0 || err != nil || len(revs) != 1 {
		t.Fatalf("history --json: exit %d, %v\n%s", code, err, out)
	}
	snake := regexp.MustCompile(`"([^"]+)":`)
	for _, m := range snake.FindAllStringSubmatch(out, -1) {
		if m[1] != strings.ToLower(m[1]) {
			t.Errorf("history --json has the key %q", m[1])
		}
	}
	r := revs[0]
	tmpl, _ := r["template"].(map[string]any)
	res, _ := r["resources"].(map[string]any)
	if r["who"] != "root@"+me || tmpl["stop_grace"] != "30s" || res["memory"] != "256M" || r["restart"] != "unless-stopped" || r["outcome"] != "deployed" {
		t.Errorf("history --json: %s", out)
	}

	// status without fleet.yaml: the project named is enough.
	if err := os.Remove(filepath.Join(dir, "fleet.yaml")); err != nil {
		t.Fatal(err)
	}
	out, errOut, code = runIn(t, dir, os.Environ(), "status")
	if code != 1 || !strings.Contains(errOut, "--project NAME") {
		t.Errorf("status without fleet.yaml or --project: exit %d\n%s%s", code, out, errOut)
	}
	out, errOut, code = runIn(t, dir, os.Environ(), "status", "--project", "dethist")
	if code != 0 || !strings.HasPrefix(out, "SERVICE") {
		t.Fatalf("status --project: exit %d\n%s%s", code, out, errOut)
	}
	for _, h := range fleet.Hosts {
		if !regexp.MustCompile(`(?m)^web\s+` + h.Name + `\s+\d+\s+1\s+fleet-example/hello:1\s+running\b`).MatchString(out) {
			t.Errorf("status --project lacks %s's instance:\n%s", h.Name, out)
		}
	}
	out, _, code = runIn(t, dir, os.Environ(), "status", "web", "--project", "dethist", "--json")
	var status struct {
		Instances []struct{ Host, State string }
	}
	if err := json.Unmarshal([]byte(out), &status); code != 0 || err != nil || len(status.Instances) != len(fleet.Hosts) {
		t.Errorf("status web --project --json: exit %d, %v\n%s", code, err, out)
	}
	out, _, code = runIn(t, dir, os.Environ(), "status", "--project", "nosuchproject")
	if code != 0 || !strings.Contains(out, "No instance of project nosuchproject") {
		t.Errorf("status of a project with no instance: exit %d\n%s", code, out)
	}
}

// TestDetailsPullNever: plan flags the hosts that lack the image of a
// pull: never service, in text and JSON, before apply fails there.
func TestDetailsPullNever(t *testing.T) {
	ctx := context.Background()
	forget(t, "detpull")
	const tag = "fleet-example/hello:detpull"
	t.Cleanup(func() {
		eachHost(t, func(h *testfleet.Host) error {
			_, err := h.Run(ctx, "sh", "-c", "docker rmi "+tag+" >/dev/null 2>&1; true")
			return err
		})
	})
	for _, h := range fleet.Hosts[:2] {
		if _, err := h.Run(ctx, "docker", "tag", "fleet-example/hello:1", tag); err != nil {
			t.Fatal(err)
		}
	}
	p := newProject(t, strings.NewReplacer("PROJECT", "detpull", "fleet-example/hello:1", tag).Replace(detailsYAML))
	p.expect(2, []string{"warning: image " + tag + " is not on h3, h4, h5 and pull is never: load it there (docker load) or set pull: missing",
		"Plan: 5 to create"}, "plan", "--detailed-exitcode")
	out, _, code := p.run("plan", "--json")
	var plan struct {
		Services []struct{ Warnings []string }
	}
	if err := json.Unmarshal([]byte(out), &plan); code != 0 || err != nil || len(plan.Services) != 1 ||
		len(plan.Services[0].Warnings) != 1 || !strings.Contains(plan.Services[0].Warnings[0], "is not on h3, h4, h5") {
		t.Errorf("plan --json: exit %d, %v\n%s", code, err, out)
	}
	// What the plan warned of is what apply meets.
	out, errOut, code := p.run("apply", "--yes")
	if code == 0 || !strings.Contains(out+errOut, "image "+tag+" is not on the host and pull is never") {
		t.Errorf("apply: exit %d\n%s%s", code, out, errOut)
	}

	for _, h := range fleet.Hosts[2:] {
		if _, err := h.Run(ctx, "docker", "tag", "fleet-example/hello:1", tag); err != nil {
			t.Fatal(err)
		}
	}
	if out := p.expect(2, nil, "plan", "--detailed-exitcode"); strings.Contains(out, "warning:") {
		t.Errorf("a warning with the image on every host:\n%s", out)
	}
}

// TestDetailsReschedule cuts off a host that runs an instance: plan hints
// at --reschedule, which then says why it cannot place the instance
// elsewhere (no room) or where it placed it; once the host is back, the
// extra goes.
func TestDetailsReschedule(t *testing.T) {
	ctx := context.Background()
	forget(t, "detresch")
	yaml := func(hosts string) string {
		return strings.Replace(strings.Replace(detailsYAML, "PROJECT", "detresch", 1), "    pull: never\n", "    pull: never\n    hosts: "+hosts+"\n    replicas: 2\n", 1)
	}
	p := newProject(t, yaml("h1,h2"))
	p.expect(0, []string{"2 changed"}, "apply", "--yes")
	if got := hostsRunning(t, "detresch"); strings.Join(got, ",") != "h1,h2" {
		t.Fatalf("runs on %v, want h1, h2", got)
	}
	h2 := fleet.Host("h2")
	if err := h2.CutOff(ctx); err != nil {
		t.Fatal(err)
	}
	defer h2.Heal(ctx)

	p.expect(1, []string{"host h2 is unreachable: 1 of 2 instances are unknown and may run there; --reschedule places them on the other hosts"}, "plan")
	p.expect(1, []string{"host h2 is unreachable: web cannot be rescheduled: no reachable selected host has room (max_per_host 1); 1 of 2 instances are unknown",
		"No changes on the hosts that answered"}, "plan", "--reschedule")

	p.write(yaml("h1,h2,h3"))
	p.expect(1, []string{"+   h3", "rescheduled: host h2 is unreachable",
		"host h2 is unreachable: 1 instance of web placed on h3 instead (--reschedule); the extras go once it is back",
		"1 changed", "1 of 5 hosts unreachable"}, "apply", "--yes", "--reschedule")
	// h2, cut off, still runs its own.
	if got := hostsRunning(t, "detresch"); strings.Join(got, ",") != "h1,h2,h3" {
		t.Errorf("with h2 cut off, runs on %v, want h1, h2 (its own, unseen) and h3", got)
	}

	if err := h2.Heal(ctx); err != nil {
		t.Fatal(err)
	}
	out := p.expect(2, []string{"-   h2", "Plan: 1 to remove, 2 unchanged."}, "plan", "--detailed-exitcode")
	if !regexp.MustCompile(`a second copy of slot \d \(the one on h3 stays\)`).MatchString(out) {
		t.Errorf("the extra on h2 goes for another reason:\n%s", out)
	}
	p.expect(0, nil, "apply", "--yes")
	if got := hostsRunning(t, "detresch"); strings.Join(got, ",") != "h1,h3" {
		t.Errorf("once h2 is back, runs on %v, want h1, h3", got)
	}
}
