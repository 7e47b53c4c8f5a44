package integration

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/fleetdeploy/fleet/integration/testfleet"
)

// lockRounds is how many rounds a racing test runs: short by default,
// full with FLEET_TEST_LOCK_ROUNDS=full, or that many.
func lockRounds(short, full int) int {
	switch v := os.Getenv("FLEET_TEST_LOCK_ROUNDS"); {
	case v == "full":
		return full
	case envInt("FLEET_TEST_LOCK_ROUNDS", 0) > 0:
		return envInt("FLEET_TEST_LOCK_ROUNDS", 0)
	}
	return short
}

// running is a fleet command under way, its output kept line by line with
// the time each line came.
type running struct {
	cmd  *exec.Cmd
	done chan struct{} // closed once it exited and its output was read
	end  time.Time     // when it exited
	code int

	mu   sync.Mutex
	out  strings.Builder
	seen map[string]time.Time // when each awaited string first came
}

// start runs fleet with p's files and args; await lists strings whose
// first appearance in the output is timed.
func (p *project) start(await []string, args ...string) *running {
	p.t.Helper()
	cmd := exec.Command(fleetBin, append([]string{"--ssh-config", "none", "--no-color",
		"-f", filepath.Join(p.dir, "fleet.yaml"), "-i", fleet.Inventory}, args...)...)
	cmd.Env = append(os.Environ(), p.env...)
	r, w := io.Pipe()
	cmd.Stdout, cmd.Stderr = w, w
	if err := cmd.Start(); err != nil {
		p.t.Fatal(err)
	}
	run := &running{cmd: cmd, done: make(chan struct{}), seen: map[string]time.Time{}}
	read := make(chan struct{})
	go func() {
		defer close(read)
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			now := time.Now()
			run.mu.Lock()
			run.out.WriteString(sc.Text() + "\n")
			for _, s := range await {
				if _, ok := run.seen[s]; !ok && strings.Contains(sc.Text(), s) {
					run.seen[s] = now
				}
			}
			run.mu.Unlock()
		}
		io.Copy(io.Discard, r)
	}()
	go func() {
		err := cmd.Wait()
		run.end = time.Now()
		if ee, ok := err.(*exec.ExitError); ok {
			run.code = ee.ExitCode()
		} else if err != nil {
			run.code = -1
		}
		w.Close()
		<-read
		close(run.done)
	}()
	return run
}

// wait waits for the command to end, five minutes at most, and returns
// its exit code and output.
func (r *running) wait() (code int, out string) {
	select {
	case <-r.done:
	case <-time.After(5 * time.Minute):
		r.cmd.Process.Kill()
		<-r.done
	}
	return r.code, r.String()
}

func (r *running) String() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.out.String()
}

// when says when s first came in the output.
func (r *running) when(s string) (time.Time, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	t, ok := r.seen[s]
	return t, ok
}

// race runs n applies of p at once and checks that exactly one carried
// out its plan, that every other exited 4 naming that one as the holder,
// and that nobody took a lock over. It returns whether the round held.
func race(t *testing.T, p *project, n, round int) bool {
	t.Helper()
	runs := make([]*running, n)
	for i := range runs {
		runs[i] = p.start(nil, "apply", "--yes")
	}
	codes := make([]int, n)
	outs := make([]string, n)
	for i, r := range runs {
		codes[i], outs[i] = r.wait()
	}
	var winners []int
	for i := range runs {
		if codes[i] == 0 && strings.Contains(outs[i], " changed,") && !strings.Contains(outs[i], "No changes left") {
			winners = append(winners, i)
		}
	}
	ok := true
	fail := func(format string, args ...any) {
		ok = false
		t.Errorf("round %d: "+format, append([]any{round}, args...)...)
	}
	if len(winners) != 1 {
		fail("%d runs carried out their plan, want 1", len(winners))
	}
	for i := range runs {
		if strings.Contains(outs[i], "taking over") {
			fail("run %d took a lock over from a live holder:\n%s", i, outs[i])
		}
		if len(winners) == 1 && i != winners[0] {
			if codes[i] != 4 || !strings.Contains(outs[i], "is held by") || !strings.Contains(outs[i], fmt.Sprintf("(pid %d)", runs[winners[0]].cmd.Process.Pid)) {
				fail("run %d: exit %d, want 4 naming run %d (pid %d) as the holder:\n%s", i, codes[i], winners[0], runs[winners[0]].cmd.Process.Pid, outs[i])
			}
		}
	}
	if !ok {
		for i := range runs {
			t.Logf("round %d, run %d (pid %d), exit %d:\n%s", round, i, runs[i].cmd.Process.Pid, codes[i], outs[i])
		}
	}
	return ok
}

