package rollout

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/fleetdeploy/fleet/plan"
	"github.com/fleetdeploy/fleet/proxy"
)

// A load balancer's route for a proxied service sends to the hosts whose
// proxy serves the service (see plan.Balancer). A rolling update changes
// nothing there: each host's proxy swaps its own instances. A host joins
// the route once its proxy serves an instance, after the steps, and
// leaves it before its last instance goes, once the load balancer has no
// request in flight to it: so the load balancer never sends a request to
// a host that has nothing to serve it with. A host this run cannot read
// (unreachable, or out of --hosts) keeps its place as it is; the load
// balancer's own health checks leave it out while it does not answer.

// lbsOf are the load balancers of a plan.
func lbsOf(p *plan.Plan) []string {
	var out []string
	for _, b := range p.Balancers {
		if !slices.Contains(out, b.LB) {
			out = append(out, b.LB)
		}
	}
	return out
}

// leavingHosts are the hosts where sp removes every instance.
func leavingHosts(sp *plan.ServicePlan) []string {
	var out []string
	for _, act := range sp.Actions {
		if act.Kind == plan.Remove && !slices.Contains(out, act.Host) &&
			!slices.ContainsFunc(sp.Actions, func(b *plan.Action) bool { return b.Host == act.Host && b.Kind != plan.Remove }) {
			out = append(out, act.Host)
		}
	}
	return out
}

// balanceNeeded reports whether the run touches s's load-balancer routes:
// it changes instances of s, or the plan found a route to mend.
func (a *Applier) balanceNeeded(s *plan.Service, sp *plan.ServicePlan) bool {
	if s.Proxy == nil || a.plan == nil || len(a.lbs) == 0 {
		return false
	}
	for _, b := range a.plan.Balancers {
		if b.Service == s.Name && b.Reason != "" {
			return true
		}
	}
	return slices.ContainsFunc(sp.Actions, func(act *plan.Action) bool { return act.Kind != plan.Unchanged })
}

// balance makes every load balancer's route of s send to the hosts whose
// proxy serves s now, but for those in leaving, and then waits until no
// request to those is in flight there (for at most drain_timeout). A load
// balancer that still runs instances of s (just made one, say) is left
// for a later call, once they are gone.
func (a *Applier) balance(ctx context.Context, s *plan.Service, sp *plan.ServicePlan, leaving []string) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), routeTimeout+s.Proxy.DrainTimeout)
	defer cancel()
	// The hosts that may serve s: those of the plan, and those a load
	// balancer sent to when the plan was made.
	var candidates []string
	add := func(h string) {
		if !slices.Contains(a.lbs, h) && !slices.Contains(candidates, h) {
			candidates = append(candidates, h)
		}
	}
	for _, act := range sp.Actions {
		add(act.Host)
	}
	for _, b := range a.plan.Balancers {
		if b.Service == s.Name {
			for _, h := range b.Was {
				add(h)
			}
		}
	}
	// serves holds, by host, whether its proxy serves s; a host missing
	// from it could not be asked.
	serves := map[string]bool{}
	for _, h := range candidates {
		if slices.Contains(leaving, h) {
			serves[h] = false
			continue
		}
		if a.host(h) == nil {
			continue
		}
		if err := a.ensureProxy(ctx, h, false); err != nil {
			continue
		}
		admin, _ := a.proxyOn(h)
		if admin == nil {
			serves[h] = false
			continue
		}
		routes, err := admin.Routes(ctx, a.Project.Name)
		if err != nil {
			continue
		}
		serves[h] = len(routes[s.Name].Upstreams) > 0
	}
	var errs []error
	for _, lb := range a.lbs {
		if a.host(lb) == nil {
			continue
		}
		if len(leaving) > 0 && slices.ContainsFunc(sp.Actions, func(act *plan.Action) bool { return act.Host == lb && act.Kind != plan.Unchanged }) {
			continue
		}
		if err := a.balanceOn(ctx, lb, s, candidates, serves, leaving); err != nil {
			errs = append(errs, onHost(lb, err))
		}
	}
	return errors.Join(errs...)
}

// balanceOn brings the route of s on load balancer lb up to date (see
// balance).
func (a *Applier) balanceOn(ctx context.Context, lb string, s *plan.Service, candidates []string, serves map[string]bool, leaving []string) error {
	if err := a.ensureProxy(ctx, lb, true); err != nil {
		return err
	}
	admin, err := a.proxyOn(lb)
	if err != nil {
		return err
	}
	routes, err := admin.Routes(ctx, a.Project.Name)
	if err != nil {
		return err
	}
	now := routes[s.Name].Upstreams
	byAddr := map[string]string{}
	for _, h := range candidates {
		byAddr[a.LBAddresses[h]] = h
	}
	var ups, names []string
	for _, h := range candidates {
		addr := a.LBAddresses[h]
		in, known := serves[h]
		if addr == "" || !(in || !known && slices.Contains(now, addr)) {
			continue
		}
		ups, names = append(ups, addr), append(names, h)
	}
	// What it sends to that is no host of the service's is not fleet's
	// to judge: kept.
	for _, u := range now {
		if _, ours := byAddr[u]; !ours {
			ups, names = append(ups, u), append(names, u)
		}
	}
	slices.Sort(ups)
	slices.Sort(names)
	r := a.routeOf(s)
	r.TLS = s.Proxy.TLS
	changed, err := admin.Balance(ctx, r, ups, proxy.Check{Path: plan.BalanceCheckPath(s), Timeout: s.Proxy.DrainTimeout})
	if err != nil {
		return err
	}
	if changed {
		to := strings.Join(names, ", ")
		if to == "" {
			to = "no host: route removed"
		}
		a.event(Event{Service: s.Name, Host: lb, What: "load balancer sends to " + to})
	}
	for _, h := range leaving {
		addr := a.LBAddresses[h]
		if !slices.Contains(now, addr) {
			continue
		}
		left, err := admin.Drain(ctx, addr, s.Proxy.DrainTimeout)
		if err != nil {
			return fmt.Errorf("waiting for its requests in flight to %s: %w", h, err)
		}
		if left > 0 {
			a.event(Event{Service: s.Name, Host: lb, What: fmt.Sprintf("%d requests to %s still in flight after drain_timeout %s: going on", left, h, s.Proxy.DrainTimeout)})
		}
	}
	return nil
}
