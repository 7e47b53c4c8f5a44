package rollout

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"

	"github.com/fleetdeploy/fleet/executor"
	"github.com/fleetdeploy/fleet/inventory"
	"github.com/fleetdeploy/fleet/plan"
	"github.com/fleetdeploy/fleet/proxy"
)

// Target turns an inventory host into what the executor dials.
func Target(h *inventory.Host) executor.Target {
	t := executor.Target{
		Name: h.Name, Address: h.Address, Port: h.Port, User: h.User,
		KnownHostsFiles: append(append([]string{}, h.KnownHosts...), h.GlobalKnownHosts...),
		Sudo:            h.Sudo,
	}
	// The executor offers only the files it is given; without
	// IdentitiesOnly, OpenSSH offers the agent's keys and the default files,
	// which is what the executor does when given none.
	if h.IdentitiesOnly {
		t.IdentityFiles = h.IdentityFiles
	}
	for _, hop := range h.Jump {
		t.Jump = append(t.Jump, Target(hop))
	}
	return t
}

// Fleet is a run's connections to the hosts that answered, and why the
// others did not.
type Fleet struct {
	Conns    map[string]*executor.Conn
	States   map[string]*executor.HostState
	Recorded map[string]map[string]plan.Recorded // by host, then service
	// Unchecked holds, by host, the IDs of the containers marked as not
	// yet seen healthy.
	Unchecked   map[string]map[string]bool
	Unreachable map[string]string
	// Faults names what is wrong with a host in Unreachable that answered
	// over SSH but whose engine cannot be used ("engine down", "no
	// docker", "docker denied"); the others are unreachable.
	Faults map[string]string
	// Routes holds, by host, the project's routes on the host's proxy, by
	// service, and Proxies whether the host runs one, once ReadRoutes read
	// them.
	Routes      map[string]map[string]plan.LiveRoute
	Proxies     map[string]plan.ProxyState
	ProxyImages map[string]string
	// LocksSeen holds, by host, the deploy lock as [ReadForChange] found
	// it before it read the host's state.
	LocksSeen LocksSeen
}

// Read connects to every host at once (bounded by the executor) and reads
// each one's state for project p in one exchange with its engine, and,
// beside it over the same connection, the newest revision record of each
// of its services. A host that cannot be reached is recorded with its
// reason, not returned as an error.
//
// The hosts' memory and CPUs are read only for a project with replicas to
// place, which ranks hosts by them.
func Read(ctx context.Context, ex *executor.Executor, hosts []*inventory.Host, p *plan.Project) (*Fleet, error) {
	return read(ctx, ex, hosts, p, false)
}

// ReadForChange is Read for a run that is to take the deploy lock: on each
// host it reads the lock first, then the state, so that taking the lock
// can tell whether any run held it since (see [AcquireAfterRead]). When
// none did, what was read is still what is there, and need not be read
// again under the lock.
func ReadForChange(ctx context.Context, ex *executor.Executor, hosts []*inventory.Host, p *plan.Project) (*Fleet, error) {
	return read(ctx, ex, hosts, p, true)
}

func read(ctx context.Context, ex *executor.Executor, hosts []*inventory.Host, p *plan.Project, withLock bool) (*Fleet, error) {
	project := p.Name
	var services []string
	places := false
	for _, s := range p.Services {
		services = append(services, s.Name)
		places = places || s.ReplicasSet
	}
	targets := make([]executor.Target, len(hosts))
	for i, h := range hosts {
		targets[i] = Target(h)
	}
	type hostRead struct {
		conn         *executor.Conn
		state        *executor.HostState
		recorded     map[string]plan.Recorded
		unchecked    map[string]bool
		uncheckedErr error
		lock         *lockState
	}
	results, err := executor.Map(ctx, ex, targets, "reading state", func(ctx context.Context, c *executor.Conn) (hostRead, error) {
		// The history and the marks are read beside the engine's state,
		// over the same connection; a host whose history cannot be read
		// is still planned, from its containers alone.
		// The two are read at once too: each costs a few round trips of
		// SFTP requests that wait on one another, and a host's plan waits
		// for the longer chain, not for both end to end.
		r := hostRead{conn: c}
		done := make(chan struct{}, 2)
		go func() {
			defer func() { done <- struct{}{} }()
			r.recorded = recorded(ctx, c, project, services)
		}()
		go func() {
			defer func() { done <- struct{}{} }()
			r.unchecked, r.uncheckedErr = readUnchecked(ctx, c, project)
		}()
		lockSeen := func() *lockState { return nil }
		if withLock {
			// Listed before the state, while the history is read: a lock
			// taken after this look is a generation it does not know. What
			// the newest one says is read beside the state.
			lockSeen = seeLock(ctx, c, lockDir(c, project))
		}
		state := c.Engine().StateOnly
		if places {
			state = c.Engine().State
		}
		st, err := state(ctx, project)
		r.lock = lockSeen()
		<-done
		<-done
		r.state = st
		if err == nil && r.uncheckedErr != nil {
			// Without them, a container nobody saw healthy would pass
			// for a good one.
			err = fmt.Errorf("reading which containers are not yet seen healthy: %w", r.uncheckedErr)
		}
		return r, err
	})
	if err != nil && ctx.Err() != nil {
		return nil, err
	}
	f := &Fleet{Conns: map[string]*executor.Conn{}, States: map[string]*executor.HostState{},
		Recorded: map[string]map[string]plan.Recorded{}, Unchecked: map[string]map[string]bool{},
		Unreachable: map[string]string{}, Faults: map[string]string{}, LocksSeen: LocksSeen{}}
	for i, r := range results {
		name := targets[i].Name
		if r.Err != nil {
			var he *executor.HostError
			reason := r.Err.Error()
			fault := executor.FaultOf(r.Err)
			if errors.As(r.Err, &he) {
				reason = he.Op + ": " + he.Err.Error()
				if fault != "" {
					reason = he.Err.Error() // says what it was doing already
				}
			}
			f.Unreachable[name] = reason
			switch fault {
			case executor.FaultEngineDown, executor.FaultNoDocker, executor.FaultDockerDenied:
				// sshd answered: the host is up, its engine is not usable.
				f.Faults[name] = string(fault)
			}
			continue
		}
		f.Conns[name] = r.Value.conn
		f.States[name] = r.Value.state
		f.Recorded[name] = r.Value.recorded
		f.Unchecked[name] = r.Value.unchecked
		if r.Value.lock != nil {
			f.LocksSeen[name] = *r.Value.lock
		}
	}
	return f, nil
}

