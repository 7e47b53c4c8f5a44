package integration

import (
	"context"
	"strings"
	"testing"

	"github.com/fleetdeploy/fleet/integration/testfleet"
)

const histYAML = `project: hist
services:
  web:
    image: fleet-example/hello:VERSION
    pull: never
    hosts: h1,h2,h3
    ports: ["8093:8080"]
    env: {COLOR: COLORVALUE}
    healthcheck: {http: /up, port: 8080}
    update: {parallelism: 3, monitor: 0s}
    history: 3
`

func histProject(version, color string) string {
	return strings.NewReplacer("VERSION", version, "COLORVALUE", color).Replace(histYAML)
}

// TestHistoryAndRollback deploys two revisions on three hosts (what is
// proved is the same on more), lists them, rolls back to
// the first with fleet rollback --to 1 (image and env come back), and
// sees the rollback recorded as a revision of its own.
func TestHistoryAndRollback(t *testing.T) {
	ctx := context.Background()
	cleanupProject(t, "hist")
	p := newProject(t, histProject("1", "red"))
	p.expect(0, []string{"3 changed"}, "apply", "--yes", "-m", "first release")
	p.write(histProject("2", "blue"))
	p.expect(0, []string{"3 changed"}, "apply", "--yes")
	eachOf(t, fleet.Hosts[:3], func(h *testfleet.Host) error { return serving(ctx, h.Addr+":8093", "2") })

	out := p.expect(0, nil, "history", "web")
	lines := strings.Split(strings.TrimSpace(out), "\n")[1:]
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "1 ") || !strings.HasPrefix(lines[1], "2 ") {
		t.Fatalf("fleet history web:\n%s", out)
	}
	for _, want := range []string{"fleet-example/hello:1", "first release", "deployed"} {
		if !strings.Contains(lines[0], want) {
			t.Errorf("revision 1 lacks %q: %s", want, lines[0])
		}
	}
	if !strings.Contains(lines[1], "image fleet-example/hello:1 → fleet-example/hello:2; env.COLOR changed") {
		t.Errorf("revision 2's cause: %s", lines[1])
	}

	p.expect(0, []string{"Rolling web back to revision 1", "3 changed"}, "rollback", "web", "--to", "1", "--yes")
	eachOf(t, fleet.Hosts[:3], func(h *testfleet.Host) error {
		if err := serving(ctx, h.Addr+":8093", "1"); err != nil {
			return err
		}
		env, err := h.SSH(ctx, "docker inspect --format '{{range .Config.Env}}{{println .}}{{end}}' $(docker ps -q --filter label=fleet.project=hist)")
		if err == nil && !strings.Contains(string(env), "COLOR=red\n") {
			t.Errorf("%s after the rollback runs env:\n%s", h.Name, env)
		}
		return err
	})
	out = p.expect(0, []string{"rollback to revision 1", "deployed"}, "history", "web")
	if lines := strings.Split(strings.TrimSpace(out), "\n")[1:]; len(lines) != 3 || !strings.HasPrefix(lines[2], "3 ") || !strings.Contains(lines[2], "hello:1") {
		t.Errorf("after the rollback, fleet history web:\n%s", out)
	}
	// Without --to: back to the last deployed revision before the current.
	p.expect(0, []string{"Rolling web back to revision 2"}, "rollback", "web", "--yes")
	eachOf(t, fleet.Hosts[:3], func(h *testfleet.Host) error { return serving(ctx, h.Addr+":8093", "2") })
	// history: 3 keeps three records.
	out = p.expect(0, nil, "history", "web")
	if lines := strings.Split(strings.TrimSpace(out), "\n")[1:]; len(lines) != 3 || !strings.HasPrefix(lines[0], "2 ") {
		t.Errorf("with history: 3, fleet history web:\n%s", out)
	}
}
