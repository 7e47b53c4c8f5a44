package rollout

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/fleetdeploy/fleet/executor"
	"github.com/fleetdeploy/fleet/plan"
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
	Fleet   *Fleet
	// Secrets are the values of every secret, by service, and registry
	// passwords under "registry:HOST".
	Secrets map[string]map[string]string
	// Events receives progress; it may be called from many goroutines at
	// once, one call at a time.
	Events func(Event)
	// Who (user@machine) and Cause (the --message, or "" for a summary of
	// the changes) go into the record of each new revision.
	Who, Cause string

	mu      sync.Mutex
	cleanup sync.WaitGroup // removals of old containers in flight
}

// Outcome is what happened to one service.
type Outcome struct {
	Service    string
	Changed    int
	Unchanged  int
	Failed     int
	RolledBack bool
	Paused     bool
	Err        error
}

// State says in a word how the service's rollout ended: deployed, rolled
// back, paused or failed.
func (o Outcome) State() string {
	switch {
	case o.RolledBack:
		return "rolled back"
	case o.Paused:
		return "paused"
	case o.Err != nil:
		return "failed"
	}
	return "deployed"
}

// Result is the outcome of every service the plan touched.
type Result struct {
	Outcomes []Outcome
	Duration time.Duration
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

// Err joins the services' errors.
func (r *Result) Err() error {
	var errs []error
	for _, o := range r.Outcomes {
		if o.Err != nil {
			errs = append(errs, fmt.Errorf("service %s: %w", o.Service, o.Err))
		}
	}
	return errors.Join(errs...)
}

func (a *Applier) event(e Event) {
	if a.Events == nil {
		return
	}
	e.Time = time.Now()
	a.mu.Lock()
	defer a.mu.Unlock()
	a.Events(e)
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
	byName := map[string]*plan.ServicePlan{}
	for _, sp := range p.Services {
		byName[sp.Name] = sp
	}
	res := &Result{}
	for _, s := range order {
		sp := byName[s.Name]
		if sp == nil {
			continue
		}
		o := a.service(ctx, s, sp)
		if err := a.record(ctx, s, sp, o); err != nil {
			a.event(Event{Service: s.Name, What: "the revision could not be recorded everywhere", Err: err})
		}
		res.Outcomes = append(res.Outcomes, o)
		if o.Err != nil {
			break
		}
	}
	a.cleanup.Wait()
	res.Duration = time.Since(start)
	return res, nil
}

// record writes the service's new revision, with how it went, on the
// hosts it ran on.
func (a *Applier) record(ctx context.Context, s *plan.Service, sp *plan.ServicePlan, o Outcome) error {
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
		Resources: sp.Resources, Restart: sp.Restart, When: time.Now().UTC(), Who: a.Who, Cause: cause, Outcome: o.State()}
	return recordRevision(context.WithoutCancel(ctx), conns, a.Project.Name, rev, s.History)
}

// change is one instance being changed: a new container, and the old one
// it replaces (none for a create), kept stopped until the whole service is
// done so that a rollback is a start.
type change struct {
	act     *plan.Action
	newID   string
	oldID   string
	oldStop bool // the old container was stopped by this apply
	// created is closed once the new container's create has answered,
	// with newID or createErr.
	created   chan struct{}
	createErr error
	// stopping, for start-first, ends when the old container's stop does:
	// once the new one is healthy the old one is surplus, and the next
	// step need not wait for its graceful stop.
	stopping chan struct{}
	err      error
}

// create starts creating the new containers of a step's instances, in the
// background, and returns their changes.
func (a *Applier) create(ctx context.Context, s *plan.Service, sp *plan.ServicePlan, step []*plan.Action) []*change {
	changes := make([]*change, len(step))
	for i, act := range step {
		c := &change{act: act, oldID: act.Container, created: make(chan struct{})}
		changes[i] = c
		go func() {
			defer close(c.created)
			spec := containerSpec(a.Project.Name, s, sp, act.Slot, a.Secrets[s.Name])
			c.newID, c.createErr = a.Fleet.Conns[act.Host].Engine().Create(ctx, spec)
		}()
	}
	return changes
}

