package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/fleetdeploy/fleet/plan"
)

// reconcileCmd is apply for cron and timers: what a converged fleet gets
// from it is silence and exit 0.
type reconcileCmd struct {
	Service    []string      `placeholder:"SERVICE" help:"Only these services."`
	Metrics    string        `name:"metrics-file" placeholder:"FILE" help:"Write the run's metrics there for node_exporter's textfile collector, whatever the outcome (checked before any host is contacted)."`
	MaxChanges int           `name:"max-changes" placeholder:"N" help:"Change nothing when the plan makes more than N changes (exit 1): a guard against a bad commit of fleet.yaml taking everything down."`
	Jitter     time.Duration `placeholder:"D" help:"First sleep a random time up to D, so that timers on many boxes do not strike the hosts at once."`
	LockWait   time.Duration `placeholder:"D" help:"Wait up to D for another run's deploy lock (default: exit 4 at once)."`
}

func (c *reconcileCmd) Run(ctx context.Context, g *globals, out *output) error {
	if c.MaxChanges < 0 {
		return fmt.Errorf("--max-changes %d: give a number of changes, 1 or more (0, the default, sets no limit)", c.MaxChanges)
	}
	if c.Jitter < 0 {
		return fmt.Errorf("--jitter %s: give a duration such as 30s or 2m", c.Jitter)
	}
	m, err := newMetrics(c.Metrics)
	if err != nil {
		return err
	}
	return withMetrics(m, c.run(ctx, g, out, m))
}

func (c *reconcileCmd) run(ctx context.Context, g *globals, out *output, m *metrics) error {
	if c.Jitter > 0 {
		select {
		case <-time.After(rand.N(c.Jitter)):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	// Another reconcile on this machine is found before any host is.
	inv, project, err := g.loadBoth()
	if err != nil {
		return err
	}
	if m != nil {
		m.project = project.Name
	}
	release, err := reconcileLock(project.Name, g.Inventory)
	if err != nil {
		return err
	}
	defer release()
	s, err := g.openLoaded(ctx, inv, project, c.Service, toChange)
	if err != nil {
		return err
	}
	defer s.close()
	if err := s.readPushed(ctx, true, func(msg string) { fmt.Fprintln(out.stderr, "fleet: warning: "+msg) }); err != nil {
		return err
	}
	// Instances of hosts that cannot be read are placed on others, and
	// the extras removed once those hosts are back.
	p := s.plan(c.Service, true)
	m.observe(s, p)
	if !p.Changes() {
		return nil
	}
	if n := changeCount(p); c.MaxChanges > 0 && n > c.MaxChanges {
		p.Render(out.stdout, g.style(out), g.Verbose)
		return fmt.Errorf("the plan makes %d changes, more than --max-changes %d: nothing was changed (if they are meant, run fleet apply, or raise --max-changes)", n, c.MaxChanges)
	}
	return s.apply(ctx, g, out, applyRun{planned: p, quiet: true, services: c.Service, yes: true, reschedule: true,
		lockWait: c.LockWait, command: "fleet reconcile", metrics: m})
}

// changeCount is how many instances the plan changes.
func changeCount(p *plan.Plan) int {
	n := 0
	for _, sp := range p.Services {
		for _, a := range sp.Actions {
			if a.Kind != plan.Unchanged {
				n++
			}
		}
	}
	return n
}
