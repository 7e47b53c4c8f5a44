package rollout

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/fleetdeploy/fleet/executor"
	"github.com/fleetdeploy/fleet/plan"
	"github.com/fleetdeploy/fleet/proxy"
)

// Event is one thing that happened during an apply, for progress output.
// Work on an instance (or on a host, for slot 0) begins with a Begin event
// and ends with an End event, so that a display can show what is under
// way; the other events are notes.
type Event struct {
	Time    time.Time
	Service string
	Host    string // "" for the service as a whole
	Slot    int
	What    string // what is being done or what happened
	Err     error
	Begin   bool
	End     bool
	// Progress marks a step within work under way (starting, waiting for
	// health and why): a display shows it in place; a log may leave it out.
	Progress bool
	// Step and Steps number a rolling step as it begins (a service-wide
	// event), with the instances it changes.
	Step, Steps, Instances int
}

// Applier carries plans out on a fleet.
type Applier struct {
	Project *plan.Project
	// Fleet is the run's connections: the deploy lock and the revision
	// history go through them.
	Fleet *Fleet
	// Hosts drive the hosts' engines, by name; nil: those of the fleet's
	// connections. A host without one is not connected.
	Hosts map[string]Host
	// Secrets are the values of every secret, by service, and registry
	// passwords under "registry:HOST".
	Secrets map[string]map[string]string
	// Events receives progress; it may be called from many goroutines at
	// once, one call at a time.
	Events func(Event)
	// Push sends image, of a service with image_delivery: push, to host,
	// the layers it lacks, and says how many bytes that took; or
	// ErrNothingToPush when this run has no such image (then the host's
	// copy serves, if it has one).
	Push func(ctx context.Context, host, image string) (sent int64, err error)
	// Who (user@machine) and Cause (the --message, or "" for a summary of
	// the changes) go into the record of each new revision.
	Who, Cause string
	// Rollback is set by fleet rollback, for the record of the revision it
	// makes.
	Rollback *plan.RollbackOf
	// LBAddresses are, by host, where load balancers reach its proxy
	// (plan.LBAddress).
	LBAddresses map[string]string

	// plan is what Apply carries out; lbs are its load balancers, and
	// balanced says that there are some (see plan.Balanced).
	plan     *plan.Plan
	lbs      []string
	balanced bool

	hosts   map[string]Host // as carried out: Hosts, or the fleet's
	mu      sync.Mutex
	cleanup sync.WaitGroup // removals of old containers, records of pulls and marks taken away, in flight
	// inFlight is the work under way, by instance: what a run stopped at
	// once leaves behind. It has a mutex of its own, so that reading it
	// never waits for output that is blocked.
	flightMu   sync.Mutex
	inFlight   map[instanceKey]flight
	startFirst map[string]bool // by service, as carried out
	// proxies are the admin APIs of the hosts' proxies made ready by this
	// run, by host.
	proxyMu sync.Mutex
	proxies map[string]*proxy.Admin
	// routeMu serializes the route changes of this run on each host, by
	// host (see routes).
	routeMu map[string]*sync.Mutex
}

type instanceKey struct {
	service, host string
	slot          int
}

// flight is work under way on an instance: what it began as, and what it
// is doing now.
type flight struct{ began, now string }

// setFlight records (or, with began "", forgets) work on an instance.
func (a *Applier) setFlight(k instanceKey, f flight) {
	a.flightMu.Lock()
	defer a.flightMu.Unlock()
	if a.inFlight == nil {
		a.inFlight = map[instanceKey]flight{}
	}
	if f.began == "" {
		delete(a.inFlight, k)
		return
	}
	a.inFlight[k] = f
}

// Outcome is what happened to one service. Every instance the plan named
// is counted once: unchanged, changed, failed, undone (changed, then put
// back by a rollback) or not attempted (after a failure, a pause or an
// interruption).
type Outcome struct {
	Service string
	Changed int
	// ByKind counts what Changed counts by the kind of change: started,
	// created, replaced, updated in place, removed.
	ByKind       map[plan.Kind]int
	Unchanged    int
	Failed       int
	Undone       int
	NotAttempted int
	RolledBack   bool
	Paused       bool
	Interrupted  bool
	Skipped      bool // not attempted: a service before it failed
	Err          error
}

// changed counts n changes of kind.
func (o *Outcome) changed(kind plan.Kind, n int) {
	if n == 0 {
		return
	}
	if o.ByKind == nil {
		o.ByKind = map[plan.Kind]int{}
	}
	o.ByKind[kind] += n
	o.Changed += n
}

// Outcome states, as the revision history records them.
const (
	Deployed    = "deployed"
	RolledBack  = "rolled back"
	Paused      = "paused"
	Interrupted = "interrupted"
	Failed      = "failed"
	Skipped     = "not attempted"
)

// State says in a word how the service's rollout ended: deployed, rolled
// back, paused, interrupted or failed.
func (o Outcome) State() string {
	switch {
	case o.RolledBack:
		return RolledBack
	case o.Paused:
		return Paused
	case o.Interrupted:
		return Interrupted
	case o.Skipped:
		return Skipped
	case o.Err != nil:
		return Failed
	}
	return Deployed
}

// Result is the outcome of every service the plan touched.
type Result struct {
	Outcomes []Outcome
	// ProxyUpgraded are the hosts whose proxy was upgraded, and ProxyErr
	// why the upgrade stopped, before any service was attempted.
	ProxyUpgraded []string
	ProxyErr      error
	Duration      time.Duration
}

// RolledBack reports whether a service was put back on its previous
// revision.
func (r *Result) RolledBack() bool {
	for _, o := range r.Outcomes {
		if o.RolledBack {
			return true
		}
	}
	return false
}

// Err joins the proxy's and the services' errors.
func (r *Result) Err() error {
	var errs []error
	if r.ProxyErr != nil {
		errs = append(errs, r.ProxyErr)
	}
	for _, o := range r.Outcomes {
		if o.Err != nil {
			errs = append(errs, fmt.Errorf("service %s: %w", o.Service, o.Err))
		}
	}
	return errors.Join(errs...)
}