// discard removes the new containers of changes that were created for a
// step that did not run.
func (a *Applier) discard(changes []*change) {
	for _, c := range changes {
		<-c.created
		if c.newID != "" {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			a.Fleet.Conns[c.act.Host].Engine().Remove(ctx, c.newID, true)
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

func (a *Applier) service(ctx context.Context, s *plan.Service, sp *plan.ServicePlan) Outcome {
	o := Outcome{Service: s.Name}
	var updates, starts, creates, replaces, removes []*plan.Action
	for _, act := range sp.Actions {
		switch act.Kind {
		case plan.Update:
			updates = append(updates, act)
		case plan.Start:
			starts = append(starts, act)
		case plan.Create:
			creates = append(creates, act)
		case plan.Replace:
			replaces = append(replaces, act)
		case plan.Remove:
			removes = append(removes, act)
		default:
			o.Unchanged++
		}
	}
	if len(updates)+len(starts)+len(creates)+len(replaces)+len(removes) == 0 {
		return o
	}
	for _, act := range append(append([]*plan.Action{}, creates...), replaces...) {
		if a.Fleet.Conns[act.Host] == nil {
			o.Err = fmt.Errorf("host %s is not connected", act.Host)
			return o
		}
	}

	// Everything a new container needs is made ready first: a failure here
	// has changed nothing.
	if err := a.prepare(ctx, s, sp, append(append([]*plan.Action{}, creates...), replaces...)); err != nil {
		o.Err = err
		return o
	}

	f := a.parallel(ctx, s.Name, updates, func(ctx context.Context, act *plan.Action) error {
		a.event(Event{Service: s.Name, Host: act.Host, Slot: act.Slot, What: "updating in place: " + strings.Join(act.Reasons, "; "), Begin: true})
		eng := a.Fleet.Conns[act.Host].Engine()
		if err := eng.Update(ctx, act.Container, sp.Resources.CPUs, sp.Resources.Memory, sp.Restart.String()); err != nil {
			return err
		}
		// A stopped instance is started after its update (the plan says
		// so); starting a running one changes nothing.
		if err := eng.Start(ctx, act.Container); err != nil {
			return err
		}
		a.event(Event{Service: s.Name, Host: act.Host, Slot: act.Slot, What: "updated", End: true})
		return nil
	})
	o.Failed, o.Changed = o.Failed+f, o.Changed+len(updates)-f
	f = a.parallel(ctx, s.Name, starts, func(ctx context.Context, act *plan.Action) error {
		a.event(Event{Service: s.Name, Host: act.Host, Slot: act.Slot, What: "starting (was " + strings.Join(act.Reasons, "; ") + ")", Begin: true})
		conn := a.Fleet.Conns[act.Host]
		if err := conn.Engine().Start(ctx, act.Container); err != nil {
			return err
		}
		if err := waitHealthy(ctx, conn, act.Container, s, a.progress(s, act)); err != nil {
			return err
		}
		a.event(Event{Service: s.Name, Host: act.Host, Slot: act.Slot, What: "started, healthy", End: true})
		return nil
	})
	o.Failed, o.Changed = o.Failed+f, o.Changed+len(starts)-f

	// New containers: creates take nothing down and go at once; replaces
	// go in the steps of the update policy.
	steps := rollingSteps(creates, replaces, s.Update.Parallelism)
	total := len(creates) + len(replaces)
	startFirst := s.Update.Order == "start-first"
	if startFirst && len(s.Ports) > 0 {
		startFirst = false
		a.event(Event{Service: s.Name, What: "start-first needs the host ports free for the new container; this service publishes fixed ports, so each instance is stopped first"})
	}
	var done []*change
	failed := 0
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
				c.err = a.replace(ctx, s, sp, c, startFirst)
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
			failed++
			a.event(Event{Service: s.Name, Host: c.act.Host, Slot: c.act.Slot, What: "failed", Err: c.err, End: true})
			// The failed instance goes back at once: the service never has
			// more instances down than the step allows.
			a.revert(s, c)
		}
		if ctx.Err() != nil {
			o.Err = fmt.Errorf("interrupted after step %d of %d: the step in flight was finished or undone; run fleet apply again to go on", n+1, len(steps))
			break
		}
		if float64(failed)/float64(total) > s.Update.MaxFailureRatio {
			switch s.Update.FailureAction {
			case "rollback":
				a.event(Event{Service: s.Name, What: fmt.Sprintf("%d of %d instances failed: rolling back every changed instance", failed, total)})
				for _, c := range done {
					a.revert(s, c)
				}
				o.RolledBack, done = true, nil
				o.Err = fmt.Errorf("%d of %d instances failed their health check; rolled back to revision %d", failed, total, previousRevision(sp))
			case "pause":
				o.Paused = true
				o.Err = fmt.Errorf("%d of %d instances failed; paused after step %d of %d (failure_action: pause): fix the cause and run fleet apply to go on, or fleet rollback %s", failed, total, n+1, len(steps), s.Name)
			}
			if o.Err != nil {
				break
			}
		}
	}
	a.discard(next)
	o.Failed += failed
	o.Changed += len(done)
	if o.Err == nil && failed > 0 {
		o.Err = fmt.Errorf("%d of %d instances failed (failure_action: continue, max_failure_ratio %g)", failed, total, s.Update.MaxFailureRatio)
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
			return a.Fleet.Conns[act.Host].Engine().Remove(ctx, act.Container, true)
		})
	}()
	if o.Err != nil {
		return o
	}
	f = a.parallel(ctx, s.Name, removes, func(ctx context.Context, act *plan.Action) error {
		a.event(Event{Service: s.Name, Host: act.Host, Slot: act.Slot, What: "removing: " + strings.Join(act.Reasons, "; "), Begin: true})
		eng := a.Fleet.Conns[act.Host].Engine()
		if err := eng.Stop(ctx, act.Container, s.StopGrace); err != nil && !errors.Is(err, executor.ErrNotFound) {
			return err
		}
		if err := eng.Remove(ctx, act.Container, true); err != nil && !errors.Is(err, executor.ErrNotFound) {
			return err
		}
		a.event(Event{Service: s.Name, Host: act.Host, Slot: act.Slot, What: "removed", End: true})
		return nil
	})
	o.Failed, o.Changed = o.Failed+f, o.Changed+len(removes)-f
	if o.Failed > 0 && o.Err == nil {
		o.Err = fmt.Errorf("%d actions failed", o.Failed)
	}
	return o
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
		if a.Revision != sp.Revision && a.Revision > prev {
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
	conn := a.Fleet.Conns[c.act.Host]
	eng := conn.Engine()
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
	id := c.newID
	if c.oldID != "" && !startFirst {
		// Marked before asking: an interrupted request may still have
		// stopped it, and starting a running container changes nothing.
		c.oldStop = true
		progress("stopping the old container")
		if err := eng.Stop(ctx, c.oldID, s.StopGrace); err != nil {
			return err
		}
	}
	progress("starting the new container")
	if err := eng.Start(ctx, id); err != nil {
		return err
	}
	progress("waiting for its health check")
	if err := waitHealthy(ctx, conn, id, s, progress); err != nil {
		return err
	}
	a.event(Event{Service: s.Name, Host: c.act.Host, Slot: c.act.Slot, What: fmt.Sprintf("healthy (revision %d)", sp.Revision), End: true})
	if c.oldID != "" && startFirst {
		c.oldStop = true
		c.stopping = make(chan struct{})
		go func() {
			defer close(c.stopping)
			if err := eng.Stop(context.WithoutCancel(ctx), c.oldID, s.StopGrace); err != nil && !errors.Is(err, executor.ErrNotFound) {
				a.event(Event{Service: s.Name, Host: c.act.Host, Slot: c.act.Slot, What: "stopping the previous container failed", Err: err})
			}
		}()
	}
	return nil
}

