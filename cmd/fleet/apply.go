package main

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/term"

	"github.com/fleetdeploy/fleet/executor"
	"github.com/fleetdeploy/fleet/inventory"
	"github.com/fleetdeploy/fleet/plan"
	"github.com/fleetdeploy/fleet/rollout"
)

type applyCmd struct {
	PlanFile   string        `arg:"" optional:"" name:"PLANFILE" help:"A plan saved by \"fleet plan -o\": do exactly it, without asking."`
	Yes        bool          `short:"y" help:"Do not ask for confirmation (needed without a terminal)."`
	Service    []string      `placeholder:"SERVICE" help:"Only these services."`
	Reschedule bool          `help:"Place the instances of unreachable hosts on other hosts."`
	LockWait   time.Duration `placeholder:"D" help:"Wait up to D for another run's deploy lock (default: exit 4 at once)."`
	Message    string        `short:"m" placeholder:"TEXT" help:"Why: recorded as the change cause of each new revision (default: a summary of the changes)."`
	Metrics    string        `name:"metrics-file" placeholder:"FILE" help:"Write the run's metrics there for node_exporter's textfile collector, whatever the outcome."`
}

func (c *applyCmd) Run(ctx context.Context, g *globals, out *output) error {
	m, err := newMetrics(c.Metrics)
	if err != nil {
		return err
	}
	return withMetrics(m, c.run(ctx, g, out, m))
}

func (c *applyCmd) run(ctx context.Context, g *globals, out *output, m *metrics) error {
	var saved *savedPlan
	if c.PlanFile != "" {
		var err error
		if saved, err = loadPlan(c.PlanFile); err != nil {
			return err
		}
		if err := saved.sameFiles(g); err != nil {
			return err
		}
	}
	s, err := g.open(ctx, c.Service, toChange)
	if err != nil {
		return err
	}
	defer s.close()
	if err := s.readPushed(ctx, false, nil); err != nil {
		return err
	}
	return s.apply(ctx, g, out, applyRun{saved: saved, file: c.PlanFile, services: c.Service, yes: c.Yes,
		reschedule: c.Reschedule, lockWait: c.LockWait, cause: c.Message, command: "fleet apply", metrics: m})
}

// applyRun is what apply and rollback ask of a session.
type applyRun struct {
	saved      *savedPlan
	file       string
	services   []string
	yes        bool
	reschedule bool
	lockWait   time.Duration
	cause      string
	command    string
	rollback   *plan.RollbackOf // set by fleet rollback, for the record
	metrics    *metrics

	// Set by fleet reconcile: the plan it made, shown only once the lock
	// is taken; no progress lines but under -v; and hosts that cannot
	// be read are no error of the run (their instances are placed on
	// others where fleet.yaml allows, and the metrics say it).
	planned *plan.Plan
	quiet   bool
}

