// Package rollouttest is a fleet in memory for the tests of a rollout's
// decisions: hosts whose engines make, start, stop, update and remove
// containers as a real engine does, containers that behave as a test
// scripts them (exit at start, never become healthy, crash once healthy,
// refuse to stop, hang), and a record of what happened that a test checks
// as a user would: which containers run afterwards, and how many instances
// of a service were down at once.
//
// A fake that agrees with itself proves little: [TestEngine] is one suite
// of the engine's contract, run against this fake in its own tests and
// against a real engine on real hosts in the integration tests.
package rollouttest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/fleetdeploy/fleet/executor"
	"github.com/fleetdeploy/fleet/plan"
	"github.com/fleetdeploy/fleet/proxy"
	"github.com/fleetdeploy/fleet/rollout"
)

// BehaviorEnv is the environment variable that scripts how a fake
// container behaves: words separated by commas, each one for every host,
// or, with @HOST, for that host alone ("crash@h3").
//
//	crash            exits with code 1 as soon as it starts
//	unhealthy        runs, and its health check never passes
//	healthy-after=N  its health check passes from the Nth look on
//	crash-after=N    runs healthy, then exits with code 2 at the Nth look
//	stop-fails       the engine fails to stop it
//	start-hangs      its start answers only when the caller gives up
//
// A look is an inspect (what the Docker health check kind reads) or a
// health check command run in it.
const BehaviorEnv = "FAKE_BEHAVIOR"

// ErrHang, returned by a Hook, makes the call wait until its context
// ends. The engine then carries it out all the same, as a real engine
// may carry out a request whose caller has given up.
var ErrHang = errors.New("hang until the context ends")

// Call is one call to a fake engine, as a Hook sees it.
type Call struct {
	Host string
	// Op is create, start, stop, remove, inspect, update, ensure-network,
	// ensure-volume, image-inspect, pull or exec; or mark or unmark, for
	// the host's marks of containers not yet seen healthy.
	Op string
	// ID is the container's ID, the image's reference, or the network's
	// or volume's name.
	ID string
	// Labels and Env are the container's, for the calls about one.
	Labels, Env map[string]string

	hangs bool // scripted to hang (start-hangs)
}

// Is reports whether the call is op on a container of service's revision
// (0: any revision).
func (c Call) Is(op, service string, revision int) bool {
	return c.Op == op && c.Labels[plan.LabelService] == service &&
		(revision == 0 || c.Labels[plan.LabelRevision] == strconv.Itoa(revision))
}

// Fleet is fake hosts, each with its engine.
type Fleet struct {
	// Hook, when set, is called before each engine call, outside any lock
	// and at most once at a time; an error it returns is the call's (see
	// ErrHang). It may cancel the caller's context, to interrupt a
	// rollout at that very call.
	Hook func(Call) error
	// OOMBelow kills a running container whose memory limit is set below
	// it, as the kernel does when it runs out of memory: the engine
	// restarts it under a restart policy, which counts a restart at each
	// look; without one it exits with code 137.
	OOMBelow int64

	hookMu   sync.Mutex
	mu       sync.Mutex
	hosts    map[string]*fakeHost
	registry map[string]bool
	seq      int
	mostDown map[string]int // by service
}

type fakeHost struct {
	f              *Fleet
	name           string
	containers     map[string]*container
	images         map[string]string // reference → ID
	networks       map[string]bool
	volumes        map[string]bool
	unchecked      map[string]bool     // marked container IDs, by project
	recordedImages map[string][]string // image references pulled, by project
}

type container struct {
	executor.Container
	looks int // since it last started
}

// New returns a fleet of hosts with those names, with no container and
// no image.
func New(hosts ...string) *Fleet {
	f := &Fleet{hosts: map[string]*fakeHost{}, registry: map[string]bool{}, mostDown: map[string]int{}}
	for _, name := range hosts {
		f.hosts[name] = &fakeHost{f: f, name: name, containers: map[string]*container{}, images: map[string]string{},
			networks: map[string]bool{"bridge": true}, volumes: map[string]bool{}, unchecked: map[string]bool{}, recordedImages: map[string][]string{}}
	}
	return f
}

// Hosts returns every host, as a rollout drives them.
func (f *Fleet) Hosts() map[string]rollout.Host {
	hosts := map[string]rollout.Host{}
	for name, h := range f.hosts {
		hosts[name] = h
	}
	return hosts
}

// Publish puts images in the registry the hosts pull from.
func (f *Fleet) Publish(refs ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, ref := range refs {
		f.registry[ref] = true
	}
}