// revert undoes one instance's change: the new container goes, the old one
// runs again. It runs to the end even when the apply was interrupted.
func (a *Applier) revert(s *plan.Service, c *change) {
	ctx, cancel := context.WithTimeout(context.Background(), s.StopGrace+time.Minute)
	defer cancel()
	eng := a.Fleet.Conns[c.act.Host].Engine()
	c.settled()
	var errs []error
	if c.newID != "" {
		errs = append(errs, eng.Remove(ctx, c.newID, true))
	}
	if c.oldID != "" && c.oldStop {
		errs = append(errs, startAgain(ctx, eng, c.oldID))
	}
	if err := errors.Join(errs...); err != nil {
		a.event(Event{Service: s.Name, Host: c.act.Host, Slot: c.act.Slot, What: "putting the previous container back failed", Err: err})
		return
	}
	what := "removed the failed new container"
	if c.oldID != "" {
		what = fmt.Sprintf("back on revision %d", c.act.Revision)
	}
	a.event(Event{Service: s.Name, Host: c.act.Host, Slot: c.act.Slot, What: what})
}

// startAgain starts a container that this run stopped, and makes sure it
// runs: a stop request cut short by an interruption may still be carried
// out by the engine after the start.
func startAgain(ctx context.Context, eng *executor.Engine, id string) error {
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
// service's networks, volumes and image.
func (a *Applier) prepare(ctx context.Context, s *plan.Service, sp *plan.ServicePlan, acts []*plan.Action) error {
	hosts := map[string]bool{}
	var list []*plan.Action
	for _, act := range acts {
		if !hosts[act.Host] {
			hosts[act.Host] = true
			list = append(list, act)
		}
	}
	var mu sync.Mutex
	var errs []error
	a.parallel(ctx, s.Name, list, func(ctx context.Context, act *plan.Action) error {
		err := a.prepareHost(ctx, s, sp, act.Host)
		if err != nil {
			mu.Lock()
			errs = append(errs, fmt.Errorf("host %s: %w", act.Host, err))
			mu.Unlock()
		}
		return err
	})
	return errors.Join(errs...)
}

func (a *Applier) prepareHost(ctx context.Context, s *plan.Service, sp *plan.ServicePlan, host string) error {
	eng := a.Fleet.Conns[host].Engine()
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
	_, err := eng.ImageInspect(ctx, image)
	present := err == nil
	if err != nil && !errors.Is(err, executor.ErrNotFound) {
		return err
	}
	switch {
	case s.Pull == "always" || (s.Pull == "missing" && !present && s.ImageDelivery == "pull"):
		a.event(Event{Service: s.Name, Host: host, What: "pulling " + image, Begin: true})
		if err := eng.Pull(ctx, image, a.registryAuth(image)); err != nil {
			return err
		}
		a.event(Event{Service: s.Name, Host: host, What: "pulled " + image, End: true})
		return nil
	case !present && s.ImageDelivery == "push":
		return fmt.Errorf("image %s is not on the host, and image_delivery: push is not available yet: load it with docker load, or use image_delivery: pull", image)
	case !present:
		return fmt.Errorf("image %s is not on the host and pull is never", image)
	}
	return nil
}

// registryAuth returns the credentials for the registry an image comes
// from, if fleet.yaml has them.
func (a *Applier) registryAuth(image string) *executor.RegistryAuth {
	first, _, found := strings.Cut(image, "/")
	if !found || !strings.ContainsAny(first, ".:") && first != "localhost" {
		first = "docker.io"
	}
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
