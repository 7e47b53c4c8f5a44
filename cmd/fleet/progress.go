package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/term"

	"github.com/fleetdeploy/fleet/rollout"
)

// progress shows apply's events as they come: with --json, one JSON object
// per line; in a pipe or a log, one timestamped line per event; on a
// terminal, the same lines for what happened, under a block that is
// redrawn in place with the step in progress and a line per instance being
// worked on, with how long it has taken so far.
type progress struct {
	json  bool
	w     io.Writer
	start time.Time
	// condensed leaves out, in a pipe or a log, every instance's and
	// host's line but its failures: for a large fleet, the steps and the
	// counts say what a thousand lines would bury. -v shows them all.
	condensed bool
	counted   struct{ done, failed int }

	// The live block, on a terminal only.
	live    bool
	fd      int
	mu      sync.Mutex
	service string
	step    int
	steps   int
	done    int
	failed  int
	working []*working // in the order begun
	drawn   int        // lines of the block on the screen now
	stop    chan struct{}
	stopped chan struct{}
}

// working is one instance (or host, for slot 0) being worked on.
type working struct {
	service, host string
	slot          int
	what          string
	since         time.Time
}

// condenseAbove is the number of hosts above which a log of apply shows
// steps and failures rather than every instance's line.
const condenseAbove = 50

func newProgress(g *globals, out *output, hosts int) *progress {
	p := &progress{json: g.JSON, w: out.stdout, start: time.Now(), condensed: hosts > condenseAbove && !g.Verbose}
	if f, ok := out.stdout.(*os.File); ok && !g.JSON && term.IsTerminal(int(f.Fd())) && os.Getenv("TERM") != "dumb" {
		p.live, p.fd = true, int(f.Fd())
		p.stop, p.stopped = make(chan struct{}), make(chan struct{})
		go p.tick()
	}
	return p
}

// event shows one event. The applier calls it one event at a time.
func (p *progress) event(e rollout.Event) {
	switch {
	case p.json:
		p.jsonLine(e)
	case !p.live && p.condensed:
		p.condensedLine(e)
	case !p.live:
		if !e.Progress {
			fmt.Fprintln(p.w, p.line(e))
		}
	default:
		p.mu.Lock()
		defer p.mu.Unlock()
		p.clear()
		p.track(e)
		// What begins or goes on shows in the block; everything else
		// stays on the screen as a line.
		if !e.Begin && !e.Progress && e.Step == 0 {
			fmt.Fprintln(p.w, p.line(e))
		}
		p.draw()
	}
}

// condensedLine shows e in a log of a large fleet: a service's own events,
// with the count of instances done so far on each step, and failures.
func (p *progress) condensedLine(e rollout.Event) {
	if e.End && e.Slot > 0 {
		if e.Err != nil {
			p.counted.failed++
		} else {
			p.counted.done++
		}
	}
	switch {
	case e.Progress:
	case e.Err != nil:
		fmt.Fprintln(p.w, p.line(e))
	case e.Host == "":
		line := p.line(e)
		if e.Step > 0 {
			line += fmt.Sprintf(" (%d instances done so far, %d failed)", p.counted.done, p.counted.failed)
		}
		fmt.Fprintln(p.w, line)
	}
}

