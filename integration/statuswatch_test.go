package integration

import (
	"context"
	"strings"
	"testing"
	"time"
)

// TestStatusWatchRedrawsOnChange keeps fleet status --watch running: a
// container stopped by hand, and started again, shows within moments,
// and nothing is drawn again while nothing changes: it is not polling.
func TestStatusWatchRedrawsOnChange(t *testing.T) {
	ctx := context.Background()
	cleanupProject(t, "watch")
	p := newProject(t, `project: watch
services:
  web:
    image: fleet-example/hello:1
    pull: never
    hosts: h1,h2
`)
	p.expect(0, []string{"2 changed"}, "apply", "--yes")
	r := p.start(nil, "status", "--watch")
	defer r.cmd.Process.Kill()
	const header = "(fleet status --watch: Ctrl-C ends it)"
	draws := func() int { return strings.Count(r.String(), header) }
	waitFor := func(what string, ok func(last string) bool) {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		for time.Now().Before(deadline) {
			out := r.String()
			if i := strings.LastIndex(out, header); i >= 0 && ok(out[i:]) {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Fatalf("status --watch never showed %s:\n%s", what, lastLines(r.String(), 12))
	}
	row := func(last, host string) string {
		for _, line := range strings.Split(last, "\n") {
			if f := strings.Fields(line); len(f) > 2 && f[0] == "web" && f[1] == host {
				return line
			}
		}
		return ""
	}
	waitFor("both instances", func(last string) bool {
		return strings.Contains(row(last, "h1"), "running") && strings.Contains(row(last, "h2"), "running")
	})

	// Quiet: no change, nothing drawn again, over more than one health
	// check of the image (every 5 s), which changes no state.
	before := draws()
	time.Sleep(7 * time.Second)
	if n := draws() - before; n != 0 {
		t.Errorf("status --watch drew %d times in 7 s while nothing changed", n)
	}

	h1 := fleet.Hosts[0]
	if _, err := h1.Run(ctx, "sh", "-c", "docker stop $(docker ps -q --filter label=fleet.project=watch)"); err != nil {
		t.Fatal(err)
	}
	waitFor("h1's instance stopped", func(last string) bool { return strings.Contains(row(last, "h1"), "exited") })
	if _, err := h1.Run(ctx, "sh", "-c", "docker start $(docker ps -aq --filter label=fleet.project=watch)"); err != nil {
		t.Fatal(err)
	}
	waitFor("h1's instance running again", func(last string) bool { return strings.Contains(row(last, "h1"), "running") })
}
