package rollout

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/fleetdeploy/fleet/executor"
	"github.com/fleetdeploy/fleet/plan"
	"github.com/fleetdeploy/fleet/proxy"
)

// A proxied service's containers are in its route on their host's proxy
// exactly while they are trusted to serve: a new container goes in once
// it passed its health check, before it loses its mark as not yet
// checked, so that a run killed in between leaves a container the next
// run does not trust rather than one it trusts that serves nothing; an
// old one goes out, and its requests in flight end, before it is stopped.
// At every moment of a step, a container that serves is in the route.

// routeTimeout bounds one change of a route, on the way back too.
const routeTimeout = 30 * time.Second

// routeOf is the service's route through the hosts' proxies.
func (a *Applier) routeOf(s *plan.Service) proxy.Route {
	return proxy.Route{
		ID:           proxy.RouteID(a.Project.Name, s.Name),
		Host:         s.Proxy.Host,
		Path:         s.Proxy.Path,
		TLS:          plan.HostTLS(s, a.balanced),
		DrainTimeout: s.Proxy.DrainTimeout,
	}
}

// ensureProxy keeps the admin API of host's proxy for the run: made
// first when the run puts containers in routes there (make), or else the
// one that runs, if any (a host left only with removals needs no proxy
// made, nor its image pulled).
func (a *Applier) ensureProxy(ctx context.Context, host string, make bool) error {
	a.proxyMu.Lock()
	admin, ok := a.proxies[host]
	a.proxyMu.Unlock()
	if ok && (admin != nil || !make) {
		return nil
	}
	h := a.host(host)
	image := a.Project.ProxyImage
	var err error
	if make {
		admin, err = proxy.Ensure(ctx, host, h.Engine(), h.Root(), image, a.registryAuth(image))
	} else {
		admin, err = proxy.Open(ctx, host, h.Engine(), h.Root())
	}
	if err != nil {
		return err
	}
	a.proxyMu.Lock()
	if a.proxies == nil {
		a.proxies = map[string]*proxy.Admin{}
	}
	a.proxies[host] = admin
	a.proxyMu.Unlock()
	return nil
}

// upgradeProxies hands each host's proxy over to one that runs
// proxy_image, a host at a time: the first that fails stops the run
// before any service is changed, its old proxy still serving.
func (a *Applier) upgradeProxies(ctx context.Context, ups []plan.ProxyUpgrade, res *Result) error {
	for _, u := range ups {
		if ctx.Err() != nil {
			return fmt.Errorf("interrupted before the proxy on %s was upgraded: run fleet apply again to go on", u.Host)
		}
		h := a.host(u.Host)
		if h == nil {
			return fmt.Errorf("upgrading the proxy on %s: the host is not connected", u.Host)
		}
		a.event(Event{Service: "proxy", Host: u.Host, What: fmt.Sprintf("upgrading: %s → %s, the new one beside the old", u.From, u.To)})
		admin, err := proxy.Upgrade(ctx, u.Host, h.Engine(), h.Root(), u.To, a.registryAuth(u.To), func(step string) {
			a.event(Event{Service: "proxy", Host: u.Host, What: step, Progress: true})
		})
		if err != nil {
			return err
		}
		a.proxyMu.Lock()
		if a.proxies == nil {
			a.proxies = map[string]*proxy.Admin{}
		}
		a.proxies[u.Host] = admin
		a.proxyMu.Unlock()
		res.ProxyUpgraded = append(res.ProxyUpgraded, u.Host)
		a.event(Event{Service: "proxy", Host: u.Host, What: "upgraded: the new one serves, the old one is gone"})
	}
	return nil
}

// proxyOn returns the admin API of host's proxy, nil when no proxy runs
// there (and none was needed).
func (a *Applier) proxyOn(host string) (*proxy.Admin, error) {
	a.proxyMu.Lock()
	defer a.proxyMu.Unlock()
	if admin, ok := a.proxies[host]; ok {
		return admin, nil
	}
	return nil, fmt.Errorf("the proxy on %s was not made ready", host)
}

