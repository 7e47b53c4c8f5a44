package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"sync"

	"golang.org/x/term"

	"github.com/fleetdeploy/fleet/executor"
	"github.com/fleetdeploy/fleet/internal/secret"
	"github.com/fleetdeploy/fleet/inventory"
	"github.com/fleetdeploy/fleet/plan"
	"github.com/fleetdeploy/fleet/push"
	"github.com/fleetdeploy/fleet/rollout"
)

type planCmd struct {
	DetailedExitcode bool     `help:"Exit 0 when nothing would change, 2 when something would, 1 on error."`
	Out              string   `short:"o" placeholder:"FILE" help:"Save the plan; \"fleet apply FILE\" then does exactly it, or refuses if a host changed since."`
	Service          []string `placeholder:"SERVICE" help:"Only these services."`
	Reschedule       bool     `help:"Place the instances of unreachable hosts on other hosts."`
	Metrics          string   `name:"metrics-file" placeholder:"FILE" help:"Write what the plan found there for node_exporter's textfile collector: drift, hosts, instances, revisions."`
}

// session is what plan and apply share: both files, the secrets, the
// connections and the live state.
type session struct {
	inv     *inventory.Inventory
	project *plan.Project
	scope   []*inventory.Host
	secrets map[string]map[string]string
	ex      *executor.Executor
	fleet   *rollout.Fleet
	// pushed are the images of the services with image_delivery: push,
	// saved from this machine's engine (in pushDir), by reference; and
	// what the plan needs to know of them.
	pushed  map[string]*push.Image
	pushDir string
	pushIn  map[string]plan.PushedImage
	// forChange is set for the commands that take the deploy lock: their
	// first read reads it too.
	forChange bool
}

// needs says what a command's session reads beyond every host's state.
type needs int

const (
	stateOnly   needs = iota // the commands that look
	withSecrets              // plan: the specs compare the secrets
	// apply, rollback and reconcile: the secrets, and each host's deploy
	// lock before its state (rollout.ReadForChange)
	toChange
)

// open reads both files and every host's state, and what else the command
// needs.
func (g *globals) open(ctx context.Context, services []string, n needs) (*session, error) {
	inv, project, err := g.loadBoth()
	if err != nil {
		return nil, err
	}
	return g.openLoaded(ctx, inv, project, services, n)
}

// openLoaded is open with both files read already.
func (g *globals) openLoaded(ctx context.Context, inv *inventory.Inventory, project *plan.Project, services []string, n needs) (*session, error) {
	for _, s := range services {
		if project.Service(s) == nil {
			return nil, fmt.Errorf("--service %s: %s has no such service", s, g.File)
		}
	}
	scope, err := g.selected(inv)
	if err != nil {
		return nil, err
	}
	var secrets map[string]map[string]string
	if n >= withSecrets {
		if secrets, err = secret.Resolve(ctx, project); err != nil {
			return nil, err
		}
	}
	s := &session{inv: inv, project: project, scope: scope, secrets: secrets, forChange: n == toChange}
	if err := g.read(ctx, s); err != nil {
		return nil, err
	}
	return s, nil
}