func (a *Applier) event(e Event) {
	e.Time = time.Now()
	if e.Host != "" && (e.Begin || e.Progress || e.End) {
		k := instanceKey{e.Service, e.Host, e.Slot}
		a.flightMu.Lock()
		was, ok := a.inFlight[k]
		a.flightMu.Unlock()
		switch {
		case e.End:
			a.setFlight(k, flight{})
		case e.Begin:
			a.setFlight(k, flight{e.What, e.What})
		case ok:
			a.setFlight(k, flight{was.began, e.What})
		}
	}
	if a.Events == nil {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.Events(e)
}

// LeftBehind says, one line per host, what a run stopped at once (a
// second Ctrl-C) leaves behind: the instances whose work was under way,
// and whether they are down. It may be called at any time, from any
// goroutine.
func (a *Applier) LeftBehind() []string {
	a.flightMu.Lock()
	defer a.flightMu.Unlock()
	byHost := map[string][]string{}
	for _, k := range slices.SortedFunc(maps.Keys(a.inFlight), func(x, y instanceKey) int {
		return cmp.Or(strings.Compare(x.host, y.host), strings.Compare(x.service, y.service), cmp.Compare(x.slot, y.slot))
	}) {
		byHost[k.host] = append(byHost[k.host], leftState(k, a.inFlight[k], a.startFirst[k.service]))
	}
	var lines []string
	for _, host := range slices.Sorted(maps.Keys(byHost)) {
		lines = append(lines, host+": "+strings.Join(byHost[host], "; "))
	}
	return lines
}

// leftState describes an instance left in the middle of its work.
func leftState(k instanceKey, f flight, startFirst bool) string {
	name := fmt.Sprintf("%s/%d", k.service, k.slot)
	if k.slot == 0 {
		name = k.service
	}
	switch {
	case strings.HasPrefix(f.began, "pulling"):
		return name + ": " + f.began + " cut short (nothing changed)"
	case strings.HasPrefix(f.began, "creating"):
		return name + " not running yet (it was being created)"
	case strings.HasPrefix(f.began, "putting the previous container back"):
		return name + " DOWN or on its new container (its previous one was being put back)"
	case strings.HasPrefix(f.began, "putting its previous limits back"):
		return name + " may keep its new limits (its previous ones were being put back)"
	case strings.HasPrefix(f.began, "updating in place"):
		return name + " runs on its old limits or its new ones (it was being updated in place)"
	case strings.HasPrefix(f.began, "starting"):
		return name + " DOWN (it was being started)"
	case strings.HasPrefix(f.began, "removing"):
		return name + " may still run (it was being removed)"
	case startFirst:
		return name + " runs its old container; a new one may be left beside it"
	case f.now == f.began:
		return name + " runs its old container (not yet stopped)"
	}
	return name + " DOWN (its old container stopped, the new one not yet healthy)"
}

// Apply carries out p: services in dependency order, each one's instances
// in the steps its update policy allows. It stops at the first service
// that fails, so that nothing starts on top of a broken dependency.
func (a *Applier) Apply(ctx context.Context, p *plan.Plan) (*Result, error) {
	start := time.Now()
	order, err := Order(a.Project)
	if err != nil {
		return nil, err
	}
	a.hosts = a.Hosts
	if a.hosts == nil && a.Fleet != nil {
		a.hosts = HostsOf(a.Fleet.Conns, func(host string, lost error) {
			a.event(Event{Host: host, What: "connected again: " + lost.Error()})
		})
	}
	a.plan, a.lbs, a.balanced = p, lbsOf(p), p.Balanced
	byName := map[string]*plan.ServicePlan{}
	for _, sp := range p.Services {
		byName[sp.Name] = sp
	}
	res := &Result{}
	stopped := ""
	if err := a.upgradeProxies(ctx, p.ProxyUpgrades, res); err != nil {
		res.ProxyErr = err
		stopped = "the proxy"
	}
	for _, s := range order {
		sp := byName[s.Name]
		if sp == nil {
			continue
		}
		if stopped != "" {
			res.Outcomes = append(res.Outcomes, notAttempted(s.Name, sp, stopped))
			continue
		}
		o := a.service(ctx, s, sp)
		if a.balanceNeeded(s, sp) {
			if err := a.balance(ctx, s, sp, nil); err != nil {
				a.event(Event{Service: s.Name, What: "the load balancers could not be brought up to date", Err: err})
				if o.Err == nil {
					o.Err = fmt.Errorf("the load balancers could not be brought up to date: %w", err)
				}
			}
		}
		if err := a.record(ctx, s, sp, o); err != nil {
			a.event(Event{Service: s.Name, What: "the revision could not be recorded everywhere", Err: err})
		}
		res.Outcomes = append(res.Outcomes, o)
		if o.Err != nil {
			// Nothing starts on top of a broken dependency.
			stopped = "service " + s.Name
		}
	}
	a.cleanup.Wait()
	res.Duration = time.Since(start)
	return res, nil
}

// notAttempted is the outcome of a service left alone because one before
// it ended in error.
func notAttempted(service string, sp *plan.ServicePlan, after string) Outcome {
	o := Outcome{Service: service, Skipped: true}
	for _, act := range sp.Actions {
		if act.Kind == plan.Unchanged {
			o.Unchanged++
		} else {
			o.NotAttempted++
		}
	}
	if o.NotAttempted > 0 {
		o.Err = fmt.Errorf("not attempted: %s ended first in error", after)
	}
	return o
}

// host returns the host called name, or nil when it is not connected.
func (a *Applier) host(name string) Host { return a.hosts[name] }

// record writes the service's new revision, with how it went, on the
// hosts it ran on. The history lives in files on the hosts, beside the
// engine: without connections (a fake engine) nothing is recorded.
func (a *Applier) record(ctx context.Context, s *plan.Service, sp *plan.ServicePlan, o Outcome) error {
	if a.Fleet == nil {
		return nil
	}
	var conns []*executor.Conn
	seen := map[string]bool{}
	var reasons []string
	for _, act := range sp.Actions {
		if (act.Kind == plan.Create || act.Kind == plan.Replace) && !seen[act.Host] && a.Fleet.Conns[act.Host] != nil {
			seen[act.Host] = true
			conns = append(conns, a.Fleet.Conns[act.Host])
		}
		if act.Kind == plan.Replace || act.Kind == plan.Create {
			for _, r := range act.Reasons {
				if !slices.Contains(reasons, r) {
					reasons = append(reasons, r)
				}
			}
		}
	}
	if !sp.NewRevision || len(conns) == 0 {
		return nil
	}
	cause := a.Cause
	if cause == "" {
		cause = strings.Join(reasons, "; ")
		if len(cause) > 120 {
			cause = cause[:117] + "..."
		}
	}
	rev := Revision{Service: s.Name, Revision: sp.Revision, Spec: sp.Spec, Template: sp.Template,
		Resources: sp.Resources, Restart: sp.Restart, When: time.Now().UTC(), Who: a.Who, Cause: cause, Outcome: o.State(), Rollback: a.Rollback}
	// Recorded even when the run was stopped, so that the attempt is
	// known; a host that stalls holds the run up no longer than this.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), recordTimeout)
	defer cancel()
	return recordRevision(rctx, conns, a.Project.Name, rev, s.History)
}

// recordTimeout bounds writing a revision record on the hosts.
const recordTimeout = 30 * time.Second

// change is one instance being changed, in a rolling step: a new
// container and the old one it replaces (none for a create), kept stopped
// until the whole service is done so that a rollback is a start; or, for
// an update in place, the container whose limits and restart policy
// change.
type change struct {
	act     *plan.Action
	inPlace bool
	newID   string
	oldID   string
	oldStop bool // the old container was stopped by this apply
	oldGone bool // the old container was not there any more
	// stopped says that the old container's stop answered: no stop
	// request cut short can be carried out late.
	stopped bool
	started bool // the new container's start was asked for
	// updated says that the update in place was asked for; was is the
	// container as it was just before, what a rollback puts back.
	updated bool
	was     *executor.Container
	// created is closed once the new container's create has answered,
	// with newID or createErr.
	created   chan struct{}
	createErr error
	// stopping, for start-first, ends when the old container's stop does:
	// once the new one is healthy the old one is surplus, and the next
	// step need not wait for its graceful stop.
	stopping chan struct{}
	err      error
	// backErr is why a failed change could not be undone.
	backErr error
}

// touched reports whether the change did anything to the instance: a
// change cut short before it did counts as not attempted, not undone.
func (c *change) touched() bool { return c.oldStop || c.started || c.updated }

// create starts creating the new containers of a step's instances, in the
// background, and returns their changes. An update in place needs no new
// container.
func (a *Applier) create(ctx context.Context, s *plan.Service, sp *plan.ServicePlan, step []*plan.Action) []*change {
	changes := make([]*change, len(step))
	for i, act := range step {
		c := &change{act: act, created: make(chan struct{})}
		changes[i] = c
		if act.Kind == plan.Update {
			c.inPlace = true
			close(c.created)
			continue
		}
		c.oldID = act.Container
		go func() {
			defer close(c.created)
			spec := containerSpec(a.Project.Name, s, sp, act.Slot, a.Secrets[s.Name])
			eng := a.host(act.Host).Engine()
			c.newID, c.createErr = eng.Create(ctx, spec)
			if c.createErr == nil {
				// Marked before it can start, even if the run is being
				// interrupted (the undo removes it by its ID): if this run
				// ends before the container is seen healthy, the next
				// one knows.
				mctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), markTimeout)
				if err := a.host(act.Host).MarkUnchecked(mctx, a.Project.Name, c.newID, true); err != nil {
					c.createErr = err
				}
				cancel()
			}
			if c.createErr != nil && (ctx.Err() != nil || c.newID != "") {
				// A create cut short may still be carried out by the
				// engine: what it made, if anything, goes.
				rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
				if c.newID != "" {
					eng.Remove(rctx, c.newID, true)
				} else {
					removeLate(rctx, eng, spec.Name)
				}
				cancel()
				a.unmark(s.Name, act.Host, c.newID)
				c.newID = ""
			}
		}()
	}
	return changes
}

