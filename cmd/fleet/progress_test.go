package main

import (
	"bytes"
	"errors"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/fleetdeploy/fleet/rollout"
)

// screen replays what the live view wrote on a terminal of the given width
// that understands the two sequences it uses (cursor up N lines to column
// one, erase to the end of the screen), and returns the lines left on it.
func screen(t *testing.T, out string) []string {
	t.Helper()
	var lines []string
	cur := 0 // the line the cursor is on
	seq := regexp.MustCompile(`^\x1b\[(\d+)F\x1b\[J`)
	for len(out) > 0 {
		if m := seq.FindStringSubmatch(out); m != nil {
			n := 0
			for _, d := range m[1] {
				n = n*10 + int(d-'0')
			}
			if n > cur {
				t.Fatalf("moved up %d lines from line %d", n, cur)
			}
			cur -= n
			lines = lines[:cur]
			out = out[len(m[0]):]
			continue
		}
		if strings.HasPrefix(out, "\x1b") {
			t.Fatalf("unexpected escape sequence %q", out[:min(len(out), 10)])
		}
		line, rest, _ := strings.Cut(out, "\n")
		if i := strings.IndexByte(line, '\x1b'); i >= 0 {
			line, rest = line[:i], out[i:]
			t.Fatalf("escape inside a line: %q", out)
		}
		lines = append(lines, line)
		cur++
		out = rest
	}
	return lines
}

func TestLiveProgressShowsWorkInPlaceAndLeavesWhatHappened(t *testing.T) {
	var buf bytes.Buffer
	p := &progress{live: true, fd: -1, w: &buf, start: time.Now()}
	at := time.Now()
	ev := func(e rollout.Event) {
		e.Time = at
		p.event(e)
	}
	ev(rollout.Event{Service: "web", What: "step 1 of 2: h1/1, h2/2", Step: 1, Steps: 2, Instances: 2})
	ev(rollout.Event{Service: "web", Host: "h1", Slot: 1, What: "replacing: image a → b", Begin: true})
	ev(rollout.Event{Service: "web", Host: "h2", Slot: 2, What: "replacing: image a → b", Begin: true})

	got := screen(t, buf.String())
	want := []string{"web: step 1 of 2, 0 done", "  h1/1", "  h2/2"}
	if len(got) != len(want) {
		t.Fatalf("screen:\n%s", strings.Join(got, "\n"))
	}
	for i := range want {
		if !strings.HasPrefix(got[i], want[i]) {
			t.Errorf("line %d: %q, want it to start with %q", i, got[i], want[i])
		}
	}
	if !strings.Contains(got[1], "replacing: image a → b") {
		t.Errorf("the instance line does not say what is being done: %q", got[1])
	}

	ev(rollout.Event{Service: "web", Host: "h1", Slot: 1, What: "healthy (revision 2)", End: true})
	ev(rollout.Event{Service: "web", Host: "h2", Slot: 2, What: "failed", Err: errors.New("not healthy within 2m"), End: true})
	got = screen(t, buf.String())
	if len(got) != 3 || !strings.HasSuffix(got[0], "web h1/1: healthy (revision 2)") ||
		!strings.HasSuffix(got[1], "web h2/2: failed: not healthy within 2m") ||
		!strings.HasPrefix(got[2], "web: step 1 of 2, 1 done, 1 failed") {
		t.Errorf("after both ended, the screen is:\n%s", strings.Join(got, "\n"))
	}

	p.close()
	got = screen(t, buf.String())
	if len(got) != 2 {
		t.Errorf("close left the block on the screen:\n%s", strings.Join(got, "\n"))
	}
}

func TestLiveProgressCutsLinesToTheTerminal(t *testing.T) {
	if got := cut("replacing: image registry.example.com/app:1 → registry.example.com/app:2", 20); len([]rune(got)) != 20 || !strings.HasSuffix(got, "…") {
		t.Errorf("cut to 20: %q", got)
	}
	if got := cut("short", 20); got != "short" {
		t.Errorf("cut a short line: %q", got)
	}
}

func TestPlainProgressIsOneTimestampedLinePerEvent(t *testing.T) {
	var buf bytes.Buffer
	p := &progress{w: &buf, start: time.Now()}
	p.event(rollout.Event{Time: p.start.Add(1500 * time.Millisecond), Service: "web", Host: "h1", Slot: 3, What: "replacing: image a → b", Begin: true})
	p.event(rollout.Event{Time: p.start.Add(2 * time.Second), Service: "web", What: "step 2 of 5: h3/4, h2/3", Step: 2, Steps: 5})
	p.close()
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	if len(lines) != 2 || !regexp.MustCompile(`^\d\d:\d\d:\d\d    1\.5s web h1/3: replacing: image a → b$`).MatchString(lines[0]) ||
		!strings.HasSuffix(lines[1], "2.0s web: step 2 of 5: h3/4, h2/3") || strings.Contains(buf.String(), "\x1b") {
		t.Errorf("plain progress:\n%s", buf.String())
	}
}

// A log of a large fleet keeps the steps, with counts, and the failures.
func TestCondensedProgressKeepsStepsAndFailures(t *testing.T) {
	var buf bytes.Buffer
	p := &progress{w: &buf, start: time.Now(), condensed: true}
	at := func(s float64) time.Time { return p.start.Add(time.Duration(s * float64(time.Second))) }
	p.event(rollout.Event{Time: at(0.1), Service: "web", Host: "h1", What: "pulling a:2", Begin: true})
	p.event(rollout.Event{Time: at(0.2), Service: "web", What: "step 1 of 2: h1/1, h2/2", Step: 1, Steps: 2})
	p.event(rollout.Event{Time: at(0.3), Service: "web", Host: "h1", Slot: 1, What: "healthy", End: true})
	p.event(rollout.Event{Time: at(0.4), Service: "web", Host: "h2", Slot: 2, What: "failed", End: true, Err: errors.New("not healthy")})
	p.event(rollout.Event{Time: at(0.5), Service: "web", What: "step 2 of 2: h3/3", Step: 2, Steps: 2})
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	if len(lines) != 3 || !strings.HasSuffix(lines[0], "web: step 1 of 2: h1/1, h2/2 (0 instances done so far, 0 failed)") ||
		!strings.HasSuffix(lines[1], "web h2/2: failed: not healthy") ||
		!strings.HasSuffix(lines[2], "web: step 2 of 2: h3/3 (1 instances done so far, 1 failed)") {
		t.Errorf("condensed progress:\n%s", buf.String())
	}
}