// Live is the fleet's state as the plan package reads it. Volume and
// network names lose the project prefix fleet gives them on the hosts.
func (f *Fleet) Live(project string) plan.Live {
	live := plan.Live{Hosts: map[string]*plan.LiveHost{}, Unreachable: f.Unreachable, Faults: f.Faults}
	for name, st := range f.States {
		lh := &plan.LiveHost{MemAvailable: st.Facts.MemAvailable, CPUs: st.Facts.CPUs, Images: map[string]string{}, Recorded: f.Recorded[name], Routes: f.Routes[name], Proxy: f.Proxies[name], ProxyImage: f.ProxyImages[name]}
		for ref, id := range st.Images {
			lh.Images[ref] = id
			// fleet.yaml may name an image without a tag or a registry.
			if name, ok := strings.CutSuffix(ref, ":latest"); ok {
				lh.Images[name] = id
			}
			if short, ok := strings.CutPrefix(ref, "docker.io/library/"); ok {
				lh.Images[short] = id
			}
		}
		for _, c := range st.Containers {
			lc := liveContainer(project, c)
			// One created and never started was never seen healthy
			// either, marked or not: its run may have ended between its
			// create and its mark.
			lc.Unchecked = f.Unchecked[name][c.ID] || c.Status == "created"
			lh.Containers = append(lh.Containers, lc)
		}
		live.Hosts[name] = lh
	}
	return live
}

func liveContainer(project string, c executor.Container) plan.LiveContainer {
	lc := plan.LiveContainer{
		ID: c.ID, Name: c.Name, Labels: c.Labels, Image: c.Image, ImageID: c.ImageID,
		Env: c.Env, Command: c.Command, Entrypoint: c.Entrypoint,
		User: c.User, Workdir: c.Workdir, CPUs: c.CPUs, Memory: c.Memory,
		Restart: parseRestart(c.Restart), Running: c.Running, Status: c.Status,
		ExitCode: c.ExitCode, Created: c.Created,
	}
	for _, p := range c.Ports {
		hostIP := p.HostIP
		if hostIP == "0.0.0.0" || hostIP == "::" {
			hostIP = ""
		}
		lc.Ports = append(lc.Ports, plan.Port{HostIP: hostIP, Host: p.HostPort, Container: p.ContainerPort, Proto: p.Protocol})
	}
	for _, m := range c.Volumes {
		src := m.Source
		if !strings.HasPrefix(src, "/") {
			src = strings.TrimPrefix(src, project+"_")
		}
		lc.Volumes = append(lc.Volumes, plan.Mount{Source: src, Target: m.Target, ReadOnly: m.ReadOnly, Named: !strings.HasPrefix(src, "/")})
	}
	for n, ip := range c.Networks {
		lc.Networks = append(lc.Networks, strings.TrimPrefix(n, project+"_"))
		if ip != "" && c.Running {
			lc.Addresses = append(lc.Addresses, ip)
		}
	}
	return lc
}

func parseRestart(s string) plan.Restart {
	name, n, _ := strings.Cut(s, ":")
	r := plan.Restart{Policy: name}
	if name == "" {
		r.Policy = "no"
	}
	r.MaxRetries, _ = strconv.Atoi(n)
	return r
}

// Close closes every connection.
func (f *Fleet) Close() {
	for _, c := range f.Conns {
		c.Close()
	}
}

// ReadRoutes reads, for a project with proxied services, whether each
// host runs the proxy and the project's routes there: a host without a
// proxy has none, and every proxied instance there is out of its route.
// A host whose proxy does not answer is left unread, and nothing is said
// about its routes.
func (f *Fleet) ReadRoutes(ctx context.Context, project string) {
	var mu sync.Mutex
	var wg sync.WaitGroup
	f.Routes = map[string]map[string]plan.LiveRoute{}
	f.Proxies = map[string]plan.ProxyState{}
	f.ProxyImages = map[string]string{}
	for host := range f.States {
		conn := f.Conns[host]
		if conn == nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			routes := map[string]plan.LiveRoute{}
			admin, err := proxy.Open(ctx, host, conn.Engine(), conn.AsRoot())
			if err != nil {
				return
			}
			state, image := plan.ProxyAbsent, ""
			if admin != nil {
				state, image = plan.ProxyRunning, admin.Image
				if admin.CutShort {
					state = plan.ProxyCutShort
				}
				have, err := admin.Routes(ctx, project)
				if err != nil {
					return
				}
				for svc, r := range have {
					routes[svc] = plan.LiveRoute{Host: r.Host, Path: r.Path, TLS: r.TLS, Upstreams: r.Upstreams}
				}
			}
			mu.Lock()
			f.Routes[host] = routes
			f.Proxies[host] = state
			f.ProxyImages[host] = image
			mu.Unlock()
		}()
	}
	wg.Wait()
}