// apply shows the plan (or checks a saved one), asks, takes the deploy
// lock, and carries the plan out.
func (s *session) apply(ctx context.Context, g *globals, out *output, r applyRun) error {
	var p *plan.Plan
	if r.saved != nil {
		p = r.saved.Plan
		fresh := s.plan(serviceNames(p), r.reschedule)
		r.metrics.observe(s, fresh)
		if stale := staleHosts(p, fresh); len(stale) > 0 {
			return staleError(r.file, stale, fresh)
		}
	} else if r.planned != nil {
		p = r.planned
	} else {
		p = s.plan(r.services, r.reschedule)
		r.metrics.observe(s, p)
		if !g.JSON {
			if err := p.Render(out.stdout, g.style(out), g.Verbose); err != nil {
				return err
			}
		}
	}
	if !p.Changes() {
		if g.JSON {
			json.NewEncoder(out.stdout).Encode(map[string]any{"event": "done", "changes": false})
		}
		return unreachableError(p, len(s.scope))
	}
	if r.saved == nil && !r.yes {
		if err := confirm(out); err != nil {
			return err
		}
	}
	me := rollout.Me(r.command)
	var locked []string
	for _, c := range changedConns(s, p) {
		locked = append(locked, c.Host())
	}
	sort.Strings(locked)
	lock, err := rollout.AcquireAfterRead(ctx, changedConns(s, p), s.project.Name, me, r.lockWait, rollout.DefaultLease,
		func(msg string) { fmt.Fprintln(out.stderr, "fleet: warning: "+msg) }, s.fleet.LocksSeen)
	if err != nil {
		return err
	}
	defer lock.Release(context.WithoutCancel(ctx))
	// A lock lost on a host stops the run as Ctrl-C does: the step in
	// flight is finished or undone.
	ctx, stopLock := lock.Context(ctx)
	defer stopLock()
	// Another run may have changed the fleet since it was read: read it
	// again, under the lock, and go by what is there now. Unless no run
	// held the lock on any host since this one read it (on the hosts it
	// locked, the lock was taken straight from the generation seen then;
	// on the others, that generation is still the newest): then what was
	// read is what is there.
	fresh := p
	if lock.Untouched() && s.fleet.LocksSeen.Untouched(ctx, unlockedConns(s, locked), s.project.Name) {
		if log := g.verboseLog(); log != nil {
			log("no run held the deploy lock since the hosts were read: going by that read")
		}
	} else if fresh, err = s.replan(ctx, p, r.saved != nil, r.reschedule); err != nil {
		return err
	}
	switch {
	case r.planned != nil:
		if !g.JSON && fresh.Changes() {
			fresh.Render(out.stdout, g.style(out), g.Verbose)
		}
	case fresh != p && !g.JSON:
		fmt.Fprintln(out.stdout, "\nThe fleet changed while this run waited for the deploy lock; carrying out this plan instead:")
		fresh.Render(out.stdout, g.style(out), g.Verbose)
	}
	if fresh != p {
		r.metrics.observe(s, fresh)
	}
	p = fresh
	if !p.Changes() {
		if r.planned == nil {
			fmt.Fprintln(out.stdout, "No changes left: another run did them.")
		}
		return nil
	}

	hook := hookRun{command: r.command, user: me.User + "@" + me.Machine, p: p, hosts: locked, outcome: "planned"}
	if err := s.runHook(ctx, g, out, "pre_apply", s.project.Hooks.PreApply, hook); err != nil {
		return fmt.Errorf("%w: nothing was changed", err)
	}

	prog := newProgress(g, out, len(locked))
	a := &rollout.Applier{Project: s.project, Fleet: s.fleet, Secrets: s.secrets, Events: prog.event,
		Who: me.User + "@" + me.Machine, Cause: r.cause, Rollback: r.rollback, Push: s.pushTo, LBAddresses: lbAddresses(s.inv)}
	if r.quiet && !g.Verbose {
		a.Events = nil
	}
	left := func() []string {
		return append(a.LeftBehind(), fmt.Sprintf("%s: the deploy lock stays until its lease runs out (within %s); the next fleet apply on this machine takes it over at once",
			strings.Join(locked, ", "), rollout.DefaultLease))
	}
	leftBehind.Store(&left)
	res, err := a.Apply(ctx, p)
	leftBehind.Store(nil)
	prog.close()
	if err != nil {
		return err
	}
	err = s.applied(ctx, g, out, r, p, res, lock)
	// The hooks run even when the run was interrupted: not under its
	// context, which is over.
	hctx := context.WithoutCancel(ctx)
	switch {
	case err == nil:
		hook.outcome = "deployed"
		if herr := s.runHook(hctx, g, out, "post_apply", s.project.Hooks.PostApply, hook); herr != nil {
			return fmt.Errorf("the apply succeeded, but %w", herr)
		}
	default:
		hook.outcome, hook.err = "failed", err
		switch {
		case res.RolledBack():
			hook.outcome = "rolled back"
		case ctx.Err() != nil:
			hook.outcome = "interrupted"
		}
		if herr := s.runHook(hctx, g, out, "on_failure", s.project.Hooks.OnFailure, hook); herr != nil {
			fmt.Fprintln(out.stderr, "fleet: warning: "+herr.Error())
		}
	}
	return err
}

