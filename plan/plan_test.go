package plan

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fleetdeploy/fleet/internal/golden"
	"github.com/fleetdeploy/fleet/inventory"
)

const planInventory = `
hosts:
  h1: {labels: {role: web, zone: a}}
  h2: {labels: {role: web, zone: b}}
  h3: {labels: {role: web, zone: c}}
  db1: {labels: {role: db}}
`

const planProject = `
project: shop
services:
  web:
    image: hello:2
    hosts: role=web
    env: {MODE: fast, COLOR: blue}
    secrets: {TOKEN: env:TOKEN}
    ports: ["8080:8080"]
    resources: {memory: 256M}
  db:
    image: postgres:16
    hosts: db1
    volumes: ["pgdata:/var/lib/postgresql/data"]
volumes:
  pgdata: {}
`

var planSecrets = map[string]map[string]string{"web": {"TOKEN": "s3cret"}}

// converged returns the container fleet would have made for slot of s.
func converged(t *testing.T, p *Project, svc string, host string, slot, rev int) LiveContainer {
	t.Helper()
	s := p.Service(svc)
	tmpl := TemplateOf(s)
	env := map[string]string{"PATH": "/usr/bin"} // the image's own
	for k, v := range s.Env {
		env[k] = v
	}
	for k, v := range planSecrets[svc] {
		env[k] = v
	}
	networks := s.Networks
	if len(networks) == 0 {
		networks = []string{"bridge"}
	}
	replicas := ""
	if s.ReplicasSet {
		replicas = strconv.Itoa(s.Replicas)
	}
	return LiveContainer{
		ID: host + "-" + svc + "-" + strconv.Itoa(slot), Name: "shop-" + svc + "-" + strconv.Itoa(slot),
		Labels: map[string]string{
			LabelProject: "shop", LabelService: svc, LabelSlot: strconv.Itoa(slot), LabelRevision: strconv.Itoa(rev),
			LabelSpec: tmpl.Spec(), LabelTemplate: tmpl.JSON(), LabelReplicas: replicas,
		},
		Image: s.Image, ImageID: "sha256:" + strings.Repeat(s.Image[:1], 64),
		Env: env, Ports: s.Ports, Volumes: s.Volumes, Networks: networks,
		CPUs: s.Resources.CPUs, Memory: s.Resources.Memory, Restart: s.Restart,
		Running: true, Status: "running", Created: time.Unix(int64(slot), 0),
	}
}

type fixture struct {
	inv     *inventory.Inventory
	project *Project
	live    Live
}

func newFixture(t *testing.T, projectText string) *fixture {
	inv, err := inventory.Parse("inventory.yaml", []byte(planInventory), inventory.Options{SSHConfig: "none"})
	if err != nil {
		t.Fatal(err)
	}
	p, err := ParseProject("fleet.yaml", []byte(projectText), inv)
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{inv: inv, project: p, live: Live{Hosts: map[string]*LiveHost{}, Unreachable: map[string]string{}}}
	for _, h := range inv.Hosts {
		f.live.Hosts[h.Name] = &LiveHost{MemAvailable: 4 << 30, CPUs: 2, Images: map[string]string{}}
	}
	return f
}

// converge makes every host run what the project asks.
func (f *fixture) converge(t *testing.T) {
	slots := map[string]int{}
	for _, s := range f.project.Services {
		for _, h := range s.SelectedHosts(f.inv) {
			if s.ReplicasSet && slots[s.Name] == s.Replicas {
				break
			}
			slots[s.Name]++
			c := converged(t, f.project, s.Name, h.Name, slots[s.Name], 1)
			lh := f.live.Hosts[h.Name]
			lh.Containers = append(lh.Containers, c)
			lh.Images[c.Image] = c.ImageID
		}
	}
}

func (f *fixture) plan(reschedule bool) *Plan {
	return Compute(Input{Project: f.project, Inventory: f.inv, Scope: f.inv.Hosts, Live: f.live, Secrets: planSecrets, Reschedule: reschedule})
}

