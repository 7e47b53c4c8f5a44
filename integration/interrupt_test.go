package integration

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fleetdeploy/fleet/integration/testfleet"
)

const failYAML = `project: fail
services:
  web:
    image: fleet-example/hello:VERSION
    pull: never
    hosts: h1,h2,h3
    ports: ["8094:8080"]
    env: {EXTRA}
    healthcheck: {http: /up, port: 8080, interval: 500ms}
    update: {parallelism: PAR, monitor: 0s, failure_action: ACTION, healthy_deadline: 10s}
`

// failHosts are the hosts of the project fail: three make two steps of
// two and one, and each host more costs every test of the project a
// container's life per change (about a second of CPU).
func failHosts() []*testfleet.Host { return fleet.Hosts[:3] }

func failProject(version, extra, par, action string) string {
	return strings.NewReplacer("VERSION", version, "EXTRA", extra, "PAR", par, "ACTION", action).Replace(failYAML)
}

// containersPerHost counts the project's containers, running or not, on
// the hosts given, or on every host.
func containersPerHost(t *testing.T, project string, hosts ...*testfleet.Host) map[string]int {
	if len(hosts) == 0 {
		hosts = fleet.Hosts
	}
	counts := map[string]int{}
	for _, h := range hosts {
		ids, err := h.ContainersOf(context.Background(), "fleet.project="+project)
		if err != nil {
			t.Fatal(err)
		}
		counts[h.Name] = len(ids)
	}
	return counts
}

// TestFailureActions: pause stops after the failed step and apply goes on
// from there once the cause is fixed; continue tries every instance and
// puts each failed one back.
func TestFailureActions(t *testing.T) {
	ctx := context.Background()
	p := deployedOn(t, "fail", failHosts(), failProject("1", "", "1", "pause"))

	p.write(failProject("2", "HELLO_MODE: crash", "1", "pause"))
	p.expect(1, []string{"PAUSED", "paused after step 1 of 3", "fleet apply to go on"}, "apply", "--yes")
	// The failed instance is back on version 1, and no other was touched.
	eachOf(t, failHosts(), func(h *testfleet.Host) error { return serving(ctx, h.Addr+":8094", "1") })
	p.write(failProject("2", "", "1", "pause"))
	p.expect(0, []string{"3 changed"}, "apply", "--yes")
	eachOf(t, failHosts(), func(h *testfleet.Host) error { return serving(ctx, h.Addr+":8094", "2") })

	p.write(failProject("1", "HELLO_MODE: crash", "2", "continue"))
	p.expect(1, []string{"3 of 3 instances failed (h", "(failure_action: continue"}, "apply", "--yes")
	eachOf(t, failHosts(), func(h *testfleet.Host) error { return serving(ctx, h.Addr+":8094", "2") })
	for host, n := range containersPerHost(t, "fail", failHosts()...) {
		if n != 1 {
			t.Errorf("%s has %d containers of the project after failed steps, want 1", host, n)
		}
	}
}

// TestKilledAtAnyMomentConverges kills apply with SIGKILL at each moment of
// an instance's replacement, and between two steps: each time the next
// apply converges to exactly one container per host on the new version,
// and at no point, across the kill, do fewer hosts answer than
// parallelism allows. The next apply takes over the dead run's lock.
func TestKilledAtAnyMomentConverges(t *testing.T) {
	ctx := context.Background()
	p := deployedOn(t, "fail", failHosts(), failProject("1", "", "2", "rollback"))
	version := 1
	for _, moment := range []string{"stopping the old container", "starting the new container", "waiting for its health check", "healthy (revision", "step 2 of"} {
		t.Run(moment, func(t *testing.T) {
			version = 3 - version
			v := strconv.Itoa(version)
			p.write(failProject(v, "", "2", "rollback"))
			avail := sampleAvailability(t, "8094")
			killed := killAt(t, p, `"what":"`+moment)
			p.expect(0, []string{"taking over the deploy lock", "its process is gone"}, "apply", "--yes")
			samples, worst := avail()
			t.Logf("%d samples across the kill and the next apply; fewest hosts answering: %d", samples, worst)
			if n := len(failHosts()); worst < n-2 {
				t.Errorf("only %d of %d hosts answered at one point; parallelism 2 allows %d\nthe killed apply said:\n%s", worst, n, n-2, killed)
			}
			p.expect(0, []string{"No changes"}, "plan", "--detailed-exitcode")
			for host, n := range containersPerHost(t, "fail", failHosts()...) {
				if n != 1 {
					t.Errorf("%s has %d containers of the project, want exactly 1", host, n)
				}
			}
			eachOf(t, failHosts(), func(h *testfleet.Host) error { return serving(ctx, h.Addr+":8094", v) })
		})
	}
}