// removeLate removes the container called name that a create cut short
// may still make: the engine can finish it after the caller gave up, so a
// removal that finds nothing looks again for a moment.
func removeLate(ctx context.Context, eng Engine, name string) {
	for tries := 0; tries < 8; tries++ {
		if err := eng.Remove(ctx, name, true); !errors.Is(err, executor.ErrNotFound) {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// discard removes the new containers of changes that were created for a
// step that did not run.
func (a *Applier) discard(s *plan.Service, changes []*change) {
	for _, c := range changes {
		<-c.created
		if c.newID != "" {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			if a.host(c.act.Host).Engine().Remove(ctx, c.newID, true) == nil {
				a.unmark(s.Name, c.act.Host, c.newID)
			}
			cancel()
		}
	}
}

// settled waits for a stop of the old container still going on.
func (c *change) settled() {
	if c.stopping != nil {
		<-c.stopping
	}
}

func (a *Applier) service(ctx context.Context, s *plan.Service, sp *plan.ServicePlan) (o Outcome) {
	o = Outcome{Service: s.Name}
	var starts, creates, rolling, removes []*plan.Action
	replaces, updates := 0, 0
	for _, act := range sp.Actions {
		switch act.Kind {
		case plan.Start:
			starts = append(starts, act)
		case plan.Create:
			creates = append(creates, act)
		case plan.Replace:
			rolling = append(rolling, act)
			replaces++
		case plan.Update:
			// An update in place goes in the rolling steps too, gated on
			// health and undone on rollback: a limit too low breaks an
			// instance as surely as a bad image.
			rolling = append(rolling, act)
			updates++
		case plan.Remove:
			removes = append(removes, act)
		default:
			o.Unchanged++
		}
	}
	planned := len(sp.Actions) - o.Unchanged
	// Whatever the plan asked for and was neither done nor failed nor
	// undone was not attempted; counted once, here, however the service
	// ended.
	defer func() {
		o.NotAttempted = planned - o.Changed - o.Failed - o.Undone
		if ctx.Err() != nil && o.Err != nil && !o.RolledBack {
			o.Interrupted = true
		}
	}()
	if planned == 0 {
		return o
	}
	var newContainers []*plan.Action
	for _, act := range sp.Actions {
		if act.Kind == plan.Create || act.Kind == plan.Replace {
			newContainers = append(newContainers, act)
		}
	}
	var cut []string
	for _, act := range sp.Actions {
		if act.Kind != plan.Unchanged && a.host(act.Host) == nil && !slices.Contains(cut, act.Host) {
			cut = append(cut, act.Host)
		}
	}
	if len(cut) > 0 {
		o.Err = fmt.Errorf("not connected to %s: nothing of this service was changed", strings.Join(cut, ", "))
		return o
	}

	// Everything a new container needs is made ready first: a failure here
	// has changed nothing. The instances of the hosts that could not be
	// made ready count as failed.
	readied := newContainers
	if s.Proxy != nil {
		// Every host where an instance changes needs its proxy: to put
		// a new container in the route, or to take an old one out.
		readied = nil
		for _, act := range sp.Actions {
			if act.Kind != plan.Unchanged {
				readied = append(readied, act)
			}
		}
	}
	if errs := a.prepare(ctx, s, sp, readied); len(errs) > 0 {
		var all []error
		for _, host := range slices.Sorted(maps.Keys(errs)) {
			all = append(all, onHost(host, errs[host]))
		}
		for _, act := range readied {
			// Cut short by an interruption, they were not attempted.
			if errs[act.Host] != nil && ctx.Err() == nil {
				o.Failed++
			}
		}
		o.Err = fmt.Errorf("nothing of this service was changed: %w", errors.Join(all...))
		if ctx.Err() != nil {
			o.Err = errors.New("interrupted while the hosts were made ready: nothing of this service was changed; run fleet apply again to go on")
		}
		return o
	}

	// A copy that is in the way of its slot's new container (one never
	// seen healthy, say, beside the copy it was to replace) goes first:
	// it may hold the slot's host ports.
	inTheWay, removes := inTheWayOf(sp.Actions, removes)
	f := a.parallel(ctx, s.Name, inTheWay, a.removeFn(s, sp))
	o.Failed += f
	o.changed(plan.Remove, len(inTheWay)-f)
	if f > 0 {
		o.Err = fmt.Errorf("%d of %d copies in the way of a new container could not be removed: nothing else of this service was changed", f, len(inTheWay))
		return o
	}
	if ctx.Err() != nil {
		o.Err = errors.New("interrupted: run fleet apply again to go on")
		return o
	}

	f = a.parallel(ctx, s.Name, starts, func(ctx context.Context, act *plan.Action) error {
		a.event(Event{Service: s.Name, Host: act.Host, Slot: act.Slot, What: "starting (was " + strings.Join(act.Reasons, "; ") + ")", Begin: true})
		h := a.host(act.Host)
		if err := h.MarkUnchecked(ctx, a.Project.Name, act.Container, true); err != nil {
			return err
		}
		if err := h.Engine().Start(ctx, act.Container); err != nil {
			return err
		}
		if err := waitHealthy(ctx, h, act.Container, s, a.progress(s, act), 0); err != nil {
			return err
		}
		if _, err := a.serve(ctx, s, act.Host, act.Container, ""); err != nil {
			return err
		}
		a.unmark(s.Name, act.Host, act.Container)
		a.event(Event{Service: s.Name, Host: act.Host, Slot: act.Slot, What: "started, healthy", End: true})
		return nil
	})
	o.Failed += f
	o.changed(plan.Start, len(starts)-f)
	if ctx.Err() != nil {
		o.Err = errors.New("interrupted: run fleet apply again to go on")
		return o
	}

	// Creates take nothing down and go at once; replacements and updates
	// in place go in the steps of the update policy.
	steps := rollingSteps(creates, rolling, s.Update.Parallelism)
	total := len(creates) + len(rolling)
	startFirst := s.Update.Order == "start-first"
	if startFirst && len(s.Ports) > 0 && replaces > 0 {
		startFirst = false
		a.event(Event{Service: s.Name, What: "start-first needs the host ports free for the new container; this service publishes fixed ports, so each instance is stopped first"})
	}
	a.flightMu.Lock()
	if a.startFirst == nil {
		a.startFirst = map[string]bool{}
	}
	a.startFirst[s.Name] = startFirst
	a.flightMu.Unlock()
	var done, failures []*change
	// Each step's new containers are created while the step before it
	// runs: creating starts nothing and binds no port, and it is then off
	// the step's own time. Those of a step that never runs are removed.
	var next []*change
	if len(steps) > 0 {
		next = a.create(ctx, s, sp, steps[0])
	}
	for n, step := range steps {
		a.event(Event{Service: s.Name, What: fmt.Sprintf("step %d of %d: %s", n+1, len(steps), instanceList(step)),
			Step: n + 1, Steps: len(steps), Instances: len(step)})
		changes := next
		var wg sync.WaitGroup
		for _, c := range changes {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if c.inPlace {
					c.err = a.update(ctx, s, sp, c)
				} else {
					c.err = a.replace(ctx, s, sp, c, startFirst)
				}
			}()
		}
		next = nil
		if n+1 < len(steps) {
			next = a.create(ctx, s, sp, steps[n+1])
		}
		wg.Wait()
		for _, c := range changes {
			if c.err == nil {
				done = append(done, c)
				continue
			}
			if ctx.Err() != nil && errors.Is(c.err, context.Canceled) {
				// Cut short by an interruption: undone, not failed; not
				// attempted if it had not begun.
				if !c.touched() {
					a.event(Event{Service: s.Name, Host: c.act.Host, Slot: c.act.Slot, What: "interrupted before it began", End: true})
					a.revert(s, c)
					continue
				}
				a.event(Event{Service: s.Name, Host: c.act.Host, Slot: c.act.Slot, What: "interrupted: " + c.undoing(), End: true})
				if a.revert(s, c) == nil {
					o.Undone++
				} else {
					o.Failed++
				}
				continue
			}
			failures = append(failures, c)
			a.event(Event{Service: s.Name, Host: c.act.Host, Slot: c.act.Slot, What: "failed", Err: c.err, End: true})
			// The failed instance goes back at once: the service never has
			// more instances down than the step allows.
			c.backErr = a.revert(s, c)
		}
		if ctx.Err() != nil {
			o.Err = fmt.Errorf("interrupted after step %d of %d: the step in flight was finished or undone; run fleet apply again to go on", n+1, len(steps))
			break
		}
		if float64(len(failures))/float64(total) > s.Update.MaxFailureRatio {
			switch s.Update.FailureAction {
			case "rollback":
				a.event(Event{Service: s.Name, What: fmt.Sprintf("%d of %d instances failed: rolling back every changed instance", len(failures), total)})
				notBack := a.revertAll(s, done)
				o.RolledBack, o.Undone, o.Failed, done = true, o.Undone+len(done)-len(notBack), o.Failed+len(notBack), nil
				back := "every instance is back on its previous container"
				switch prev := previousRevision(sp); {
				case prev > 0:
					back = fmt.Sprintf("rolled back to revision %d", prev)
				case replaces == 0 && updates > 0:
					back = "every instance is back on its previous limits and restart policy"
				case replaces == 0 && o.Unchanged == 0:
					back = "the new instances were removed (there was no previous revision)"
				case replaces == 0:
					back = "the new instances were removed"
				}
				switch {
				case updates > 0 && replaces == 0 && len(creates) > 0:
					back += ", the new instances were removed"
				case updates > 0 && replaces > 0:
					back += ", and those updated in place on their previous limits and restart policy"
				}
				for _, c := range notBack {
					back += fmt.Sprintf("; %s/%d could not be put back: %s", c.act.Host, c.act.Slot, instanceError(c, c.err))
				}
				o.Err = fmt.Errorf("%s; %s%s", failedInstances(failures, total), back, notPutBack(failures))
			case "pause":
				o.Paused = true
				o.Err = fmt.Errorf("%s%s; paused after step %d of %d (failure_action: pause): fix the cause and run fleet apply to go on, or fleet rollback %s", failedInstances(failures, total), notPutBack(failures), n+1, len(steps), s.Name)
			}
			if o.Err != nil {
				break
			}
		}
	}
	a.discard(s, next)
	o.Failed += len(failures)
	for _, c := range done {
		o.changed(c.act.Kind, 1)
	}
	if o.Err == nil && len(failures) > 0 {
		policy := "failure_action: continue"
		if s.Update.FailureAction != "continue" {
			policy = "within what failure_action: " + s.Update.FailureAction + " allows"
		}
		o.Err = fmt.Errorf("%s (%s, max_failure_ratio %g)%s", failedInstances(failures, total), policy, s.Update.MaxFailureRatio, notPutBack(failures))
	}
	// The old containers of what succeeded are not needed any more; they
	// go while the revision is recorded and the next service starts.
	a.cleanup.Add(1)
	go func() {
		defer a.cleanup.Done()
		for _, c := range done {
			c.settled()
		}
		a.parallel(context.WithoutCancel(ctx), s.Name, oldOf(done), func(ctx context.Context, act *plan.Action) error {
			if err := a.host(act.Host).Engine().Remove(ctx, act.Container, true); !errors.Is(err, executor.ErrNotFound) && err != nil {
				return err
			}
			a.unmark(s.Name, act.Host, act.Container)
			return nil
		})
	}()
	if o.Err != nil {
		return o
	}
	// A host that loses its last instance leaves the load balancers
	// first.
	if leaving := leavingHosts(sp); len(leaving) > 0 && a.balanceNeeded(s, sp) {
		if err := a.balance(ctx, s, sp, leaving); err != nil {
			o.Err = fmt.Errorf("the load balancers could not leave %s out, so no instance was removed: %w", strings.Join(leaving, ", "), err)
			return o
		}
	}
	f = a.parallel(ctx, s.Name, removes, a.removeFn(s, sp))
	o.Failed += f
	o.changed(plan.Remove, len(removes)-f)
	if o.Failed > 0 {
		o.Err = fmt.Errorf("%d of %d changes failed", o.Failed, planned)
	}
	return o
}

// removeFn returns what removes one instance of s. Behind the proxy, a
// copy in the way of its slot's other container (a run killed after it
// put a new container in the route, before it trusted it, leaves one)
// gives that container its place in the route in one change, so that the
// slot keeps serving.
func (a *Applier) removeFn(s *plan.Service, sp *plan.ServicePlan) func(context.Context, *plan.Action) error {
	return func(ctx context.Context, act *plan.Action) error {
		a.event(Event{Service: s.Name, Host: act.Host, Slot: act.Slot, What: "removing: " + strings.Join(act.Reasons, "; "), Begin: true})
		eng := a.host(act.Host).Engine()
		standIn := ""
		for _, other := range sp.Actions {
			if other.Host == act.Host && other.Slot == act.Slot && other.Kind != plan.Remove && other.Container != "" {
				standIn = other.Container
			}
		}
		served := false
		if s.Proxy != nil && standIn != "" {
			if addr, err := a.serve(ctx, s, act.Host, standIn, act.Container); err == nil {
				served = true
				if err := a.drain(ctx, s, act.Host, addr); err != nil {
					return err
				}
			}
		}
		if !served {
			if err := a.unserve(ctx, s, act.Host, act.Container); err != nil {
				return err
			}
		}
		a.preStop(ctx, s, act, act.Container)
		if err := eng.Stop(ctx, act.Container, s.StopGrace); err != nil && !errors.Is(err, executor.ErrNotFound) {
			return err
		}
		if err := eng.Remove(ctx, act.Container, true); err != nil && !errors.Is(err, executor.ErrNotFound) {
			return err
		}
		a.unmark(s.Name, act.Host, act.Container)
		a.event(Event{Service: s.Name, Host: act.Host, Slot: act.Slot, What: "removed", End: true})
		return nil
	}
}

// inTheWayOf splits removes into those of a host and slot that another
// action changes, and the rest.
func inTheWayOf(actions, removes []*plan.Action) (inTheWay, rest []*plan.Action) {
	type place struct {
		host string
		slot int
	}
	changed := map[place]bool{}
	for _, act := range actions {
		if act.Kind != plan.Remove && act.Kind != plan.Unchanged {
			changed[place{act.Host, act.Slot}] = true
		}
	}
	for _, act := range removes {
		if changed[place{act.Host, act.Slot}] {
			inTheWay = append(inTheWay, act)
		} else {
			rest = append(rest, act)
		}
	}
	return inTheWay, rest
}

// onHost names the host of err, unless err names it already.
func onHost(host string, err error) error {
	var he *executor.HostError
	if errors.As(err, &he) && he.Host == host {
		return err
	}
	return fmt.Errorf("host %s: %w", host, err)
}

// failedInstances says how many instances failed and why, naming the first
// few with their errors: a port conflict or a lost connection is not a
// failed health check.
func failedInstances(failures []*change, total int) string {
	var why []string
	for i, c := range failures {
		if i == 3 {
			why = append(why, fmt.Sprintf("and %d more", len(failures)-i))
			break
		}
		why = append(why, fmt.Sprintf("%s/%d: %s", c.act.Host, c.act.Slot, instanceError(c, c.err)))
	}
	return fmt.Sprintf("%d of %d instances failed (%s)", len(failures), total, strings.Join(why, "; "))
}

// notPutBack says which failed instances could not be put back, and why:
// such an instance is not on its previous container, whatever the
// service's outcome says.
func notPutBack(failures []*change) string {
	var b strings.Builder
	for _, c := range failures {
		if c.backErr != nil {
			fmt.Fprintf(&b, "; %s/%d could not be put back: %s", c.act.Host, c.act.Slot, instanceError(c, c.backErr))
		}
	}
	return b.String()
}

// instanceError is err on one line, without the host that the instance
// names already.
func instanceError(c *change, err error) string {
	return strings.ReplaceAll(strings.ReplaceAll(err.Error(), "host "+c.act.Host+": ", ""), "\n", "; ")
}

// progress returns what tells displays how the work on an instance is
// going.
func (a *Applier) progress(s *plan.Service, act *plan.Action) func(string) {
	return func(what string) {
		a.event(Event{Service: s.Name, Host: act.Host, Slot: act.Slot, What: what, Progress: true})
	}
}

// instanceList names a step's instances as host/slot, the first few of a
// long list.
func instanceList(acts []*plan.Action) string {
	var names []string
	for i, act := range acts {
		if i == 6 {
			names = append(names, fmt.Sprintf("and %d more", len(acts)-i))
			break
		}
		names = append(names, fmt.Sprintf("%s/%d", act.Host, act.Slot))
	}
	return strings.Join(names, ", ")
}

// oldOf lists the actions whose old containers are to be removed.
func oldOf(done []*change) []*plan.Action {
	var out []*plan.Action
	for _, c := range done {
		if c.oldID != "" {
			out = append(out, &plan.Action{Host: c.act.Host, Slot: c.act.Slot, Container: c.oldID})
		}
	}
	return out
}

func previousRevision(sp *plan.ServicePlan) int {
	prev := 0
	for _, a := range sp.Actions {
		// What is removed is not gone back to.
		if a.Kind != plan.Remove && a.Revision != sp.Revision && a.Revision > prev {
			prev = a.Revision
		}
	}
	return prev
}

// replace makes one instance's new container and gates it on health:
// stop-first stops the old container before starting the new one;
// start-first starts the new one beside the old and stops the old once the
// new one is healthy, without waiting: the old one is surplus by then, and
// the next step need not wait for it to drain. The old container is kept,
// stopped.
func (a *Applier) replace(ctx context.Context, s *plan.Service, sp *plan.ServicePlan, c *change, startFirst bool) error {
	h := a.host(c.act.Host)
	eng := h.Engine()
	what := "creating"
	if c.oldID != "" {
		what = "replacing: " + strings.Join(c.act.Reasons, "; ")
	}
	a.event(Event{Service: s.Name, Host: c.act.Host, Slot: c.act.Slot, What: what, Begin: true})
	// The new container was created while the old one still served (see
	// create).
	progress := a.progress(s, c.act)
	<-c.created
	if c.createErr != nil {
		return c.createErr
	}
	if err := ctx.Err(); err != nil {
		return err // interrupted before it began
	}
	id := c.newID
	if c.oldID != "" && !startFirst {
		// Marked before asking: an interrupted request may still have
		// stopped it (or taken it out of its route), and starting a
		// running container changes nothing.
		c.oldStop = true
		// Behind the proxy, out of its route and drained first.
		if err := a.unserve(ctx, s, c.act.Host, c.oldID); err != nil {
			return err
		}
		a.preStop(ctx, s, c.act, c.oldID)
		progress("stopping the old container")
		// One that is gone already (a run stopped at once may have left
		// its removal under way) is as good as stopped.
		if err := eng.Stop(ctx, c.oldID, s.StopGrace); errors.Is(err, executor.ErrNotFound) {
			c.oldGone = true
		} else if err != nil {
			return err
		}
		c.stopped = true
	}
	progress("starting the new container")
	c.started = true
	if err := eng.Start(ctx, id); err != nil {
		return err
	}
	progress("waiting for its health check")
	if err := waitHealthy(ctx, h, id, s, progress, 0); err != nil {
		return err
	}
	// Behind the proxy, the new container takes the old one's place in
	// the route in one change; the old one is drained before it stops.
	replaced := ""
	if startFirst {
		replaced = c.oldID
	}
	if replaced != "" && s.Proxy != nil {
		c.oldStop = true // out of the route: a rollback puts it back
	}
	oldAddr, err := a.serve(ctx, s, c.act.Host, id, replaced)
	if err != nil {
		return err
	}
	if s.Proxy != nil {
		progress("in its route")
	}
	a.unmarkLater(s.Name, c.act.Host, id)
	a.event(Event{Service: s.Name, Host: c.act.Host, Slot: c.act.Slot, What: fmt.Sprintf("healthy (revision %d)", sp.Revision), End: true})
	if c.oldID != "" && startFirst {
		c.oldStop = true
		c.stopping = make(chan struct{})
		go func() {
			defer close(c.stopping)
			if err := a.drain(ctx, s, c.act.Host, oldAddr); err != nil {
				a.event(Event{Service: s.Name, Host: c.act.Host, Slot: c.act.Slot, What: "draining the previous container failed", Err: err})
			}
			a.preStop(context.WithoutCancel(ctx), s, c.act, c.oldID)
			if err := eng.Stop(context.WithoutCancel(ctx), c.oldID, s.StopGrace); err != nil && !errors.Is(err, executor.ErrNotFound) {
				a.event(Event{Service: s.Name, Host: c.act.Host, Slot: c.act.Slot, What: "stopping the previous container failed", Err: err})
			}
		}()
	}
	return nil
}

// preStop runs the service's pre_stop command in a running container
// that is about to be stopped, for at most stop_grace. What it says and
// how it ends are events; the container is stopped whatever its outcome.
func (a *Applier) preStop(ctx context.Context, s *plan.Service, act *plan.Action, id string) {
	if len(s.PreStop) == 0 {
		return
	}
	eng := a.host(act.Host).Engine()
	if c, err := eng.Inspect(ctx, id); err != nil || !c.Running {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, s.StopGrace)
	defer cancel()
	var said bytes.Buffer
	code, err := eng.Exec(ctx, id, s.PreStop, &said, &said)
	what := "pre_stop ran"
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		what = "pre_stop did not end within stop_grace"
	case err != nil:
		what = "pre_stop could not run"
	case code != 0:
		what = fmt.Sprintf("pre_stop exited %d", code)
	}
	if text := strings.TrimSpace(said.String()); text != "" {
		what += ": " + lastLine(text)
	}
	a.event(Event{Service: s.Name, Host: act.Host, Slot: act.Slot, What: what + "; stopping the container", Err: err})
}

// lastLine is the last line of text, at most 200 bytes of it.
func lastLine(text string) string {
	if i := strings.LastIndexByte(text, '\n'); i >= 0 {
		text = text[i+1:]
	}
	if len(text) > 200 {
		text = text[:200] + "…"
	}
	return text
}

// update changes one instance's limits and restart policy in place and
// gates it on health as a new container is: a memory limit too low shows
// as a container that is killed and restarted, or that exits. The engine
// keeps the container, so nothing is down while it passes.
func (a *Applier) update(ctx context.Context, s *plan.Service, sp *plan.ServicePlan, c *change) error {
	h := a.host(c.act.Host)
	eng := h.Engine()
	id := c.act.Container
	a.event(Event{Service: s.Name, Host: c.act.Host, Slot: c.act.Slot, What: "updating in place: " + strings.Join(c.act.Reasons, "; "), Begin: true})
	progress := a.progress(s, c.act)
	if err := ctx.Err(); err != nil {
		return err // interrupted before it began
	}
	// The container as it is: its restarts so far (one more during the
	// gate is a crash), and what a rollback puts back, exactly, even if
	// it was changed by hand since the plan was made.
	before, err := eng.Inspect(ctx, id)
	if err != nil {
		return err
	}
	if (before.CPUs == 0 && sp.Resources.CPUs != 0) || (before.Memory == 0 && sp.Resources.Memory != 0) {
		return errors.New("it has no limit now where the plan saw one (changed by hand since?); a limit set in place could not be lifted by a rollback: run fleet plan again")
	}
	c.was = before
	if err := h.MarkUnchecked(ctx, a.Project.Name, id, true); err != nil {
		return err
	}
	// Marked before asking: an interrupted request may still be carried
	// out.
	c.updated = true
	if err := eng.Update(ctx, id, sp.Resources.CPUs, sp.Resources.Memory, sp.Restart.String()); err != nil {
		return err
	}
	restarts := before.RestartCount
	if !before.Running {
		// A stopped instance is started after its update (the plan says
		// so); a start counts its restarts from zero.
		progress("starting it")
		if err := eng.Start(ctx, id); err != nil {
			return err
		}
		restarts = 0
	}
	progress("waiting for its health check")
	if err := waitHealthy(ctx, h, id, s, progress, restarts); err != nil {
		return err
	}
	if _, err := a.serve(ctx, s, c.act.Host, id, ""); err != nil {
		return err
	}
	a.unmarkLater(s.Name, c.act.Host, id)
	a.event(Event{Service: s.Name, Host: c.act.Host, Slot: c.act.Slot, What: "updated in place, healthy", End: true})
	return nil
}

// unmark takes away the mark of a container as not yet seen healthy: it
// was seen healthy, or it is gone, or back as it was. It is done even
// when the run was interrupted; where it fails, the next run makes the
// container anew, which costs a restart and loses nothing.
func (a *Applier) unmark(service, host, id string) {
	if id == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), markTimeout)
	defer cancel()
	if err := a.host(host).MarkUnchecked(ctx, a.Project.Name, id, false); err != nil {
		a.event(Event{Service: service, Host: host, What: "the mark of a container as not yet healthy stays (the next apply makes it anew)", Err: err})
	}
}

