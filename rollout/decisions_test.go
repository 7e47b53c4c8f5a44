package rollout_test

// The tests in this file check the rollout's decisions — steps, health
// gates, failure ratio, pause, continue, rollback, interruptions — on a
// fake fleet in memory (package rollouttest), with real plans computed
// from fleet.yaml and what the fake hosts run. They assert what a user
// would check afterwards: which containers run on each host, what apply
// counted, how the service's rollout ended, and how many instances were
// down at once. The integration tests prove the same on real hosts.

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fleetdeploy/fleet/inventory"
	"github.com/fleetdeploy/fleet/plan"
	"github.com/fleetdeploy/fleet/rollout"
	"github.com/fleetdeploy/fleet/rollout/rollouttest"
)

const inventoryText = `
hosts:
  h1: {labels: {role: web}}
  h2: {labels: {role: web}}
  h3: {labels: {role: web}}
  h4: {labels: {role: web}}
  h5: {labels: {role: web}}
  db1: {labels: {role: db}}
`

var webHosts = []string{"h1", "h2", "h3", "h4", "h5"}

// release is a fleet.yaml of one service, web, on h1 to h5; the zero value
// of each field is a default that keeps the tests fast.
type release struct {
	version     string // of the image hello:VERSION; 1
	behavior    string // how its containers behave (rollouttest.BehaviorEnv)
	memory      string // 256M
	restart     string // unless-stopped
	parallelism string // 1
	order       string
	action      string // failure_action: rollback
	ratio       string // max_failure_ratio
	monitor     string // 0s
	deadline    string // healthy_deadline: 300ms
	ports       bool
	extra       string // more services
}

func (r release) String() string {
	or := func(v, def string) string {
		if v == "" {
			return def
		}
		return v
	}
	update := []string{"parallelism: " + or(r.parallelism, "1"), "monitor: " + or(r.monitor, "0s"),
		"healthy_deadline: " + or(r.deadline, "300ms"), "failure_action: " + or(r.action, "rollback")}
	if r.order != "" {
		update = append(update, "order: "+r.order)
	}
	if r.ratio != "" {
		update = append(update, "max_failure_ratio: "+r.ratio)
	}
	ports := ""
	if r.ports {
		ports = "\n    ports: [\"8080:8080\"]"
	}
	return fmt.Sprintf(`project: shop
services:
  web:
    image: hello:%s
    hosts: role=web
    env: {%s: %q}
    resources: {memory: %s}
    restart: %s%s
    healthcheck: {docker: true, interval: 10ms}
    update: {%s}
%s`, or(r.version, "1"), rollouttest.BehaviorEnv, r.behavior, or(r.memory, "256M"), or(r.restart, "unless-stopped"), ports,
		strings.Join(update, ", "), r.extra)
}

// world is a fake fleet of the inventory's hosts, with hello:1, hello:2,
// db:1 and db:2 in the registry they pull from.
type world struct {
	t   *testing.T
	f   *rollouttest.Fleet
	inv *inventory.Inventory
}

func newWorld(t *testing.T) *world {
	t.Helper()
	t.Parallel()
	inv, err := inventory.Parse("inventory.yaml", []byte(inventoryText), inventory.Options{SSHConfig: "none"})
	if err != nil {
		t.Fatal(err)
	}
	f := rollouttest.New(append(slices.Clone(webHosts), "db1")...)
	f.Publish("hello:1", "hello:2", "db:1", "db:2")
	return &world{t, f, inv}
}

// plan computes the plan of a fleet.yaml from what the fake hosts run.
func (w *world) plan(text string) (*plan.Project, *plan.Plan) {
	w.t.Helper()
	p, err := plan.ParseProject("fleet.yaml", []byte(text), w.inv)
	if err != nil {
		w.t.Fatalf("fleet.yaml: %v\n%s", err, text)
	}
	live := w.f.Read(p.Name).Live(p.Name)
	return p, plan.Compute(plan.Input{Project: p, Inventory: w.inv, Scope: w.inv.Hosts, Live: live})
}

// run is an apply and what it said.
type run struct {
	res    *rollout.Result
	plan   *plan.Plan
	events []rollout.Event
}

