package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"golang.org/x/term"

	"github.com/fleetdeploy/fleet/executor"
	"github.com/fleetdeploy/fleet/rollout"
)

// watchSettle is how long status --watch lets a burst of engine events
// (a rollout step makes several) go by before it reads the hosts again.
const watchSettle = 200 * time.Millisecond

// watch shows the status, then again after every change the hosts'
// engines report, until ctx ends. Each host's events come over a stream
// of its own, opened again when its connection is lost.
func (c *statusCmd) watch(ctx context.Context, g *globals, out *output, s *session) error {
	changed := make(chan struct{}, 1)
	notify := func() {
		select {
		case changed <- struct{}{}:
		default:
		}
	}
	for _, h := range s.scope {
		go func() {
			target := rollout.Target(h)
			for ctx.Err() == nil {
				conn, err := s.ex.Connect(ctx, target)
				if err == nil {
					err = conn.Engine().Events(ctx, map[string]string{executor.LabelProject: s.project.Name}, notify)
				}
				if ctx.Err() != nil {
					return
				}
				// Lost, or back: either is worth showing.
				notify()
				pause(ctx)
			}
		}()
	}
	terminal := isTerminal(out)
	for {
		if terminal && !g.JSON {
			fmt.Fprint(out.stdout, "\x1b[H\x1b[2J")
		}
		if !g.JSON {
			fmt.Fprintf(out.stdout, "%s (fleet status --watch: Ctrl-C ends it)\n", time.Now().Format("15:04:05"))
		}
		if err := c.show(ctx, g, out, s); err != nil && err.Error() != "" {
			fmt.Fprintln(out.stderr, "fleet: "+err.Error())
		}
		select {
		case <-ctx.Done():
			return nil
		case <-changed:
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(watchSettle):
		}
		select {
		case <-changed:
		default:
		}
		if fleet, err := s.readFleet(ctx); err == nil {
			s.fleet = fleet
		} else if ctx.Err() == nil {
			fmt.Fprintln(out.stderr, "fleet: reading the hosts again: "+err.Error())
		}
	}
}

// isTerminal says whether fleet's output goes to a terminal.
func isTerminal(out *output) bool {
	f, ok := out.stdout.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}