func (f *fixture) container(host, svc string) *LiveContainer {
	for i, c := range f.live.Hosts[host].Containers {
		if c.Labels[LabelService] == svc {
			return &f.live.Hosts[host].Containers[i]
		}
	}
	return nil
}

func rendered(t *testing.T, p *Plan) string {
	var b bytes.Buffer
	if err := p.Render(&b, Style{}, false); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func TestPlanCases(t *testing.T) {
	for _, c := range []struct {
		name    string
		project string // fleet.yaml after setup, when it changes
		setup   func(f *fixture)
		resched bool
	}{
		{name: "fresh", setup: func(f *fixture) {}},
		{name: "converged", setup: func(f *fixture) { f.converge(t) }},
		{name: "image-and-env-change", project: strings.Replace(strings.Replace(planProject, "hello:2", "hello:3", 1), "COLOR: blue", "COLOR: red, SIZE: xl", 1),
			setup: func(f *fixture) {
				f.converge(t)
			}},
		{name: "secret-change", setup: func(f *fixture) {
			f.converge(t)
			// The secret's source changed since h2's container was made;
			// the spec, which holds no secret, did not.
			f.container("h2", "web").Env["TOKEN"] = "old"
		}},
		{name: "drift", setup: func(f *fixture) {
			f.converge(t)
			f.container("h1", "web").Running = false
			f.container("h1", "web").Status = "exited"
			f.container("h1", "web").ExitCode = 137
			f.container("h2", "web").Ports = []Port{{Host: 9090, Container: 8080, Proto: "tcp"}}
			f.container("h3", "web").Env["MODE"] = "slow"
			lh := f.live.Hosts["db1"]
			lh.Containers = nil // removed by hand
		}},
		{name: "resources-in-place", setup: func(f *fixture) {
			f.converge(t)
			f.container("h3", "web").Memory = 1 << 30
			f.container("h3", "web").Restart = Restart{Policy: "no"}
		}},
		{name: "limit-added", project: strings.Replace(planProject, "memory: 256M", "memory: 256M, cpus: 0.5", 1),
			setup: func(f *fixture) { f.converge(t) }},
		{name: "in-place-and-replaced", project: strings.Replace(planProject, "memory: 256M", "memory: 512M", 1),
			setup: func(f *fixture) {
				// h1's tag now names another image: it is replaced; the
				// others change their limit in place.
				f.converge(t)
				f.live.Hosts["h1"].Images["hello:2"] = "sha256:" + strings.Repeat("9", 64)
			}},
		{name: "limit-lifted", project: strings.Replace(planProject, "    resources: {memory: 256M}\n", "", 1),
			setup: func(f *fixture) { f.converge(t) }},
		{name: "retagged-image", setup: func(f *fixture) {
			f.converge(t)
			f.live.Hosts["h1"].Images["hello:2"] = "sha256:" + strings.Repeat("9", 64)
		}},
		{name: "extra-and-stale", setup: func(f *fixture) {
			f.converge(t)
			extra := converged(t, f.project, "web", "h1", 7, 1)
			extra.ID = "h1-web-extra"
			f.live.Hosts["h1"].Containers = append(f.live.Hosts["h1"].Containers, extra)
			other := converged(t, f.project, "web", "db1", 9, 1) // on a host web no longer selects
			f.live.Hosts["db1"].Containers = append(f.live.Hosts["db1"].Containers, other)
		}},
		{name: "scale-up", project: strings.Replace(planProject, "hosts: role=web", "hosts: role=web\n    replicas: 3", 1),
			setup: func(f *fixture) {
				f.project, _ = ParseProject("fleet.yaml", []byte(strings.Replace(planProject, "hosts: role=web", "hosts: role=web\n    replicas: 2", 1)), f.inv)
				f.converge(t)
			}},
		{name: "replica-removed-by-hand", project: strings.Replace(planProject, "hosts: role=web", "hosts: role=web\n    replicas: 2", 1),
			setup: func(f *fixture) {
				changed, _ := ParseProject("fleet.yaml", []byte(strings.Replace(planProject, "hosts: role=web", "hosts: role=web\n    replicas: 2", 1)), f.inv)
				f.project = changed
				f.converge(t)
				f.live.Hosts["h1"].Containers = nil
			}},
		{name: "pull-never-image-missing", project: strings.Replace(planProject, "image: hello:2", "image: hello:3\n    pull: never", 1),
			setup: func(f *fixture) {
				f.converge(t)
				f.live.Hosts["h2"].Images["hello:3"] = "sha256:" + strings.Repeat("3", 64)
			}},
		{name: "unreachable-rescheduled", resched: true, setup: func(f *fixture) {
			f.project, _ = ParseProject("fleet.yaml", []byte(strings.Replace(planProject, "hosts: role=web", "hosts: role=web\n    replicas: 2", 1)), f.inv)
			f.converge(t)
			delete(f.live.Hosts, "h2")
			f.live.Unreachable["h2"] = "dial tcp 203.0.113.11:22: i/o timeout"
		}},
		{name: "failed-attempts-recorded", project: strings.Replace(planProject, "image: hello:2", "image: hello:3", 1),
			setup: func(f *fixture) {
				// Revisions 2 and 3 failed and left no container; h2's
				// history holds them.
				f.converge(t)
				f.live.Hosts["h2"].Recorded = map[string]Recorded{"web": {Revision: 3, Outcome: "rolled back"}}
			}},
		{name: "rolled-back", setup: func(f *fixture) {
			// web runs revision 3, made by fleet rollback from revision 2
			// back to 1; fleet.yaml still asks for revision 2's hello:3.
			f.project, _ = ParseProject("fleet.yaml", []byte(strings.Replace(planProject, "image: hello:2", "image: hello:3", 1)), f.inv)
			spec := f.plan(false).Services[0].Spec
			f.project, _ = ParseProject("fleet.yaml", []byte(planProject), f.inv)
			f.converge(t)
			for _, h := range []string{"h1", "h2", "h3"} {
				f.container(h, "web").Labels[LabelRevision] = "3"
				f.live.Hosts[h].Recorded = map[string]Recorded{"web": {Revision: 3, Outcome: "deployed", Who: "ops@laptop",
					When: time.Date(2026, 11, 30, 9, 15, 0, 0, time.UTC), Rollback: &RollbackOf{To: 1, From: 2, FromSpec: spec}}}
			}
			f.project, _ = ParseProject("fleet.yaml", []byte(strings.Replace(planProject, "image: hello:2", "image: hello:3", 1)), f.inv)
		}},
		{name: "unreachable", setup: func(f *fixture) {
			f.converge(t)
			delete(f.live.Hosts, "h3")
			f.live.Unreachable["h3"] = "dial tcp 203.0.113.12:22: i/o timeout"
			f.container("h1", "web").Labels[LabelSpec] = "0000"
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := newFixture(t, planProject)
			c.setup(f)
			if c.project != "" {
				changed, err := ParseProject("fleet.yaml", []byte(c.project), f.inv)
				if err != nil {
					t.Fatal(err)
				}
				f.project = changed
			}
			p := f.plan(c.resched)
			out := rendered(t, p)
			if strings.Contains(out, "s3cret") {
				t.Error("the plan shows a secret's value")
			}
			js, _ := json.Marshal(p)
			if strings.Contains(string(js), "s3cret") {
				t.Error("the JSON plan holds a secret's value")
			}
			golden.Check(t, "testdata/plans/"+c.name+".golden", out)
		})
	}
}

func TestPlanConvergedIsStable(t *testing.T) {
	f := newFixture(t, planProject)
	f.converge(t)
	p := f.plan(false)
	if p.Changes() {
		t.Errorf("a converged fleet plans changes:\n%s", rendered(t, p))
	}
	if p.Summary.Unchanged != 4 {
		t.Errorf("unchanged = %d, want 4", p.Summary.Unchanged)
	}
	for _, sp := range p.Services {
		if sp.NewRevision || sp.Revision != 1 {
			t.Errorf("%s: revision %d new=%v, want 1 as it is", sp.Name, sp.Revision, sp.NewRevision)
		}
	}
}

func TestPlanFingerprintsChangeWithState(t *testing.T) {
	f := newFixture(t, planProject)
	f.converge(t)
	before := f.plan(false).Fingerprints
	f.container("h2", "web").Running = false
	after := f.plan(false).Fingerprints
	if before["h2"] == after["h2"] || before["h1"] != after["h1"] {
		t.Errorf("fingerprints before %v after %v", before, after)
	}
}

// TestPullNeverWarns flags the hosts that are to get a new container of a
// pull: never service without having its image, in the plan's JSON too.
func TestPullNeverWarns(t *testing.T) {
	for _, c := range []struct {
		name, image string
		onHosts     map[string]string // host → tag present there
		want        string            // the warning, "" for none
	}{
		{name: "missing on two hosts", image: "hello:3", onHosts: map[string]string{"h2": "hello:3"},
			want: "image hello:3 is not on h1, h3 and pull is never"},
		{name: "present everywhere", image: "hello:3", onHosts: map[string]string{"h1": "hello:3", "h2": "hello:3", "h3": "hello:3"}},
		{name: "Docker Hub's long name", image: "docker.io/library/hello:3", onHosts: map[string]string{"h1": "hello:3", "h2": "hello:3"},
			want: "image docker.io/library/hello:3 is not on h3 and"},
		{name: "by digest: left to apply", image: "hello@sha256:" + strings.Repeat("a", 64)},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := newFixture(t, planProject)
			f.converge(t)
			for host, tag := range c.onHosts {
				f.live.Hosts[host].Images[tag] = "sha256:" + strings.Repeat("3", 64)
			}
			changed, err := ParseProject("fleet.yaml", []byte(strings.Replace(planProject, "image: hello:2", "image: "+c.image+"\n    pull: never", 1)), f.inv)
			if err != nil {
				t.Fatal(err)
			}
			f.project = changed
			p := f.plan(false)
			js, _ := json.Marshal(p.Services[0])
			if c.want == "" {
				if len(p.Services[0].Warnings) > 0 {
					t.Errorf("warnings %q, want none", p.Services[0].Warnings)
				}
				return
			}
			if len(p.Services[0].Warnings) != 1 || !strings.Contains(p.Services[0].Warnings[0], c.want) {
				t.Errorf("warnings %q, want one with %q", p.Services[0].Warnings, c.want)
			}
			if !strings.Contains(string(js), `"warnings":["`+c.want) {
				t.Errorf("the JSON plan lacks the warning: %s", js)
			}
		})
	}
}

