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

	"github.com/fleetdeploy/fleet/executor"
	"github.com/fleetdeploy/fleet/integration/testfleet"
)

// fleetBin is the fleet command built from this tree, once per run.
var fleetBin string

func buildFleet() (string, error) {
	dir, err := os.MkdirTemp("", "fleet-bin-")
	if err != nil {
		return "", err
	}
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "fleet")
	build := exec.Command("go", "build", "-o", bin, "./cmd/fleet")
	build.Dir = filepath.Dir(strings.TrimSpace(string(out)))
	if msg, err := build.CombinedOutput(); err != nil {
		return "", &buildError{err, string(msg)}
	}
	return bin, nil
}

type buildError struct {
	err error
	out string
}

func (e *buildError) Error() string { return e.err.Error() + ": " + e.out }

// project is a fleet.yaml and the directory it lives in, against the
// shared test fleet's inventory.
type project struct {
	t   *testing.T
	dir string
	// inventory is the inventory file the project runs with: the fleet's,
	// unless a test gives it one of its own.
	inventory string
	// env is added to fleet's environment.
	env []string
}

func newProject(t *testing.T, fleetYAML string) *project {
	p := &project{t: t, dir: t.TempDir(), inventory: fleet.Inventory}
	p.write(fleetYAML)
	return p
}

func (p *project) write(fleetYAML string) {
	if err := os.WriteFile(filepath.Join(p.dir, "fleet.yaml"), []byte(fleetYAML), 0o644); err != nil {
		p.t.Fatal(err)
	}
}

// run runs fleet with the project's files and returns its output and exit
// code; a fleet that cannot run at all fails the test.
func (p *project) run(args ...string) (stdout, stderr string, code int) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, fleetBin, append([]string{"--ssh-config", "none", "--no-color",
		"-f", filepath.Join(p.dir, "fleet.yaml"), "-i", p.inventory}, args...)...)
	cmd.Env = append(os.Environ(), p.env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		return out.String(), errb.String(), ee.ExitCode()
	}
	if err != nil {
		p.t.Fatalf("fleet %v: %v", args, err)
	}
	return out.String(), errb.String(), 0
}

// runTTY runs fleet as run does, on a terminal (script(1) gives it one),
// and returns what the terminal received.
func (p *project) runTTY(args ...string) (screen string, code int) {
	p.t.Helper()
	return p.runTTYWith("", args...)
}

// runTTYWith is runTTY with input typed on the terminal.
func (p *project) runTTYWith(input string, args ...string) (screen string, code int) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	line, err := executor.ShellJoin(append([]string{fleetBin, "--ssh-config", "none",
		"-f", filepath.Join(p.dir, "fleet.yaml"), "-i", p.inventory}, args...))
	if err != nil {
		p.t.Fatal(err)
	}
	cmd := exec.CommandContext(ctx, "script", "-qec", line, "/dev/null")
	cmd.Env = append(append(os.Environ(), "TERM=xterm", "COLUMNS=100", "LINES=40"), p.env...)
	if input != "" {
		cmd.Stdin = strings.NewReader(input)
	}
	out, err := cmd.Output()
	if ee, ok := err.(*exec.ExitError); ok {
		return string(out), ee.ExitCode()
	}
	if err != nil {
		p.t.Fatalf("fleet %v on a terminal: %v", args, err)
	}
	return string(out), 0
}

// expect runs fleet and checks its exit code and that stdout+stderr hold
// every wanted string.
func (p *project) expect(code int, want []string, args ...string) string {
	p.t.Helper()
	out, errOut, got := p.run(args...)
	all := out + errOut
	if got != code {
		p.t.Fatalf("fleet %s: exit %d, want %d\n%s", strings.Join(args, " "), got, code, all)
	}
	for _, w := range want {
		if !strings.Contains(all, w) {
			p.t.Errorf("fleet %s: output lacks %q\n%s", strings.Join(args, " "), w, all)
		}
	}
	return all
}

const planYAML = `project: planit
services:
  web:
    image: fleet-example/hello:1
    pull: never
    ports: ["8090:8080"]
    env: {GREETING: hello}
    resources: {memory: 256M}
    healthcheck: {http: /up, port: 8080}
    update: {parallelism: 2, monitor: 1s}
`

