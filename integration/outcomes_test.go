package integration

import (
	"context"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/fleetdeploy/fleet/integration/testfleet"
)

// TestEveryAttemptIsARevision makes a failing release in every way there
// is — crashing, failing on one host, an image that is not there,
// interrupted —
// and then a good one: each attempt is a revision of its own in the
// history with its outcome, and each run's summary counts every instance
// once, as changed, unchanged, failed, put back or not attempted.
func TestEveryAttemptIsARevision(t *testing.T) {
	ctx := context.Background()
	cleanupProject(t, "fail")
	p := newProject(t, failProject("1", "", "2", "rollback"))
	p.expect(0, []string{"3 changed, 0 unchanged, 0 failed"}, "apply", "--yes")

	// The first step of two fails: nothing else was tried.
	p.write(failProject("2", "HELLO_MODE: crash", "2", "rollback"))
	p.expect(3, []string{"ROLLED BACK", "0 changed, 0 unchanged, 2 failed, 1 not attempted", "2 of 3 instances failed (h"}, "apply", "--yes")

	// A release whose image cannot start on h3 alone: the instances that
	// passed before h3 failed are put back.
	eachHost(t, func(h *testfleet.Host) error {
		script := "docker tag fleet-example/hello:2 fleet-example/hello:rc"
		if h.Name == "h3" {
			script = "c=$(docker create fleet-example/hello:2) && docker commit --change 'ENTRYPOINT [\"/no-such-binary\"]' $c fleet-example/hello:rc && docker rm $c"
		}
		_, err := h.Run(ctx, "sh", "-c", script)
		return err
	})
	t.Cleanup(func() {
		eachHost(t, func(h *testfleet.Host) error {
			_, err := h.Run(context.Background(), "docker", "rmi", "fleet-example/hello:rc")
			return err
		})
	})
	p.write(failProject("rc", "", "2", "rollback"))
	out := p.expect(3, []string{"ROLLED BACK", "0 changed, 0 unchanged, 1 failed, ", "put back", "h3/"}, "apply", "--yes")
	if !summaryAddsUp(out, 3) {
		t.Errorf("the summary does not count every instance once:\n%s", out)
	}

	// An image no host has, with pull: never: every instance fails
	// before anything is changed.
	p.write(failProject("9", "", "2", "rollback"))
	p.expect(1, []string{"FAILED", "0 changed, 0 unchanged, 3 failed", "nothing of this service was changed", "fleet-example/hello:9"}, "apply", "--yes")
	eachOf(t, failHosts(), func(h *testfleet.Host) error { return serving(ctx, h.Addr+":8094", "1") })

	// Interrupted in its first step: an interruption, not a failure.
	p.write(failProject("2", "HELLO_MODE: slow, HELLO_HEALTHY_AFTER: 3s", "2", "rollback"))
	cmd, buf := backgroundApply(t, p)
	untilFirstStep(t, "fail", cmd, buf)
	cmd.Process.Signal(syscall.SIGINT)
	cmd.Wait()
	if !strings.Contains(buf.String(), "INTERRUPTED") || !strings.Contains(buf.String(), "not attempted") {
		t.Errorf("interrupted apply's summary:\n%s", buf.String())
	}

	p.write(failProject("2", "", "2", "rollback"))
	p.expect(0, []string{"3 changed, 0 unchanged, 0 failed"}, "apply", "--yes")
	eachOf(t, failHosts(), func(h *testfleet.Host) error { return serving(ctx, h.Addr+":8094", "2") })

	// One revision per attempt, each with its own outcome.
	hist := p.expect(0, nil, "history", "web")
	want := []string{"deployed", "rolled back", "rolled back", "failed", "interrupted", "deployed"}
	rev := regexp.MustCompile(`^\s*(\d+)\s`)
	var got []string
	for _, line := range strings.Split(hist, "\n") {
		if m := rev.FindStringSubmatch(line); m != nil {
			got = append(got, line)
		}
	}
	if len(got) != len(want) {
		t.Fatalf("fleet history web has %d revisions, want %d:\n%s", len(got), len(want), hist)
	}
	for i, line := range got {
		if m := rev.FindStringSubmatch(line); m[1] != strconv.Itoa(i+1) {
			t.Errorf("line %d of the history is revision %s, want %d: %s", i+1, m[1], i+1, line)
		}
		if !strings.Contains(line, want[i]) {
			t.Errorf("revision %d: want outcome %q: %s", i+1, want[i], line)
		}
	}
}

// summaryAddsUp reports whether the service line of apply's summary counts
// n instances in all.
func summaryAddsUp(out string, n int) bool {
	line := regexp.MustCompile(`service web +[A-Z].*`).FindString(out)
	sum := 0
	for _, m := range regexp.MustCompile(`(\d+) (changed|unchanged|failed|put back|not attempted)`).FindAllStringSubmatch(line, -1) {
		k, _ := strconv.Atoi(m[1])
		sum += k
	}
	return sum == n
}

// TestPlanSaysARollbackIsUndone: after fleet rollback, the plan of the
// unchanged fleet.yaml says that applying it deploys the rolled-back
// release again, and how to stay.
func TestPlanSaysARollbackIsUndone(t *testing.T) {
	ctx := context.Background()
	p := deployedOn(t, "fail", failHosts(), failProject("1", "", "2", "rollback"))
	p.write(failProject("2", "", "2", "rollback"))
	p.expect(0, []string{"3 changed"}, "apply", "--yes")
	p.expect(0, []string{"Rolling web back to revision 1"}, "rollback", "web", "--yes")
	eachOf(t, failHosts(), func(h *testfleet.Host) error { return serving(ctx, h.Addr+":8094", "1") })

	p.expect(2, []string{"web was rolled back to revision 1 by ", "(now revision 3)",
		"fleet.yaml still asks for what revision 2 ran, so applying deploys it again as revision 4",
		"To stay on revision 1, make fleet.yaml match it"}, "plan", "--detailed-exitcode")
	// Changed again, the plan says so rather than "revision 2".
	p.write(failProject("2", "COLOR: blue", "2", "rollback"))
	p.expect(2, []string{"web was rolled back to revision 1", "fleet.yaml now asks for something else"}, "plan", "--detailed-exitcode")
	p.write(failProject("2", "", "2", "rollback"))
	p.expect(0, []string{"3 changed"}, "apply", "--yes")
	out := p.expect(0, []string{"No changes"}, "plan", "--detailed-exitcode")
	if strings.Contains(out, "rolled back") {
		t.Errorf("once deployed again, the plan still speaks of the rollback:\n%s", out)
	}
}
