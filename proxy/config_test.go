package proxy

import (
	"encoding/json"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/fleetdeploy/fleet/plan"
)

func decode(t *testing.T, s string) *config {
	t.Helper()
	var raw map[string]any
	if err := json.Unmarshal([]byte(s), &raw); err != nil {
		t.Fatal(err)
	}
	c, err := readConfig(raw)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func sites(c *config) []string {
	var out []string
	for _, r := range c.routes(ServerName) {
		h, p := r.site()
		out = append(out, h+p)
	}
	return out
}

// Routes are tried in order: the longest path of a host name comes first,
// whatever order the services were deployed in, and what fleet does not
// manage is left as it was.
func TestRoutesMostSpecificFirst(t *testing.T) {
	c := decode(t, `{"apps": {"tls": {"keep": "me"}, "http": {"servers": {"other": {"listen": [":8443"]}}}}}`)
	c.setRoute(Route{ID: "fleet.shop.web", Host: "shop.example.com", Path: "/"}, []string{"172.17.0.2:8080"})
	c.setRoute(Route{ID: "fleet.shop.api", Host: "shop.example.com", Path: "/api"}, []string{"172.17.0.3:8080"})
	c.setRoute(Route{ID: "fleet.blog.web", Host: "blog.example.com", Path: "/", DrainTimeout: 45 * time.Second}, []string{"172.17.0.4:80"})
	c.setRoute(Route{ID: "fleet.shop.v2", Host: "shop.example.com", Path: "/api/v2/"}, []string{"172.17.0.5:8080"})
	c.setRoute(Route{ID: "fleet.any.web", Host: "*.example.com", Path: "/"}, []string{"172.17.0.6:80"})
	if got, want := sites(c), []string{"blog.example.com", "shop.example.com/api/v2", "shop.example.com/api", "shop.example.com", "*.example.com"}; !slices.Equal(got, want) {
		t.Errorf("routes in the order %q, want %q", got, want)
	}
	b, _ := json.Marshal(c.raw())
	c2 := decode(t, string(b))
	if got := c2.route("fleet.shop.api").upstreams(); !slices.Equal(got, []string{"172.17.0.3:8080"}) {
		t.Errorf("upstreams read back: %q", got)
	}
	apps := c2.root["apps"].(map[string]any)
	if apps["tls"].(map[string]any)["keep"] != "me" || apps["http"].(map[string]any)["servers"].(map[string]any)["other"] == nil {
		t.Errorf("what fleet does not manage was changed: %s", b)
	}
	if g := apps["http"].(map[string]any)["grace_period"]; g != "45s" {
		t.Errorf("grace_period %v, want the longest drain_timeout, 45s", g)
	}
	match := c2.route("fleet.shop.api")["match"].([]any)[0].(map[string]any)
	if paths := match["path"].([]any); len(paths) != 2 || paths[0] != "/api" || paths[1] != "/api/*" {
		t.Errorf("/api matches %v, want /api and everything under /api/", paths)
	}

	// A route left with no upstream goes.
	c2.setRoute(Route{ID: "fleet.shop.api", Host: "shop.example.com", Path: "/api"}, nil)
	if c2.route("fleet.shop.api") != nil || len(c2.routes(ServerName)) != 4 {
		t.Errorf("a route with no upstream left stays: %q", sites(c2))
	}
}

// A configuration that fleet cannot read as it expects is refused, not
// overwritten.
func TestConfigNotAsExpected(t *testing.T) {
	var raw map[string]any
	json.Unmarshal([]byte(`{"apps": {"http": {"servers": []}}}`), &raw)
	if _, err := readConfig(raw); err == nil {
		t.Error("servers as a list was accepted")
	}
}

// A route with TLS is served on the HTTPS server, and the plain one
// redirects its requests there; tls: internal has the proxy's own CA issue
// the host name's certificate. Taken back to plain HTTP, nothing of it is
// left: no redirect, no policy, no HTTPS server.
func TestRouteWithTLS(t *testing.T) {
	c := decode(t, `{"apps": {"tls": {"automation": {"policies": [{"subjects": ["other.example.com"]}]}}}}`)
	web := Route{ID: "fleet.shop.web", Host: "shop.example.com", Path: "/", TLS: plan.TLSInternal}
	c.setRoute(web, []string{"172.17.0.2:8080"})
	c.setRoute(Route{ID: "fleet.shop.api", Host: "shop.example.com", Path: "/api", TLS: plan.TLSInternal}, []string{"172.17.0.3:8080"})
	c.setRoute(Route{ID: "fleet.blog.web", Host: "blog.example.com", Path: "/", TLS: plan.TLSPublic}, []string{"172.17.0.4:80"})
	c.setRoute(Route{ID: "fleet.wiki.web", Host: "wiki.example.com", Path: "/"}, []string{"172.17.0.5:80"})
	b, _ := json.Marshal(c.raw())
	c = decode(t, string(b))

	for id, want := range map[string]plan.TLS{"fleet.shop.web": plan.TLSInternal, "fleet.shop.api": plan.TLSInternal, "fleet.blog.web": plan.TLSPublic, "fleet.wiki.web": plan.TLSOff} {
		if r, tls := c.routeAndTLS(id); r == nil || tls != want {
			t.Errorf("%s: route %v served with %q, want %q", id, r != nil, tls, want)
		}
	}
	var plain []string
	for _, r := range c.routes(ServerName) {
		h, p := r.site()
		plain = append(plain, fmt.Sprint(r["@id"], " ", h, p))
	}
	if want := []string{"redirect.fleet.blog.web blog.example.com", "redirect.fleet.shop.api shop.example.com/api", "redirect.fleet.shop.web shop.example.com", "fleet.wiki.web wiki.example.com"}; !slices.Equal(plain, want) {
		t.Errorf("plain HTTP server routes %q, want %q", plain, want)
	}
	redirect := c.route("redirect.fleet.shop.web")["handle"].([]any)[0].(map[string]any)
	if redirect["status_code"] != 308.0 || redirect["headers"].(map[string]any)["Location"].([]any)[0] != "https://{http.request.host}{http.request.uri}" {
		t.Errorf("redirect: %v", redirect)
	}
	if listen := c.server(TLSServerName)["listen"].([]any); len(listen) != 1 || listen[0] != ":443" {
		t.Errorf("HTTPS server listens on %v", listen)
	}
	if hosts := c.policyHosts(); !slices.Equal(hosts, []string{"shop.example.com"}) {
		t.Errorf("internal CA policies for %q, want shop.example.com alone", hosts)
	}
	if ca := c.lookup("apps", "pki", "certificate_authorities", "local"); ca["install_trust"] != false {
		t.Errorf("the internal CA would install its root in the container's trust store: %v", ca)
	}

	// Back to plain HTTP, one at a time.
	web.TLS = plan.TLSOff
	c.setRoute(web, []string{"172.17.0.2:8080"})
	c.setRoute(Route{ID: "fleet.shop.api", Host: "shop.example.com", Path: "/api"}, nil)
	if hosts := c.policyHosts(); len(hosts) != 0 {
		t.Errorf("policies left for %q, which no route serves with TLS", hosts)
	}
	c.setRoute(Route{ID: "fleet.blog.web", Host: "blog.example.com", Path: "/"}, []string{"172.17.0.4:80"})
	if c.lookup("apps", "http", "servers", TLSServerName) != nil {
		t.Error("the HTTPS server stays with no route")
	}
	if r, tls := c.routeAndTLS("fleet.shop.web"); r == nil || tls != plan.TLSOff || c.route("redirect.fleet.shop.web") != nil {
		t.Errorf("shop.example.com back to plain HTTP: route %v, %q, redirect left %v", r != nil, tls, c.route("redirect.fleet.shop.web") != nil)
	}
	if list := c.lookup("apps", "tls", "automation")["policies"].([]any); len(list) != 1 {
		t.Errorf("the policy fleet did not write was changed: %v", list)
	}
}

func TestRouteSame(t *testing.T) {
	c := decode(t, `{}`)
	r := Route{ID: "fleet.p.s", Host: "a.example.com", Path: "/x/"}
	c.setRoute(r, []string{"10.0.0.1:80"})
	if !c.route(r.ID).same(r) {
		t.Error("a route is not the same as the one it was made from")
	}
	r.Path = "/y"
	if c.route(r.ID).same(r) {
		t.Error("a route with another path is the same")
	}
	if route(nil).same(r) {
		t.Error("no route is the same as one")
	}
}

func TestVersionAtLeast(t *testing.T) {
	for _, tc := range []struct {
		answer string
		ok     bool
	}{
		{"v2.11.9 h1:bhZtcRKQOq0fuLvEgCdPYvUxXyGn9kzjG4lh2332DTE=", true},
		{"v2.11.2", true},
		{"v2.12.0", true},
		{"v3.0.0", true},
		{"v2.11.1 h1:x", false},
		{"2.6.2", false},
		{"v2.10.12", false},
	} {
		m := versionRE.FindStringSubmatch(tc.answer)
		if m == nil || atLeast(m[1:], MinVersion) != tc.ok {
			t.Errorf("%q at least %s: want %v", tc.answer, MinVersion, tc.ok)
		}
	}
}