// unmarkLater takes away the mark of a container seen healthy beside
// what comes next, not before it: the next step need not wait on it, and
// the run ends only once it is done. A run killed in between leaves the
// mark, and the next run makes that container anew.
func (a *Applier) unmarkLater(service, host, id string) {
	a.cleanup.Add(1)
	go func() {
		defer a.cleanup.Done()
		a.unmark(service, host, id)
	}()
}

// undoing says what undoing the change does, for progress output.
func (c *change) undoing() string {
	if c.inPlace {
		return "putting its previous limits back"
	}
	return "putting the previous container back"
}

// revert undoes one instance's change: the new container goes, the old one
// runs again; or, for an update in place, the previous limits and restart
// policy come back. It runs to the end even when the apply was
// interrupted.
func (a *Applier) revert(s *plan.Service, c *change) error {
	limit := s.StopGrace + time.Minute
	if s.Proxy != nil {
		// Two drains (the old container's, still under way, and the new
		// one's), and the old one's check before it is served again.
		limit += 2*s.Proxy.DrainTimeout + s.Update.HealthyDeadline + 2*routeTimeout
	}
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	eng := a.host(c.act.Host).Engine()
	if !c.touched() {
		// Nothing to put back: a new container made ahead goes.
		<-c.created
		if c.newID != "" && eng.Remove(ctx, c.newID, true) == nil {
			a.unmark(s.Name, c.act.Host, c.newID)
		}
		if c.inPlace {
			a.unmark(s.Name, c.act.Host, c.act.Container) // marked, never changed
		}
		return nil
	}
	k := instanceKey{s.Name, c.act.Host, c.act.Slot}
	a.setFlight(k, flight{c.undoing(), ""})
	defer a.setFlight(k, flight{})
	c.settled()
	undo := func() error {
		switch {
		case c.inPlace:
			return restore(ctx, eng, c)
		case c.oldGone && c.err == nil:
			// Healthy, and nothing to go back to: it stays.
			return fmt.Errorf("its previous container %s is gone, so its new one stays", executor.ShortID(c.oldID))
		case c.oldGone:
			return errors.Join(eng.Remove(ctx, c.newID, true),
				fmt.Errorf("its previous container %s is gone: fleet apply makes a new one", executor.ShortID(c.oldID)))
		case s.Proxy != nil:
			return a.revertProxied(ctx, s, c)
		}
		var errs []error
		if c.newID != "" {
			// Gone already, when a try cut short by a lost connection
			// removed it.
			if err := eng.Remove(ctx, c.newID, true); !errors.Is(err, executor.ErrNotFound) {
				errs = append(errs, err)
			}
		}
		switch {
		case c.oldID != "" && c.stopped:
			errs = append(errs, eng.Start(ctx, c.oldID))
		case c.oldID != "" && c.oldStop:
			errs = append(errs, startAgain(ctx, eng, c.oldID))
		}
		return errors.Join(errs...)
	}
	err := undo()
	if errors.Is(err, executor.ErrConnLost) && ctx.Err() == nil {
		// Every step of an undo can be done twice: once more, over a
		// new connection.
		a.event(Event{Service: s.Name, Host: c.act.Host, Slot: c.act.Slot, What: "connection lost while " + c.undoing() + ": connecting again", Progress: true})
		err = undo()
	}
	if err != nil {
		a.event(Event{Service: s.Name, Host: c.act.Host, Slot: c.act.Slot, What: c.undoing() + " failed", Err: err})
		return err
	}
	// What this run marked is gone, or back as it was before.
	switch {
	case c.inPlace:
		a.unmark(s.Name, c.act.Host, c.act.Container)
	case c.newID != "" && !(c.oldGone && c.err == nil):
		a.unmark(s.Name, c.act.Host, c.newID)
	}
	what := "removed the failed new container"
	switch {
	case c.inPlace:
		what = "back on its previous limits and restart policy"
	case c.oldID != "":
		what = fmt.Sprintf("back on revision %d", c.act.Revision)
	}
	a.event(Event{Service: s.Name, Host: c.act.Host, Slot: c.act.Slot, What: what})
	return nil
}

