package integration

import (
	"context"
	"fmt"
	"os/exec"
	"path"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fleetdeploy/fleet/integration/testfleet"
)

const lockYAML = `project: lockit
services:
  web:
    image: fleet-example/hello:1
    pull: never
    hosts: h1,h2
    ports: ["8092:8080"]
    env: {HELLO_MODE: slow, HELLO_HEALTHY_AFTER: 4s, ROUND: "%d"}
    healthcheck: {http: /up, port: 8080}
    update: {monitor: 0s}
`

// lockGenerations lists the generations of project's deploy lock on h,
// oldest first: the newest one says who holds it.
func lockGenerations(ctx context.Context, h *testfleet.Host, project string) ([]int, error) {
	out, err := h.Run(ctx, "sh", "-c", `cd "$1" 2>/dev/null && ls`, "ls", path.Join("/var/lib/fleet", project, "lock"))
	if err != nil {
		return nil, nil // no lock yet
	}
	var gens []int
	for _, name := range strings.Fields(string(out)) {
		if n, err := strconv.Atoi(strings.TrimSuffix(name, ".json")); err == nil && strings.HasSuffix(name, ".json") {
			gens = append(gens, n)
		}
	}
	sort.Ints(gens)
	return gens, nil
}

// lockRecord returns the newest generation of project's lock on h, and
// whether it says the lock is held.
func lockRecord(ctx context.Context, h *testfleet.Host, project string) (gen int, record string, held bool) {
	gens, _ := lockGenerations(ctx, h, project)
	if len(gens) == 0 {
		return 0, "", false
	}
	gen = gens[len(gens)-1]
	b, err := h.Run(ctx, "cat", path.Join("/var/lib/fleet", project, "lock", strconv.Itoa(gen)+".json"))
	if err != nil {
		return gen, "", false
	}
	return gen, string(b), !strings.Contains(string(b), `"released": true`)
}

// untilLocked waits until project's lock on h is held.
func untilLocked(t *testing.T, h *testfleet.Host, project string, what fmt.Stringer) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		if _, _, held := lockRecord(context.Background(), h, project); held {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no lock was taken on %s:\n%s", h.Name, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// writeLock writes, as a run on another machine would have, the next
// generation of project's lock on h, saying holder holds it, dated by the
// host's clock at written.
func writeLock(t *testing.T, h *testfleet.Host, project, holder string, written time.Time) {
	t.Helper()
	gens, _ := lockGenerations(context.Background(), h, project)
	next := 1
	if len(gens) > 0 {
		next = gens[len(gens)-1] + 1
	}
	dir := path.Join("/var/lib/fleet", project, "lock")
	file := path.Join(dir, strconv.Itoa(next)+".json")
	cmd := exec.Command("nsenter", "-t", fmt.Sprint(h.Anchor), "--mount", "--", "sh", "-c",
		`mkdir -p "$1" && cat > "$2" && touch -d "@$3" "$2"`, "write-lock", dir, file, strconv.FormatInt(written.Unix(), 10))
	cmd.Stdin = strings.NewReader(holder)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
}

// skipsReread is what apply -v says when no run held the lock since it
// read the hosts.
const skipsReread = "no run held the deploy lock since the hosts were read"

// TestDeployLock runs a second apply while one runs (exit 4, naming the
// holder), waits for a lock with --lock-wait, takes over an expired lock,
// and breaks a live one with lock release --force; lock status names the
// hosts whose lock it cannot read instead of calling them unlocked.
func TestDeployLock(t *testing.T) {
	cleanupProject(t, "lockit")
	h1, h2 := fleet.Hosts[0], fleet.Hosts[1]
	p := newProject(t, fmt.Sprintf(lockYAML, 1))

	first, firstOut := backgroundApply(t, p)
	untilLocked(t, h1, "lockit", firstOut)
	// Another release of the same project, meanwhile.
	second := newProject(t, fmt.Sprintf(lockYAML, 2))
	second.expect(4, []string{"the deploy lock on h1 is held by", fmt.Sprintf("(pid %d)", first.Process.Pid), "fleet apply"}, "apply", "--yes")
	p.expect(0, []string{"h1: locked by", "h2: locked by", "renewed"}, "lock", "status")
	// One that waits goes on once the first is done, from what the first
	// one left.
	out := second.expect(0, []string{"2 changed"}, "apply", "--yes", "--lock-wait", "60s", "-v")
	if strings.Contains(out, skipsReread) {
		t.Errorf("an apply that waited for the lock did not read the hosts again:\n%s", out)
	}
	if err := first.Wait(); err != nil {
		t.Fatalf("the first apply: %v\n%s", err, firstOut.String())
	}
	if !strings.Contains(firstOut.String(), "2 changed") {
		t.Errorf("the first apply:\n%s", firstOut.String())
	}
	t.Logf("the waiting apply:\n%s", out)
	p.expect(0, []string{"No deploy lock"}, "lock", "status")
	second.expect(0, []string{"No changes"}, "plan", "--detailed-exitcode")

	// A lock whose lease ran out by the host's clock is taken over, with a
	// warning.
	elsewhere := func(lease int) string {
		return fmt.Sprintf(`{"user":"ops","machine":"elsewhere","pid":4242,"command":"fleet apply","started":"2026-01-01T00:00:00Z","run":"x","lease_seconds":%d}`, lease)
	}
	writeLock(t, h1, "lockit", elsewhere(30), time.Now().Add(-time.Minute))
	p.write(fmt.Sprintf(lockYAML, 3))
	p.expect(0, []string{"taking over the deploy lock on h1 from ops@elsewhere", "lease ran out"}, "apply", "--yes")

	// A live lock of another machine holds until it is broken by hand.
	writeLock(t, h1, "lockit", elsewhere(3600), time.Now())
	p.write(fmt.Sprintf(lockYAML, 4))
	p.expect(4, []string{"held by ops@elsewhere (pid 4242)"}, "apply", "--yes")
	p.expect(1, []string{"needs --force"}, "lock", "release")
	p.expect(0, []string{"Released the deploy lock of lockit"}, "lock", "release", "--force")
	// Nobody took the lock between this apply's read and its own: no
	// second read.
	p.expect(0, []string{"2 changed", skipsReread}, "apply", "--yes", "-v")

	// A host whose lock cannot be read is named, not counted as unlocked.
	lockPath := "/var/lib/fleet/lockit/lock"
	if _, err := h2.Run(context.Background(), "sh", "-c", `rm -rf "$1" && echo garbage > "$1"`, "break", lockPath); err != nil {
		t.Fatal(err)
	}
	defer h2.Run(context.Background(), "rm", "-rf", lockPath)
	out = p.expect(1, []string{"h2: the deploy lock could not be read", "No deploy lock on the other 4 hosts", "could not be read on h2"}, "lock", "status")
	if strings.Contains(out, "No deploy lock on the 5 hosts") {
		t.Errorf("lock status calls an unreadable host unlocked:\n%s", out)
	}
}