// apply plans a fleet.yaml and carries the plan out; on, when set, sees
// each event as it happens.
func (w *world) apply(ctx context.Context, r fmt.Stringer, on func(rollout.Event)) run {
	w.t.Helper()
	project, p := w.plan(r.String())
	var events []rollout.Event
	a := &rollout.Applier{Project: project, Hosts: w.f.Hosts(), Events: func(e rollout.Event) {
		events = append(events, e)
		if on != nil {
			on(e)
		}
	}}
	res, err := a.Apply(ctx, p)
	if err != nil {
		w.t.Fatal(err)
	}
	out := run{res, p, events}
	for _, o := range res.Outcomes {
		// Every instance the plan named is counted once.
		n := 0
		for _, sp := range p.Services {
			if sp.Name == o.Service {
				n = len(sp.Actions)
			}
		}
		if sum := o.Changed + o.Unchanged + o.Failed + o.Undone + o.NotAttempted; sum != n {
			w.t.Errorf("service %s: %s: %d instances counted, the plan has %d", o.Service, counts(o), sum, n)
		}
	}
	return out
}

// deploy applies a release that must go through.
func (w *world) deploy(r fmt.Stringer) {
	w.t.Helper()
	run := w.apply(context.Background(), r, nil)
	if err := run.res.Err(); err != nil {
		w.t.Fatalf("deploying: %v", err)
	}
}

func (r run) outcome(t *testing.T, service string) rollout.Outcome {
	t.Helper()
	for _, o := range r.res.Outcomes {
		if o.Service == service {
			return o
		}
	}
	t.Fatalf("no outcome for service %s", service)
	return rollout.Outcome{}
}

// said reports whether an event said what.
func (r run) said(what string) bool {
	return slices.ContainsFunc(r.events, func(e rollout.Event) bool { return strings.Contains(e.What, what) })
}

func counts(o rollout.Outcome) string {
	return fmt.Sprintf("%d changed, %d unchanged, %d failed, %d undone, %d not attempted", o.Changed, o.Unchanged, o.Failed, o.Undone, o.NotAttempted)
}

// instances says, by host, what the service's instance there is: "r2"
// when its one container runs revision 2; otherwise every container of
// the service on the host with its state.
func (w *world) instances(service string) map[string]string {
	out := map[string]string{}
	for _, h := range append(slices.Clone(webHosts), "db1") {
		var all []string
		running := 0
		for _, c := range w.f.Containers(h) {
			if c.Labels[plan.LabelService] != service {
				continue
			}
			all = append(all, "r"+c.Labels[plan.LabelRevision]+" "+c.Status)
			if c.Running {
				running++
			}
		}
		switch {
		case len(all) == 1 && running == 1:
			out[h] = strings.TrimSuffix(all[0], " running")
		case len(all) > 0:
			out[h] = strings.Join(all, " + ")
		}
	}
	return out
}

// revisions is what instances should say: the revision of each of h1…h5
// in turn.
func revisions(revs ...int) map[string]string {
	out := map[string]string{}
	for i, r := range revs {
		out[webHosts[i]] = "r" + strconv.Itoa(r)
	}
	return out
}

func (w *world) wantInstances(service string, want map[string]string) {
	w.t.Helper()
	if got := w.instances(service); !maps.Equal(got, want) {
		w.t.Errorf("instances of %s:\n got %v\nwant %v", service, got, want)
	}
}

// memory returns the memory limit of each host's running web container.
func (w *world) memory() map[string]int64 {
	out := map[string]int64{}
	for _, h := range webHosts {
		for _, c := range w.f.Containers(h) {
			if c.Running {
				out[h] = c.Memory
			}
		}
	}
	return out
}

func everyHost(v int64) map[string]int64 {
	out := map[string]int64{}
	for _, h := range webHosts {
		out[h] = v
	}
	return out
}

// TestStepsBoundDowntime: a good release replaces every instance, in the
// steps its parallelism makes, never more instances down at once than a
// step holds; start-first takes none down, unless fixed host ports make
// it stop first.
func TestStepsBoundDowntime(t *testing.T) {
	for _, c := range []struct {
		parallelism, order string
		ports              bool
		steps, mostDown    int
	}{
		{parallelism: "1", steps: 5, mostDown: 1},
		{parallelism: "2", steps: 3, mostDown: 2},
		{parallelism: `"40%"`, steps: 3, mostDown: 2},
		{parallelism: "[1, 2]", steps: 3, mostDown: 2},
		{parallelism: "5", steps: 1, mostDown: 5},
		{parallelism: "2", order: "start-first", steps: 3, mostDown: 0},
		{parallelism: "2", order: "start-first", ports: true, steps: 3, mostDown: 2},
	} {
		t.Run(fmt.Sprintf("parallelism %s %s ports %v", c.parallelism, c.order, c.ports), func(t *testing.T) {
			w := newWorld(t)
			w.deploy(release{ports: c.ports})
			w.f.ResetMostDown()
			r := w.apply(context.Background(), release{version: "2", parallelism: c.parallelism, order: c.order, ports: c.ports}, nil)
			o := r.outcome(t, "web")
			if o.State() != rollout.Deployed || counts(o) != "5 changed, 0 unchanged, 0 failed, 0 undone, 0 not attempted" {
				t.Errorf("%s: %s (%v)", o.State(), counts(o), o.Err)
			}
			w.wantInstances("web", revisions(2, 2, 2, 2, 2))
			if n := w.f.MostDown("web"); n > c.mostDown {
				t.Errorf("%d instances down at once, want at most %d", n, c.mostDown)
			}
			steps := 0
			for _, e := range r.events {
				steps = max(steps, e.Steps)
			}
			if steps != c.steps {
				t.Errorf("%d steps, want %d", steps, c.steps)
			}
			if fallback := r.said("this service publishes fixed ports, so each instance is stopped first"); fallback != (c.ports && c.order == "start-first") {
				t.Errorf("said it falls back to stop-first: %v", fallback)
			}
		})
	}
}