// TestPullNeverStartNeedsNoImage: starting a stopped container needs no
// image, so nothing is flagged.
func TestPullNeverStartNeedsNoImage(t *testing.T) {
	f := newFixture(t, strings.Replace(planProject, "image: hello:2", "image: hello:2\n    pull: never", 1))
	f.converge(t)
	delete(f.live.Hosts["h1"].Images, "hello:2")
	f.container("h1", "web").Running, f.container("h1", "web").Status = false, "exited"
	p := f.plan(false)
	if p.Summary.Start != 1 || len(p.Services[0].Warnings) > 0 {
		t.Errorf("start %d, warnings %q", p.Summary.Start, p.Services[0].Warnings)
	}
}

// TestNothingDerivedFromASecret: the plan of a fleet, printed or as JSON,
// is the same whatever a secret's value, so nothing in it (nor the spec
// label it gives the containers) can be brute-forced back to the secret.
func TestNothingDerivedFromASecret(t *testing.T) {
	outputs := map[string]bool{}
	for _, value := range []string{"s3cret", "hunter2"} {
		f := newFixture(t, planProject)
		p := Compute(Input{Project: f.project, Inventory: f.inv, Scope: f.inv.Hosts, Live: f.live,
			Secrets: map[string]map[string]string{"web": {"TOKEN": value}}})
		js, err := json.Marshal(p)
		if err != nil {
			t.Fatal(err)
		}
		outputs[rendered(t, p)+string(js)] = true
	}
	if len(outputs) != 1 {
		t.Error("the plan differs with the secret's value: something in it is derived from the secret")
	}
}

