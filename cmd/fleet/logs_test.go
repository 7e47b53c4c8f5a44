package main

import (
	"strings"
	"testing"
	"time"
)

func TestLogTime(t *testing.T) {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	for v, want := range map[string]time.Time{
		"":                            {},
		"90s":                         now.Add(-90 * time.Second),
		"2h":                          now.Add(-2 * time.Hour),
		"2026-12-01T10:00:00Z":        time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC),
		"2026-12-01T10:00:00.5+01:00": time.Date(2026, 12, 1, 9, 0, 0, 5e8, time.UTC),
		"2026-11-30":                  time.Date(2026, 11, 30, 0, 0, 0, 0, time.Local),
	} {
		got, err := logTime("--since", v, now)
		if err != nil || !got.Equal(want) {
			t.Errorf("logTime(%q) = %v, %v; want %v", v, got, err, want)
		}
	}
	for _, bad := range []string{"yesterday", "-5m", "10", "2026-13-01"} {
		if _, err := logTime("--since", bad, now); err == nil || !strings.Contains(err.Error(), "want a duration before now") {
			t.Errorf("logTime(%q): %v, want an error that says what parses", bad, err)
		}
	}
}

// A line written in pieces comes whole, once.
func TestLineWriter(t *testing.T) {
	var got []string
	w := &lineWriter{line: func(s string) { got = append(got, s) }}
	for _, p := range []string{"one\ntw", "o\n", "", "three\nfour\n", "fi"} {
		w.Write([]byte(p))
	}
	if strings.Join(got, "|") != "one|two|three|four" {
		t.Errorf("lines %q", got)
	}
}

// The engine's two streams reach the log each in its own time order, not
// in one: a line of one stream older than the last of the other is still
// sent, and a resumed stream sends nothing twice.
func TestFollowerSendsEachLineOnce(t *testing.T) {
	lines := make(chan logLine, 100)
	f := &follower{in: logInstance{host: "h1", slot: 1}, lines: lines}
	at := func(ms int, text string) string {
		return time.Date(2026, 12, 1, 10, 0, 0, ms*1e6, time.UTC).Format(time.RFC3339Nano) + " " + text + "\n"
	}
	out, errs := f.stream("stdout"), f.stream("stderr")
	errs.Write([]byte(at(10, "tock 5")))
	out.Write([]byte(at(9, "tick 5")))
	out.Write([]byte(at(20, "tick 6")))
	if from := f.resumeFrom(); !from.Equal(time.Date(2026, 12, 1, 10, 0, 0, 10e6, time.UTC)) {
		t.Errorf("resumed from %v, want the earlier stream's last line", from)
	}
	// Resumed from there: what was sent comes again, and is dropped.
	out, errs = f.stream("stdout"), f.stream("stderr")
	errs.Write([]byte(at(10, "tock 5")))
	out.Write([]byte(at(20, "tick 6")))
	out.Write([]byte(at(30, "tick 7")))
	close(lines)
	var got []string
	for l := range lines {
		got = append(got, l.Stream+" "+l.Line)
	}
	if want := "stderr tock 5|stdout tick 5|stdout tick 6|stdout tick 7"; strings.Join(got, "|") != want {
		t.Errorf("sent %q, want %q", strings.Join(got, "|"), want)
	}
}
