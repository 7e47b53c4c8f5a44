package proxy

import (
	"cmp"
	"fmt"
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

// server is the HTTP server that holds fleet's routes: plain HTTP on the
// proxy's port, Caddy's automatic HTTPS off.
func (c *config) server() map[string]any {
	s, _ := c.object("apps", "http", "servers", ServerName)
	if _, ok := s["listen"]; !ok {
		s["listen"] = []any{":" + strconv.Itoa(plan.ProxyPort)}
	}
	s["automatic_https"] = map[string]any{"disable": true}
	return s
}

type route map[string]any

func (c *config) routes() []route {
	list, _ := c.server()["routes"].([]any)
	var out []route
	for _, r := range list {
		if m, ok := r.(map[string]any); ok {
			out = append(out, route(m))
		}
	}
	return out
}

// route returns the route with the given @id, or nil.
func (c *config) route(id string) route {
	for _, r := range c.routes() {
		if r["@id"] == id {
			return r
		}
	}
	return nil
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

// setRoute makes r's route send to upstreams, or removes it when there
// are none. Routes are kept most specific first, as Caddy tries them in
// order: exact host names before wildcards, then the longest path.
func (c *config) setRoute(r Route, upstreams []string) {
	s := c.server()
	var kept []route
	for _, old := range c.routes() {
		if old["@id"] != r.ID {
			kept = append(kept, old)
		}
	}
	if len(upstreams) > 0 {
		kept = append(kept, newRoute(r, upstreams))
	}
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
	s["routes"] = list
	if r.DrainTimeout > 0 {
		http, _ := c.object("apps", "http")
		if grace, ok := durationOf(http["grace_period"]); !ok || grace < r.DrainTimeout {
			http["grace_period"] = r.DrainTimeout.String()
		}
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

func newRoute(r Route, upstreams []string) route {
	match := map[string]any{"host": []any{r.Host}}
	if p := strings.TrimSuffix(r.Path, "/"); p != "" {
		// /api serves /api and everything under /api/, not /apix.
		match["path"] = []any{p, p + "/*"}
	}
	ups := make([]any, len(upstreams))
	for i, u := range upstreams {
		ups[i] = map[string]any{"dial": u}
	}
	return route{
		"@id":   r.ID,
		"match": []any{match},
		"handle": []any{map[string]any{
			"handler":   "reverse_proxy",
			"upstreams": ups,
			// A container that stops answering between two changes (it
			// crashed, say) costs a retry on another one, not an error.
			"load_balancing": map[string]any{"try_duration": "5s", "try_interval": "250ms"},
		}},
		"terminal": true,
	}
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