// TestLegacySpecLabels: containers made by an earlier fleet, whose spec
// label also hashed the secrets' values, count as made from the same
// spec: no replacement, no new revision.
func TestLegacySpecLabels(t *testing.T) {
	f := newFixture(t, planProject)
	f.converge(t)
	for _, h := range []string{"h1", "h2", "h3"} {
		c := f.container(h, "web")
		c.Labels[LabelSpec] = TemplateOf(f.project.Service("web")).legacySpec(planSecrets["web"])
	}
	p := f.plan(false)
	if p.Changes() {
		t.Errorf("containers with the legacy spec label are changed:\n%s", rendered(t, p))
	}
	for _, sp := range p.Services {
		if sp.NewRevision {
			t.Errorf("service %s: a new revision for containers with the legacy spec label", sp.Name)
		}
	}
}

// TestPlanJSONInPlace: an update in place carries, in the plan's JSON, the
// limits and restart policy the container has before it, which a rollback
// puts back; the service plan says what it gets.
func TestPlanJSONInPlace(t *testing.T) {
	f := newFixture(t, planProject)
	f.converge(t)
	f.container("h3", "web").Memory = 1 << 30
	f.container("h3", "web").Restart = Restart{Policy: "on-failure", MaxRetries: 3}
	p := f.plan(false)
	var acts []*Action
	for _, a := range p.Services[0].Actions {
		if a.Kind != Unchanged {
			acts = append(acts, a)
		}
	}
	js, err := json.MarshalIndent(struct {
		Resources Resources `json:"resources"`
		Restart   Restart   `json:"restart"`
		Actions   []*Action `json:"actions"`
	}{p.Services[0].Resources, p.Services[0].Restart, acts}, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	golden.Check(t, "testdata/plans/resources-in-place.json.golden", string(js)+"\n")
	var back Plan
	all, _ := json.Marshal(p)
	if err := json.Unmarshal(all, &back); err != nil {
		t.Fatal(err)
	}
	for _, a := range back.Services[0].Actions {
		if a.Kind == Update && (a.Before == nil || a.Before.Resources.Memory != 1<<30 || a.Before.Restart.String() != "on-failure:3") {
			t.Errorf("a saved plan's update in place holds before = %+v, want memory 1G, restart on-failure:3", a.Before)
		}
	}
}

// A proxied instance that runs but is not in its route serves nothing: it
// is drift, repaired in place. A host whose routes were not read says
// nothing either way.
func TestProxiedInstanceOutOfItsRoute(t *testing.T) {
	f := newFixture(t, strings.Replace(planProject, `    ports: ["8080:8080"]`, `    proxy: {host: shop.example.com, port: 8080}`, 1))
	f.converge(t)
	for i, h := range []string{"h1", "h2", "h3"} {
		c := f.container(h, "web")
		c.Addresses = []string{fmt.Sprintf("172.17.0.%d", i+2)}
	}
	f.live.Hosts["h1"].Routes = map[string]LiveRoute{"web": {Host: "shop.example.com", Upstreams: []string{"172.17.0.2:8080"}}}
	// h2's container had another address before the host rebooted.
	f.live.Hosts["h2"].Routes = map[string]LiveRoute{"web": {Host: "shop.example.com", Upstreams: []string{"172.17.0.9:8080"}}}
	f.live.Hosts["h3"].Routes = nil // not read
	p := f.plan(false)
	var drifted []string
	for _, sp := range p.Services {
		for _, a := range sp.Actions {
			if a.Kind != Unchanged {
				drifted = append(drifted, fmt.Sprintf("%s %s/%d %v drift=%v", a.Kind, a.Host, a.Slot, a.Reasons, a.Drift))
			}
		}
	}
	if want := []string{"update h2/2 [not in its route on the host's proxy] drift=true"}; !slices.Equal(drifted, want) {
		t.Errorf("plan: %q, want %q", drifted, want)
	}

	// A route changed by hand to another path.
	f.live.Hosts["h2"].Routes = nil
	f.live.Hosts["h1"].Routes["web"] = LiveRoute{Host: "shop.example.com", Path: "/old", Upstreams: []string{"172.17.0.2:8080"}}
	for _, sp := range f.plan(false).Services {
		for _, a := range sp.Actions {
			if a.Host == "h1" && sp.Name == "web" && (a.Kind != Update || !slices.Equal(a.Reasons, []string{"its route serves http://shop.example.com/old, not http://shop.example.com/"})) {
				t.Errorf("a route on another path: %s %q", a.Kind, a.Reasons)
			}
		}
	}

	// A route served with the proxy's own CA where fleet.yaml asks plain HTTP.
	f.live.Hosts["h1"].Routes["web"] = LiveRoute{Host: "shop.example.com", TLS: TLSInternal, Upstreams: []string{"172.17.0.2:8080"}}
	for _, sp := range f.plan(false).Services {
		for _, a := range sp.Actions {
			if a.Host == "h1" && sp.Name == "web" && (a.Kind != Update || !slices.Equal(a.Reasons, []string{"its route serves https://shop.example.com/ (tls: internal), not http://shop.example.com/"})) {
				t.Errorf("a route with TLS: %s %q", a.Kind, a.Reasons)
			}
		}
	}
}

// A plan says on which hosts the proxy is made before the first step, and
// where it runs another image than proxy_image.
func TestPlanSaysWhereTheProxyIsMade(t *testing.T) {
	f := newFixture(t, strings.Replace(planProject, `    ports: ["8080:8080"]`, `    proxy: {host: shop.example.com, port: 8080}`, 1))
	f.live.Hosts["h1"].Proxy, f.live.Hosts["h1"].ProxyImage = ProxyRunning, "caddy:2.10"
	f.live.Hosts["h2"].Proxy = ProxyAbsent // h3's was not read
	p := f.plan(false)
	for _, sp := range p.Services {
		want := []string{"the proxy is made (or started) first on h2: a container fleet-proxy (caddy:2) on the host's network, serving port 80"}
		if sp.Name == "db" {
			want = nil
		}
		if !slices.Equal(sp.Notes, want) {
			t.Errorf("%s: notes %q, want %q", sp.Name, sp.Notes, want)
		}
	}
	// h1's proxy is upgraded first: a change of its own, even with every
	// instance as desired.
	if want := []ProxyUpgrade{{Host: "h1", From: "caddy:2.10", To: "caddy:2"}}; !slices.Equal(p.ProxyUpgrades, want) || !p.Changes() {
		t.Errorf("proxy upgrades %v (changes: %v), want %v", p.ProxyUpgrades, p.Changes(), want)
	}
	// h3's proxy serves under its temporary name, an upgrade cut short:
	// it is finished, whatever its image.
	f.live.Hosts["h3"].Proxy, f.live.Hosts["h3"].ProxyImage = ProxyCutShort, "caddy:2"
	p = f.plan(false)
	if want := []ProxyUpgrade{{Host: "h1", From: "caddy:2.10", To: "caddy:2"}, {Host: "h3", From: "caddy:2", To: "caddy:2"}}; !slices.Equal(p.ProxyUpgrades, want) {
		t.Errorf("proxy upgrades %v, want %v", p.ProxyUpgrades, want)
	}
	var b strings.Builder
	p.Render(&b, Style{}, false)
	for _, want := range []string{"~   h1           caddy:2.10 → caddy:2: proxy_image changed", "~   h3           caddy:2: an upgrade cut short is finished", "the proxy to upgrade on 2 hosts"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("the plan does not say %q:\n%s", want, b.String())
		}
	}
}