// upstream is the address the proxy reaches a container at ("" for one
// that is not running) and the container's slot (-1 for one that is gone).
func upstream(ctx context.Context, eng Engine, s *plan.Service, id string) (addr string, slot int, err error) {
	c, err := eng.Inspect(ctx, id)
	if errors.Is(err, executor.ErrNotFound) {
		return "", -1, nil
	}
	if err != nil {
		return "", -1, err
	}
	slot, err = strconv.Atoi(c.Labels[plan.LabelSlot])
	if err != nil || slot < 0 {
		return "", -1, fmt.Errorf("container %s has no slot label %s", executor.ShortID(id), plan.LabelSlot)
	}
	ip := containerIP(c)
	if !c.Running || ip == "" {
		return "", slot, nil
	}
	return net.JoinHostPort(ip, strconv.Itoa(s.Proxy.Port)), slot, nil
}

// serve makes a healthy container of a proxied service serve its slot in
// the route, in place of the container there before (old, "" for none,
// is named for routes written before slots, which name addresses); for
// any other service it does nothing. It returns the address that served
// the slot before, for draining ("" for none).
func (a *Applier) serve(ctx context.Context, s *plan.Service, host, id, old string) (string, error) {
	if s.Proxy == nil {
		return "", nil
	}
	admin, err := a.proxyOn(host)
	if err != nil {
		return "", err
	}
	if admin == nil {
		return "", fmt.Errorf("no proxy runs on %s", host)
	}
	eng := a.host(host).Engine()
	addr, slot, err := upstream(ctx, eng, s, id)
	if err != nil {
		return "", err
	}
	if addr == "" {
		return "", fmt.Errorf("container %s is not running, or has no address, so it cannot be put in its route", executor.ShortID(id))
	}
	var oldAddr string
	if old != "" {
		if oldAddr, _, err = upstream(ctx, eng, s, old); err != nil {
			return "", err
		}
	}
	rctx, cancel := context.WithTimeout(ctx, routeTimeout)
	defer cancel()
	was, err := a.route(rctx, s, host, slot, addr, oldAddr)
	if err != nil || was == addr {
		return "", err
	}
	return was, nil
}

// unserve takes a container of a proxied service out of its route and
// drains it (see drain); for any other service it does nothing. It goes
// on when the run is interrupted: a container half taken out would still
// be stopped.
func (a *Applier) unserve(ctx context.Context, s *plan.Service, host, id string) error {
	if s.Proxy == nil {
		return nil
	}
	admin, err := a.proxyOn(host)
	if err != nil || admin == nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), routeTimeout)
	defer cancel()
	addr, slot, err := upstream(ctx, a.host(host).Engine(), s, id)
	if err != nil {
		return err
	}
	// A container that no longer runs serves nothing: the change then
	// only takes out what no container answers at.
	if _, err := a.route(ctx, s, host, slot, "", addr); err != nil {
		return err
	}
	return a.drain(ctx, s, host, addr)
}

// route changes the service's route on host (see proxy.Admin.Swap): add
// serves slot, or with add "" the slot leaves the route if remove serves
// it; in the same change, every slot or upstream whose address no
// running container of the service on the host has leaves the route.
// Such an address is left behind when a container stops or starts again
// outside a run (by hand, or after a crash): the engine may then give it,
// or another container, another address, and the proxy would send
// requests to nothing, or to the wrong container.
//
// The route changes of a run on one host are made one at a time: the
// containers listed before a change are then all that can serve in the
// route, as any other one is put there by a change of its own.
func (a *Applier) route(ctx context.Context, s *plan.Service, host string, slot int, add, remove string) (string, error) {
	admin, err := a.proxyOn(host)
	if err != nil {
		return "", err
	}
	a.proxyMu.Lock()
	mu := a.routeMu[host]
	if mu == nil {
		mu = &sync.Mutex{}
		if a.routeMu == nil {
			a.routeMu = map[string]*sync.Mutex{}
		}
		a.routeMu[host] = mu
	}
	a.proxyMu.Unlock()
	mu.Lock()
	defer mu.Unlock()
	mine, err := a.host(host).Engine().List(ctx, map[string]string{
		executor.LabelProject: a.Project.Name, plan.LabelService: s.Name})
	if err != nil {
		return "", err
	}
	live := map[string]bool{}
	for _, c := range mine {
		if ip := containerIP(&c); c.Running && ip != "" {
			live[net.JoinHostPort(ip, strconv.Itoa(s.Proxy.Port))] = true
		}
	}
	return admin.Swap(ctx, a.routeOf(s), slot, add, remove, func(addr string) bool { return live[addr] })
}