// close removes the block, before the summary is printed.
func (p *progress) close() {
	if !p.live {
		return
	}
	if p.stop != nil {
		close(p.stop)
		<-p.stopped
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.clear()
}

func (p *progress) line(e rollout.Event) string {
	where := e.Service
	if e.Host != "" {
		where = strings.TrimSpace(e.Service + " " + e.Host) // a host's own event has no service
		if e.Slot > 0 {
			where += fmt.Sprintf("/%d", e.Slot)
		}
	}
	line := fmt.Sprintf("%s %6.1fs %s: %s", e.Time.Format("15:04:05"), e.Time.Sub(p.start).Seconds(), where, e.What)
	if e.Err != nil {
		// The line names the host already.
		line += ": " + strings.TrimPrefix(e.Err.Error(), "host "+e.Host+": ")
	}
	return line
}

func (p *progress) jsonLine(e rollout.Event) {
	m := map[string]any{"time": e.Time.UTC().Format(time.RFC3339Nano), "what": e.What}
	if e.Service != "" { // a host's own event has none
		m["service"] = e.Service
	}
	if e.Host != "" {
		m["host"] = e.Host
		if e.Slot > 0 {
			m["slot"] = e.Slot
		}
	}
	switch {
	case e.Begin:
		m["phase"] = "begin"
	case e.End:
		m["phase"] = "end"
	case e.Progress:
		m["phase"] = "progress"
	}
	if e.Step > 0 {
		m["step"], m["steps"], m["instances"] = e.Step, e.Steps, e.Instances
	}
	if e.Err != nil {
		m["error"] = e.Err.Error()
	}
	json.NewEncoder(p.w).Encode(m)
}

// track updates the block's state with e.
func (p *progress) track(e rollout.Event) {
	if e.Step > 0 {
		if e.Service != p.service {
			p.done, p.failed = 0, 0
		}
		p.service, p.step, p.steps = e.Service, e.Step, e.Steps
	}
	if e.Host == "" {
		return
	}
	i := p.find(e.Service, e.Host, e.Slot)
	switch {
	case (e.Begin || e.Progress) && i >= 0:
		p.working[i].what = e.What
	case e.Begin:
		p.working = append(p.working, &working{service: e.Service, host: e.Host, slot: e.Slot, what: e.What, since: e.Time})
	case e.End:
		if i >= 0 {
			p.working = append(p.working[:i], p.working[i+1:]...)
		}
		if e.Slot > 0 && e.Err != nil {
			p.failed++
		} else if e.Slot > 0 {
			p.done++
		}
	}
}

func (p *progress) find(service, host string, slot int) int {
	for i, w := range p.working {
		if w.service == service && w.host == host && w.slot == slot {
			return i
		}
	}
	return -1
}

// tick redraws the block, so its clocks run while nothing happens.
func (p *progress) tick() {
	defer close(p.stopped)
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-p.stop:
			return
		case <-t.C:
			p.mu.Lock()
			p.clear()
			p.draw()
			p.mu.Unlock()
		}
	}
}

// clear moves up over the block and erases it.
func (p *progress) clear() {
	if p.drawn > 0 {
		fmt.Fprintf(p.w, "\x1b[%dF\x1b[J", p.drawn)
		p.drawn = 0
	}
}

// draw prints the block, each line cut to the terminal's width so that
// none wraps and the next clear finds them all.
func (p *progress) draw() {
	if p.service == "" && len(p.working) == 0 {
		return
	}
	width, height := 80, 24
	if w, h, err := term.GetSize(p.fd); err == nil && w > 0 {
		width, height = w, h
	}
	now := time.Now()
	var lines []string
	if p.service != "" {
		head := fmt.Sprintf("%s: step %d of %d, %d done", p.service, p.step, p.steps, p.done)
		if p.failed > 0 {
			head += fmt.Sprintf(", %d failed", p.failed)
		}
		lines = append(lines, fmt.Sprintf("%s  (%.1fs)", head, now.Sub(p.start).Seconds()))
	}
	// The block fits the terminal, or clearing it would leave lines
	// behind: a step of 100 instances shows the longest-running first.
	shown := p.working
	if room := max(1, height-3); len(shown) > room {
		shown = shown[:room-1]
	}
	for _, w := range shown {
		where := w.host
		if w.slot > 0 {
			where += fmt.Sprintf("/%d", w.slot)
		}
		lines = append(lines, fmt.Sprintf("  %-14s %5.1fs  %s", where, now.Sub(w.since).Seconds(), w.what))
	}
	if more := len(p.working) - len(shown); more > 0 {
		lines = append(lines, fmt.Sprintf("  and %d more", more))
	}
	for _, l := range lines {
		fmt.Fprintln(p.w, cut(l, width-1))
	}
	p.drawn = len(lines)
}

// cut shortens s to n characters, marking the cut.
func cut(s string, n int) string {
	r := []rune(s)
	if len(r) <= n || n < 2 {
		return s
	}
	return string(r[:n-1]) + "…"
}