// oneContainerEach checks that each host runs exactly one container of
// project.
func oneContainerEach(t *testing.T, project string, hosts []*testfleet.Host, round int) bool {
	t.Helper()
	ok := true
	for _, h := range hosts {
		out, err := h.Run(context.Background(), "docker", "ps", "-q", "--filter", "label=fleet.project="+project)
		if n := len(strings.Fields(string(out))); err != nil || n != 1 {
			t.Errorf("round %d: %s runs %d containers of %s, want 1 (%v)", round, h.Name, n, project, err)
			ok = false
		}
	}
	return ok
}

const raceYAML = `project: "@PROJECT@"
services:
  web:
    image: fleet-example/hello:1
    pull: never
    hosts: "@HOSTS@"
    ports: ["@PORT@:8080"]
    env: {HELLO_MODE: slow, HELLO_HEALTHY_AFTER: 2s, ROUND: "@ROUND@"}
    healthcheck: {http: /up, port: 8080, interval: 250ms}
    update: {parallelism: 4, monitor: 0s}
`

func raceProject(project, hosts, port string, round int) string {
	return strings.NewReplacer("@PROJECT@", project, "@HOSTS@", hosts, "@PORT@", port, "@ROUND@", strconv.Itoa(round)).Replace(raceYAML)
}

// TestRacingAppliesOneHost races eight applies of one project on one host,
// round after round: each round exactly one carries out its plan, the
// seven others exit 4 naming it, nobody takes a lock over, and one
// container runs for the one slot. FLEET_TEST_LOCK_ROUNDS=full runs 40
// rounds.
func TestRacingAppliesOneHost(t *testing.T) {
	cleanupProject(t, "raceone")
	hosts := fleet.Hosts[:1]
	p := newProject(t, raceProject("raceone", "h1", "8102", 0))
	p.expect(0, []string{"1 changed"}, "apply", "--yes")
	rounds, failed := lockRounds(3, 40), 0
	for round := 1; round <= rounds; round++ {
		p.write(raceProject("raceone", "h1", "8102", round))
		if !race(t, p, 8, round) || !oneContainerEach(t, "raceone", hosts, round) {
			failed++
		}
	}
	t.Logf("%d rounds of 8 applies on one host: %d failed", rounds, failed)
}

// TestRacingAppliesManyHosts races two applies of one project over four
// hosts, one of them slow (300 ms more on every packet it sends) and one
// without SFTP, round after round, with the same checks.
// FLEET_TEST_LOCK_ROUNDS=full runs 20 rounds.
func TestRacingAppliesManyHosts(t *testing.T) {
	ctx := context.Background()
	cleanupProject(t, "racemany")
	hosts := fleet.Hosts[:4]
	slow := hosts[3]
	withoutSFTP(t, hosts[2])
	if err := slow.Delay(ctx, 300*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { slow.Delay(context.Background(), 0) })
	// OpenSSH's own client waits for the host several times on the way in.
	start := time.Now()
	if _, err := slow.SSH(ctx, "true"); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took < time.Second {
		t.Fatalf("ssh %s true took %s: the host is not slow", slow.Name, took)
	} else {
		t.Logf("ssh %s true takes %s", slow.Name, took.Round(10*time.Millisecond))
	}
	p := newProject(t, raceProject("racemany", "h1,h2,h3,h4", "8103", 0))
	p.expect(0, []string{"4 changed"}, "apply", "--yes")
	rounds, failed := lockRounds(1, 20), 0
	for round := 1; round <= rounds; round++ {
		p.write(raceProject("racemany", "h1,h2,h3,h4", "8103", round))
		if !race(t, p, 2, round) || !oneContainerEach(t, "racemany", hosts, round) {
			failed++
		}
	}
	t.Logf("%d rounds of 2 applies on 4 hosts, one slow, one without SFTP: %d failed", rounds, failed)
}

const stallYAML = `project: stall
services:
  web:
    image: fleet-example/hello:1
    pull: never
    hosts: h1,h2
    ports: ["8104:8080"]
    env: {HELLO_MODE: slow, HELLO_HEALTHY_AFTER: "@HEALTHY@", ROUND: "@ROUND@"}
    healthcheck: {http: /up, port: 8080, interval: 500ms}
    update: {monitor: 0s, healthy_deadline: 2m}
`

