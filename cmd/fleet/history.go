package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/fleetdeploy/fleet/plan"
	"github.com/fleetdeploy/fleet/rollout"
)

type historyCmd struct {
	Service string `arg:"" help:"The service."`
}

func (c *historyCmd) Run(ctx context.Context, g *globals, out *output) error {
	s, err := g.open(ctx, []string{c.Service}, false)
	if err != nil {
		return err
	}
	defer s.close()
	revs, err := rollout.History(ctx, s.fleet.Conns, s.project.Name, c.Service)
	if err != nil {
		return err
	}
	if g.JSON {
		enc := json.NewEncoder(out.stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(revs); err != nil {
			return err
		}
	} else {
		if len(revs) == 0 {
			fmt.Fprintf(out.stdout, "No revision of %s is recorded on the hosts that answered.\n", c.Service)
		}
		for _, r := range revs {
			fmt.Fprintf(out.stdout, "%-4d %s  %-20s %-32s %s  [%s]\n", r.Revision, r.When.Local().Format("2006-01-02 15:04:05"),
				r.Who, r.Template.Image, r.Cause, r.Outcome)
		}
	}
	return unreachableHosts(s)
}

type rollbackCmd struct {
	Service  string        `arg:"" help:"The service."`
	To       int           `placeholder:"REVISION" help:"The revision to go back to (default: the last one deployed before the current one)."`
	Yes      bool          `short:"y" help:"Do not ask for confirmation (needed without a terminal)."`
	LockWait time.Duration `placeholder:"D" help:"Wait up to D for another run's deploy lock."`
}

func (c *rollbackCmd) Run(ctx context.Context, g *globals, out *output) error {
	s, err := g.open(ctx, []string{c.Service}, true)
	if err != nil {
		return err
	}
	defer s.close()
	revs, err := rollout.History(ctx, s.fleet.Conns, s.project.Name, c.Service)
	if err != nil {
		return err
	}
	current := 0
	for _, st := range s.fleet.States {
		for _, ct := range st.Containers {
			if ct.Labels[plan.LabelService] == c.Service && ct.Running {
				if n, _ := strconv.Atoi(ct.Labels[plan.LabelRevision]); n > current {
					current = n
				}
			}
		}
	}
	var target *rollout.Revision
	for i := len(revs) - 1; i >= 0; i-- {
		r := revs[i]
		if (c.To != 0 && r.Revision == c.To) || (c.To == 0 && r.Revision < current && r.Outcome == "deployed") {
			target = &revs[i]
			break
		}
	}
	if target == nil {
		if c.To != 0 {
			return fmt.Errorf("revision %d of %s is not kept on the hosts: fleet history %s lists those that are", c.To, c.Service, c.Service)
		}
		return fmt.Errorf("no deployed revision of %s before the current one (%d) is kept: fleet history %s lists them", c.Service, current, c.Service)
	}
	old, err := target.AsService(s.project.Service(c.Service))
	if err != nil {
		return err
	}
	project := *s.project
	project.Services = nil
	for _, svc := range s.project.Services {
		if svc.Name == c.Service {
			svc = old
		}
		project.Services = append(project.Services, svc)
	}
	s.project = &project
	fmt.Fprintf(out.stdout, "Rolling %s back to revision %d (%s, %s):\n\n", c.Service, target.Revision, target.Template.Image, target.When.Local().Format("2006-01-02 15:04"))
	return s.apply(ctx, g, out, applyRun{services: []string{c.Service}, yes: c.Yes, lockWait: c.LockWait,
		cause: fmt.Sprintf("rollback to revision %d", target.Revision), command: "fleet rollback " + c.Service})
}