// restore puts back the limits and restart policy an update in place
// changed, as they were just before it (what the plan shows as before,
// unless they were changed by hand since), and makes sure that a
// container that ran before runs again: a limit too low may have stopped
// it.
func restore(ctx context.Context, eng Engine, c *change) error {
	was := c.was
	if err := eng.Update(ctx, c.act.Container, was.CPUs, was.Memory, was.Restart); err != nil {
		return err
	}
	if !was.Running {
		return nil
	}
	now, err := eng.Inspect(ctx, c.act.Container)
	if err != nil || now.Running {
		return err
	}
	return eng.Start(ctx, c.act.Container)
}

// revertAll undoes the changes, as many at once as the update policy
// changes at once: a rollback takes no more instances down at a time
// than the rollout did. It returns those that could not be put back, each
// with its error in err.
func (a *Applier) revertAll(s *plan.Service, changes []*change) []*change {
	var notBack []*change
	var mu sync.Mutex
	i := 0
	for _, n := range Steps(s.Update.Parallelism, len(changes)) {
		var wg sync.WaitGroup
		for _, c := range changes[i : i+n] {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := a.revert(s, c); err != nil {
					mu.Lock()
					c.err = err
					notBack = append(notBack, c)
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		i += n
	}
	return notBack
}

// startAgain starts a container that this run stopped, and makes sure it
// runs: a stop request cut short by an interruption may still be carried
// out by the engine after the start.
func startAgain(ctx context.Context, eng Engine, id string) error {
	var err error
	for i := 0; i < 20; i++ {
		if err = eng.Start(ctx, id); err == nil {
			var c *executor.Container
			if c, err = eng.Inspect(ctx, id); err == nil && c.Running {
				time.Sleep(300 * time.Millisecond)
				if c, err = eng.Inspect(ctx, id); err == nil && c.Running {
					return nil
				}
			}
		}
		time.Sleep(250 * time.Millisecond)
	}
	if err == nil {
		err = fmt.Errorf("container %s does not stay running", id)
	}
	return err
}

// prepare makes sure every host that gets a new container has the
// service's networks, volumes and image, and, for a proxied service,
// that every host where an instance changes has its proxy (made where a
// container is to serve); it returns the error of each host where that
// failed.
func (a *Applier) prepare(ctx context.Context, s *plan.Service, sp *plan.ServicePlan, acts []*plan.Action) map[string]error {
	hosts := map[string]bool{}
	newOn := map[string]bool{}
	servedOn := map[string]bool{}
	var list []*plan.Action
	for _, act := range acts {
		if !hosts[act.Host] {
			hosts[act.Host] = true
			list = append(list, &plan.Action{Host: act.Host}) // the host's work, slot 0
		}
		if act.Kind == plan.Create || act.Kind == plan.Replace {
			newOn[act.Host] = true
		}
		if act.Kind != plan.Remove {
			servedOn[act.Host] = true
		}
	}
	var mu sync.Mutex
	errs := map[string]error{}
	a.parallel(ctx, s.Name, list, func(ctx context.Context, act *plan.Action) error {
		err := a.prepareHost(ctx, s, sp, act.Host, newOn[act.Host], servedOn[act.Host])
		if err != nil {
			mu.Lock()
			errs[act.Host] = err
			mu.Unlock()
		}
		return err
	})
	return errs
}

func (a *Applier) prepareHost(ctx context.Context, s *plan.Service, sp *plan.ServicePlan, host string, newContainers, served bool) error {
	eng := a.host(host).Engine()
	if s.Proxy != nil {
		if err := a.ensureProxy(ctx, host, served); err != nil {
			return err
		}
	}
	if !newContainers {
		return nil
	}
	labels := map[string]string{plan.LabelProject: a.Project.Name}
	for _, n := range sp.Template.Networks {
		if err := eng.EnsureNetwork(ctx, hostName(a.Project.Name, n), labels); err != nil {
			return err
		}
	}
	for _, m := range sp.Template.Volumes {
		if m.Named {
			if err := eng.EnsureVolume(ctx, hostName(a.Project.Name, m.Source), labels); err != nil {
				return err
			}
		}
	}
	image := sp.Template.Image
	had, err := eng.ImageInspect(ctx, image)
	present := err == nil
	if err != nil && !errors.Is(err, executor.ErrNotFound) {
		return err
	}
	if s.ImageDelivery == "push" {
		var sent int64
		err := ErrNothingToPush
		if a.Push != nil {
			sent, err = a.Push(ctx, host, image)
		}
		switch {
		case errors.Is(err, ErrNothingToPush) && present:
			return nil // what the host has serves
		case errors.Is(err, ErrNothingToPush):
			return fmt.Errorf("image %s is not on the host, and this machine has none to push (image_delivery: push): run fleet apply where the image is built", image)
		case err != nil:
			return err
		}
		if sent > 0 {
			a.event(Event{Service: s.Name, Host: host, What: fmt.Sprintf("pushed %s (%s sent)", image, plan.SizeText(sent))})
		}
		return nil
	}
	switch {
	case s.Pull == "always" || (s.Pull == "missing" && !present && s.ImageDelivery == "pull"):
		a.event(Event{Service: s.Name, Host: host, What: "pulling " + image, Begin: true})
		if err := eng.Pull(ctx, image, a.registryAuth(image)); err != nil {
			return err
		}
		// Recorded beside the rollout: a record lost costs only the
		// pruning of that image, and the first step need not wait on it.
		a.cleanup.Add(1)
		go func() {
			defer a.cleanup.Done()
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), markTimeout)
			defer cancel()
			a.recordPull(rctx, s, host, image, had)
		}()
		a.event(Event{Service: s.Name, Host: host, What: "pulled " + image, End: true})
		return nil
	case !present:
		return fmt.Errorf("image %s is not on the host and pull is never", image)
	}
	return nil
}