// applied reports what a run did, and says how it ended.
func (s *session) applied(ctx context.Context, g *globals, out *output, r applyRun, p *plan.Plan, res *rollout.Result, lock *rollout.Lock) error {
	summarize(g, out, res)
	r.metrics.applied(res)
	if r.metrics != nil {
		// What runs now, for the metrics: one more round trip per host.
		if fleet, err := s.readFleet(ctx); err == nil {
			s.fleet = fleet
			r.metrics.count(s)
		}
	}
	if err := lock.Err(); err != nil {
		var lost *rollout.LockLostError
		if !res.RolledBack() || !errors.As(err, &lost) || lost.Holder != nil || lost.BrokenBy != nil {
			return err
		}
		// A lease that could not be renewed on a host that went away
		// while the rollout failed and was rolled back: the rollback's
		// outcome says more, and the lock is said beside it.
		fmt.Fprintln(out.stderr, "fleet: warning: "+err.Error())
	}
	if res.RolledBack() {
		return silentError{3, "the rollout failed and was rolled back: " + res.Err().Error()}
	}
	if err := res.Err(); err != nil {
		return err
	}
	if r.planned != nil {
		return nil
	}
	return unreachableError(p, len(s.scope))
}

// leftBehind, while an apply runs, says what stopping at once would leave
// on the hosts: main prints it when a second interrupt ends the process.
var leftBehind atomic.Pointer[func() []string]

// replan reads the fleet again and returns the plan to carry out: the same
// one if nothing moved; otherwise a saved plan is refused, and a fresh one
// is made, which must change no host outside the lock.
func (s *session) replan(ctx context.Context, p *plan.Plan, saved bool, reschedule bool) (*plan.Plan, error) {
	fleet, err := s.readFleet(ctx)
	if err != nil {
		return nil, err
	}
	s.fleet = fleet
	fresh := s.plan(serviceNames(p), reschedule)
	stale := staleHosts(p, fresh)
	if len(stale) == 0 {
		return p, nil
	}
	if saved {
		return nil, fmt.Errorf("the live state of %s changed while waiting for the deploy lock: make a new plan with fleet plan -o", strings.Join(stale, ", "))
	}
	locked := map[string]bool{}
	for _, c := range changedConns(s, p) {
		locked[c.Host()] = true
	}
	for _, c := range changedConns(s, fresh) {
		if !locked[c.Host()] {
			return nil, fmt.Errorf("the fleet changed while waiting for the deploy lock, and now host %s needs changes too: run fleet apply again", c.Host())
		}
	}
	return fresh, nil
}

// changedConns are the connections to the hosts the plan changes: the
// ones the deploy lock is taken on.
func changedConns(s *session, p *plan.Plan) []*executor.Conn {
	seen := map[string]bool{}
	var conns []*executor.Conn
	for _, u := range p.ProxyUpgrades {
		if !seen[u.Host] && s.fleet.Conns[u.Host] != nil {
			seen[u.Host] = true
			conns = append(conns, s.fleet.Conns[u.Host])
		}
	}
	for _, sp := range p.Services {
		for _, a := range sp.Actions {
			if a.Kind != plan.Unchanged && !seen[a.Host] && s.fleet.Conns[a.Host] != nil {
				seen[a.Host] = true
				conns = append(conns, s.fleet.Conns[a.Host])
			}
		}
	}
	return conns
}

// unlockedConns are the connections to the hosts read but not locked.
func unlockedConns(s *session, locked []string) []*executor.Conn {
	skip := map[string]bool{}
	for _, h := range locked {
		skip[h] = true
	}
	var conns []*executor.Conn
	for name, c := range s.fleet.Conns {
		if !skip[name] {
			conns = append(conns, c)
		}
	}
	return conns
}

func unreachableError(p *plan.Plan, n int) error {
	if len(p.Unreachable) == 0 {
		return nil
	}
	var names []string
	for _, u := range p.Unreachable {
		names = append(names, u.Host)
	}
	return silentError{1, fmt.Sprintf("%s (%s): run again once they are back", p.Problems(n), strings.Join(names, ", "))}
}

