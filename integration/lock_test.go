package integration

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"
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

// TestDeployLock runs a second apply while one runs (exit 4, naming the
// holder), waits for a lock with --lock-wait, takes over an expired lock,
// and breaks a live one with lock release --force.
func TestDeployLock(t *testing.T) {
	ctx := context.Background()
	cleanupProject(t, "lockit")
	h1 := fleet.Hosts[0]
	p := newProject(t, fmt.Sprintf(lockYAML, 1))

	first, firstOut := backgroundApply(t, p)
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := h1.Run(ctx, "test", "-f", "/var/lib/fleet/lockit/lock/holder.json"); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the first apply took no lock:\n%s", firstOut.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Another release of the same project, meanwhile.
	second := newProject(t, fmt.Sprintf(lockYAML, 2))
	second.expect(4, []string{"the deploy lock on h1 is held by", fmt.Sprintf("(pid %d)", first.Process.Pid), "fleet apply"}, "apply", "--yes")
	p.expect(0, []string{"h1: locked by", "h2: locked by"}, "lock", "status")
	// One that waits goes on once the first is done, from what the first
	// one left.
	out := second.expect(0, []string{"2 changed"}, "apply", "--yes", "--lock-wait", "60s")
	if err := first.Wait(); err != nil {
		t.Fatalf("the first apply: %v\n%s", err, firstOut.String())
	}
	if !strings.Contains(firstOut.String(), "2 changed") {
		t.Errorf("the first apply:\n%s", firstOut.String())
	}
	t.Logf("the waiting apply:\n%s", out)
	p.expect(0, []string{"No deploy lock"}, "lock", "status")
	second.expect(0, []string{"No changes"}, "plan", "--detailed-exitcode")

	// A lock whose lease ran out is taken over, with a warning.
	writeLock := func(expires time.Time) {
		holder := fmt.Sprintf(`{"user":"ops","machine":"elsewhere","pid":4242,"command":"fleet apply","started":"2026-01-01T00:00:00Z","expires":%q}`, expires.UTC().Format(time.RFC3339))
		cmd := exec.Command("nsenter", "-t", fmt.Sprint(h1.Anchor), "--mount", "--", "sh", "-c", "mkdir -p /var/lib/fleet/lockit/lock && cat > /var/lib/fleet/lockit/lock/holder.json")
		cmd.Stdin = strings.NewReader(holder)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
	}
	writeLock(time.Now().Add(-time.Minute))
	p.write(fmt.Sprintf(lockYAML, 3))
	p.expect(0, []string{"taking over the deploy lock on h1 from ops@elsewhere", "lease ran out"}, "apply", "--yes")

	// A live lock of another machine holds until it is broken by hand.
	writeLock(time.Now().Add(time.Hour))
	p.write(fmt.Sprintf(lockYAML, 4))
	p.expect(4, []string{"held by ops@elsewhere (pid 4242)"}, "apply", "--yes")
	p.expect(1, []string{"needs --force"}, "lock", "release")
	p.expect(0, []string{"Released the deploy lock of lockit"}, "lock", "release", "--force")
	p.expect(0, []string{"2 changed"}, "apply", "--yes")
}
