package rollout_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/fleetdeploy/fleet/executor"
	"github.com/fleetdeploy/fleet/plan"
	"github.com/fleetdeploy/fleet/rollout"
	"github.com/fleetdeploy/fleet/rollout/rollouttest"
)

// killAt makes every engine call fail from the first that matches on, as
// if the run were killed there: nothing it asks for afterwards, its undo
// included, reaches a host. It returns what revives the hosts for the
// next run.
func (w *world) killAt(match func(rollouttest.Call) bool) (revive func()) {
	var dead atomic.Bool
	w.f.Hook = func(c rollouttest.Call) error {
		if dead.Load() || match(c) {
			dead.Store(true)
			return errors.New("killed")
		}
		return nil
	}
	return func() { w.f.Hook = nil }
}

// TestKilledMidStepIsNotTrusted: a run killed while its new container
// waits for its health check leaves that container running, never seen
// healthy, beside the stopped one it replaces. The next run does not take
// it for a good instance: it removes it first, puts the release through
// the health gate again from the stopped one, and, the release being
// sick, rolls every host back to it.
func TestKilledMidStepIsNotTrusted(t *testing.T) {
	for _, c := range []struct {
		name     string
		behavior string
		revs     []int
		err      string
	}{
		{"a sick release", "unhealthy", []int{1, 1, 1, 1, 1}, "rolled back to revision 1"},
		{"a good one", "healthy-after=2", []int{3, 3, 3, 3, 3}, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			w := newWorld(t)
			w.deploy(release{})
			revive := w.killAt(func(call rollouttest.Call) bool { return call.Is("inspect", "web", 2) && call.Host == "h1" })
			w.apply(context.Background(), release{version: "2", behavior: c.behavior}, nil)
			revive()
			if got := w.instances("web")["h1"]; got != "r1 exited + r2 running" {
				t.Fatalf("h1 after the kill: %s, want the old container stopped and the new one running", got)
			}
			if len(w.f.Unchecked("h1", "shop")) == 0 {
				t.Fatal("the new container on h1 is not marked as never seen healthy")
			}

			_, p := w.plan(release{version: "2", behavior: c.behavior}.String())
			sp := p.Services[0]
			if sp.Revision != 3 || !sp.NewRevision {
				t.Errorf("the next plan deploys revision %d (new: %v), want a new revision 3", sp.Revision, sp.NewRevision)
			}
			var onH1 []string
			for _, a := range sp.Actions {
				if a.Host == "h1" {
					onH1 = append(onH1, string(a.Kind)+" r"+strconv.Itoa(a.Revision)+": "+strings.Join(a.Reasons, "; "))
				}
			}
			if len(onH1) != 2 || !slices.ContainsFunc(onH1, func(s string) bool {
				return strings.HasPrefix(s, "remove r2: never seen healthy")
			}) || !slices.ContainsFunc(onH1, func(s string) bool { return strings.HasPrefix(s, "replace r1") }) {
				t.Errorf("the plan for h1:\n%s\nwant the unchecked r2 removed and r1 replaced", strings.Join(onH1, "\n"))
			}

			r := w.apply(context.Background(), release{version: "2", behavior: c.behavior}, nil)
			err := r.res.Err()
			switch {
			case c.err == "" && err != nil:
				t.Errorf("the rerun failed: %v", err)
			case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)):
				t.Errorf("the rerun ended with %v, want %q", err, c.err)
			}
			w.wantInstances("web", revisions(c.revs...))
			for _, h := range webHosts {
				if ids := w.f.Unchecked(h, "shop"); len(ids) > 0 {
					t.Errorf("%s still has marks %v", h, ids)
				}
			}
		})
	}
}