func serviceNames(p *plan.Plan) []string {
	var names []string
	for _, sp := range p.Services {
		names = append(names, sp.Name)
	}
	return names
}

// staleError says that a saved plan no longer fits the fleet, and why for
// each host that cannot be read now (a changed host key, say); nothing
// was changed.
func staleError(file string, stale []string, now *plan.Plan) error {
	var why []string
	for _, u := range now.Unreachable {
		if slices.Contains(stale, u.Host) {
			why = append(why, fmt.Sprintf("\n  %s %s: %s", u.Host, u.State, u.Reason))
		}
	}
	if len(why) > 0 {
		// A host that cannot be read changes the services' actions too;
		// that is no news of their secrets or files.
		stale = slices.DeleteFunc(stale, func(s string) bool { return strings.HasSuffix(s, "(its secrets or files)") })
	}
	return fmt.Errorf("%s is stale, nothing was changed: the live state of %s is not what it was when the plan was made%s\nmake a new plan with fleet plan -o (once every host answers)",
		file, strings.Join(stale, ", "), strings.Join(why, ""))
}

// staleHosts names the hosts whose state differs from when p was made.
func staleHosts(p, now *plan.Plan) []string {
	var stale []string
	for host, fp := range p.Fingerprints {
		if now.Fingerprints[host] != fp {
			stale = append(stale, host)
		}
	}
	for host := range now.Fingerprints {
		if _, ok := p.Fingerprints[host]; !ok {
			stale = append(stale, host)
		}
	}
	sort.Strings(stale)
	// New secret values change what the plan would make; a revision
	// recorded since (a failed attempt leaves no container) takes the
	// number the plan would give.
	fresh := map[string]*plan.ServicePlan{}
	for _, sp := range now.Services {
		fresh[sp.Name] = sp
	}
	for _, sp := range p.Services {
		switch f := fresh[sp.Name]; {
		case f != nil && f.PushImage != sp.PushImage:
			// Built again under the same tag: pushing now would send an
			// image the plan did not show.
			stale = append(stale, fmt.Sprintf("service %s (image %s on this machine is %s now, not %s as planned)",
				sp.Name, sp.Template.Image, plan.ShortImageID(f.PushImage), plan.ShortImageID(sp.PushImage)))
		case f == nil || f.Spec != sp.Spec || actionsOf(f) != actionsOf(sp):
			stale = append(stale, "service "+sp.Name+" (its secrets or files)")
		case f.Revision != sp.Revision:
			stale = append(stale, fmt.Sprintf("service %s (revision %d was recorded since)", sp.Name, sp.Revision))
		}
	}
	return stale
}

// actionsOf is what a service's plan does to the instances there are: a
// secret's new value shows only here, as no hash of it is kept. New
// instances count by their number alone: where they go depends on free
// memory, which moves from one read to the next, and any place the plan
// chose is as good.
func actionsOf(sp *plan.ServicePlan) string {
	var b strings.Builder
	creates := 0
	for _, a := range sp.Actions {
		if a.Kind == plan.Create {
			creates++
			continue
		}
		fmt.Fprintf(&b, "%s/%d:%s:%s;", a.Host, a.Slot, a.Kind, strings.Join(a.Reasons, ","))
	}
	fmt.Fprintf(&b, "+%d", creates)
	return b.String()
}

func (sp *savedPlan) sameFiles(g *globals) error {
	for _, f := range []struct{ saved, hash, now, flag string }{
		{sp.File, sp.FileHash, g.File, "-f"},
		{sp.Inventory, sp.InvHash, g.Inventory, "-i"},
	} {
		if f.saved != f.now {
			return fmt.Errorf("the plan was made from %s, not %s: give %s %s", f.saved, f.now, f.flag, f.saved)
		}
		h, err := filesHash([]string{f.now})
		if f.flag == "-i" {
			h, err = inventoryHash(g)
		}
		if err != nil {
			return err
		}
		if h != f.hash {
			return fmt.Errorf("%s changed since the plan was made: make a new one with fleet plan -o", f.now)
		}
	}
	if sp.Hosts != g.Hosts {
		return fmt.Errorf("the plan was made with --hosts %q: give the same", sp.Hosts)
	}
	return nil
}

