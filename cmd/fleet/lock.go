package main

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/fleetdeploy/fleet/rollout"
)

type lockCmd struct {
	Status  lockStatusCmd  `cmd:"" default:"1" help:"Show who holds the deploy lock on each host."`
	Release lockReleaseCmd `cmd:"" help:"Break the deploy lock on every host (needs --force)."`
}

type lockStatusCmd struct{}

func (c *lockStatusCmd) Run(ctx context.Context, g *globals, out *output) error {
	s, err := g.open(ctx, nil, stateOnly)
	if err != nil {
		return err
	}
	defer s.close()
	states := rollout.LockStatus(ctx, s.fleet.Conns, s.project.Name)
	var hosts, unread []string
	held := 0
	for h, st := range states {
		hosts = append(hosts, h)
		switch {
		case st.Err != nil:
			unread = append(unread, h)
		case st.Holder != nil:
			held++
		}
	}
	sort.Strings(hosts)
	sort.Strings(unread)
	if g.JSON {
		locks := map[string]any{}
		unreadable := map[string]string{}
		for _, h := range hosts {
			st := states[h]
			switch {
			case st.Err != nil:
				unreadable[h] = st.Err.Error()
			case st.Holder != nil:
				l := map[string]any{"holder": st.Holder, "lease_seconds": st.Lease.Seconds()}
				if st.Quiet >= 0 {
					l["renewed_seconds_ago"] = st.Quiet.Seconds()
				}
				locks[h] = l
			}
		}
		if err := json.NewEncoder(out.stdout).Encode(map[string]any{"locks": locks, "unreadable": unreadable, "unreachable": s.fleet.Unreachable}); err != nil {
			return err
		}
		return lockStatusError(s, unread)
	}
	for _, h := range hosts {
		st := states[h]
		switch {
		case st.Err != nil:
			fmt.Fprintf(out.stdout, "%s: the deploy lock could not be read: %v\n", h, st.Err)
		case st.Holder != nil:
			fmt.Fprintf(out.stdout, "%s: locked by %s, %s\n", h, st.Holder, leaseState(st))
		}
	}
	if held == 0 {
		answered := len(s.fleet.Conns) - len(unread)
		switch {
		case len(unread) == 0:
			fmt.Fprintf(out.stdout, "No deploy lock on the %s that answered.\n", plural(answered, "host"))
		case answered > 0:
			fmt.Fprintf(out.stdout, "No deploy lock on the other %s.\n", plural(answered, "host"))
		}
	}
	return lockStatusError(s, unread)
}

// leaseState says whether a holder keeps its lock alive.
func leaseState(st rollout.LockState) string {
	switch {
	case st.Quiet < 0:
		return fmt.Sprintf("lease %s", st.Lease)
	case st.Quiet > st.Lease:
		return fmt.Sprintf("not renewed for %s (lease %s): the next apply takes it over", st.Quiet.Round(time.Second), st.Lease)
	}
	return fmt.Sprintf("renewed %s ago (lease %s)", st.Quiet.Round(time.Second), st.Lease)
}

// lockStatusError fails the command when a host could not be read or
// reached: its lock is not known.
func lockStatusError(s *session, unread []string) error {
	if len(unread) > 0 {
		return silentError{1, fmt.Sprintf("the deploy lock could not be read on %s: run fleet lock status again once it answers", strings.Join(unread, ", "))}
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
	s, err := g.open(ctx, nil, stateOnly)
	if err != nil {
		return err
	}
	defer s.close()
	if err := rollout.ForceRelease(ctx, s.fleet.Conns, s.project.Name, rollout.Me("fleet lock release --force")); err != nil {
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