// Load puts an image on the hosts named, or on every host.
func (f *Fleet) Load(ref string, hosts ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(hosts) == 0 {
		hosts = slices.Collect(maps.Keys(f.hosts))
	}
	for _, h := range hosts {
		f.hosts[h].images[ref] = imageID(ref)
	}
}

// Retag points ref at another image on the hosts named, as docker tag
// does: the containers made from it still run the image it named before.
func (f *Fleet) Retag(ref string, hosts ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.seq++
	for _, h := range hosts {
		f.hosts[h].images[ref] = imageID(ref + "#" + strconv.Itoa(f.seq))
	}
}

func imageID(ref string) string {
	sum := sha256.Sum256([]byte(ref))
	return "sha256:" + hex.EncodeToString(sum[:])
}

// Read is the fleet's state for project, as rollout.Read gives it: what a
// plan is computed from.
func (f *Fleet) Read(project string) *rollout.Fleet {
	f.mu.Lock()
	defer f.mu.Unlock()
	rf := &rollout.Fleet{Conns: map[string]*executor.Conn{}, States: map[string]*executor.HostState{},
		Recorded: map[string]map[string]plan.Recorded{}, Unchecked: map[string]map[string]bool{},
		Unreachable: map[string]string{}, Faults: map[string]string{}}
	for name, h := range f.hosts {
		st := &executor.HostState{Host: name, Facts: executor.Facts{CPUs: 2, MemTotal: 8 << 30, MemAvailable: 4 << 30},
			Images: maps.Clone(h.images)}
		for _, c := range h.sorted() {
			if c.Labels[executor.LabelProject] == project {
				st.Containers = append(st.Containers, c.snapshot())
			}
		}
		rf.States[name] = st
		rf.Unchecked[name] = map[string]bool{}
		for key := range h.unchecked {
			if p, id, _ := strings.Cut(key, "\x00"); p == project {
				rf.Unchecked[name][id] = true
			}
		}
	}
	return rf
}

// Containers returns the containers on a host, by name.
func (f *Fleet) Containers(host string) []executor.Container {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []executor.Container
	for _, c := range f.hosts[host].sorted() {
		out = append(out, c.snapshot())
	}
	return out
}

// MostDown is the most instances of service that were down at once since
// the fleet was made or ResetMostDown was called: instances whose slot on
// a host has a container, none of them running.
func (f *Fleet) MostDown(service string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.mostDown[service]
}

// ResetMostDown starts counting MostDown afresh.
func (f *Fleet) ResetMostDown() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.mostDown = map[string]int{}
}

// tally counts the instances down now, with f.mu held.
func (f *Fleet) tally() {
	type slot struct{ host, service, slot string }
	up := map[slot]bool{}
	for _, h := range f.hosts {
		for _, c := range h.containers {
			k := slot{h.name, c.Labels[plan.LabelService], c.Labels[plan.LabelSlot]}
			up[k] = up[k] || c.Running
		}
	}
	down := map[string]int{}
	for k, running := range up {
		if !running {
			down[k.service]++
		}
	}
	for service, n := range down {
		f.mostDown[service] = max(f.mostDown[service], n)
	}
}

// lookup finds a container by ID or, as the engine also does, by name.
func (h *fakeHost) lookup(ref string) *container {
	if c := h.containers[ref]; c != nil {
		return c
	}
	for _, c := range h.containers {
		if c.Name == ref {
			return c
		}
	}
	return nil
}

func (h *fakeHost) sorted() []*container {
	return slices.SortedFunc(maps.Values(h.containers), func(a, b *container) int { return strings.Compare(a.Name, b.Name) })
}

func (c *container) snapshot() executor.Container {
	s := c.Container
	s.Labels = maps.Clone(c.Labels)
	s.Env = maps.Clone(c.Env)
	s.Networks = maps.Clone(c.Networks)
	s.Ports = slices.Clone(c.Ports)
	s.Volumes = slices.Clone(c.Volumes)
	return s
}

// behaves reports whether the container is scripted to behave so on its
// host, and with what number ("healthy-after=3": 3).
func (c *container) behaves(host, word string) (bool, int) {
	for _, w := range strings.Split(c.Env[BehaviorEnv], ",") {
		w, on, scoped := strings.Cut(strings.TrimSpace(w), "@")
		if scoped && on != host {
			continue
		}
		name, n, _ := strings.Cut(w, "=")
		if name == word {
			count, _ := strconv.Atoi(n)
			return true, count
		}
	}
	return false, 0
}

// healthy reports whether a look at a running container finds it
// healthy.
func (c *container) healthy(host string) bool {
	if bad, _ := c.behaves(host, "unhealthy"); bad {
		return false
	}
	after, n := c.behaves(host, "healthy-after")
	return !after || c.looks >= n
}

