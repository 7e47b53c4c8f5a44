package proxy

import (
	"encoding/json"
	"slices"
	"testing"
	"time"
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
	for _, r := range c.routes() {
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
	if c2.route("fleet.shop.api") != nil || len(c2.routes()) != 4 {
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