// TestKilledBetweenCreateAndMark: a run killed after its new container
// was created but before the container was marked leaves it unmarked;
// never started, it was never seen healthy either, and the next run does
// not take it for the revision it was made for.
func TestKilledBetweenCreateAndMark(t *testing.T) {
	w := newWorld(t)
	w.deploy(release{})
	revive := w.killAt(func(call rollouttest.Call) bool { return call.Is("mark", "web", 2) && call.Host == "h1" })
	w.apply(context.Background(), release{version: "2", behavior: "unhealthy"}, nil)
	revive()
	if got := w.instances("web")["h1"]; !strings.Contains(got, "r2 created") {
		t.Fatalf("h1 after the kill: %s, want the new container created, not started", got)
	}
	if len(w.f.Unchecked("h1", "shop")) != 0 {
		t.Fatal("the new container on h1 is marked; the kill was to come before its mark")
	}
	_, p := w.plan(release{version: "2", behavior: "unhealthy"}.String())
	if sp := p.Services[0]; sp.Revision != 3 || !sp.NewRevision {
		t.Errorf("the next plan deploys revision %d (new: %v), want a new revision 3", sp.Revision, sp.NewRevision)
	}
	r := w.apply(context.Background(), release{version: "2", behavior: "unhealthy"}, nil)
	if err := r.res.Err(); err == nil || !strings.Contains(err.Error(), "rolled back to revision 1") {
		t.Errorf("the rerun ended with %v, want it rolled back to revision 1", err)
	}
	w.wantInstances("web", revisions(1, 1, 1, 1, 1))
}

// TestAnUncheckedLoneInstanceIsMadeAnew: an instance never seen healthy
// with nothing older beside it (a first deploy killed mid-gate) is
// replaced, not trusted.
func TestAnUncheckedLoneInstanceIsMadeAnew(t *testing.T) {
	w := newWorld(t)
	revive := w.killAt(func(call rollouttest.Call) bool { return call.Is("inspect", "web", 1) && call.Host == "h1" })
	w.apply(context.Background(), release{behavior: "healthy-after=2"}, nil)
	revive()
	_, p := w.plan(release{behavior: "healthy-after=2"}.String())
	for _, a := range p.Services[0].Actions {
		if a.Host == "h1" && (a.Kind != plan.Replace || !strings.Contains(strings.Join(a.Reasons, "; "), "never seen healthy")) {
			t.Errorf("h1: %s %v, want a replacement of the instance never seen healthy", a.Kind, a.Reasons)
		}
	}
	w.deploy(release{behavior: "healthy-after=2"})
	for _, h := range webHosts {
		if ids := w.f.Unchecked(h, "shop"); len(ids) > 0 {
			t.Errorf("%s still has marks %v", h, ids)
		}
	}
}

// TestAFailedInstanceNotPutBackIsSaid: an instance that fails its step and
// then cannot be put back (its host went away, say) is named in the
// outcome, which does not pass for a clean rollback.
func TestAFailedInstanceNotPutBackIsSaid(t *testing.T) {
	w := newWorld(t)
	w.deploy(release{})
	w.f.Hook = func(c rollouttest.Call) error {
		if c.Host == "h1" && c.Is("start", "web", 1) {
			return errors.New("connection lost")
		}
		return nil
	}
	r := w.apply(context.Background(), release{version: "2", behavior: "crash@h1"}, nil)
	w.f.Hook = nil
	err := r.res.Err()
	if err == nil || !strings.Contains(err.Error(), "h1/1 could not be put back: ") || !strings.Contains(err.Error(), "connection lost") {
		t.Errorf("outcome: %v, want it to say that h1/1 could not be put back, and why", err)
	}
}