// filesHash is the hash of the files a plan was made from, in order.
func filesHash(files []string) (string, error) {
	h := sha256.New()
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(h, "%s\x00%d\x00", f, len(b))
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// inventoryHash is the hash of every file the inventory is read from: a
// directory's, and group_vars/ and host_vars/ files, as the loader finds
// them.
func inventoryHash(g *globals) (string, error) {
	inv, err := g.loadInventory()
	if err != nil {
		return "", err
	}
	files := inv.Files
	if len(files) == 0 {
		files = []string{g.Inventory}
	}
	return filesHash(files)
}

// confirm asks on the terminal; without one, apply needs --yes.
func confirm(out *output) error {
	if !term.IsTerminal(int(os.Stdin.Fd())) {
		return fmt.Errorf("no terminal to confirm on: run fleet apply --yes, or save a plan with fleet plan -o FILE and apply it")
	}
	fmt.Fprint(out.stdout, "\nApply this plan? Only yes goes on: ")
	line, _ := bufio.NewReader(os.Stdin).ReadString('\n')
	if strings.TrimSpace(line) != "yes" {
		return fmt.Errorf("not applied")
	}
	return nil
}

func summarize(g *globals, out *output, res *rollout.Result) {
	if g.JSON {
		if len(res.ProxyUpgraded) > 0 || res.ProxyErr != nil {
			m := map[string]any{"event": "proxy", "upgraded": append([]string{}, res.ProxyUpgraded...)}
			if res.ProxyErr != nil {
				m["error"] = res.ProxyErr.Error()
			}
			json.NewEncoder(out.stdout).Encode(m)
		}
		for _, o := range res.Outcomes {
			m := map[string]any{"event": "service", "service": o.Service, "state": o.State(), "changed": o.Changed, "unchanged": o.Unchanged,
				"failed": o.Failed, "undone": o.Undone, "not_attempted": o.NotAttempted,
				"rolled_back": o.RolledBack, "paused": o.Paused, "interrupted": o.Interrupted}
			if o.Err != nil {
				m["error"] = o.Err.Error()
			}
			json.NewEncoder(out.stdout).Encode(m)
		}
		json.NewEncoder(out.stdout).Encode(map[string]any{"event": "done", "seconds": res.Duration.Seconds()})
		return
	}
	var w io.Writer = out.stdout
	fmt.Fprintln(w)
	if len(res.ProxyUpgraded) > 0 {
		fmt.Fprintf(w, "proxy upgraded on %s\n", strings.Join(res.ProxyUpgraded, ", "))
	}
	if res.ProxyErr != nil {
		fmt.Fprintf(w, "proxy FAILED: %v\n", res.ProxyErr)
	}
	for _, o := range res.Outcomes {
		state := strings.ToUpper(o.State())
		if o.Err == nil {
			state = "done"
		}
		counts := fmt.Sprintf("%d changed, %d unchanged, %d failed", o.Changed, o.Unchanged, o.Failed)
		if o.Undone > 0 {
			counts += fmt.Sprintf(", %d put back", o.Undone)
		}
		if o.NotAttempted > 0 {
			counts += fmt.Sprintf(", %d not attempted", o.NotAttempted)
		}
		fmt.Fprintf(w, "service %-16s %-11s %s\n", o.Service, state, counts)
	}
	fmt.Fprintf(w, "Applied in %s.\n", res.Duration.Round(100*time.Millisecond))
}

// lbAddresses are, by host, where load balancers reach its proxy.
func lbAddresses(inv *inventory.Inventory) map[string]string {
	out := map[string]string{}
	for _, h := range inv.Hosts {
		out[h.Name] = plan.LBAddress(h)
	}
	return out
}
