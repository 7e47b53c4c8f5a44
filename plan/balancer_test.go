package plan

import (
	"slices"
	"strings"
	"testing"

	"github.com/fleetdeploy/fleet/inventory"
)

const lbInventory = `
hosts:
  h1: {address: 10.0.0.1}
  h2: {address: 10.0.0.2}
  h3: {address: 10.0.0.3}
  lb1: {address: 10.0.0.9, lb: true}
`

const lbProject = `
project: shop
services:
  web:
    image: hello:2
    proxy: {host: shop.example.com, port: 8080, tls: internal}
    healthcheck: {http: /up}
  worker:
    image: hello:2
`

// lbFixture is the project converged on h1-h3 behind lb1, whose route
// sends to h1-h3.
func lbFixture(t *testing.T, project string) *fixture {
	t.Helper()
	inv, err := inventory.Parse("inventory.yaml", []byte(lbInventory), inventory.Options{SSHConfig: "none"})
	if err != nil {
		t.Fatal(err)
	}
	p, err := ParseProject("fleet.yaml", []byte(project), inv)
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{inv: inv, project: p, live: Live{Hosts: map[string]*LiveHost{}, Unreachable: map[string]string{}}}
	for _, h := range inv.Hosts {
		f.live.Hosts[h.Name] = &LiveHost{MemAvailable: 4 << 30, CPUs: 2, Images: map[string]string{}, Routes: map[string]LiveRoute{}}
	}
	f.converge(t)
	for i, h := range []string{"h1", "h2", "h3"} {
		c := f.container(h, "web")
		c.Addresses = []string{"172.17.0." + string(rune('2'+i))}
		f.live.Hosts[h].Routes["web"] = LiveRoute{Host: "shop.example.com", Upstreams: []string{c.Addresses[0] + ":8080"}}
	}
	f.live.Hosts["lb1"].Routes["web"] = LiveRoute{Host: "shop.example.com", TLS: TLSInternal,
		Upstreams: []string{"10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80"}}
	return f
}

func TestLoadBalancerRunsNoProxiedInstance(t *testing.T) {
	f := lbFixture(t, lbProject)
	var web, worker []string
	for _, h := range f.project.Service("web").SelectedHosts(f.inv) {
		web = append(web, h.Name)
	}
	for _, h := range f.project.Service("worker").SelectedHosts(f.inv) {
		worker = append(worker, h.Name)
	}
	if !slices.Equal(web, []string{"h1", "h2", "h3"}) || !slices.Equal(worker, []string{"h1", "h2", "h3", "lb1"}) {
		t.Errorf("selected: web %v, worker %v; want the load balancer left out of web only", web, worker)
	}
	// A selector that names the load balancer for a proxied service is
	// refused, with the line.
	_, err := ParseProject("fleet.yaml", []byte(strings.Replace(lbProject, "    image: hello:2\n    proxy", "    image: hello:2\n    hosts: [h1, lb1]\n    proxy", 1)), f.inv)
	if err == nil || !strings.Contains(err.Error(), `fleet.yaml:6:12: service web.hosts: "h1,lb1" selects lb1, a load balancer (lb: true)`) {
		t.Errorf("a proxied service on a load balancer: %v", err)
	}
}