// TestAHealthCheckLooksAgainOverALostConnection: a host whose connection
// drops while its new instance waits for its health check is not a failed
// instance: the check looks again (over a new connection, on real hosts)
// and the step passes once it sees the instance healthy. A connection
// that stays lost past the healthy deadline fails the step, and the
// release is rolled back.
func TestAHealthCheckLooksAgainOverALostConnection(t *testing.T) {
	lost := &executor.HostError{Host: "h2", Op: "inspecting container", Err: fmt.Errorf("%w: connection closed by the host", executor.ErrConnLost)}
	for _, c := range []struct {
		name  string
		calls int64 // inspections that find the connection lost
		state string
		want  string
	}{
		{"for a moment", 3, rollout.Deployed, "r2"},
		{"past the healthy deadline", 1 << 30, rollout.RolledBack, "r1"},
	} {
		t.Run(c.name, func(t *testing.T) {
			w := newWorld(t)
			w.deploy(release{})
			var n atomic.Int64
			w.f.Hook = func(call rollouttest.Call) error {
				if call.Host == "h2" && call.Is("inspect", "web", 2) && n.Add(1) <= c.calls {
					return lost
				}
				return nil
			}
			r := w.apply(context.Background(), release{version: "2"}, nil)
			w.f.Hook = nil
			if o := r.outcome(t, "web"); o.State() != c.state {
				t.Errorf("outcome %s (%s), want %s: %v", o.State(), counts(o), c.state, r.res.Err())
			}
			if !r.said("connection lost: connecting again") {
				t.Error("the lost connection was not said")
			}
			for _, h := range webHosts {
				if got := w.instances("web")[h]; got != c.want {
					t.Errorf("%s: %s, want %s", h, got, c.want)
				}
			}
		})
	}
}

// TestAnUndoCutShortByALostConnectionIsDoneAgain: putting an instance back
// is done once more when the host's connection was lost in the middle of
// it, and the release counts as rolled back, with nothing left behind.
func TestAnUndoCutShortByALostConnectionIsDoneAgain(t *testing.T) {
	w := newWorld(t)
	w.deploy(release{})
	var once atomic.Bool
	w.f.Hook = func(c rollouttest.Call) error {
		// The first removal of the new container fails with the
		// connection.
		if c.Host == "h1" && c.Is("remove", "web", 2) && once.CompareAndSwap(false, true) {
			return fmt.Errorf("%w: connection reset by peer", executor.ErrConnLost)
		}
		return nil
	}
	r := w.apply(context.Background(), release{version: "2", behavior: "crash@h1"}, nil)
	w.f.Hook = nil
	if !once.Load() {
		t.Fatal("the new container was never removed")
	}
	if o := r.outcome(t, "web"); o.State() != rollout.RolledBack || r.res.Err() == nil || strings.Contains(r.res.Err().Error(), "could not be put back") {
		t.Errorf("outcome %s: %v, want rolled back with every instance put back", o.State(), r.res.Err())
	}
	if !r.said("connection lost while putting the previous container back: connecting again") {
		t.Error("the second try was not said")
	}
	if got := w.instances("web")["h1"]; got != "r1" {
		t.Errorf("h1: %s, want r1", got)
	}
}

// TestPushedImageWithoutAnImageToPush: a service whose image fleet pushes
// (image_delivery: push), applied by a run that has no image to push (a
// rollback, a timer's reconcile on a machine that builds nothing), runs
// what the hosts have; a host without it is said, and nothing changes.
func TestPushedImageWithoutAnImageToPush(t *testing.T) {
	w := newWorld(t)
	pushed := release{extra: "  app:\n    image: hello:2\n    hosts: role=web\n    image_delivery: push\n    update: {monitor: 0s, healthy_deadline: 300ms}\n"}
	r := w.apply(context.Background(), pushed, nil)
	if err := r.res.Err(); err == nil || !strings.Contains(err.Error(), "image hello:2 is not on the host, and this machine has none to push (image_delivery: push)") {
		t.Errorf("without the image anywhere: %v", err)
	}
	if o := r.outcome(t, "app"); o.Changed != 0 {
		t.Errorf("without the image anywhere: %s", counts(o))
	}
	w.f.Load("hello:2", webHosts...)
	r = w.apply(context.Background(), pushed, nil)
	if err := r.res.Err(); err != nil {
		t.Fatalf("with the image on the hosts: %v", err)
	}
	for _, h := range webHosts {
		if got := w.instances("app")[h]; got != "r1" {
			t.Errorf("%s: %s, want r1", h, got)
		}
	}
}
