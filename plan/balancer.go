package plan

import (
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"

	"github.com/fleetdeploy/fleet/inventory"
)

// Load balancers are the inventory's hosts with lb: true (or named by
// --lb). Each one's proxy has a route for every proxied service, which
// sends to the proxies of the hosts that run the service; those serve the
// route over plain HTTP, and the load balancers serve it with the TLS that
// fleet.yaml asks for. A load balancer runs no instance of a proxied
// service.

// Balancer is a load balancer's route for a proxied service: the hosts
// it sends the service's requests to.
type Balancer struct {
	LB      string   `json:"lb"`
	Service string   `json:"service"`
	Hosts   []string `json:"hosts"` // after the plan
	Was     []string `json:"was"`   // as found; nil when the route is missing
	// Reason says what changes; "" when nothing does.
	Reason string `json:"reason,omitempty"`
}

// Balanced reports whether the inventory has load balancers.
func Balanced(inv *inventory.Inventory) bool {
	return inv != nil && slices.ContainsFunc(inv.Hosts, func(h *inventory.Host) bool { return h.LB })
}

// IdleBalancers are the inventory's load balancers when no service of p
// is proxied: they route nothing for it. Not an error: projects share an
// inventory, and another one's services may be proxied.
func (p *Project) IdleBalancers(inv *inventory.Inventory) []string {
	for _, s := range p.Services {
		if s.Proxy != nil {
			return nil
		}
	}
	var out []string
	for _, h := range inv.Hosts {
		if h.LB {
			out = append(out, h.Name)
		}
	}
	return out
}

// IdleBalancersWarning says what IdleBalancers found, "" for nothing.
func (p *Project) IdleBalancersWarning(inv *inventory.Inventory) string {
	lbs := p.IdleBalancers(inv)
	if len(lbs) == 0 {
		return ""
	}
	return fmt.Sprintf("%s: load balancer (lb: true, or --lb), but no service of project %s has proxy:, so they route nothing for it (serve a service through the proxy, or take lb off)",
		strings.Join(lbs, ", "), p.Name)
}

// HostTLS is how the hosts that run s serve its route: over plain HTTP
// when load balancers stand in front of them (balanced), which serve it
// with s's TLS.
func HostTLS(s *Service, balanced bool) TLS {
	if balanced || s.Proxy == nil {
		return TLSOff
	}
	return s.Proxy.TLS
}

// LBAddress is where load balancers reach a host's proxy: the host's
// address and ProxyPort.
func LBAddress(h *inventory.Host) string {
	return net.JoinHostPort(h.Address, strconv.Itoa(ProxyPort))
}

// BalanceCheckPath is the path a load balancer asks every host of s's
// route for its health: the service's HTTP health check when the route
// serves it, else "" (no active check: a host is then left out only once
// a request to it failed).
func BalanceCheckPath(s *Service) string {
	hc := s.Healthcheck
	if s.Proxy == nil || hc == nil || hc.HTTP == "" {
		return ""
	}
	prefix := strings.TrimSuffix(s.Proxy.Path, "/")
	if prefix != "" && hc.HTTP != prefix && !strings.HasPrefix(hc.HTTP, prefix+"/") {
		return ""
	}
	return hc.HTTP
}

// balancers are, for each load balancer in scope that answered and each
// proxied service of the plan, the hosts its route sends to after the
// plan: those that keep or get an instance, and those the route sends to
// now that this run cannot see (unreachable, or out of --hosts), which
// are left as they are. A host joins the route once its instance serves
// and leaves it before its last instance goes (see rollout).
func balancers(in Input, p *Plan) []Balancer {
	out := []Balancer{}
	byAddr := map[string]string{}
	for _, h := range in.Inventory.Hosts {
		byAddr[LBAddress(h)] = h.Name
	}
	for _, lb := range in.Scope {
		lh := in.Live.Hosts[lb.Name]
		if !lb.LB || lh == nil || lh.Routes == nil {
			continue
		}
		for _, sp := range p.Services {
			s := in.Project.Service(sp.Name)
			if s == nil || s.Proxy == nil {
				continue
			}
			var after []string
			for _, a := range sp.Actions {
				if a.Kind != Remove && !slices.Contains(after, a.Host) {
					after = append(after, a.Host)
				}
			}
			b := Balancer{LB: lb.Name, Service: s.Name}
			r, found := lh.Routes[s.Name]
			if found {
				b.Was = []string{}
				for _, u := range r.Upstreams {
					name := u
					if n, ok := byAddr[u]; ok {
						name = n
					}
					b.Was = append(b.Was, name)
					// A host that is unreachable or out of scope, or an
					// address that is no host's: left as it is.
					if _, known := in.Live.Hosts[name]; !known && !slices.Contains(after, name) {
						after = append(after, name)
					}
				}
				slices.Sort(b.Was)
			}
			slices.Sort(after)
			b.Hosts = after
			if after == nil {
				b.Hosts = []string{}
			}
			b.Reason = balancerChange(b, r, found, s)
			out = append(out, b)
		}
	}
	return out
}

// balancerChange says what changes in a load balancer's route, "" for
// nothing.
func balancerChange(b Balancer, r LiveRoute, found bool, s *Service) string {
	switch {
	case !found && len(b.Hosts) == 0:
		return ""
	case !found:
		return "route missing: sends to " + strings.Join(b.Hosts, ", ")
	case len(b.Hosts) == 0:
		return "no host runs the service any more: route removed"
	}
	var parts []string
	if joins := without(b.Hosts, b.Was); len(joins) > 0 {
		parts = append(parts, strings.Join(joins, ", ")+" joins once its instance serves")
	}
	if leaves := without(b.Was, b.Hosts); len(leaves) > 0 {
		parts = append(parts, strings.Join(leaves, ", ")+" leaves before its last instance goes")
	}
	if path := strings.TrimSuffix(s.Proxy.Path, "/"); r.Host != s.Proxy.Host || r.Path != path || r.TLS != s.Proxy.TLS {
		was := r.Path
		if was == "" {
			was = "/"
		}
		parts = append(parts, fmt.Sprintf("serves %s, not %s", siteText(r.Host, was, r.TLS), siteText(s.Proxy.Host, s.Proxy.Path, s.Proxy.TLS)))
	}
	return strings.Join(parts, "; ")
}

// without is what of a is not in b.
func without(a, b []string) []string {
	var out []string
	for _, x := range a {
		if !slices.Contains(b, x) {
			out = append(out, x)
		}
	}
	return out
}
