package proxy

import (
	"cmp"
	"fmt"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/fleetdeploy/fleet/plan"
)

// config is the proxy's configuration as Caddy's JSON has it, kept as
// decoded so that what fleet does not manage (another tool's apps, keys of
// a newer Caddy) is written back as it was.
type config struct {
	root map[string]any
}

func readConfig(raw map[string]any) (*config, error) {
	if raw == nil {
		raw = map[string]any{}
	}
	c := &config{root: raw}
	for _, path := range [][]string{{"apps"}, {"apps", "http"}, {"apps", "http", "servers"}, {"apps", "http", "servers", ServerName}} {
		if _, err := c.object(path...); err != nil {
			return nil, err
		}
	}
	return c, nil
}

func (c *config) raw() map[string]any { return c.root }

// lookup returns the object at path, or nil where it is missing.
func (c *config) lookup(path ...string) map[string]any {
	m := c.root
	for _, k := range path {
		m, _ = m[k].(map[string]any)
	}
	return m
}

// object returns the object at path, made if missing.
func (c *config) object(path ...string) (map[string]any, error) {
	m := c.root
	for i, k := range path {
		v, ok := m[k]
		if !ok || v == nil {
			v = map[string]any{}
			m[k] = v
		}
		next, ok := v.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("its configuration has %s as %T, not an object", strings.Join(path[:i+1], "."), v)
		}
		m = next
	}
	return m, nil
}

// server is one of the HTTP servers that hold fleet's routes, made if
// missing: ServerName serves plain HTTP on plan.ProxyPort with Caddy's
// automatic HTTPS off (fleet writes the redirects of TLS routes itself),
// TLSServerName serves HTTPS on plan.ProxyTLSPort with certificates that
// Caddy gets for the host names of its routes.
func (c *config) server(name string) map[string]any {
	s, _ := c.object("apps", "http", "servers", name)
	if _, ok := s["listen"]; !ok {
		port := plan.ProxyPort
		if name == TLSServerName {
			port = plan.ProxyTLSPort
		}
		s["listen"] = []any{":" + strconv.Itoa(port)}
	}
	if name == TLSServerName {
		s["automatic_https"] = map[string]any{"disable_redirects": true}
	} else {
		s["automatic_https"] = map[string]any{"disable": true}
	}
	return s
}

type route map[string]any

// routes are the routes of the server called name, which is not made.
func (c *config) routes(name string) []route {
	list, _ := c.lookup("apps", "http", "servers", name)["routes"].([]any)
	var out []route
	for _, r := range list {
		if m, ok := r.(map[string]any); ok {
			out = append(out, route(m))
		}
	}
	return out
}

// route returns the route with the given @id, in either server, or nil.
func (c *config) route(id string) route {
	r, _ := c.routeAndTLS(id)
	return r
}

// routeAndTLS returns the route with the given @id and how it is served.
func (c *config) routeAndTLS(id string) (route, plan.TLS) {
	for _, name := range []string{ServerName, TLSServerName} {
		for _, r := range c.routes(name) {
			if r["@id"] != id {
				continue
			}
			if name == ServerName {
				return r, plan.TLSOff
			}
			host, _ := r.site()
			if c.policy(host) != nil {
				return r, plan.TLSInternal
			}
			return r, plan.TLSPublic
		}
	}
	return nil, plan.TLSOff
}

// upstreams are the dial addresses of the route's reverse_proxy handler.
func (r route) upstreams() []string {
	var out []string
	handlers, _ := r["handle"].([]any)
	for _, h := range handlers {
		hm, _ := h.(map[string]any)
		if hm["handler"] != "reverse_proxy" {
			continue
		}
		ups, _ := hm["upstreams"].([]any)
		for _, u := range ups {
			if um, ok := u.(map[string]any); ok {
				if d, ok := um["dial"].(string); ok {
					out = append(out, d)
				}
			}
		}
	}
	return out
}

// slotsDir holds the slot files in the proxy's volume (see Admin.Swap):
// one per instance of a proxied service on the host, named after its
// route and slot, holding the address of the container that serves it.
const slotsDir = "upstreams"

func slotFile(id string, slot int) string { return id + "." + strconv.Itoa(slot) }

