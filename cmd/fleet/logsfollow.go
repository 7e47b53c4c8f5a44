package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/fleetdeploy/fleet/executor"
	"github.com/fleetdeploy/fleet/inventory"
	"github.com/fleetdeploy/fleet/plan"
	"github.com/fleetdeploy/fleet/rollout"
)

// followWindow is how long a line that arrived waits for the lines of
// other instances that arrive after it but were written before: lines are
// printed in the time order of their writing within that window. It goes
// by when lines arrive, not by the hosts' clocks, which may disagree.
const followWindow = 250 * time.Millisecond

// retryPause is the wait before a lost host is connected to again, or
// before a stopped container's successor is looked for again.
const retryPause = time.Second

// follow prints the instances' lines as they come, until ctx ends.
func (c *logsCmd) follow(ctx context.Context, s *session, pr *logPrinter, all []logInstance, grep *regexp.Regexp, since time.Time) error {
	type arrived struct {
		l  logLine
		at time.Time
	}
	lines := make(chan logLine, 1024)
	var wg sync.WaitGroup
	for _, in := range all {
		host := hostNamed(s.scope, in.host)
		if host == nil {
			continue
		}
		f := &follower{s: s, pr: pr, in: in, target: rollout.Target(host), tail: c.Tail, from: since, lines: lines}
		wg.Add(1)
		go func() {
			defer wg.Done()
			f.run(ctx)
		}()
	}
	go func() {
		wg.Wait()
		close(lines)
	}()
	var held []arrived
	release := func(before time.Time) error {
		sort.SliceStable(held, func(i, j int) bool { return held[i].l.Time.Before(held[j].l.Time) })
		kept := held[:0]
		var out []logLine
		for _, a := range held {
			if before.IsZero() || a.at.Before(before) {
				out = append(out, a.l)
			} else {
				kept = append(kept, a)
			}
		}
		held = kept
		for _, l := range out {
			if err := pr.print(l); err != nil {
				return err
			}
		}
		return nil
	}
	tick := time.NewTicker(followWindow / 5)
	defer tick.Stop()
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				return release(time.Time{})
			}
			if grep == nil || grep.MatchString(l.Line) {
				held = append(held, arrived{l, time.Now()})
			}
		case <-tick.C:
			if err := release(time.Now().Add(-followWindow)); err != nil {
				return err
			}
		}
	}
}

func hostNamed(hosts []*inventory.Host, name string) *inventory.Host {
	for _, h := range hosts {
		if h.Name == name {
			return h
		}
	}
	return nil
}

// follower follows one instance: its container's logs, over the host's
// connection made again when it is lost, and then its successor's when a
// rollout replaces it.
type follower struct {
	s      *session
	pr     *logPrinter
	in     logInstance // in.c is the container followed
	target executor.Target
	tail   int
	from   time.Time // lines before it are not wanted
	lines  chan<- logLine

	// last is the time of the last line sent, by stream (stdout, stderr);
	// seen holds the lines sent with that very time, so that a stream
	// resumed from it sends none of them twice. The times of one stream
	// only grow: the engine stamps a stream's lines as it reads them, in
	// order. Its two streams are read apart and may reach the log out of
	// that order, so that one stream's time says nothing of the other's.
	last map[string]time.Time
	seen map[string]map[string]bool
}

// resumeFrom is the time from which a stream of the container followed
// is asked again: the earlier of its two streams' last lines.
func (f *follower) resumeFrom() time.Time {
	var from time.Time
	for _, t := range f.last {
		if from.IsZero() || t.Before(from) {
			from = t
		}
	}
	return from
}

func (f *follower) say(format string, args ...any) {
	fmt.Fprintf(f.pr.out.stderr, "fleet: %s/%d: %s\n", f.in.host, f.in.slot, fmt.Sprintf(format, args...))
}

func (f *follower) run(ctx context.Context) {
	lost := false
	for ctx.Err() == nil {
		conn, err := f.s.ex.Connect(ctx, f.target)
		if err == nil {
			if lost {
				f.say("connected again: resuming after the last line seen")
				lost = false
			}
			opts := executor.LogOptions{Follow: true, Timestamps: true, Since: f.from, Tail: f.tail}
			if from := f.resumeFrom(); !from.IsZero() {
				opts.Since, opts.Tail = from, 0
			}
			err = conn.Engine().Logs(ctx, f.in.c.ID, opts, f.stream("stdout"), f.stream("stderr"))
		}
		if ctx.Err() != nil {
			return
		}
		if err != nil && !errors.Is(err, executor.ErrNotFound) {
			if !lost {
				f.say("%v: connecting again", err)
				lost = true
			}
			pause(ctx)
			continue
		}
		// The stream ended: the container stopped, or is gone. It goes
		// on if it runs again; a rollout puts a successor in its slot.
		if next := f.successor(ctx, conn); next != nil {
			if next.ID != f.in.c.ID {
				f.say("following %s, which took the place of %s", next.Name, f.in.c.Name)
				f.in.c, f.from, f.tail, f.last, f.seen = *next, time.Time{}, 0, nil, nil
			}
			continue
		}
		pause(ctx)
	}
}

// successor is the container that runs in the instance's slot now: the
// one followed if it runs again, or else the newest that runs; nil for
// none (yet).
func (f *follower) successor(ctx context.Context, conn *executor.Conn) *executor.Container {
	if conn == nil {
		return nil
	}
	list, err := conn.Engine().List(ctx, map[string]string{
		executor.LabelProject: f.s.project.Name,
		plan.LabelService:     f.in.c.Labels[plan.LabelService],
		plan.LabelSlot:        strconv.Itoa(f.in.slot),
	})
	if err != nil {
		return nil
	}
	var best *executor.Container
	for i, c := range list {
		switch {
		case !c.Running:
		case c.ID == f.in.c.ID:
			return &list[i]
		case best == nil || c.Created.After(best.Created):
			best = &list[i]
		}
	}
	return best
}

func pause(ctx context.Context) {
	select {
	case <-ctx.Done():
	case <-time.After(retryPause):
	}
}

// stream is the writer of one stream of the container followed: it sends
// each whole line on, but those sent already.
func (f *follower) stream(name string) *lineWriter {
	return &lineWriter{line: func(raw string) {
		l := f.in.line(name, raw)
		if !l.Time.IsZero() {
			if f.last == nil {
				f.last, f.seen = map[string]time.Time{}, map[string]map[string]bool{}
			}
			last := f.last[name]
			switch {
			case l.Time.Before(last):
				return
			case l.Time.Equal(last):
				if f.seen[name][raw] {
					return
				}
			default:
				f.last[name], f.seen[name] = l.Time, map[string]bool{}
			}
			f.seen[name][raw] = true
		}
		f.lines <- l
	}}
}

// lineWriter calls line with each whole line written to it. The engine's
// two streams of one container are written one at a time.
type lineWriter struct {
	partial []byte
	line    func(string)
}

func (w *lineWriter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			w.partial = append(w.partial, p...)
			break
		}
		w.line(string(append(w.partial, p[:i]...)))
		w.partial, p = w.partial[:0], p[i+1:]
	}
	return n, nil
}

// flush passes on a last line that has no newline.
func (w *lineWriter) flush() {
	if len(w.partial) > 0 {
		w.line(string(w.partial))
		w.partial = w.partial[:0]
	}
}
