package main

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"

	"github.com/fleetdeploy/fleet/rollout"
)

type lockCmd struct {
	Status  lockStatusCmd  `cmd:"" default:"1" help:"Show who holds the deploy lock on each host."`
	Release lockReleaseCmd `cmd:"" help:"Break the deploy lock on every host (needs --force)."`
}

type lockStatusCmd struct{}

func (c *lockStatusCmd) Run(ctx context.Context, g *globals, out *output) error {
	s, err := g.open(ctx, nil, false)
	if err != nil {
		return err
	}
	defer s.close()
	held := rollout.LockStatus(ctx, s.fleet.Conns, s.project.Name)
	if g.JSON {
		return json.NewEncoder(out.stdout).Encode(map[string]any{"locks": held, "unreachable": s.fleet.Unreachable})
	}
	if len(held) == 0 {
		fmt.Fprintf(out.stdout, "No deploy lock on the %s that answered.\n", plural(len(s.fleet.Conns), "host"))
	}
	var hosts []string
	for h := range held {
		hosts = append(hosts, h)
	}
	sort.Strings(hosts)
	for _, h := range hosts {
		fmt.Fprintf(out.stdout, "%s: locked by %s, lease until %s\n", h, held[h], held[h].Expires.Local().Format("15:04:05"))
	}
	return unreachableHosts(s)
}

type lockReleaseCmd struct {
	Force bool `help:"Yes: break it, whoever holds it."`
}

func (c *lockReleaseCmd) Run(ctx context.Context, g *globals, out *output) error {
	if !c.Force {
		return fmt.Errorf("breaking a lock another run may still hold needs --force; see fleet lock status first")
	}
	s, err := g.open(ctx, nil, false)
	if err != nil {
		return err
	}
	defer s.close()
	if err := rollout.ForceRelease(ctx, s.fleet.Conns, s.project.Name); err != nil {
		return err
	}
	fmt.Fprintf(out.stdout, "Released the deploy lock of %s on %s.\n", s.project.Name, plural(len(s.fleet.Conns), "host"))
	return unreachableHosts(s)
}

func unreachableHosts(s *session) error {
	if n := len(s.fleet.Unreachable); n > 0 {
		return silentError{1, fmt.Sprintf("%d of %d hosts unreachable", n, len(s.scope))}
	}
	return nil
}
