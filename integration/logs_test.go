package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// logLine is one line of fleet logs --json.
type logLine struct {
	Time   time.Time `json:"time"`
	Host   string    `json:"host"`
	Slot   int       `json:"slot"`
	Stream string    `json:"stream"`
	Line   string    `json:"line"`
}

// logsOf runs fleet logs --json with args and reads its lines.
func logsOf(t *testing.T, p *project, args ...string) []logLine {
	t.Helper()
	out := p.expect(0, nil, append([]string{"logs", "--json"}, args...)...)
	var lines []logLine
	for _, raw := range strings.Split(strings.TrimSpace(out), "\n") {
		if raw == "" {
			continue
		}
		var l logLine
		if err := json.Unmarshal([]byte(raw), &l); err != nil {
			t.Fatalf("fleet logs --json printed %q: %v", raw, err)
		}
		lines = append(lines, l)
	}
	return lines
}

var tickRE = regexp.MustCompile(`^(tick|tock) (\d+)$`)

// ticks are the numbers of the lines "tick N" (on stdout) or "tock N" (on
// stderr) of host, in the order given; a tick on the wrong stream fails
// the test.
func ticks(t *testing.T, lines []logLine, host, word string) []int {
	t.Helper()
	var out []int
	for _, l := range lines {
		m := tickRE.FindStringSubmatch(l.Line)
		if l.Host != host || m == nil || m[1] != word {
			continue
		}
		if want := map[string]string{"tick": "stdout", "tock": "stderr"}[word]; l.Stream != want {
			t.Errorf("%s: %q on %s, want %s", host, l.Line, l.Stream, want)
		}
		n, _ := strconv.Atoi(m[2])
		out = append(out, n)
	}
	return out
}

// TestLogsMergeEveryInstance reads the logs of a service with an instance
// on each of three hosts, each writing numbered lines on stdout and
// stderr: every line comes once, in time order, on its own stream, with
// its host and slot; --tail, --since, --until, --grep and --slot select
// exactly the lines they name; bad input gets a clear error.
func TestLogsMergeEveryInstance(t *testing.T) {
	cleanupProject(t, "logs")
	p := newProject(t, `project: logs
services:
  web:
    image: fleet-example/hello:1
    pull: never
    hosts: h1,h2,h3
    env: {HELLO_TICK: 20ms}
`)
	p.expect(0, []string{"3 changed"}, "apply", "--yes")
	time.Sleep(time.Second)

	all := logsOf(t, p, "web")
	slots := map[string]int{}
	for i, l := range all {
		if i > 0 && l.Time.Before(all[i-1].Time) {
			t.Fatalf("line %d (%s %s) comes after a later one (%s)", i, l.Time, l.Line, all[i-1].Time)
		}
		if s, ok := slots[l.Host]; ok && s != l.Slot {
			t.Errorf("%s: lines of slots %d and %d", l.Host, s, l.Slot)
		}
		slots[l.Host] = l.Slot
	}
	if len(slots) != 3 {
		t.Fatalf("lines of %d hosts, want 3: %v", len(slots), slots)
	}
	for _, host := range []string{"h1", "h2", "h3"} {
		tk := ticks(t, all, host, "tick")
		if len(tk) < 10 {
			t.Fatalf("%s: %d ticks after a second, want at least 10", host, len(tk))
		}
		for i, n := range tk {
			if n != i+1 {
				t.Fatalf("%s: ticks %v: a line is missing or written twice", host, tk)
			}
		}
		for i, n := range ticks(t, all, host, "tock") {
			if n != 5*(i+1) {
				t.Fatalf("%s: tock %d where tock %d was due", host, n, 5*(i+1))
			}
		}
	}

	// The last three lines of each instance.
	tail := logsOf(t, p, "web", "--tail", "3")
	perHost := map[string]int{}
	for _, l := range tail {
		perHost[l.Host]++
	}
	if fmt.Sprint(perHost) != "map[h1:3 h2:3 h3:3]" {
		t.Errorf("--tail 3: lines per host %v, want 3 each", perHost)
	}

	// A time in the middle of h1's lines bounds both ways.
	tk := ticks(t, all, "h1", "tick")
	var mid time.Time
	for _, l := range all {
		if l.Host == "h1" && l.Line == fmt.Sprintf("tick %d", tk[len(tk)/2]) {
			mid = l.Time
		}
	}
	stamp := mid.Format(time.RFC3339Nano)
	for _, l := range logsOf(t, p, "web", "--since", stamp) {
		if l.Time.Before(mid) {
			t.Errorf("--since %s: a line of %s: %s %q", stamp, l.Time, l.Host, l.Line)
		}
	}
	if first := ticks(t, logsOf(t, p, "web", "--since", stamp, "--hosts", "h1"), "h1", "tick"); len(first) == 0 || first[0] > tk[len(tk)/2]+1 {
		t.Errorf("--since %s: h1's ticks begin %v, want them from tick %d", stamp, first, tk[len(tk)/2])
	}
	for _, l := range logsOf(t, p, "web", "--until", stamp) {
		if !l.Time.Before(mid.Add(time.Millisecond)) {
			t.Errorf("--until %s: a line of %s: %s %q", stamp, l.Time, l.Host, l.Line)
		}
	}

	// --grep on the text, --slot to one instance.
	picked := logsOf(t, p, "web", "--grep", `^tick \d*7$`, "--slot", strconv.Itoa(slots["h2"]))
	got := ticks(t, picked, "h2", "tick")
	if len(picked) != len(got) || len(got) == 0 {
		t.Fatalf("--grep and --slot: %d lines, %d of them h2's ticks", len(picked), len(got))
	}
	for i, n := range got {
		if n != 7+10*i {
			t.Fatalf("--grep '^tick \\d*7$' on h2: ticks %v", got)
		}
	}

	// As a terminal shows them: host/slot | line.
	text := p.expect(0, nil, "logs", "web", "--tail", "1", "--hosts", "h3")
	if want := fmt.Sprintf("h3/%d | ", slots["h3"]); !strings.HasPrefix(text, want) || strings.Count(text, "\n") != 1 {
		t.Errorf("fleet logs web --tail 1 --hosts h3 printed %q, want one line beginning %q", text, want)
	}

	// Bad input.
	p.expect(1, []string{"has no service db; its services: web"}, "logs", "db")
	p.expect(1, []string{`--since "yesterday": want a duration before now (90s, 10m, 2h)`}, "logs", "web", "--since", "yesterday")
	p.expect(1, []string{"--slot 9: web has no instance in that slot; its slots:"}, "logs", "web", "--slot", "9")
	p.expect(1, []string{"--grep \"(\": "}, "logs", "web", "--grep", "(")
	p.expect(1, []string{"to follow the logs, give --follow (or -F): -f names fleet.yaml"}, "logs", "web", "-f")
}