// drain waits, for at most proxy.drain_timeout, until the proxy has no
// request in flight to addr, out of its route: then its container may be
// stopped.
func (a *Applier) drain(ctx context.Context, s *plan.Service, host, addr string) error {
	if addr == "" {
		return nil
	}
	admin, err := a.proxyOn(host)
	if err != nil || admin == nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), routeTimeout+s.Proxy.DrainTimeout)
	defer cancel()
	began := time.Now()
	left, err := admin.Drain(ctx, addr, s.Proxy.DrainTimeout)
	if err != nil {
		// Out of the route already: what is in flight cannot be seen,
		// so it is given all of drain_timeout.
		a.event(Event{Service: s.Name, Host: host, What: fmt.Sprintf("cannot see the requests in flight to %s: giving them drain_timeout %s", addr, s.Proxy.DrainTimeout), Err: err})
		select {
		case <-ctx.Done():
		case <-time.After(s.Proxy.DrainTimeout - time.Since(began)):
		}
		return nil
	}
	if left > 0 {
		a.event(Event{Service: s.Name, Host: host, What: fmt.Sprintf("%d requests to %s still in flight after drain_timeout %s: stopping it anyway", left, addr, s.Proxy.DrainTimeout)})
	}
	return nil
}

// revertProxied puts a proxied instance back on its old container: the old
// one runs and passes its check again, and takes the new one's place in
// the route in one change; the new one is drained and removed. The route
// never empties while the instance serves.
func (a *Applier) revertProxied(ctx context.Context, s *plan.Service, c *change) error {
	h := a.host(c.act.Host)
	eng := h.Engine()
	if c.oldID == "" || !c.oldStop {
		// The old container never left the route.
		if c.newID == "" {
			return nil
		}
		return errors.Join(a.unserve(ctx, s, c.act.Host, c.newID), eng.Remove(ctx, c.newID, true))
	}
	// As it is now: still running if its stop was cut short, and then
	// its restarts so far do not count against it.
	restarts := 0
	if was, err := eng.Inspect(ctx, c.oldID); err == nil && was.Running {
		restarts = was.RestartCount
	}
	start := eng.Start
	if !c.stopped {
		// A stop cut short may still be carried out late.
		start = func(ctx context.Context, id string) error { return startAgain(ctx, eng, id) }
	}
	if err := start(ctx, c.oldID); err != nil {
		return err
	}
	// It answers on its port before it serves again. Its own revision's
	// health check may not be the new one's, so it is checked with a
	// connection, not with fleet.yaml's check.
	check := *s
	check.Update.Monitor = 0
	check.Healthcheck = &plan.Healthcheck{TCP: s.Proxy.Port, Interval: 200 * time.Millisecond, Timeout: plan.DefaultTimeout, Retries: 1}
	if err := waitHealthy(ctx, h, c.oldID, &check, func(string) {}, restarts); err != nil {
		return fmt.Errorf("its previous container does not answer on port %d again: %w", s.Proxy.Port, err)
	}
	newAddr, err := a.serve(ctx, s, c.act.Host, c.oldID, c.newID)
	if err != nil {
		return err
	}
	if c.newID == "" {
		return nil
	}
	if err := a.drain(ctx, s, c.act.Host, newAddr); err != nil {
		return err
	}
	return eng.Remove(ctx, c.newID, true)
}