// TestFailureActions: what a failing release leaves, for each failure
// action and failure ratio, with instances that fail in every way there
// is; the rollback takes no more instances down at once than the rollout.
func TestFailureActions(t *testing.T) {
	for _, c := range []struct {
		name   string
		before string // how the deployed release behaves
		r      release
		state  string
		counts string
		revs   []int
		err    string
	}{
		{name: "rollback: the first instance crashes", r: release{behavior: "crash"},
			state: rollout.RolledBack, counts: "0 changed, 0 unchanged, 1 failed, 0 undone, 4 not attempted",
			revs: []int{1, 1, 1, 1, 1}, err: "1 of 5 instances failed (h1/1: container exited with exit code 1"},
		{name: "rollback: the third instance crashes", r: release{behavior: "crash@h3"},
			state: rollout.RolledBack, counts: "0 changed, 0 unchanged, 1 failed, 2 undone, 2 not attempted",
			revs: []int{1, 1, 1, 1, 1}, err: "1 of 5 instances failed (h3/3: container exited with exit code 1"},
		{name: "rollback: steps of two", r: release{behavior: "crash@h3", parallelism: "2"},
			state: rollout.RolledBack, counts: "0 changed, 0 unchanged, 1 failed, 3 undone, 1 not attempted",
			revs: []int{1, 1, 1, 1, 1}, err: "1 of 5 instances failed (h3/3"},
		{name: "pause", r: release{behavior: "crash@h3", action: "pause"},
			state: rollout.Paused, counts: "2 changed, 0 unchanged, 1 failed, 0 undone, 2 not attempted",
			revs: []int{2, 2, 1, 1, 1}, err: "paused after step 3 of 5"},
		{name: "continue", r: release{behavior: "crash@h3", action: "continue"},
			state: rollout.Failed, counts: "4 changed, 0 unchanged, 1 failed, 0 undone, 0 not attempted",
			revs: []int{2, 2, 1, 2, 2}, err: "(failure_action: continue, max_failure_ratio 0)"},
		{name: "within max_failure_ratio", r: release{behavior: "crash@h3", ratio: "0.2"},
			state: rollout.Failed, counts: "4 changed, 0 unchanged, 1 failed, 0 undone, 0 not attempted",
			revs: []int{2, 2, 1, 2, 2}, err: "within what failure_action: rollback allows"},
		{name: "beyond max_failure_ratio", r: release{behavior: "crash@h3,crash@h4", ratio: "0.2"},
			state: rollout.RolledBack, counts: "0 changed, 0 unchanged, 2 failed, 2 undone, 1 not attempted",
			revs: []int{1, 1, 1, 1, 1}, err: "2 of 5 instances failed"},
		{name: "never healthy", r: release{behavior: "unhealthy@h2"},
			state: rollout.RolledBack, counts: "0 changed, 0 unchanged, 1 failed, 1 undone, 3 not attempted",
			revs: []int{1, 1, 1, 1, 1}, err: "not healthy within 300ms: docker reports it unhealthy"},
		{name: "healthy after a while", r: release{behavior: "healthy-after=4"},
			state: rollout.Deployed, counts: "5 changed, 0 unchanged, 0 failed, 0 undone, 0 not attempted",
			revs: []int{2, 2, 2, 2, 2}},
		{name: "healthy, then crashes during monitor", r: release{behavior: "crash-after=3@h2", monitor: "300ms"},
			state: rollout.RolledBack, counts: "0 changed, 0 unchanged, 1 failed, 1 undone, 3 not attempted",
			revs: []int{1, 1, 1, 1, 1}, err: "h2/2: container exited with exit code 2"},
		{name: "the old container does not stop", before: "stop-fails@h2", r: release{},
			state: rollout.RolledBack, counts: "0 changed, 0 unchanged, 1 failed, 1 undone, 3 not attempted",
			revs: []int{1, 1, 1, 1, 1}, err: "cannot stop container"},
	} {
		t.Run(c.name, func(t *testing.T) {
			w := newWorld(t)
			w.deploy(release{behavior: c.before})
			w.f.ResetMostDown()
			c.r.version = "2"
			r := w.apply(context.Background(), c.r, nil)
			o := r.outcome(t, "web")
			if o.State() != c.state || counts(o) != c.counts {
				t.Errorf("%s: %s, want %s: %s", o.State(), counts(o), c.state, c.counts)
			}
			if (o.Err == nil) != (c.err == "") || o.Err != nil && !strings.Contains(o.Err.Error(), c.err) {
				t.Errorf("error %v, want one saying %q", o.Err, c.err)
			}
			if r.res.RolledBack() != (c.state == rollout.RolledBack) {
				t.Errorf("the result says rolled back: %v", r.res.RolledBack())
			}
			w.wantInstances("web", revisions(c.revs...))
			par, _ := strconv.Atoi(c.r.parallelism)
			if n := w.f.MostDown("web"); n > max(par, 1) {
				t.Errorf("%d instances down at once, want at most %d", n, max(par, 1))
			}
		})
	}
}