// readPushed saves, from this machine's engine, the image of every service
// that fleet pushes (image_delivery: push), and asks each host what it
// holds of it: the plan compares the containers with this machine's image,
// and says what pushing it would send each host. Plan and apply need it;
// the commands that only look, and rollback (whose revisions' images stay
// on the hosts), do without. With optional (reconcile, on a machine that
// may build nothing), an image this machine cannot give is said in warn,
// and the hosts keep what they have of it.
func (s *session) readPushed(ctx context.Context, optional bool, warn func(string)) error {
	for _, svc := range s.project.Services {
		if svc.ImageDelivery != "push" || s.pushed[svc.Image] != nil {
			continue
		}
		if s.pushDir == "" {
			dir, err := os.MkdirTemp("", "fleet-push-")
			if err != nil {
				return err
			}
			s.pushDir, s.pushed, s.pushIn = dir, map[string]*push.Image{}, map[string]plan.PushedImage{}
		}
		img, err := push.Save(ctx, s.pushDir, svc.Image)
		if err != nil {
			err = fmt.Errorf("service %s (image_delivery: push): %w", svc.Name, err)
			if !optional || ctx.Err() != nil {
				return err
			}
			warn(err.Error() + "; the hosts keep the image they have")
			continue
		}
		s.pushed[svc.Image] = img
	}
	if len(s.pushed) == 0 {
		return nil
	}
	// One more exchange with each host: its images and their layers.
	var mu sync.Mutex
	held := map[string][]executor.Image{}
	var wg sync.WaitGroup
	for name, c := range s.fleet.Conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if images, err := c.Engine().Images(ctx); err == nil {
				mu.Lock()
				held[name] = images
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	for ref, img := range s.pushed {
		pi := plan.PushedImage{ID: img.ID, Bytes: map[string]int64{}}
		for host, images := range held {
			pi.Bytes[host] = img.Cost(images)
		}
		s.pushIn[ref] = pi
	}
	return nil
}

// pushTo sends the image, saved by readPushed, to host.
func (s *session) pushTo(ctx context.Context, host, ref string) (int64, error) {
	img, c := s.pushed[ref], s.fleet.Conns[host]
	if img == nil || c == nil {
		return 0, rollout.ErrNothingToPush
	}
	sent, err := push.ToHost(ctx, pushHost{c, s.project.Name}, []*push.Image{img}, push.Options{})
	if err != nil {
		return 0, err
	}
	return sent[0].Bytes, nil
}

// openProject reads the inventory alone and every host's state for the
// named project: what the commands that only look need when no fleet.yaml
// is at hand.
func (g *globals) openProject(ctx context.Context, name string) (*session, error) {
	inv, err := g.loadInventory()
	if err != nil {
		return nil, err
	}
	scope, err := g.selected(inv)
	if err != nil {
		return nil, err
	}
	s := &session{inv: inv, project: &plan.Project{Name: name}, scope: scope}
	if err := g.read(ctx, s); err != nil {
		return nil, err
	}
	return s, nil
}

// read connects to the session's hosts and reads their state.
func (g *globals) read(ctx context.Context, s *session) error {
	// The connections outlive an interruption of the work, so that the
	// work can be undone over them; close ends them.
	s.ex = executor.New(context.WithoutCancel(ctx), g.executorOptions(s.inv))
	fleet, err := s.readState(ctx, s.forChange)
	if err != nil {
		s.ex.Close()
		return err
	}
	s.fleet = fleet
	return nil
}

// readFleet reads every host's state for the project over the session's
// connections; and, for a project with proxied services, its routes on
// the hosts' proxies, one more exchange with each host that has one: an
// instance out of its route is drift.
func (s *session) readFleet(ctx context.Context) (*rollout.Fleet, error) {
	return s.readState(ctx, false)
}

// readState is readFleet, reading each host's deploy lock first too when
// withLock (rollout.ReadForChange).
func (s *session) readState(ctx context.Context, withLock bool) (*rollout.Fleet, error) {
	read := rollout.Read
	if withLock {
		read = rollout.ReadForChange
	}
	fleet, err := read(ctx, s.ex, s.scope, s.project)
	if err != nil {
		return nil, err
	}
	for _, svc := range s.project.Services {
		if svc.Proxy != nil {
			fleet.ReadRoutes(ctx, s.project.Name)
			break
		}
	}
	return fleet, nil
}

// executorOptions are the flags' settings for the connections to the
// hosts of inv.
func (g *globals) executorOptions(inv *inventory.Inventory) executor.Options {
	return executor.Options{Parallel: g.Parallel, HostKeyPolicy: executor.HostKeyPolicy(g.HostKeys),
		HashKnownHosts: hashKnownHosts(inv), ConnectTimeout: g.ConnectTimeout,
		PullStallTimeout: g.PullStallTimeout, Log: g.verboseLog()}
}

// hashKnownHosts follows the user's ssh_config: hosts recorded by
// accept-new are hashed when it hashes them.
func hashKnownHosts(inv *inventory.Inventory) bool {
	for _, h := range inv.Hosts {
		if h.HashKnownHosts {
			return true
		}
	}
	return false
}

func (s *session) close() {
	s.ex.Close()
	if s.pushDir != "" {
		os.RemoveAll(s.pushDir)
	}
}

func (s *session) plan(services []string, reschedule bool) *plan.Plan {
	return plan.Compute(plan.Input{
		Project: s.project, Inventory: s.inv, Scope: s.scope,
		Live: s.fleet.Live(s.project.Name), Secrets: s.secrets,
		Services: services, Reschedule: reschedule, Pushed: s.pushIn,
	})
}

func (g *globals) style(out *output) plan.Style {
	if g.NoColor || os.Getenv("NO_COLOR") != "" {
		return plan.Style{}
	}
	f, ok := out.stdout.(*os.File)
	return plan.Style{Color: ok && term.IsTerminal(int(f.Fd()))}
}

func (c *planCmd) Run(ctx context.Context, g *globals, out *output) error {
	m, err := newMetrics(c.Metrics)
	if err != nil {
		return err
	}
	if m != nil {
		m.changesOK = c.DetailedExitcode
	}
	return withMetrics(m, c.run(ctx, g, out, m))
}

func (c *planCmd) run(ctx context.Context, g *globals, out *output, m *metrics) error {
	s, err := g.open(ctx, c.Service, withSecrets)
	if err != nil {
		return err
	}
	defer s.close()
	if err := s.readPushed(ctx, false, nil); err != nil {
		return err
	}
	p := s.plan(c.Service, c.Reschedule)
	m.observe(s, p)
	if g.JSON {
		enc := json.NewEncoder(out.stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(p); err != nil {
			return err
		}
	} else {
		if err := p.Render(out.stdout, g.style(out), g.Verbose); err != nil {
			return err
		}
		if w := s.project.IdleBalancersWarning(s.inv); w != "" {
			fmt.Fprintf(out.stderr, "fleet: warning: %s\n", w)
		}
	}
	if c.Out != "" {
		if err := savePlan(c.Out, g, p); err != nil {
			return err
		}
		fmt.Fprintf(out.stderr, "saved the plan to %s: \"fleet apply %s\" carries it out\n", c.Out, c.Out)
	}
	if len(p.Unreachable) > 0 {
		return silentError{1, p.Problems(len(s.scope)) + ": the plan covers the others only"}
	}
	if c.DetailedExitcode && p.Changes() {
		return silentExit(2)
	}
	return nil
}

// savedPlan is a plan file: the plan, and the files it was made from, so
// that applying it later does exactly what was shown or nothing.
type savedPlan struct {
	Version   int        `json:"version"`
	File      string     `json:"file"`
	FileHash  string     `json:"file_hash"`
	Inventory string     `json:"inventory"`
	InvHash   string     `json:"inventory_hash"`
	Hosts     string     `json:"hosts,omitempty"`
	Plan      *plan.Plan `json:"plan"`
}

func savePlan(path string, g *globals, p *plan.Plan) error {
	fh, err := filesHash([]string{g.File})
	if err != nil {
		return err
	}
	ih, err := inventoryHash(g)
	if err != nil {
		return err
	}
	b, err := json.MarshalIndent(savedPlan{1, g.File, fh, g.Inventory, ih, g.Hosts, p}, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o600)
}

func loadPlan(path string) (*savedPlan, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var sp savedPlan
	if err := json.Unmarshal(b, &sp); err != nil || sp.Version != 1 || sp.Plan == nil {
		return nil, fmt.Errorf("%s is not a plan saved by fleet plan -o", path)
	}
	return &sp, nil
}

// silentError ends a command with a code after one line on stderr.
type silentError struct {
	code int
	msg  string
}

func (e silentError) Error() string { return e.msg }
func (e silentError) ExitCode() int { return e.code }