// look is an inspect or a health check command: time passes for the
// container.
func (h *fakeHost) look(c *container) {
	if !c.Running {
		return
	}
	c.looks++
	if crash, n := c.behaves(h.name, "crash-after"); crash && c.looks >= n {
		h.exit(c, 2)
		return
	}
	h.f.oom(c)
	if c.Running {
		c.Health = "healthy"
		if !c.healthy(h.name) {
			c.Health = "unhealthy"
			if after, _ := c.behaves(h.name, "healthy-after"); after {
				c.Health = "starting"
			}
		}
	}
}

// oom kills a running container whose memory limit is below OOMBelow.
func (f *Fleet) oom(c *container) {
	if !c.Running || c.Memory == 0 || c.Memory >= f.OOMBelow {
		return
	}
	if c.Restart != "no" && c.Restart != "" {
		c.RestartCount, c.ExitCode, c.looks = c.RestartCount+1, 137, 0
		return
	}
	c.Running, c.Status, c.ExitCode, c.FinishedAt = false, "exited", 137, time.Now()
}

func (h *fakeHost) exit(c *container, code int) {
	c.Running, c.Status, c.ExitCode, c.FinishedAt, c.Health = false, "exited", code, time.Now(), ""
}

// call runs one engine call about a container or a named thing: the
// hook, then do under the fleet's lock unless the context ended first.
func (h *fakeHost) call(ctx context.Context, op, id string, do func() error) error {
	call := Call{Host: h.name, Op: op, ID: id}
	h.f.mu.Lock()
	if c := h.lookup(id); c != nil {
		call.Labels, call.Env = maps.Clone(c.Labels), maps.Clone(c.Env)
		if op == "start" {
			if hangs, _ := c.behaves(h.name, "start-hangs"); hangs {
				call.hangs = true
			}
		}
	}
	h.f.mu.Unlock()
	return h.run(ctx, call, do)
}

func (h *fakeHost) run(ctx context.Context, call Call, do func() error) error {
	what := call.Op + " " + call.ID
	var err error
	if h.f.Hook != nil {
		h.f.hookMu.Lock()
		err = h.f.Hook(call)
		h.f.hookMu.Unlock()
	}
	if call.hangs || errors.Is(err, ErrHang) {
		// The request went out; its answer never comes, but the engine
		// carries it out once the caller has given up.
		<-ctx.Done()
		h.locked(do)
		return &executor.HostError{Host: h.name, Op: what, Err: ctx.Err()}
	}
	if err != nil {
		return &executor.HostError{Host: h.name, Op: what, Err: err}
	}
	if err := ctx.Err(); err != nil {
		return &executor.HostError{Host: h.name, Op: what, Err: err}
	}
	if err := h.locked(do); err != nil {
		return &executor.HostError{Host: h.name, Op: what, Err: err}
	}
	return nil
}

func (h *fakeHost) locked(do func() error) error {
	h.f.mu.Lock()
	defer h.f.mu.Unlock()
	defer h.f.tally()
	return do()
}

func notFound(what string) error {
	return &executor.EngineError{Status: http.StatusNotFound, Message: "No such " + what}
}

// Engine is the host's engine.
func (h *fakeHost) Engine() rollout.Engine { return h }

// DialContext fails: the fake fleet has no network, and its containers
// are checked by the Docker health check kind, a command, or not at all.
func (h *fakeHost) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	return nil, &executor.HostError{Host: h.name, Op: "dialing " + addr, Err: errors.New("the fake fleet has no network")}
}

// ReadFile, WriteFile and MkdirAll fail: the fake fleet has no files
// but the marks of unchecked containers, and runs no proxy.
func (h *fakeHost) ReadFile(ctx context.Context, p string) ([]byte, error) {
	return nil, noFiles(h.name, "reading "+p)
}

func (h *fakeHost) WriteFile(ctx context.Context, p string, r io.Reader, mode fs.FileMode) error {
	return noFiles(h.name, "writing "+p)
}

func (h *fakeHost) MkdirAll(ctx context.Context, p string) error {
	return noFiles(h.name, "making "+p)
}

func noFiles(host, op string) error {
	return &executor.HostError{Host: host, Op: op, Err: errors.New("the fake fleet has no files")}
}

// Root is the host itself: the fake has no users.
func (h *fakeHost) Root() proxy.Host { return h }