func TestSizeText(t *testing.T) {
	for n, want := range map[int64]string{0: "0B", 999: "999B", 1000: "1kB", 100_000: "100kB", 1_234_567: "1.23MB", 5_000_000_000: "5GB", 7e15: "7000TB", 999_999_999: "1000MB", 25_550_000: "25.6MB"} {
		if got := SizeText(n); got != want {
			t.Errorf("SizeText(%d) = %q, want %q", n, got, want)
		}
	}
}

// A service with many alike actions shows them as one line with their
// count; the one that differs keeps a line of its own; -v shows them all.
func TestRenderGroupsAlikeActionsOfALargeFleet(t *testing.T) {
	sp := &ServicePlan{Name: "web", Revision: 2, NewRevision: true}
	for i := 1; i <= 60; i++ {
		sp.Actions = append(sp.Actions, &Action{Kind: Replace, Host: fmt.Sprintf("h%02d", i), Slot: i, Reasons: []string{"image a:1 → a:2"}})
	}
	sp.Actions = append(sp.Actions, &Action{Kind: Create, Host: "h61", Slot: 61, Reasons: []string{"container missing"}, Drift: true})
	p := &Plan{Services: []*ServicePlan{sp}}
	var b bytes.Buffer
	if err := p.Render(&b, Style{}, false); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{"-/+ 60 × on h01, h02, h03 and 57 more: image a:1 → a:2\n", " 1 × on h61: container missing (drift)\n", "fleet plan -v"} {
		if !strings.Contains(out, want) {
			t.Errorf("no %q in:\n%s", want, out)
		}
	}
	b.Reset()
	p.Render(&b, Style{}, true)
	if n := strings.Count(b.String(), "slot "); n != 61 {
		t.Errorf("verbose: %d instance lines, want 61:\n%s", n, b.String())
	}
}