func TestLoadBalancerRoutes(t *testing.T) {
	f := lbFixture(t, lbProject)
	p := f.plan(false)
	// Converged: the hosts serve plain HTTP (their routes have no TLS),
	// the load balancer serves tls: internal.
	if p.Changes() || !p.Balanced || len(p.Balancers) != 1 || p.Balancers[0].Reason != "" {
		t.Fatalf("converged behind a load balancer: changes %v, balancers %+v\n%s", p.Changes(), p.Balancers, rendered(t, p))
	}

	for _, c := range []struct {
		name   string
		change func(f *fixture)
		hosts  []string
		reason string
	}{
		{"route missing", func(f *fixture) { delete(f.live.Hosts["lb1"].Routes, "web") },
			[]string{"h1", "h2", "h3"}, "route missing: sends to h1, h2, h3"},
		{"a host left out by hand", func(f *fixture) {
			f.live.Hosts["lb1"].Routes["web"] = LiveRoute{Host: "shop.example.com", TLS: TLSInternal, Upstreams: []string{"10.0.0.1:80", "10.0.0.2:80"}}
		}, []string{"h1", "h2", "h3"}, "h3 joins once its instance serves"},
		{"an unreachable host keeps its place", func(f *fixture) {
			delete(f.live.Hosts, "h2")
			f.live.Unreachable["h2"] = "no answer"
		}, []string{"h1", "h2", "h3"}, ""},
		{"served without TLS", func(f *fixture) {
			r := f.live.Hosts["lb1"].Routes["web"]
			r.TLS = TLSOff
			f.live.Hosts["lb1"].Routes["web"] = r
		}, []string{"h1", "h2", "h3"}, "serves http://shop.example.com/, not https://shop.example.com/ (tls: internal)"},
		{"an address that is no host's is kept", func(f *fixture) {
			r := f.live.Hosts["lb1"].Routes["web"]
			r.Upstreams = append(r.Upstreams, "192.0.2.7:80")
			f.live.Hosts["lb1"].Routes["web"] = r
		}, []string{"192.0.2.7:80", "h1", "h2", "h3"}, ""},
	} {
		f := lbFixture(t, lbProject)
		c.change(f)
		p := f.plan(false)
		if len(p.Balancers) != 1 {
			t.Errorf("%s: balancers %+v", c.name, p.Balancers)
			continue
		}
		b := p.Balancers[0]
		if !slices.Equal(b.Hosts, c.hosts) || b.Reason != c.reason || p.Changes() != (c.reason != "") {
			t.Errorf("%s: %v %q (changes %v), want %v %q", c.name, b.Hosts, b.Reason, p.Changes(), c.hosts, c.reason)
		}
	}

	// Scaling in to two hosts: h3 leaves the route before its instance
	// goes, and the plan says so.
	f = lbFixture(t, lbProject)
	scaled, err := ParseProject("fleet.yaml", []byte(strings.Replace(lbProject, "    image: hello:2\n    proxy", "    image: hello:2\n    hosts: [h1, h2]\n    proxy", 1)), f.inv)
	if err != nil {
		t.Fatal(err)
	}
	f.project = scaled
	p = f.plan(false)
	out := rendered(t, p)
	for _, want := range []string{"load balancers\n  ~   lb1          web → h1, h2: h3 leaves before its last instance goes\n",
		"Plan: 1 to remove, 1 load-balancer route to change, 6 unchanged."} {
		if !strings.Contains(out, want) {
			t.Errorf("scaling in: the plan lacks %q:\n%s", want, out)
		}
	}

	// A host's route served with TLS is drift behind a load balancer:
	// TLS is the load balancer's.
	f = lbFixture(t, lbProject)
	f.live.Hosts["h1"].Routes["web"] = LiveRoute{Host: "shop.example.com", TLS: TLSInternal, Upstreams: f.live.Hosts["h1"].Routes["web"].Upstreams}
	for _, sp := range f.plan(false).Services {
		for _, a := range sp.Actions {
			if a.Kind != Unchanged && (a.Host != "h1" || !slices.Equal(a.Reasons, []string{"its route serves https://shop.example.com/ (tls: internal), not http://shop.example.com/"})) {
				t.Errorf("%s %s: %s %q", sp.Name, a.Host, a.Kind, a.Reasons)
			}
		}
	}
}

func TestBalanceCheckPath(t *testing.T) {
	for _, c := range []struct {
		path, health, want string
	}{
		{"/", "/up", "/up"},
		{"/api", "/api/up", "/api/up"},
		{"/api", "/up", ""}, // not served by the route
		{"/api", "", ""},
	} {
		s := &Service{Proxy: &Proxy{Path: c.path}}
		if c.health != "" {
			s.Healthcheck = &Healthcheck{HTTP: c.health}
		}
		if got := BalanceCheckPath(s); got != c.want {
			t.Errorf("path %s, health %q: %q, want %q", c.path, c.health, got, c.want)
		}
	}
}

// A host reached as another user than root, without sudo, cannot have
// its proxy driven: the plan says so before apply tries.
func TestProxyNeedsRootLogin(t *testing.T) {
	inv, err := inventory.Parse("inventory.yaml", []byte("defaults: {user: deploy}\nhosts:\n  h1: {}\n  h2: {user: root}\n  h3: {sudo: true}\n"), inventory.Options{SSHConfig: "none"})
	if err != nil {
		t.Fatal(err)
	}
	p, err := ParseProject("fleet.yaml", []byte("project: shop\nservices:\n  web:\n    image: hello:2\n    proxy: {host: shop.example.com, port: 8080}\n"), inv)
	if err != nil {
		t.Fatal(err)
	}
	live := Live{Hosts: map[string]*LiveHost{}}
	for _, h := range inv.Hosts {
		live.Hosts[h.Name] = &LiveHost{MemAvailable: 4 << 30, CPUs: 2, Images: map[string]string{}}
	}
	plan := Compute(Input{Project: p, Inventory: inv, Scope: inv.Hosts, Live: live})
	want := []string{"h1: fleet logs in as another user than root there, without sudo, and the proxy's admin socket and files are root's: its route cannot be changed (set sudo: true for the host, or log in as root)"}
	if !slices.Equal(plan.Services[0].Warnings, want) {
		t.Errorf("warnings %q, want %q", plan.Services[0].Warnings, want)
	}
	// Said once, however many instances are unchanged.
	for slot, h := range []string{"h2", "h3"} {
		live.Hosts[h].Containers = append(live.Hosts[h].Containers, converged(t, p, "web", h, slot+2, 1))
	}
	plan = Compute(Input{Project: p, Inventory: inv, Scope: inv.Hosts, Live: live})
	if !slices.Equal(plan.Services[0].Warnings, want) {
		t.Errorf("with unchanged instances: warnings %q, want %q", plan.Services[0].Warnings, want)
	}
	want = []string{"h1: fleet logs in as another user than root there, without sudo, and the proxy's admin socket and files are root's: its route cannot be changed (set sudo: true for the host, or log in as root)"}
	if !slices.Equal(plan.Services[0].Warnings, want) {
		t.Errorf("warnings %q, want %q", plan.Services[0].Warnings, want)
	}
}