// MarkUnchecked keeps the host's marks in memory; they outlive a rollout
// as files do on a real host.
func (h *fakeHost) MarkUnchecked(ctx context.Context, project, id string, unchecked bool) error {
	op := "unmark"
	if unchecked {
		op = "mark"
	}
	return h.call(ctx, op, id, func() error {
		if unchecked {
			h.unchecked[project+"\x00"+id] = true
		} else {
			delete(h.unchecked, project+"\x00"+id)
		}
		return nil
	})
}

// RecordImage keeps the host's records of the images runs brought, in
// memory.
func (h *fakeHost) RecordImage(ctx context.Context, project, id, ref string) error {
	return h.call(ctx, "record-image", ref, func() error {
		h.recordedImages[project] = append(h.recordedImages[project], ref)
		return nil
	})
}

// RecordedImages returns the references of the images runs of project
// brought to a host, in the order they came.
func (f *Fleet) RecordedImages(host, project string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.hosts[host].recordedImages[project])
}

// Unchecked returns the IDs of the containers of project marked as not yet
// seen healthy on a host.
func (f *Fleet) Unchecked(host, project string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var ids []string
	for key := range f.hosts[host].unchecked {
		if p, id, _ := strings.Cut(key, "\x00"); p == project {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids
}

func (h *fakeHost) Create(ctx context.Context, spec executor.ContainerSpec) (string, error) {
	var id string
	call := Call{Host: h.name, Op: "create", ID: spec.Name, Labels: maps.Clone(spec.Labels), Env: maps.Clone(spec.Env)}
	err := h.run(ctx, call, func() error {
		imageID, ok := h.images[spec.Image]
		if !ok {
			return notFound("image: " + spec.Image)
		}
		for _, c := range h.containers {
			if spec.Name != "" && c.Name == spec.Name {
				return &executor.EngineError{Status: http.StatusConflict, Message: "the container name " + spec.Name + " is already in use"}
			}
		}
		for _, n := range spec.Networks {
			if !h.networks[n] {
				return notFound("network: " + n)
			}
		}
		h.f.seq++
		sum := sha256.Sum256([]byte(h.name + strconv.Itoa(h.f.seq)))
		id = hex.EncodeToString(sum[:])
		networks := map[string]string{}
		for i, n := range append([]string{}, spec.Networks...) {
			networks[n] = fmt.Sprintf("198.19.%d.%d", i, h.f.seq%250+2)
		}
		if len(networks) == 0 {
			networks["bridge"] = fmt.Sprintf("198.19.0.%d", h.f.seq%250+2)
		}
		restart := spec.Restart
		if restart == "" {
			restart = "no"
		}
		c := &container{Container: executor.Container{
			ID: id, Name: spec.Name, Image: spec.Image, ImageID: imageID,
			Labels: maps.Clone(spec.Labels), Env: maps.Clone(spec.Env),
			Command: spec.Command, Entrypoint: spec.Entrypoint, Ports: slices.Clone(spec.Ports),
			Networks: networks, Restart: restart, User: spec.User, Workdir: spec.Workdir,
			CPUs: spec.CPUs, Memory: spec.Memory, StopGrace: spec.StopGrace,
			Created: time.Now(), Status: "created",
		}}
		if c.Labels == nil {
			c.Labels = map[string]string{}
		}
		if c.Env == nil {
			c.Env = map[string]string{}
		}
		for _, m := range spec.Volumes {
			c.Volumes = append(c.Volumes, executor.Mount{Source: m.Source, Target: m.Target, ReadOnly: m.ReadOnly})
		}
		h.containers[id] = c
		return nil
	})
	if err != nil {
		return "", err
	}
	return id, nil
}

func (h *fakeHost) Start(ctx context.Context, id string) error {
	return h.call(ctx, "start", id, func() error {
		c := h.lookup(id)
		if c == nil {
			return notFound("container: " + id)
		}
		if c.Running {
			return nil
		}
		for _, other := range h.containers {
			if other.Running && sharesPort(other, c) {
				return &executor.EngineError{Status: http.StatusInternalServerError,
					Message: "driver failed programming external connectivity: port is already allocated"}
			}
		}
		c.Running, c.Status, c.ExitCode, c.StartedAt, c.RestartCount, c.looks, c.Health = true, "running", 0, time.Now(), 0, 0, "starting"
		if crash, _ := c.behaves(h.name, "crash"); crash {
			h.exit(c, 1)
		}
		h.f.oom(c)
		return nil
	})
}

func sharesPort(a, b *container) bool {
	for _, p := range a.Ports {
		for _, q := range b.Ports {
			if p.HostPort != 0 && p.HostPort == q.HostPort && p.Protocol == q.Protocol && p.HostIP == q.HostIP {
				return true
			}
		}
	}
	return false
}

func (h *fakeHost) Stop(ctx context.Context, id string, grace time.Duration) error {
	return h.call(ctx, "stop", id, func() error {
		c := h.lookup(id)
		if c == nil {
			return notFound("container: " + id)
		}
		if fails, _ := c.behaves(h.name, "stop-fails"); fails {
			return &executor.EngineError{Status: http.StatusInternalServerError, Message: "cannot stop container " + id + ": permission denied"}
		}
		if c.Running {
			h.exit(c, 0)
		}
		return nil
	})
}

func (h *fakeHost) Remove(ctx context.Context, id string, force bool) error {
	return h.call(ctx, "remove", id, func() error {
		c := h.lookup(id)
		if c == nil {
			return notFound("container: " + id)
		}
		if c.Running && !force {
			return &executor.EngineError{Status: http.StatusConflict, Message: "cannot remove a running container " + id}
		}
		delete(h.containers, c.ID)
		return nil
	})
}

func (h *fakeHost) Rename(ctx context.Context, id, name string) error {
	return h.call(ctx, "rename", id, func() error {
		c := h.lookup(id)
		if c == nil {
			return notFound("container: " + id)
		}
		if other := h.lookup(name); other != nil && other != c {
			return &executor.EngineError{Status: http.StatusConflict, Message: "the container name " + name + " is already in use"}
		}
		c.Name = name
		return nil
	})
}

func (h *fakeHost) Inspect(ctx context.Context, id string) (*executor.Container, error) {
	var out executor.Container
	err := h.call(ctx, "inspect", id, func() error {
		c := h.lookup(id)
		if c == nil {
			return notFound("container: " + id)
		}
		h.look(c)
		out = c.snapshot()
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &out, nil
}

func (h *fakeHost) List(ctx context.Context, labels map[string]string) ([]executor.Container, error) {
	out := []executor.Container{}
	err := h.call(ctx, "list", "", func() error {
		for _, c := range h.sorted() {
			all := true
			for k, v := range labels {
				all = all && c.Labels[k] == v
			}
			if all {
				h.look(c)
				out = append(out, c.snapshot())
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

func (h *fakeHost) Update(ctx context.Context, id string, cpus float64, memory int64, restart string) error {
	return h.call(ctx, "update", id, func() error {
		c := h.lookup(id)
		if c == nil {
			return notFound("container: " + id)
		}
		// Zero leaves a limit as it is: the engine cannot lift one.
		if cpus != 0 {
			c.CPUs = cpus
		}
		if memory != 0 {
			c.Memory = memory
		}
		if restart != "" {
			c.Restart = restart
		}
		h.f.oom(c)
		return nil
	})
}

func (h *fakeHost) EnsureNetwork(ctx context.Context, name string, labels map[string]string) error {
	return h.call(ctx, "ensure-network", name, func() error {
		h.networks[name] = true
		return nil
	})
}

func (h *fakeHost) EnsureVolume(ctx context.Context, name string, labels map[string]string) error {
	return h.call(ctx, "ensure-volume", name, func() error {
		h.volumes[name] = true
		return nil
	})
}

func (h *fakeHost) ImageInspect(ctx context.Context, ref string) (*executor.Image, error) {
	var img *executor.Image
	err := h.call(ctx, "image-inspect", ref, func() error {
		id, ok := h.images[ref]
		if !ok {
			return notFound("image: " + ref)
		}
		img = &executor.Image{ID: id, RepoTags: []string{ref}}
		return nil
	})
	return img, err
}

func (h *fakeHost) Pull(ctx context.Context, ref string, auth *executor.RegistryAuth) error {
	return h.call(ctx, "pull", ref, func() error {
		if !h.f.registry[ref] {
			return &executor.EngineError{Status: http.StatusNotFound, Message: "manifest for " + ref + " not found: manifest unknown"}
		}
		h.images[ref] = imageID(ref)
		return nil
	})
}

// Exec runs a health check command: it exits 0 when the container is
// healthy, 1 otherwise.
func (h *fakeHost) Exec(ctx context.Context, id string, argv []string, stdout, stderr io.Writer) (int, error) {
	code := -1
	err := h.call(ctx, "exec", id, func() error {
		c := h.lookup(id)
		if c == nil {
			return notFound("container: " + id)
		}
		if !c.Running {
			return &executor.EngineError{Status: http.StatusConflict, Message: "container " + id + " is not running"}
		}
		h.look(c)
		code = 1
		if c.Running && c.healthy(h.name) {
			code = 0
		}
		return nil
	})
	return code, err
}