func TestDurationText(t *testing.T) {
	for d, want := range map[time.Duration]string{
		2 * time.Minute: "2m", 90 * time.Second: "1m30s", time.Hour: "1h", 90 * time.Minute: "1h30m",
		500 * time.Millisecond: "500ms", 10 * time.Second: "10s",
	} {
		if got := DurationText(d); got != want {
			t.Errorf("DurationText(%s) = %q, want %q", d, got, want)
		}
	}
}

// TestPlanRecordsTheImageItPushes: a service whose image fleet pushes is
// planned against this machine's image, whose ID the plan keeps, so that
// a saved plan can tell it from one built since under the same tag.
func TestPlanRecordsTheImageItPushes(t *testing.T) {
	f := newFixture(t, strings.Replace(planProject, "    image: hello:2\n", "    image: hello:2\n    image_delivery: push\n", 1))
	f.converge(t)
	running := f.container("h1", "web").ImageID
	rebuilt := "sha256:" + strings.Repeat("b", 64)
	for _, id := range []string{running, rebuilt} {
		p := Compute(Input{Project: f.project, Inventory: f.inv, Scope: f.inv.Hosts, Live: f.live, Secrets: planSecrets,
			Pushed: map[string]PushedImage{"hello:2": {ID: id, Bytes: map[string]int64{}}}})
		var web *ServicePlan
		for _, sp := range p.Services {
			if sp.Name == "web" {
				web = sp
			}
		}
		if web == nil || web.PushImage != id {
			t.Fatalf("image %s: the plan of web keeps %+v", id, web)
		}
		replaced := 0
		for _, a := range web.Actions {
			if a.Kind == Replace && strings.Contains(strings.Join(a.Reasons, ";"), "image hello:2 here is bbbbbbbbbbbb") {
				replaced++
			}
		}
		if want := map[bool]int{true: 0, false: 3}[id == running]; replaced != want {
			t.Errorf("image %s: %d instances replaced for it, want %d:\n%s", id, replaced, want, rendered(t, p))
		}
	}
}