// TestKilledSickReleaseIsNotTrusted: fleet killed while a sick release
// waits for its health check leaves the step's new containers running,
// never seen healthy. The next apply does not count them as deployed: it
// removes them, tries the release again from the containers they were to
// replace, finds it sick and rolls every host back. Every host serves the
// old version afterwards, and no mark is left behind.
func TestKilledSickReleaseIsNotTrusted(t *testing.T) {
	ctx := context.Background()
	p := deployedOn(t, "fail", failHosts(), failProject("1", "", "2", "rollback"))
	p.write(failProject("2", "HELLO_MODE: unhealthy", "2", "rollback"))
	killAt(t, p, `"what":"waiting for its health check"`)

	p.expect(0, []string{"never seen healthy: left by a run that ended before its health check passed"}, "plan")
	p.expect(3, []string{"rolled back to revision 1"}, "apply", "--yes")
	for host, n := range containersPerHost(t, "fail", failHosts()...) {
		if n != 1 {
			t.Errorf("%s has %d containers of the project, want exactly 1", host, n)
		}
	}
	eachOf(t, failHosts(), func(h *testfleet.Host) error {
		if err := serving(ctx, h.Addr+":8094", "1"); err != nil {
			return err
		}
		out, err := h.Run(ctx, "sh", "-c", "ls -A /var/lib/fleet/fail/unchecked 2>/dev/null || true")
		if err == nil && len(bytes.TrimSpace(out)) > 0 {
			err = fmt.Errorf("marks left behind: %s", out)
		}
		return err
	})
}

// killAt runs "fleet --json apply --yes" on p and kills it with SIGKILL as
// soon as it prints a line holding marker; it returns what it printed.
func killAt(t *testing.T, p *project, marker string) string {
	t.Helper()
	out, _ := signalAt(t, p, marker, syscall.SIGKILL)
	return out
}

// signalAt runs "fleet --json apply --yes" on p and sends it sig as soon
// as it prints a line holding marker; it returns what it printed, and
// its exit code.
func signalAt(t *testing.T, p *project, marker string, sig syscall.Signal) (string, int) {
	t.Helper()
	cmd := exec.Command(fleetBin, "--ssh-config", "none", "--json", "-f", filepath.Join(p.dir, "fleet.yaml"), "-i", fleet.Inventory, "apply", "--yes")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var seen strings.Builder
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		seen.WriteString(sc.Text() + "\n")
		if strings.Contains(sc.Text(), marker) {
			cmd.Process.Signal(sig)
			break
		}
	}
	if sig == syscall.SIGKILL {
		cmd.Process.Signal(sig)
	}
	for sc.Scan() {
		seen.WriteString(sc.Text() + "\n")
	}
	cmd.Wait()
	if !strings.Contains(seen.String(), marker) {
		t.Fatalf("apply ended before printing %s:\n%s", marker, seen.String())
	}
	return seen.String(), cmd.ProcessState.ExitCode()
}