func stallProject(healthy string, round int) string {
	return strings.NewReplacer("@HEALTHY@", healthy, "@ROUND@", strconv.Itoa(round)).Replace(stallYAML)
}

// TestStalledHolderStopsBeforeTakeover stalls every file operation of a
// running apply on one of its hosts (its SFTP server stopped), past the
// lease: the apply finds it cannot renew the lock there, undoes the step
// in flight and exits naming the host, before a second apply, waiting for
// the lock, takes it over and starts changing anything.
func TestStalledHolderStopsBeforeTakeover(t *testing.T) {
	ctx := context.Background()
	cleanupProject(t, "stall")
	h1, h2 := fleet.Hosts[0], fleet.Hosts[1]
	p := newProject(t, stallProject("1s", 1))
	p.expect(0, []string{"2 changed"}, "apply", "--yes")

	p.write(stallProject("5m", 2))
	first := p.start([]string{"back on revision 1"}, "apply", "--yes")
	untilLocked(t, h2, "stall", first)
	// The first step is under way on h1: its new container waits for a
	// health check that will not pass for minutes.
	deadline := time.Now().Add(time.Minute)
	for containersPerHost(t, "stall")["h1"] != 2 {
		if time.Now().After(deadline) {
			t.Fatal("the first apply never reached its first step")
		}
		time.Sleep(100 * time.Millisecond)
	}
	stopped, err := h2.Signal("sftp-server", syscall.SIGSTOP)
	if err != nil || stopped == 0 {
		t.Fatalf("stopping h2's SFTP servers: %d stopped, %v", stopped, err)
	}
	stalled := time.Now()
	defer h2.Signal("sftp-server", syscall.SIGCONT)

	second := newProject(t, stallProject("1s", 3))
	next := second.start([]string{"taking over the deploy lock on h2", "step 1 of"}, "apply", "--yes", "--lock-wait", "2m")
	code, out := first.wait()
	firstEnd := first.end
	t.Logf("the stalled apply, %s after the stall, exit %d:\n%s", firstEnd.Sub(stalled).Round(100*time.Millisecond), code, out)
	if code == 0 || !strings.Contains(out, "lost the deploy lock on h2: its lease could not be renewed") {
		t.Errorf("the stalled apply: exit %d, want it to say it lost the lock on h2", code)
	}
	// It changes nothing more once its lease could have run out: it
	// notices within half the lease, from its last renewal at most a
	// sixth before the stall, and undoes the step in flight. (Writing
	// the attempt's record to the stalled host may hold the process a
	// little longer; that changes no container.)
	if undone, ok := first.when("back on revision 1"); !ok {
		t.Errorf("the stalled apply did not put h1 back")
	} else if d := undone.Sub(stalled); d > 25*time.Second {
		t.Errorf("the stalled apply put h1 back %s after the stall, later than its lease allows", d)
	}
	if !strings.Contains(out, "INTERRUPTED") && !strings.Contains(out, "interrupted") {
		t.Errorf("the stalled apply did not stop its rollout")
	}
	h2.Signal("sftp-server", syscall.SIGCONT)

	code, out = next.wait()
	t.Logf("the waiting apply, exit %d:\n%s", code, out)
	took, ok := next.when("taking over the deploy lock on h2")
	// The stalled holder ran on this machine: once it exited, its process
	// is gone; elsewhere its lease would have had to run out.
	if code != 0 || !ok || !strings.Contains(out, "its process is gone") {
		t.Fatalf("the waiting apply: exit %d, want it to take the lock over once the holder's process is gone", code)
	}
	if !took.After(firstEnd) {
		t.Errorf("the lock was taken over at %s, before the stalled holder stopped at %s", took.Format("15:04:05.000"), firstEnd.Format("15:04:05.000"))
	}
	if changed, ok := next.when("step 1 of"); !ok || !changed.After(firstEnd) {
		t.Errorf("the waiting apply began changing at %s, the stalled one stopped at %s", changed.Format("15:04:05.000"), firstEnd.Format("15:04:05.000"))
	}
	t.Logf("stalled at %s, holder stopped at %s, taken over at %s", stalled.Format("15:04:05.000"), firstEnd.Format("15:04:05.000"), took.Format("15:04:05.000"))
	oneContainerEach(t, "stall", []*testfleet.Host{h1, h2}, 0)
	for _, h := range []*testfleet.Host{h1, h2} {
		if err := serving(ctx, h.Addr+":8104", "1"); err != nil {
			t.Error(err)
		}
	}
}