// TestInterrupts cancels the apply's context (Ctrl-C, or the deploy lock
// lost) at each moment of a step: the step in flight is finished or
// undone, every host runs exactly one container of the service, and
// every instance is counted once, as changed, undone or not attempted.
func TestInterrupts(t *testing.T) {
	type setup struct {
		w      *world
		cancel context.CancelFunc
		once   sync.Once
	}
	// at cancels at the first call that matches.
	at := func(match func(rollouttest.Call) bool, then error) func(*setup) {
		return func(s *setup) {
			s.w.f.Hook = func(c rollouttest.Call) error {
				if match(c) {
					hit := false
					s.once.Do(func() { hit = true; s.cancel() })
					if hit {
						return then
					}
				}
				return nil
			}
		}
	}
	for _, c := range []struct {
		name    string
		r       release
		hook    func(*setup)
		onEvent string // cancel as an event says this
		state   string
		counts  string
		revs    []int
	}{
		{name: "pulling the image", r: release{version: "2"},
			hook:  at(func(c rollouttest.Call) bool { return c.Op == "pull" }, nil),
			state: rollout.Interrupted, counts: "0 changed, 0 unchanged, 0 failed, 0 undone, 5 not attempted", revs: []int{1, 1, 1, 1, 1}},
		{name: "creating the new container", r: release{version: "2"},
			hook:  at(func(c rollouttest.Call) bool { return c.Op == "create" }, nil),
			state: rollout.Interrupted, counts: "0 changed, 0 unchanged, 0 failed, 0 undone, 5 not attempted", revs: []int{1, 1, 1, 1, 1}},
		{name: "a create cut short that the engine carries out", r: release{version: "2"},
			hook:  at(func(c rollouttest.Call) bool { return c.Op == "create" }, rollouttest.ErrHang),
			state: rollout.Interrupted, counts: "0 changed, 0 unchanged, 0 failed, 0 undone, 5 not attempted", revs: []int{1, 1, 1, 1, 1}},
		{name: "stopping the old container", r: release{version: "2"},
			hook:  at(func(c rollouttest.Call) bool { return c.Is("stop", "web", 1) }, nil),
			state: rollout.Interrupted, counts: "0 changed, 0 unchanged, 0 failed, 1 undone, 4 not attempted", revs: []int{1, 1, 1, 1, 1}},
		{name: "a stop cut short that the engine carries out", r: release{version: "2"},
			hook:  at(func(c rollouttest.Call) bool { return c.Is("stop", "web", 1) }, rollouttest.ErrHang),
			state: rollout.Interrupted, counts: "0 changed, 0 unchanged, 0 failed, 1 undone, 4 not attempted", revs: []int{1, 1, 1, 1, 1}},
		{name: "starting the new container", r: release{version: "2"},
			hook:  at(func(c rollouttest.Call) bool { return c.Is("start", "web", 2) }, nil),
			state: rollout.Interrupted, counts: "0 changed, 0 unchanged, 0 failed, 1 undone, 4 not attempted", revs: []int{1, 1, 1, 1, 1}},
		{name: "a start that hangs, carried out late", r: release{version: "2"},
			hook:  at(func(c rollouttest.Call) bool { return c.Is("start", "web", 2) }, rollouttest.ErrHang),
			state: rollout.Interrupted, counts: "0 changed, 0 unchanged, 0 failed, 1 undone, 4 not attempted", revs: []int{1, 1, 1, 1, 1}},
		{name: "waiting for its health check", r: release{version: "2", behavior: "healthy-after=100000", deadline: "1m"},
			hook:  at(func(c rollouttest.Call) bool { return c.Is("inspect", "web", 2) }, nil),
			state: rollout.Interrupted, counts: "0 changed, 0 unchanged, 0 failed, 1 undone, 4 not attempted", revs: []int{1, 1, 1, 1, 1}},
		{name: "as the step passes", r: release{version: "2"}, onEvent: "healthy (revision 2)",
			state: rollout.Interrupted, counts: "1 changed, 0 unchanged, 0 failed, 0 undone, 4 not attempted", revs: []int{2, 1, 1, 1, 1}},
		{name: "between steps", r: release{version: "2"}, onEvent: "step 2 of 5",
			state: rollout.Interrupted, counts: "1 changed, 0 unchanged, 0 failed, 0 undone, 4 not attempted", revs: []int{2, 1, 1, 1, 1}},
		{name: "rolling back: the rollback goes on to the end", r: release{version: "2", behavior: "crash@h3"}, onEvent: "rolling back every changed instance",
			state: rollout.RolledBack, counts: "0 changed, 0 unchanged, 1 failed, 2 undone, 2 not attempted", revs: []int{1, 1, 1, 1, 1}},
		{name: "updating in place", r: release{memory: "128M"},
			hook:  at(func(c rollouttest.Call) bool { return c.Op == "update" }, nil),
			state: rollout.Interrupted, counts: "0 changed, 0 unchanged, 0 failed, 1 undone, 4 not attempted", revs: []int{1, 1, 1, 1, 1}},
		{name: "an update in place carried out late", r: release{memory: "128M"},
			hook:  at(func(c rollouttest.Call) bool { return c.Op == "update" }, rollouttest.ErrHang),
			state: rollout.Interrupted, counts: "0 changed, 0 unchanged, 0 failed, 1 undone, 4 not attempted", revs: []int{1, 1, 1, 1, 1}},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := &setup{w: newWorld(t)}
			w := s.w
			w.deploy(release{})
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			s.cancel = cancel
			if c.hook != nil {
				c.hook(s)
			}
			r := w.apply(ctx, c.r, func(e rollout.Event) {
				if c.onEvent != "" && strings.Contains(e.What, c.onEvent) {
					cancel()
				}
			})
			w.f.Hook = nil
			o := r.outcome(t, "web")
			if o.State() != c.state || counts(o) != c.counts {
				t.Errorf("%s: %s, want %s: %s (%v)", o.State(), counts(o), c.state, c.counts, o.Err)
			}
			w.wantInstances("web", revisions(c.revs...))
			if c.r.memory != "" {
				if got := w.memory(); !maps.Equal(got, everyHost(256<<20)) {
					t.Errorf("memory limits %v: an interrupted update in place was not undone", got)
				}
			}
			if c.state == rollout.Interrupted && !strings.Contains(o.Err.Error(), "run fleet apply again to go on") {
				t.Errorf("error %v does not say how to go on", o.Err)
			}
		})
	}
}

