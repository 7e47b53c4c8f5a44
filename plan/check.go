package plan

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/fleetdeploy/fleet/internal/diag"
	"github.com/fleetdeploy/fleet/inventory"
)

// SelectedHosts returns the hosts a service may run on, sorted by name.
// A proxied service runs on no load balancer: those send its requests
// to the hosts that run it.
func (s *Service) SelectedHosts(inv *inventory.Inventory) []*inventory.Host {
	hosts := inv.Hosts
	if s.Hosts != nil {
		hosts = inv.Select(s.Hosts)
	}
	if s.Proxy != nil && Balanced(inv) {
		hosts = slices.DeleteFunc(slices.Clone(hosts), func(h *inventory.Host) bool { return h.LB })
	}
	return hosts
}

// check finds what fleet.yaml asks for that the inventory cannot give.
func (p *Project) check(inv *inventory.Inventory, errs *diag.List) {
	selected := map[string][]*inventory.Host{}
	for _, s := range p.Services {
		w := "service " + s.Name
		if s.hosts.bad {
			continue
		}
		if s.Hosts != nil {
			for _, pr := range inv.Check(s.Hosts) {
				pos := s.hosts.at(pr.Offset)
				if s.Hosts.Names != nil && pr.Index < len(s.hosts.items) {
					pos = s.hosts.items[pr.Index]
				}
				errs.Add(pos, "%s.hosts: %s", w, pr.Msg).Hint = pr.Hint
			}
		}
		hosts := s.SelectedHosts(inv)
		selected[s.Name] = hosts
		if s.Proxy != nil && s.Hosts != nil {
			var lbs []string
			for _, h := range inv.Select(s.Hosts) {
				if h.LB {
					lbs = append(lbs, h.Name)
				}
			}
			if len(lbs) > 0 {
				e := errs.Add(s.hosts.pos, "%s.hosts: %q selects %s, a load balancer (lb: true), which sends the service's requests to its hosts rather than run it", w, s.Hosts.Text, strings.Join(lbs, ", "))
				e.Hint = "leave the load balancers out of the selector (role=web, say), or take lb: true off the host"
				continue
			}
		}
		if len(hosts) == 0 {
			if s.Hosts != nil && len(inv.Check(s.Hosts)) == 0 {
				errs.Add(s.hosts.pos, "%s.hosts: %q matches no host", w, s.Hosts.Text).Hint = "fleet inventory lists the hosts with their labels and groups"
			}
			continue
		}
		if s.ReplicasSet && s.Replicas > len(hosts)*s.MaxPerHost {
			e := errs.Add(s.pos["replicas"], "%s: %d replicas do not fit on %d selected hosts with max_per_host %d", w, s.Replicas, len(hosts), s.MaxPerHost)
			e.Hint = fmt.Sprintf("raise max_per_host to %d, select more hosts, or lower replicas", (s.Replicas+len(hosts)-1)/len(hosts))
		}
		if s.Spread != "" {
			has := false
			for _, h := range hosts {
				if _, ok := h.Labels[s.Spread]; ok {
					has = true
					break
				}
			}
			if !has {
				errs.Add(s.pos["spread"], "%s.spread: none of the selected hosts has a label %q", w, s.Spread).Hint = "label the hosts in the inventory, e.g. labels: {" + s.Spread + ": a}"
			}
		}
	}
	p.checkPortClashes(selected, errs)
	p.checkRoutes(selected, errs)
}

// ProxyPort is the host port the proxy serves HTTP on, and ProxyTLSPort
// the one it serves HTTPS on where a route has TLS.
const (
	ProxyPort    = 80
	ProxyTLSPort = 443
)

