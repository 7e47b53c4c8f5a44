package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

// TestExecRunsInEveryInstance runs commands in a service's instances on
// three hosts: arguments full of shell metacharacters arrive as they are,
// every instance's output comes prefixed by host and slot, and fleet exits
// with the worst exit status; one slot alone, a stopped instance and an
// unknown slot get what a user expects.
func TestExecRunsInEveryInstance(t *testing.T) {
	ctx := context.Background()
	cleanupProject(t, "exec")
	project := func(fail int) string {
		return fmt.Sprintf(`project: exec
services:
  web:
    image: fleet-example/hello:1
    pull: never
    hosts: h1,h2,h3
    env: {HELLO_FAIL: "%d"}
`, fail)
	}
	p := newProject(t, project(3))
	p.expect(0, []string{"3 changed"}, "apply", "--yes")
	// h2's instance exits with 5, the others with 3.
	p.write(project(5))
	p.expect(0, []string{"1 changed"}, "apply", "--yes", "--hosts", "h2")

	args := []string{"$(id)", "a;b", "", "*", "it's", "x > /tmp/y"}
	out := p.expect(0, nil, append([]string{"exec", "web", "--", "/hello", "echo"}, args...)...)
	slots := map[string]string{}
	for _, line := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		who, text, ok := strings.Cut(line, " | ")
		if !ok {
			t.Fatalf("a line without its host and slot: %q", line)
		}
		host, _, _ := strings.Cut(strings.TrimSpace(who), "/")
		slots[host] += text + "\n"
	}
	want := strings.Join(args, "\n") + "\n"
	for _, h := range []string{"h1", "h2", "h3"} {
		if slots[h] != want {
			t.Errorf("%s printed %q, want the arguments as given: %q", h, slots[h], want)
		}
	}

	out = p.expect(5, []string{"h1/", " | failing with 3", " | failing with 5", "exit status 5", "exit status 3"}, "exec", "web", "--", "/hello", "fail")
	if strings.Count(out, "failing with") != 3 {
		t.Errorf("fleet exec: %d instances said they fail, want 3:\n%s", strings.Count(out, "failing with"), out)
	}

	// --json: each instance's status and output.
	js, _, code := p.run("exec", "web", "--json", "--", "/hello", "fail")
	var res struct {
		Results []struct {
			Host     string
			Slot     int
			ExitCode int `json:"exit_code"`
			Stderr   string
		}
	}
	if err := json.Unmarshal([]byte(js), &res); err != nil || code != 5 || len(res.Results) != 3 {
		t.Fatalf("fleet exec --json: exit %d, %v:\n%s", code, err, js)
	}
	slotOf := map[string]int{}
	for _, r := range res.Results {
		slotOf[r.Host] = r.Slot
		if want := map[string]int{"h2": 5}[r.Host]; r.ExitCode != max(want, 3) || r.Stderr != fmt.Sprintf("failing with %d\n", r.ExitCode) {
			t.Errorf("%s: exit %d, stderr %q", r.Host, r.ExitCode, r.Stderr)
		}
	}

	// One slot alone.
	one := p.expect(0, nil, "exec", "web", "--slot", fmt.Sprint(slotOf["h3"]), "--", "/hello", "echo", "only")
	if one != fmt.Sprintf("h3/%d | only\n", slotOf["h3"]) {
		t.Errorf("fleet exec --slot %d printed %q", slotOf["h3"], one)
	}
	// On a terminal, in one instance: keys in, screen out, its status.
	screen, code := p.runTTYWith("ada\n", "exec", "web", "-t", "--slot", fmt.Sprint(slotOf["h2"]), "--", "/hello", "ask")
	if code != 3 || !strings.Contains(screen, "terminal: true") || !strings.Contains(screen, "hello, ada") {
		t.Errorf("fleet exec -t -- /hello ask, answered ada: exit %d, want 3 (the answer's length); screen:\n%s", code, screen)
	}
	p.expect(1, []string{"--tty runs in one instance, and web has 3 running (h1/", "name one with --slot N"}, "exec", "web", "-t", "--", "/hello", "ask")
	p.expect(1, []string{"-it: -i names the inventory; for an interactive terminal give -t (--tty) alone"}, "exec", "web", "-it", "--", "/hello", "ask")

	// A stopped instance says so; an unknown slot lists those there are.
	h1 := fleet.Hosts[0]
	if _, err := h1.Run(ctx, "sh", "-c", "docker stop $(docker ps -q --filter label=fleet.project=exec)"); err != nil {
		t.Fatal(err)
	}
	p.expect(1, []string{fmt.Sprintf("instance h1/%d (container ", slotOf["h1"]), "is exited, not running"}, "exec", "web", "--slot", fmt.Sprint(slotOf["h1"]), "--", "/hello", "echo", "x")
	p.expect(1, []string{"--slot 9: web has no instance in that slot; its slots: 1, 2, 3"}, "exec", "web", "--slot", "9", "--", "/hello", "echo")
	p.expect(1, []string{"no command: give it after --"}, "exec", "web")
}