// ErrNothingToPush is an Applier's Push without the image to push.
var ErrNothingToPush = errors.New("no image to push")

// recordPull records the image a pull brought to host, unless the host
// had it already (had): that one is not fleet's to prune. A record that
// cannot be written costs only the pruning of that image, and is said.
func (a *Applier) recordPull(ctx context.Context, s *plan.Service, host, image string, had *executor.Image) {
	img, err := a.host(host).Engine().ImageInspect(ctx, image)
	if err == nil && had != nil && had.ID == img.ID {
		return
	}
	if err == nil {
		err = a.host(host).RecordImage(ctx, a.Project.Name, img.ID, image)
	}
	if err != nil {
		a.event(Event{Service: s.Name, Host: host, What: fmt.Sprintf("warning: fleet prune will not remove %s from this host: %v", image, err)})
	}
}

// registryAuth returns the credentials for the registry an image comes
// from, if fleet.yaml has them.
func (a *Applier) registryAuth(image string) *executor.RegistryAuth {
	first := executor.ImageRegistry(image)
	r, ok := a.Project.Registries[first]
	if !ok {
		return nil
	}
	return &executor.RegistryAuth{Username: r.Username, Password: a.Secrets["registry:"+first]["password"], ServerAddress: first}
}

// parallel runs fn for every action at once and returns how many failed;
// each failure is reported as an event.
func (a *Applier) parallel(ctx context.Context, service string, acts []*plan.Action, fn func(context.Context, *plan.Action) error) int {
	var wg sync.WaitGroup
	var mu sync.Mutex
	failed := 0
	for _, act := range acts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := fn(ctx, act); err != nil {
				mu.Lock()
				failed++
				mu.Unlock()
				a.event(Event{Service: service, Host: act.Host, Slot: act.Slot, What: "failed", Err: err, End: true})
			}
		}()
	}
	wg.Wait()
	return failed
}
