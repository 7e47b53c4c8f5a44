package integration

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestHooksRunAroundAnApply runs fleet.yaml's hooks, local programs run
// without a shell, around applies: pre_apply and post_apply with the
// run's facts; a failing pre_apply stops the run before anything
// changes; on_failure after a release that is rolled back; none when
// there is nothing to do.
func TestHooksRunAroundAnApply(t *testing.T) {
	cleanupProject(t, "hooks")
	project := func(env string) string {
		return `project: hooks
services:
  web:
    image: fleet-example/hello:1
    pull: never
    hosts: h1,h2
    env: {` + env + `}
    healthcheck: {http: /up, port: 8080, interval: 200ms}
    pre_stop: [/hello, echo, "draining $SLOT;"]
    update: {monitor: 0s, healthy_deadline: 5s}
hooks:
  pre_apply: [./hook, "two words", "$HOME;"]
  post_apply: [./hook]
  on_failure: [./hook]
`
	}
	p := newProject(t, project("ROUND: '1'"))
	// The hook writes what it was given, and fails when a file says so.
	hook := `#!/bin/sh
{ printf '%s|' "$FLEET_HOOK" "$FLEET_OUTCOME" "$FLEET_COMMAND" "$FLEET_SERVICES" "$FLEET_REVISIONS" "$FLEET_HOSTS" "$*"; [ -n "$FLEET_ERROR" ] && printf 'error'; echo; } >> hooks.log
[ -f fail ] && exit 3
exit 0
`
	if err := os.WriteFile(filepath.Join(p.dir, "hook"), []byte(hook), 0o755); err != nil {
		t.Fatal(err)
	}
	logged := func() []string {
		b, _ := os.ReadFile(filepath.Join(p.dir, "hooks.log"))
		os.Remove(filepath.Join(p.dir, "hooks.log"))
		return strings.Split(strings.TrimSpace(string(b)), "\n")
	}
	expectLog := func(want ...string) {
		t.Helper()
		if got := logged(); strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("the hooks ran as\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
	}

	p.expect(0, []string{"2 changed"}, "apply", "--yes")
	expectLog("pre_apply|planned|fleet apply|web|web=1|h1 h2|two words $HOME;|",
		"post_apply|deployed|fleet apply|web|web=1|h1 h2||")

	// A pre_apply that fails: nothing changes.
	os.WriteFile(filepath.Join(p.dir, "fail"), nil, 0o644)
	p.write(project("ROUND: '2'"))
	p.expect(1, []string{"hooks.pre_apply (./hook two words $HOME;): exit status 3: nothing was changed"}, "apply", "--yes")
	expectLog("pre_apply|planned|fleet apply|web|web=2|h1 h2|two words $HOME;|")
	p.expect(2, []string{"2 to replace"}, "plan", "--detailed-exitcode")
	os.Remove(filepath.Join(p.dir, "fail"))

	// pre_stop runs in each old container before it stops, its last line
	// said.
	p.write(project("ROUND: '3'"))
	out := p.expect(0, []string{"2 changed"}, "apply", "--yes", "-v")
	if strings.Count(out, "pre_stop ran: draining $SLOT;; stopping the container") != 2 {
		t.Errorf("apply did not say twice that pre_stop ran:\n%s", out)
	}
	logged()

	// A release that never turns healthy is rolled back: on_failure.
	p.write(project("ROUND: '3', HELLO_MODE: unhealthy"))
	p.expect(3, []string{"ROLLED BACK"}, "apply", "--yes")
	expectLog("pre_apply|planned|fleet apply|web|web=3|h1 h2|two words $HOME;|",
		"on_failure|rolled back|fleet apply|web|web=3|h1 h2||error")

	// Nothing to do: no hook.
	p.write(project("ROUND: '3'"))
	p.expect(0, []string{"No changes"}, "apply", "--yes")
	if got := logged(); len(got) != 1 || got[0] != "" {
		t.Errorf("hooks ran for a run with nothing to do: %q", got)
	}
}