// TestLogsFollowThroughALostHostAndARollout follows a service's logs while
// one host's sshd is restarted, its sessions cut, and a rollout replaces
// every instance: every container's numbered lines come in full, none
// twice, and the ones of the containers the rollout made are followed too.
func TestLogsFollowThroughALostHostAndARollout(t *testing.T) {
	ctx := context.Background()
	cleanupProject(t, "logsf")
	project := func(round int) string {
		return fmt.Sprintf(`project: logsf
services:
  web:
    image: fleet-example/hello:1
    pull: never
    hosts: h1,h2,h3
    env: {HELLO_TICK: 20ms, ROUND: "%d"}
`, round)
	}
	p := newProject(t, project(1))
	p.expect(0, []string{"3 changed"}, "apply", "--yes")
	r := p.start(nil, "logs", "web", "--follow", "--json")
	defer r.cmd.Process.Kill()
	time.Sleep(2 * time.Second)

	h2 := fleet.Hosts[1]
	if err := h2.StopSSHD(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := h2.Signal("sshd", syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	if err := h2.StartSSHD(ctx); err != nil {
		t.Fatal(err)
	}
	p.write(project(2))
	p.expect(0, []string{"3 changed"}, "apply", "--yes")
	time.Sleep(2 * time.Second)
	r.cmd.Process.Signal(os.Interrupt)
	code, out := r.wait()
	if code != 130 {
		t.Errorf("fleet logs -f ended by Ctrl-C: exit %d, want 130", code)
	}

	var all []logLine
	containers := map[string]map[string]bool{} // by host
	for _, raw := range strings.Split(out, "\n") {
		if !strings.HasPrefix(raw, "{") {
			continue
		}
		var l struct {
			logLine
			Container string `json:"container"`
		}
		if err := json.Unmarshal([]byte(raw), &l); err != nil {
			t.Fatalf("%q: %v", raw, err)
		}
		if containers[l.Host] == nil {
			containers[l.Host] = map[string]bool{}
		}
		containers[l.Host][l.Container] = true
		// One host's containers apart: each numbers its lines from 1.
		l.logLine.Host += " " + l.Container
		all = append(all, l.logLine)
	}
	for _, h := range []string{"h1", "h2", "h3"} {
		if len(containers[h]) != 2 {
			t.Errorf("%s: lines of containers %v, want the one replaced and its successor", h, containers[h])
		}
		for c := range containers[h] {
			tk := ticks(t, all, h+" "+c, "tick")
			if len(tk) == 0 {
				t.Errorf("%s: no tick of %s", h, c)
			}
			for i, n := range tk {
				if n != i+1 {
					t.Errorf("%s: ticks of %s go %v: a line is missing or came twice", h, c, tk[max(0, i-3):min(len(tk), i+3)])
					break
				}
			}
		}
	}
	for _, said := range []string{`fleet: h2/\d+: .*: connecting again`, `fleet: h2/\d+: connected again: resuming after the last line seen`, `fleet: h1/\d+: following \S+, which took the place of`} {
		if !regexp.MustCompile(said).MatchString(out) {
			t.Errorf("fleet logs -f did not say %s:\n%s", said, lastLines(out, 20))
		}
	}
	if strings.Count(out, "took the place of") != 3 {
		t.Errorf("fleet logs -f followed %d successors, want 3", strings.Count(out, "took the place of"))
	}
}

// lastLines is the last n lines of out.
func lastLines(out string, n int) string {
	lines := strings.Split(strings.TrimSpace(out), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