// TestLostLockMidStep: the deploy lock, once lost, cancels the apply's
// context at a moment the rollout does not choose, here while the second
// step waits on a slow health check; the first step stays done, the
// second is undone.
func TestLostLockMidStep(t *testing.T) {
	w := newWorld(t)
	w.deploy(release{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var once sync.Once
	r := w.apply(ctx, release{version: "2", behavior: "healthy-after=100000@h2", deadline: "1m"}, func(e rollout.Event) {
		if e.Host == "h2" && e.What == "waiting for its health check" {
			once.Do(func() { time.AfterFunc(30*time.Millisecond, cancel) })
		}
	})
	o := r.outcome(t, "web")
	if o.State() != rollout.Interrupted || counts(o) != "1 changed, 0 unchanged, 0 failed, 1 undone, 3 not attempted" {
		t.Errorf("%s: %s (%v)", o.State(), counts(o), o.Err)
	}
	if o.Err == nil || !strings.Contains(o.Err.Error(), "interrupted after step 2 of 5: the step in flight was finished or undone") {
		t.Errorf("error %v", o.Err)
	}
	w.wantInstances("web", revisions(2, 1, 1, 1, 1))
}

// TestInPlace: an update in place of limits or restart policy goes in the
// rolling steps as a replacement does, gated on health, counted in the
// failure ratio, and undone by a rollback; it takes nothing down.
func TestInPlace(t *testing.T) {
	t.Run("passes without taking anything down", func(t *testing.T) {
		w := newWorld(t)
		w.deploy(release{})
		ids := w.ids()
		w.f.ResetMostDown()
		r := w.apply(context.Background(), release{memory: "128M", restart: "always", parallelism: "2"}, nil)
		o := r.outcome(t, "web")
		if o.State() != rollout.Deployed || counts(o) != "5 changed, 0 unchanged, 0 failed, 0 undone, 0 not attempted" {
			t.Errorf("%s: %s (%v)", o.State(), counts(o), o.Err)
		}
		if got := w.memory(); !maps.Equal(got, everyHost(128<<20)) {
			t.Errorf("memory limits %v, want 128M everywhere", got)
		}
		if !maps.Equal(w.ids(), ids) || w.f.MostDown("web") > 0 {
			t.Errorf("containers were replaced or went down (%d at once)", w.f.MostDown("web"))
		}
		if !r.said("updated in place, healthy") || !r.said("step 3 of 3") {
			t.Error("the updates in place were not gated in steps")
		}
	})
	for _, c := range []struct {
		name, restart, action, parallelism string
		state, counts, err                 string
	}{
		{name: "too little memory, restarted by the engine", restart: "unless-stopped",
			state: rollout.RolledBack, counts: "0 changed, 0 unchanged, 1 failed, 0 undone, 4 not attempted",
			err: "(last exit code 137)); every instance is back on its previous limits and restart policy"},
		{name: "too little memory, no restart policy", restart: "no",
			state: rollout.RolledBack, counts: "0 changed, 0 unchanged, 1 failed, 0 undone, 4 not attempted", err: "container exited with exit code 137"},
		{name: "counted in the failure ratio", restart: "unless-stopped", action: "continue", parallelism: "5",
			state: rollout.Failed, counts: "0 changed, 0 unchanged, 5 failed, 0 undone, 0 not attempted", err: "5 of 5 instances failed"},
	} {
		t.Run(c.name, func(t *testing.T) {
			w := newWorld(t)
			w.f.OOMBelow = 64 << 20
			w.deploy(release{restart: c.restart})
			ids := w.ids()
			r := w.apply(context.Background(), release{memory: "32M", restart: c.restart, action: c.action, parallelism: c.parallelism}, nil)
			o := r.outcome(t, "web")
			if o.State() != c.state || counts(o) != c.counts || o.Err == nil || !strings.Contains(o.Err.Error(), c.err) {
				t.Errorf("%s: %s (%v), want %s: %s (%s)", o.State(), counts(o), o.Err, c.state, c.counts, c.err)
			}
			// Back on their limits, running: the same containers.
			if got := w.memory(); !maps.Equal(got, everyHost(256<<20)) {
				t.Errorf("memory limits of the running containers %v, want 256M everywhere", got)
			}
			if !maps.Equal(w.ids(), ids) {
				t.Error("containers were replaced")
			}
		})
	}
	t.Run("a rollback undoes them with the replacements", func(t *testing.T) {
		// h5's tag now names another image: it is replaced, the others
		// are updated in place; h5's new container cannot start, and the
		// rollback puts every instance back as it was.
		w := newWorld(t)
		w.deploy(release{})
		ids := w.ids()
		w.f.Retag("hello:1", "h5")
		_, p := w.plan(release{memory: "512M"}.String())
		kinds := map[plan.Kind]int{}
		for _, a := range p.Services[0].Actions {
			kinds[a.Kind]++
			if a.Kind == plan.Update && (a.Before == nil || a.Before.Resources.Memory != 256<<20) {
				t.Errorf("%s: the plan holds %+v as what was before, want memory 256M", a.Host, a.Before)
			}
		}
		if kinds[plan.Update] != 4 || kinds[plan.Replace] != 1 {
			t.Fatalf("plan: %v, want 4 updates in place and 1 replacement", kinds)
		}
		w.f.Hook = func(c rollouttest.Call) error {
			if c.Op == "start" && c.Host == "h5" && c.ID != ids["h5"] {
				return errors.New("port is already allocated")
			}
			return nil
		}
		r := w.apply(context.Background(), release{memory: "512M"}, nil)
		o := r.outcome(t, "web")
		if o.State() != rollout.RolledBack || counts(o) != "0 changed, 0 unchanged, 1 failed, 4 undone, 0 not attempted" ||
			!strings.Contains(o.Err.Error(), "every instance is back on its previous container, and those updated in place on their previous limits and restart policy") {
			t.Errorf("%s: %s (%v)", o.State(), counts(o), o.Err)
		}
		if got := w.memory(); !maps.Equal(got, everyHost(256<<20)) {
			t.Errorf("memory limits %v after the rollback, want 256M everywhere", got)
		}
		if !maps.Equal(w.ids(), ids) {
			t.Errorf("containers %v after the rollback, want the previous ones %v", w.ids(), ids)
		}
		w.wantInstances("web", revisions(1, 1, 1, 1, 1))
	})
	t.Run("a stopped instance is started after its update", func(t *testing.T) {
		w := newWorld(t)
		w.deploy(release{})
		w.f.Hosts()["h2"].Engine().Stop(context.Background(), w.ids()["h2"], 0)
		_, p := w.plan(release{memory: "128M"}.String())
		if p.Summary.Update != 5 || !strings.Contains(strings.Join(p.Services[0].Actions[1].Reasons, ";"), "started after the update") {
			t.Fatalf("plan: %+v", p.Summary)
		}
		r := w.apply(context.Background(), release{memory: "128M"}, nil)
		if o := r.outcome(t, "web"); o.State() != rollout.Deployed {
			t.Errorf("%s: %s (%v)", o.State(), counts(o), o.Err)
		}
		if got := w.memory(); !maps.Equal(got, everyHost(128<<20)) {
			t.Errorf("memory limits of the running containers %v, want 128M everywhere", got)
		}
	})
}

// ids returns the ID of each host's web container.
func (w *world) ids() map[string]string {
	out := map[string]string{}
	for _, h := range webHosts {
		for _, c := range w.f.Containers(h) {
			out[h] = c.ID
		}
	}
	return out
}

// TestPlansWithoutSteps: plans of starts or removals alone, or of both,
// have no rolling step; they are carried out, and the next plan has
// nothing to do.
func TestPlansWithoutSteps(t *testing.T) {
	stop := func(host string) func(*world) {
		return func(w *world) { w.f.Hosts()[host].Engine().Stop(context.Background(), w.ids()[host], 0) }
	}
	onThree := literal(strings.Replace(release{}.String(), "hosts: role=web", "hosts: h1,h2,h3", 1))
	for _, c := range []struct {
		name    string
		setup   func(*world)
		r       fmt.Stringer
		summary string
	}{
		{name: "a start", setup: stop("h3"), r: release{}, summary: "Plan: 1 to start, 4 unchanged."},
		{name: "removals", r: onThree, summary: "Plan: 2 to remove, 3 unchanged."},
		{name: "a start and removals", setup: stop("h1"), r: onThree, summary: "Plan: 1 to start, 2 to remove, 2 unchanged."},
	} {
		t.Run(c.name, func(t *testing.T) {
			w := newWorld(t)
			w.deploy(release{})
			if c.setup != nil {
				c.setup(w)
			}
			if _, p := w.plan(c.r.String()); p.SummaryLine() != c.summary {
				t.Fatalf("plan: %s, want %s", p.SummaryLine(), c.summary)
			}
			r := w.apply(context.Background(), c.r, nil)
			if o := r.outcome(t, "web"); o.State() != rollout.Deployed || o.Err != nil {
				t.Errorf("%s: %s (%v)", o.State(), counts(o), o.Err)
			}
			if r.said("step 1 of") {
				t.Error("a plan without replacements went in steps")
			}
			if _, p := w.plan(c.r.String()); p.Changes() {
				t.Errorf("the next plan: %s", p.SummaryLine())
			}
		})
	}
}

// literal is a fleet.yaml as it is written.
type literal string

func (l literal) String() string { return string(l) }

// TestAServiceAfterAFailureIsNotAttempted: nothing starts on top of a
// broken dependency.
func TestAServiceAfterAFailureIsNotAttempted(t *testing.T) {
	w := newWorld(t)
	db := func(version, behavior string) string {
		return fmt.Sprintf("  db:\n    image: db:%s\n    hosts: db1\n    env: {%s: %q}\n    update: {monitor: 0s, healthy_deadline: 300ms}\n", version, rollouttest.BehaviorEnv, behavior)
	}
	// web, first in fleet.yaml, depends on db, which goes first.
	withDB := func(r release, dbText string) literal {
		return literal(strings.Replace(r.String(), "    update:", "    depends_on: [db]\n    update:", 1) + dbText)
	}
	w.deploy(withDB(release{}, db("1", "")))
	r := w.apply(context.Background(), withDB(release{version: "2"}, db("2", "crash")), nil)
	if len(r.res.Outcomes) != 2 || r.res.Outcomes[0].Service != "db" {
		t.Fatalf("outcomes %+v, want db's then web's", r.res.Outcomes)
	}
	if o := r.outcome(t, "db"); o.State() != rollout.RolledBack {
		t.Errorf("db: %s: %s (%v)", o.State(), counts(o), o.Err)
	}
	o := r.outcome(t, "web")
	if o.State() != rollout.Skipped || counts(o) != "0 changed, 0 unchanged, 0 failed, 0 undone, 5 not attempted" ||
		o.Err == nil || !strings.Contains(o.Err.Error(), "service db ended first in error") {
		t.Errorf("web: %s: %s (%v)", o.State(), counts(o), o.Err)
	}
	w.wantInstances("web", revisions(1, 1, 1, 1, 1))
	if slices.ContainsFunc(r.events, func(e rollout.Event) bool { return e.Service == "web" }) {
		t.Error("web was worked on")
	}
}

// TestNothingChangesWhenAHostCannotBeReadied: an image no registry has
// fails every instance of the hosts that lack it before anything changed.
func TestNothingChangesWhenAHostCannotBeReadied(t *testing.T) {
	w := newWorld(t)
	w.deploy(release{})
	r := w.apply(context.Background(), release{version: "9"}, nil)
	o := r.outcome(t, "web")
	if o.State() != rollout.Failed || counts(o) != "0 changed, 0 unchanged, 5 failed, 0 undone, 0 not attempted" ||
		!strings.Contains(o.Err.Error(), "nothing of this service was changed") || !strings.Contains(o.Err.Error(), "hello:9") {
		t.Errorf("%s: %s (%v)", o.State(), counts(o), o.Err)
	}
	w.wantInstances("web", revisions(1, 1, 1, 1, 1))
}

// TestPreStopRunsBeforeEachStop: a service's pre_stop runs in each
// container fleet stops, before it stops it, whether the container is
// replaced stop-first or start-first or removed.
func TestPreStopRunsBeforeEachStop(t *testing.T) {
	withPreStop := func(r fmt.Stringer) literal {
		return literal(strings.Replace(r.String(), "    update:", "    pre_stop: [/app/drain, --wait]\n    update:", 1))
	}
	onThree := literal(strings.Replace(withPreStop(release{}).String(), "hosts: role=web", "hosts: h1,h2,h3", 1))
	for _, c := range []struct {
		name  string
		r     fmt.Stringer
		stops int
	}{
		{"replaced stop-first", withPreStop(release{version: "2"}), 5},
		{"replaced start-first", withPreStop(release{version: "2", order: "start-first"}), 5},
		{"removed", onThree, 2},
	} {
		t.Run(c.name, func(t *testing.T) {
			w := newWorld(t)
			w.deploy(withPreStop(release{}))
			var mu sync.Mutex
			var calls []rollouttest.Call
			w.f.Hook = func(call rollouttest.Call) error {
				mu.Lock()
				defer mu.Unlock()
				if call.Op == "exec" || call.Op == "stop" {
					calls = append(calls, call)
				}
				return nil
			}
			r := w.apply(context.Background(), c.r, nil)
			if err := r.res.Err(); err != nil {
				t.Fatal(err)
			}
			mu.Lock()
			defer mu.Unlock()
			drained, stopped := map[string]bool{}, 0
			for _, call := range calls {
				switch call.Op {
				case "exec":
					drained[call.ID] = true
				case "stop":
					stopped++
					if !drained[call.ID] {
						t.Errorf("%s: container %s stopped before its pre_stop ran", call.Host, call.ID)
					}
				}
			}
			if stopped != c.stops || len(drained) != c.stops {
				t.Errorf("%d stops, pre_stop ran in %d containers; want %d of each", stopped, len(drained), c.stops)
			}
			if !r.said("pre_stop ran; stopping the container") {
				t.Error("no event says that pre_stop ran")
			}
		})
	}
}

// TestPullsAreRecordedForPrune: a run records each image it pulled onto a
// host, and none that the host had before it: fleet prune removes only
// what fleet brought.
func TestPullsAreRecordedForPrune(t *testing.T) {
	w := newWorld(t)
	w.f.Load("hello:1", "h1")
	w.deploy(release{})
	w.f.Retag("hello:2", "h2")
	w.deploy(release{version: "2"})
	want := map[string][]string{
		"h1": {"hello:2"},
		"h2": {"hello:1"},
		"h3": {"hello:1", "hello:2"},
	}
	for host, refs := range want {
		if got := w.f.RecordedImages(host, "shop"); !slices.Equal(got, refs) {
			t.Errorf("%s: recorded %q, want %q", host, got, refs)
		}
	}
}