// TestPlanAndApply drives fleet plan and apply against the five hosts:
// a fresh fleet, convergence, drift made by hand, a changed env, a saved
// plan gone stale, and a host cut off.
func TestPlanAndApply(t *testing.T) {
	ctx := context.Background()
	p := newProject(t, planYAML)
	t.Cleanup(func() {
		eachHost(t, func(h *testfleet.Host) error {
			_, err := h.Run(ctx, "sh", "-c", "docker ps -aq --filter label=fleet.project=planit | xargs -r docker rm -f")
			return err
		})
	})

	p.expect(2, []string{"Plan: 5 to create, 0 unchanged."}, "plan", "--detailed-exitcode")
	p.expect(0, []string{"5 changed, 0 unchanged, 0 failed"}, "apply", "--yes")
	eachHost(t, func(h *testfleet.Host) error { return serving(ctx, h.Addr+":8090", "1") })
	p.expect(0, []string{"No changes: 5 instances as desired."}, "plan", "--detailed-exitcode")
	stdout, _, _ := p.run("status", "--json")
	var status struct {
		Instances []struct {
			Host, Image, State string
			Revision           int
		}
	}
	if err := json.Unmarshal([]byte(stdout), &status); err != nil {
		t.Fatalf("fleet status --json: %v\n%s", err, stdout)
	}
	if len(status.Instances) != 5 {
		t.Errorf("fleet status lists %d instances, want 5", len(status.Instances))
	}
	for _, in := range status.Instances {
		if in.State != "running" || in.Revision != 1 || in.Image != "fleet-example/hello:1" {
			t.Errorf("fleet status: %+v", in)
		}
	}

	// fleet hosts: every host answers, with its engine and the project's
	// instance on it.
	out := p.expect(0, []string{"HOST", "DOCKER", "INSTANCES"}, "hosts")
	for _, h := range fleet.Hosts {
		if !regexp.MustCompile(`(?m)^` + h.Name + `\s+ok\s+\S+\s+20\.10\.\S+\s+\d+\s+\S+\s+\S+\s+1$`).MatchString(out) {
			t.Errorf("fleet hosts has no good line for %s:\n%s", h.Name, out)
		}
	}

	t.Run("drift", func(t *testing.T) {
		h2, h3, h4 := fleet.Hosts[1], fleet.Hosts[2], fleet.Hosts[3]
		for _, c := range []struct {
			h   *testfleet.Host
			cmd string
		}{
			{h2, "docker ps -q --filter label=fleet.project=planit | xargs docker rm -f"},
			{h3, "docker ps -q --filter label=fleet.project=planit | xargs docker stop"},
			{h4, "docker ps -q --filter label=fleet.project=planit | xargs docker update --memory 128m --memory-swap 256m"},
		} {
			if _, err := c.h.SSH(ctx, c.cmd); err != nil {
				t.Fatal(err)
			}
		}
		out := p.expect(2, []string{
			"+   h2", "container missing on this host (drift)",
			">   h3", "container exited",
			"~   h4", "memory 128M → 256M",
			"Plan: 1 to create, 1 to update in place, 1 to start, 2 unchanged.",
		}, "plan", "--detailed-exitcode")
		if strings.Contains(out, "h1 ") || strings.Contains(out, "h5 ") {
			t.Errorf("untouched hosts show up in the plan:\n%s", out)
		}
		p.expect(0, nil, "apply", "--yes")
		p.expect(0, []string{"No changes"}, "plan", "--detailed-exitcode")
		eachHost(t, func(h *testfleet.Host) error { return serving(ctx, h.Addr+":8090", "1") })
	})

	t.Run("env change names the key", func(t *testing.T) {
		p.write(strings.Replace(planYAML, "GREETING: hello", "GREETING: bonjour", 1))
		p.expect(2, []string{"-/+ h1", "env.GREETING changed", "Plan: 5 to replace, 0 unchanged."}, "plan", "--detailed-exitcode")
	})

	t.Run("a saved plan is refused once a host changed", func(t *testing.T) {
		file := filepath.Join(p.dir, "release.plan")
		p.expect(2, nil, "plan", "--detailed-exitcode", "-o", file)
		if fi, err := os.Stat(file); err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("saved plan: %v %v", fi, err)
		}
		if _, err := fleet.Hosts[0].SSH(ctx, "docker ps -q --filter label=fleet.project=planit | xargs docker stop"); err != nil {
			t.Fatal(err)
		}
		p.expect(1, []string{"stale", "h1"}, "apply", file)
		// Nothing was applied: the other hosts still run the old env.
		out, err := fleet.Hosts[1].SSH(ctx, "docker inspect --format '{{range .Config.Env}}{{println .}}{{end}}' $(docker ps -q --filter label=fleet.project=planit)")
		if err != nil || !strings.Contains(string(out), "GREETING=hello") {
			t.Errorf("h2 after a refused plan: %q %v", out, err)
		}
		// A fresh plan, applied at once, goes through.
		p.expect(2, nil, "plan", "--detailed-exitcode", "-o", file)
		p.expect(0, []string{"5 changed"}, "apply", file)
		p.expect(0, []string{"No changes"}, "plan", "--detailed-exitcode")
	})

	t.Run("a tag that now names another image is seen", func(t *testing.T) {
		h2 := fleet.Hosts[1]
		v1, err := h2.SSH(ctx, "docker image inspect --format '{{.Id}}' fleet-example/hello:1")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := h2.SSH(ctx, "docker tag fleet-example/hello:2 fleet-example/hello:1"); err != nil {
			t.Fatal(err)
		}
		defer h2.SSH(ctx, "docker tag "+strings.TrimSpace(string(v1))+" fleet-example/hello:1")
		out := p.expect(2, []string{"-/+ h2", "image fleet-example/hello:1 now is", "Plan: 1 to replace, 4 unchanged."}, "plan", "--detailed-exitcode")
		if strings.Contains(out, "h1 ") {
			t.Errorf("hosts whose tag did not move show up:\n%s", out)
		}
	})

	t.Run("a cut-off host makes plan exit 1 naming it", func(t *testing.T) {
		h5 := fleet.Hosts[4]
		if err := h5.CutOff(ctx); err != nil {
			t.Fatal(err)
		}
		defer h5.Heal(ctx)
		start := time.Now()
		p.expect(1, []string{"host h5 unreachable", "1 of 5 hosts unreachable"}, "plan")
		p.expect(1, []string{"h5    unreachable", "1 of 5 hosts unreachable"}, "hosts")
		t.Logf("plan with a cut-off host took %s", time.Since(start).Round(time.Millisecond))
	})
}