// slotDial is the dial address of a route's slot in the configuration: a
// placeholder that Caddy replaces with the slot file's content for every
// request it sends there.
func slotDial(id string, slot int) string {
	return "{file." + path.Join(dataDir, slotsDir, slotFile(id, slot)) + "}"
}

// slotOf reads a slot of route id back from a dial address.
func slotOf(id, dial string) (int, bool) {
	rest, ok := strings.CutPrefix(dial, "{file."+path.Join(dataDir, slotsDir, id)+".")
	if !ok {
		return 0, false
	}
	rest, ok = strings.CutSuffix(rest, "}")
	n, err := strconv.Atoi(rest)
	return n, ok && err == nil && n >= 0
}

// setRoute makes r's route send to upstreams, or removes it when there
// are none. A route with TLS is served by TLSServerName, and the plain
// server redirects its requests there; with tls: internal, the proxy's
// own CA issues the host's certificate. Routes are kept most specific
// first, as Caddy tries them in order: exact host names before wildcards,
// then the longest path.
func (c *config) setRoute(r Route, upstreams []string) {
	var rt route
	if len(upstreams) > 0 {
		rt = newRoute(r, upstreams)
	}
	c.placeRoute(r, rt)
}

// placeRoute puts rt in place of r's route, or with rt nil removes it (see
// setRoute).
func (c *config) placeRoute(r Route, rt route) {
	for _, name := range []string{ServerName, TLSServerName} {
		c.editRoutes(name, func(rs []route) []route {
			return slices.DeleteFunc(rs, func(old route) bool { return old["@id"] == r.ID || old["@id"] == redirectID(r.ID) })
		})
	}
	if rt != nil {
		home := ServerName
		if r.TLS != plan.TLSOff {
			home = TLSServerName
			c.editRoutes(ServerName, func(rs []route) []route { return append(rs, newRedirect(r)) })
		}
		c.editRoutes(home, func(rs []route) []route { return append(rs, rt) })
		switch r.TLS {
		case plan.TLSInternal:
			c.setPolicy(r.Host, true)
		case plan.TLSPublic:
			c.setPolicy(r.Host, false)
		}
	}
	// A host name that no route serves with TLS any more needs no policy,
	// and with no such route at all, nothing listens on the HTTPS port.
	served := map[string]bool{}
	for _, rt := range c.routes(TLSServerName) {
		host, _ := rt.site()
		served[host] = true
	}
	for _, host := range c.policyHosts() {
		if !served[host] {
			c.setPolicy(host, false)
		}
	}
	if len(served) == 0 {
		servers, _ := c.object("apps", "http", "servers")
		delete(servers, TLSServerName)
	}
	if r.DrainTimeout > 0 {
		http, _ := c.object("apps", "http")
		if grace, ok := durationOf(http["grace_period"]); !ok || grace < r.DrainTimeout {
			http["grace_period"] = r.DrainTimeout.String()
		}
	}
}

// editRoutes replaces the routes of the server called name by what edit
// makes of them, kept in the order Caddy should try them.
func (c *config) editRoutes(name string, edit func([]route) []route) {
	kept := edit(c.routes(name))
	slices.SortStableFunc(kept, func(a, b route) int {
		ha, pa := a.site()
		hb, pb := b.site()
		// A wildcard host comes after every exact one it may cover.
		wa, wb := strings.HasPrefix(ha, "*"), strings.HasPrefix(hb, "*")
		return cmp.Or(compareBool(wa, wb), cmp.Compare(ha, hb), cmp.Compare(len(pb), len(pa)), cmp.Compare(pa, pb))
	})
	list := make([]any, len(kept))
	for i, k := range kept {
		list[i] = map[string]any(k)
	}
	c.server(name)["routes"] = list
}

// policyPrefix begins the @id of the automation policies fleet writes:
// one per host name served with tls: internal.
const policyPrefix = "fleet.tls."

// policy is the automation policy fleet wrote for host, or nil.
func (c *config) policy(host string) map[string]any {
	list, _ := c.lookup("apps", "tls", "automation")["policies"].([]any)
	for _, p := range list {
		if m, ok := p.(map[string]any); ok && m["@id"] == policyPrefix+host {
			return m
		}
	}
	return nil
}