// TestInterruptedApplyUndoesTheStepInFlight sends SIGINT (Ctrl-C) in the
// middle of a step: the step in flight is undone or finished, the run
// stops with an error that says how to go on, the lock is released, and
// every host still serves.
func TestInterruptedApplyUndoesTheStepInFlight(t *testing.T) {
	ctx := context.Background()
	p := deployedOn(t, "fail", failHosts(), failProject("1", "", "2", "rollback"))

	p.write(failProject("2", "HELLO_MODE: slow, HELLO_HEALTHY_AFTER: 3s", "2", "rollback"))
	cmd, out := backgroundApply(t, p)
	untilFirstStep(t, "fail", cmd, out)
	cmd.Process.Signal(syscall.SIGINT)
	err := cmd.Wait()
	if err == nil || !strings.Contains(out.String(), "interrupted after step 1") {
		t.Errorf("interrupted apply: %v\n%s", err, out.String())
	}
	for _, h := range failHosts() {
		if list, err := containersOf(ctx, h, "fail"); err != nil || len(list) != 1 {
			t.Errorf("%s has these containers of the project after the interruption, want 1: %q (%v)\nthe apply said:\n%s", h.Name, list, err, out.String())
		}
	}
	eachOf(t, failHosts(), func(h *testfleet.Host) error { return serving(ctx, h.Addr+":8094", "1") })
	p.expect(0, []string{"No deploy lock"}, "lock", "status")
}

// backgroundApply starts "fleet apply --yes" on p and returns it running,
// with its output gathered.
func backgroundApply(t *testing.T, p *project) (*exec.Cmd, *bytes.Buffer) {
	t.Helper()
	return backgroundCommand(t, p, "apply", "--yes")
}

// backgroundCommand starts fleet with args on p and returns it running,
// with its output collected.
func backgroundCommand(t *testing.T, p *project, args ...string) (*exec.Cmd, *bytes.Buffer) {
	t.Helper()
	cmd := exec.Command(fleetBin, append([]string{"--ssh-config", "none", "-f", filepath.Join(p.dir, "fleet.yaml"), "-i", fleet.Inventory}, args...)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd, &out
}

// untilFirstStep waits until a new container of the project runs beside
// a stopped old one on h1 or h2: the rollout is in its first step.
func untilFirstStep(t *testing.T, project string, cmd *exec.Cmd, out *bytes.Buffer) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		counts := containersPerHost(t, project)
		if counts["h1"] == 2 || counts["h2"] == 2 {
			return
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatalf("the rollout never reached its first step:\n%s", out.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestSecondInterruptSaysWhatItLeaves sends Ctrl-C twice in the middle of
// a step: the run stops at once, and first says, host by host, which
// instances it leaves down and that the lock stays; the next apply
// repairs everything.
func TestSecondInterruptSaysWhatItLeaves(t *testing.T) {
	ctx := context.Background()
	p := deployedOn(t, "fail", failHosts(), failProject("1", "", "2", "rollback"))

	p.write(failProject("2", "HELLO_MODE: slow, HELLO_HEALTHY_AFTER: 5s", "2", "rollback"))
	cmd, out := backgroundApply(t, p)
	untilFirstStep(t, "fail", cmd, out)
	cmd.Process.Signal(syscall.SIGINT)
	time.Sleep(20 * time.Millisecond)
	cmd.Process.Signal(syscall.SIGINT)
	err := cmd.Wait()
	ee, ok := err.(*exec.ExitError)
	if !ok || ee.ExitCode() != 130 {
		t.Fatalf("apply after two interrupts: %v, want exit 130\n%s", err, out)
	}
	said := out.String()
	t.Logf("apply stopped at once said:\n%s", said)
	for _, want := range []string{"stopped at once, leaving behind:", "web/", "the deploy lock stays until its lease runs out", "run fleet apply to repair it"} {
		if !strings.Contains(said, want) {
			t.Errorf("apply stopped at once does not say %q:\n%s", want, said)
		}
	}
	// One line per host of the first step, naming it.
	if !regexp.MustCompile(`(?m)^  h[12]: web/[12] `).MatchString(said) {
		t.Errorf("no line names a host of the first step and its instance:\n%s", said)
	}

	p.write(failProject("2", "", "2", "rollback"))
	p.expect(0, []string{"taking over the deploy lock"}, "apply", "--yes")
	p.expect(0, []string{"No changes"}, "plan", "--detailed-exitcode")
	for host, n := range containersPerHost(t, "fail", failHosts()...) {
		if n != 1 {
			t.Errorf("%s has %d containers of the project, want exactly 1", host, n)
		}
	}
	eachOf(t, failHosts(), func(h *testfleet.Host) error { return serving(ctx, h.Addr+":8094", "2") })
}