// checkRoutes finds two services that claim the same host name and path
// through the proxy, two that serve one host name with different TLS, and
// services that publish the proxy's own ports on a host where it runs.
func (p *Project) checkRoutes(selected map[string][]*inventory.Host, errs *diag.List) {
	claimed := map[string]string{}
	tlsOf := map[string]*Service{} // host name → the first service serving it
	// host → port → a proxied service that has the proxy bind it there
	proxied := map[string]map[int]string{}
	for _, s := range p.Services {
		if s.Proxy == nil {
			continue
		}
		// Host names match whatever their case.
		name := strings.ToLower(s.Proxy.Host)
		site := name + strings.TrimSuffix(s.Proxy.Path, "/")
		if other, ok := claimed[site]; ok {
			e := errs.Add(s.pos["proxy"], "service %s is served at %s%s, as service %s is", s.Name, s.Proxy.Host, s.Proxy.Path, other)
			e.Hint = "give one of them another proxy.host or proxy.path"
			continue
		}
		claimed[site] = s.Name
		if other, ok := tlsOf[name]; ok && other.Proxy.TLS != s.Proxy.TLS {
			e := errs.Add(s.pos["proxy"], "service %s serves %s with %s, service %s with %s: one host name has one certificate", s.Name, s.Proxy.Host, s.Proxy.TLS.describe(), other.Name, other.Proxy.TLS.describe())
			e.Hint = "give both the same proxy.tls"
		} else if !ok {
			tlsOf[name] = s
		}
		ports := []int{ProxyPort}
		if s.Proxy.TLS != TLSOff {
			ports = append(ports, ProxyTLSPort)
		}
		for _, h := range selected[s.Name] {
			if proxied[h.Name] == nil {
				proxied[h.Name] = map[int]string{}
			}
			for _, port := range ports {
				if _, ok := proxied[h.Name][port]; !ok {
					proxied[h.Name][port] = s.Name
				}
			}
		}
	}
	for _, s := range p.Services {
		for _, port := range s.Ports {
			if port.Proto != "tcp" {
				continue
			}
			for _, h := range selected[s.Name] {
				if other, ok := proxied[h.Name][port.Host]; ok && other != s.Name {
					e := errs.Add(s.pos["ports"], "service %s publishes port %d on %s, where the proxy serves service %s on it", s.Name, port.Host, h.Name, other)
					e.Hint = "serve it through the proxy too (proxy: {host: ..., port: ...}), or publish another port"
					break
				}
			}
		}
	}
}

func (t TLS) describe() string {
	switch t {
	case TLSPublic:
		return "tls: true"
	case TLSInternal:
		return "tls: internal"
	}
	return "no TLS"
}

// checkPortClashes finds two services that may both publish the same host
// port on one host.
func (p *Project) checkPortClashes(selected map[string][]*inventory.Host, errs *diag.List) {
	type binding struct {
		service string
		port    Port
	}
	byHost := map[string][]binding{}
	reported := map[string]bool{}
	for _, s := range p.Services {
		for _, h := range selected[s.Name] {
			for _, port := range s.Ports {
				for _, other := range byHost[h.Name] {
					if other.service == s.Name || !clash(other.port, port) {
						continue
					}
					key := other.service + "/" + s.Name + "/" + fmt.Sprint(port.Host)
					if reported[key] {
						continue
					}
					reported[key] = true
					hosts := sharedHosts(selected[other.service], selected[s.Name])
					e := errs.Add(s.pos["ports"], "service %s publishes port %d/%s, as service %s does, on %s", s.Name, port.Host, port.Proto, other.service, hostList(hosts))
					e.Hint = "give one of them another host port, or select different hosts"
				}
				byHost[h.Name] = append(byHost[h.Name], binding{s.Name, port})
			}
		}
	}
}

func clash(a, b Port) bool {
	if a.Host != b.Host || a.Proto != b.Proto {
		return false
	}
	return a.HostIP == "" || b.HostIP == "" || a.HostIP == b.HostIP
}

func sharedHosts(a, b []*inventory.Host) []string {
	in := map[string]bool{}
	for _, h := range a {
		in[h.Name] = true
	}
	var out []string
	for _, h := range b {
		if in[h.Name] {
			out = append(out, h.Name)
		}
	}
	sort.Strings(out)
	return out
}

func hostList(names []string) string {
	if len(names) == 1 {
		return "host " + names[0]
	}
	if len(names) > 5 {
		return fmt.Sprintf("hosts %s and %d more", strings.Join(names[:5], ", "), len(names)-5)
	}
	return "hosts " + strings.Join(names, ", ")
}