// policyHosts are the host names of the policies fleet wrote.
func (c *config) policyHosts() []string {
	list, _ := c.lookup("apps", "tls", "automation")["policies"].([]any)
	var hosts []string
	for _, p := range list {
		m, _ := p.(map[string]any)
		if id, ok := m["@id"].(string); ok && strings.HasPrefix(id, policyPrefix) {
			hosts = append(hosts, strings.TrimPrefix(id, policyPrefix))
		}
	}
	return hosts
}

// setPolicy has host's certificate issued by the proxy's own CA (internal)
// or, without the policy, by Caddy's default issuers: Let's Encrypt, then
// ZeroSSL. The proxy runs in a container: its CA's root is not installed
// in the host's trust store.
func (c *config) setPolicy(host string, internal bool) {
	if (c.policy(host) != nil) == internal {
		return
	}
	auto, _ := c.object("apps", "tls", "automation")
	list, _ := auto["policies"].([]any)
	list = slices.DeleteFunc(list, func(p any) bool {
		m, _ := p.(map[string]any)
		return m["@id"] == policyPrefix+host
	})
	if internal {
		list = append(list, map[string]any{
			"@id":      policyPrefix + host,
			"subjects": []any{host},
			"issuers":  []any{map[string]any{"module": "internal"}},
		})
		ca, _ := c.object("apps", "pki", "certificate_authorities", "local")
		if _, ok := ca["install_trust"]; !ok {
			ca["install_trust"] = false
		}
	}
	auto["policies"] = list
}

// redirectID is the @id of the route that sends a TLS route's plain
// HTTP requests to HTTPS: not under the project's prefix, so that it is
// never taken for a service's route.
func redirectID(id string) string { return "redirect." + id }

func newRedirect(r Route) route {
	return route{
		"@id":   redirectID(r.ID),
		"match": []any{match(r)},
		"handle": []any{map[string]any{
			"handler":     "static_response",
			"status_code": 308,
			"headers":     map[string]any{"Location": []any{"https://{http.request.host}{http.request.uri}"}},
		}},
		"terminal": true,
	}
}

func compareBool(a, b bool) int {
	switch {
	case a == b:
		return 0
	case a:
		return 1
	}
	return -1
}

// same reports whether the route matches what r asks for: its host and
// path. A nil route matches nothing.
func (rt route) same(r Route) bool {
	if rt == nil {
		return false
	}
	host, path := rt.site()
	return host == r.Host && path == strings.TrimSuffix(r.Path, "/")
}

// site is the route's host and path prefix, as fleet wrote them.
func (r route) site() (host, path string) {
	matches, _ := r["match"].([]any)
	if len(matches) == 0 {
		return "", ""
	}
	m, _ := matches[0].(map[string]any)
	if hosts, _ := m["host"].([]any); len(hosts) > 0 {
		host, _ = hosts[0].(string)
	}
	if paths, _ := m["path"].([]any); len(paths) > 0 {
		path, _ = paths[0].(string)
	}
	return host, path
}

func match(r Route) map[string]any {
	m := map[string]any{"host": []any{r.Host}}
	if p := strings.TrimSuffix(r.Path, "/"); p != "" {
		// /api serves /api and everything under /api/, not /apix.
		m["path"] = []any{p, p + "/*"}
	}
	return m
}

func newRoute(r Route, upstreams []string) route {
	return proxyRoute(r, map[string]any{
		"upstreams": dials(upstreams),
		// A container that stops answering between two changes (it
		// crashed, say) costs a retry on another one, not an error.
		"load_balancing": map[string]any{"try_duration": "5s", "try_interval": "250ms"},
	})
}

// proxyRoute is r's route, handled by a reverse_proxy handler with the
// given settings.
func proxyRoute(r Route, settings map[string]any) route {
	settings["handler"] = "reverse_proxy"
	return route{
		"@id":      r.ID,
		"match":    []any{match(r)},
		"handle":   []any{settings},
		"terminal": true,
	}
}

// dials are upstreams as a reverse_proxy handler lists them.
func dials(upstreams []string) []any {
	ups := make([]any, len(upstreams))
	for i, u := range upstreams {
		ups[i] = map[string]any{"dial": u}
	}
	return ups
}

// durationOf reads a Caddy duration: a Go duration string or nanoseconds.
func durationOf(v any) (time.Duration, bool) {
	switch d := v.(type) {
	case string:
		t, err := time.ParseDuration(d)
		return t, err == nil
	case float64:
		return time.Duration(d), true
	}
	return 0, false
}
