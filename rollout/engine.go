package rollout

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"net"
	"sync"
	"time"

	"github.com/fleetdeploy/fleet/executor"
	"github.com/fleetdeploy/fleet/proxy"
)

// Engine is what a rollout needs of one host's container engine: to make,
// start, stop, change and remove containers, to read one back, to ready
// what a new container needs (networks, volumes, its image), and to run a
// health check's command in one.
//
// The executor's engine, driven over SSH, is the one fleet uses; a fake
// in memory stands in for it in the tests of the rollout's decisions
// (package rollouttest), and a test suite run against both keeps the fake
// honest. Whatever implements it keeps the real engine's contract: a
// missing container or image is an error matching [executor.ErrNotFound];
// starting a running container and stopping a stopped one change nothing
// and are no error; a request cut short by its context may still have been
// carried out.
type Engine interface {
	Create(ctx context.Context, spec executor.ContainerSpec) (id string, err error)
	Start(ctx context.Context, id string) error
	// Stop gives the container grace to exit before it is killed.
	Stop(ctx context.Context, id string, grace time.Duration) error
	Remove(ctx context.Context, id string, force bool) error
	// Rename gives a container another name, running or not; a name in
	// use is a conflict.
	Rename(ctx context.Context, id, name string) error
	Inspect(ctx context.Context, id string) (*executor.Container, error)
	// List reads every container, running or not, that carries all of
	// labels.
	List(ctx context.Context, labels map[string]string) ([]executor.Container, error)
	// Update changes limits and restart policy in place; a zero limit
	// leaves the current one as it is.
	Update(ctx context.Context, id string, cpus float64, memory int64, restart string) error
	EnsureNetwork(ctx context.Context, name string, labels map[string]string) error
	EnsureVolume(ctx context.Context, name string, labels map[string]string) error
	ImageInspect(ctx context.Context, ref string) (*executor.Image, error)
	Pull(ctx context.Context, ref string, auth *executor.RegistryAuth) error
	Exec(ctx context.Context, id string, argv []string, stdout, stderr io.Writer) (exitCode int, err error)
}

// Host is one host as a rollout drives it: its engine, a way to reach a
// container's own address from the host's side, which an HTTP or TCP
// health check takes, and the marks of containers not yet seen healthy
// (see unchecked.go).
type Host interface {
	Engine() Engine
	DialContext(ctx context.Context, network, addr string) (net.Conn, error)
	// ReadFile, WriteFile (atomically) and MkdirAll reach the host's
	// files as the login user: the proxy's slot files are among them.
	ReadFile(ctx context.Context, path string) ([]byte, error)
	WriteFile(ctx context.Context, path string, r io.Reader, mode fs.FileMode) error
	MkdirAll(ctx context.Context, path string) error
	// Root reaches what is root's on the host, as the proxy's socket and
	// files are: through sudo for a login user with sudo set.
	Root() proxy.Host
	MarkUnchecked(ctx context.Context, project, id string, unchecked bool) error
	// RecordImage records that a run brought image id to the host, by
	// ref: fleet prune removes only what is recorded (see images.go).
	RecordImage(ctx context.Context, project, id, ref string) error
}

// connHost is a host reached over SSH by the executor. When its
// connection is lost, the next call connects again ([executor.Conn.Reconnect]):
// the call in flight failed, so a step whose host dropped fails and is
// undone over the new connection, or, in a health check, looks again.
type connHost struct {
	mu sync.Mutex
	c  *executor.Conn
	// reconnected, when set, is told each time the host was connected
	// again, and why its connection was lost.
	reconnected func(host string, lost error)
}

// conn returns the host's connection, connecting again if it was lost. A
// failed attempt still matches [executor.ErrConnLost]: the work waits on a
// host that may come back, not on an answer it gave.
func (h *connHost) conn(ctx context.Context) (*executor.Conn, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	lost := h.c.Lost()
	if lost == nil {
		return h.c, nil
	}
	c, err := h.c.Reconnect(ctx)
	if err != nil {
		return nil, fmt.Errorf("%w; connecting again: %w", lost, err)
	}
	h.c = c
	if h.reconnected != nil {
		h.reconnected(c.Host(), lost)
	}
	return c, nil
}

func (h *connHost) Engine() Engine { return hostEngine{h} }

func (h *connHost) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	return withConn(ctx, h, func(c *executor.Conn) (net.Conn, error) { return c.DialContext(ctx, network, addr) })
}

func (h *connHost) ReadFile(ctx context.Context, path string) ([]byte, error) {
	return withConn(ctx, h, func(c *executor.Conn) ([]byte, error) { return c.ReadFile(ctx, path) })
}

func (h *connHost) WriteFile(ctx context.Context, path string, r io.Reader, mode fs.FileMode) error {
	return doConn(ctx, h, func(c *executor.Conn) error { return c.WriteFile(ctx, path, r, mode) })
}

func (h *connHost) MkdirAll(ctx context.Context, path string) error {
	return doConn(ctx, h, func(c *executor.Conn) error { return c.MkdirAll(ctx, path) })
}

func (h *connHost) Root() proxy.Host { return rootHost{h} }

// rootHost is what is root's on a connHost, over whichever connection is
// current at each call.
type rootHost struct{ h *connHost }

func (r rootHost) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	return withConn(ctx, r.h, func(c *executor.Conn) (net.Conn, error) { return c.AsRoot().DialContext(ctx, network, addr) })
}

func (r rootHost) ReadFile(ctx context.Context, path string) ([]byte, error) {
	return withConn(ctx, r.h, func(c *executor.Conn) ([]byte, error) { return c.AsRoot().ReadFile(ctx, path) })
}

func (r rootHost) WriteFile(ctx context.Context, path string, rd io.Reader, mode fs.FileMode) error {
	return doConn(ctx, r.h, func(c *executor.Conn) error { return c.AsRoot().WriteFile(ctx, path, rd, mode) })
}

func (r rootHost) MkdirAll(ctx context.Context, path string) error {
	return doConn(ctx, r.h, func(c *executor.Conn) error { return c.AsRoot().MkdirAll(ctx, path) })
}

func (h *connHost) MarkUnchecked(ctx context.Context, project, id string, unchecked bool) error {
	return doConn(ctx, h, func(c *executor.Conn) error { return markUnchecked(ctx, c, project, id, unchecked) })
}

func (h *connHost) RecordImage(ctx context.Context, project, id, ref string) error {
	return doConn(ctx, h, func(c *executor.Conn) error {
		if err := recordImage(ctx, c, project, id, ref); err != nil {
			return hostOpFailed(c.Host(), "recording image "+ref+" for fleet prune", err)
		}
		return nil
	})
}

func withConn[T any](ctx context.Context, h *connHost, f func(*executor.Conn) (T, error)) (T, error) {
	c, err := h.conn(ctx)
	if err != nil {
		var zero T
		return zero, err
	}
	return f(c)
}

func doConn(ctx context.Context, h *connHost, f func(*executor.Conn) error) error {
	_, err := withConn(ctx, h, func(c *executor.Conn) (struct{}, error) { return struct{}{}, f(c) })
	return err
}

// hostEngine is the engine of a connHost, over whichever connection is
// current at each call.
type hostEngine struct{ h *connHost }

func (e hostEngine) with(ctx context.Context, f func(*executor.Engine) error) error {
	return doConn(ctx, e.h, func(c *executor.Conn) error { return f(c.Engine()) })
}

func (e hostEngine) Create(ctx context.Context, spec executor.ContainerSpec) (id string, err error) {
	err = e.with(ctx, func(x *executor.Engine) (err error) { id, err = x.Create(ctx, spec); return err })
	return id, err
}

func (e hostEngine) Start(ctx context.Context, id string) error {
	return e.with(ctx, func(x *executor.Engine) error { return x.Start(ctx, id) })
}

func (e hostEngine) Stop(ctx context.Context, id string, grace time.Duration) error {
	return e.with(ctx, func(x *executor.Engine) error { return x.Stop(ctx, id, grace) })
}

func (e hostEngine) Remove(ctx context.Context, id string, force bool) error {
	return e.with(ctx, func(x *executor.Engine) error { return x.Remove(ctx, id, force) })
}

func (e hostEngine) Rename(ctx context.Context, id, name string) error {
	return e.with(ctx, func(x *executor.Engine) error { return x.Rename(ctx, id, name) })
}

func (e hostEngine) Inspect(ctx context.Context, id string) (c *executor.Container, err error) {
	err = e.with(ctx, func(x *executor.Engine) (err error) { c, err = x.Inspect(ctx, id); return err })
	return c, err
}

func (e hostEngine) List(ctx context.Context, labels map[string]string) (cs []executor.Container, err error) {
	err = e.with(ctx, func(x *executor.Engine) (err error) { cs, err = x.List(ctx, labels); return err })
	return cs, err
}

func (e hostEngine) Update(ctx context.Context, id string, cpus float64, memory int64, restart string) error {
	return e.with(ctx, func(x *executor.Engine) error { return x.Update(ctx, id, cpus, memory, restart) })
}

func (e hostEngine) EnsureNetwork(ctx context.Context, name string, labels map[string]string) error {
	return e.with(ctx, func(x *executor.Engine) error { return x.EnsureNetwork(ctx, name, labels) })
}

func (e hostEngine) EnsureVolume(ctx context.Context, name string, labels map[string]string) error {
	return e.with(ctx, func(x *executor.Engine) error { return x.EnsureVolume(ctx, name, labels) })
}

func (e hostEngine) ImageInspect(ctx context.Context, ref string) (img *executor.Image, err error) {
	err = e.with(ctx, func(x *executor.Engine) (err error) { img, err = x.ImageInspect(ctx, ref); return err })
	return img, err
}

func (e hostEngine) Pull(ctx context.Context, ref string, auth *executor.RegistryAuth) error {
	return e.with(ctx, func(x *executor.Engine) error { return x.Pull(ctx, ref, auth) })
}

func (e hostEngine) Exec(ctx context.Context, id string, argv []string, stdout, stderr io.Writer) (code int, err error) {
	err = e.with(ctx, func(x *executor.Engine) (err error) { code, err = x.Exec(ctx, id, argv, stdout, stderr); return err })
	return code, err
}

// opFailed puts op before what err, an error of a host's connection, says
// it was doing ("host h1: taking the deploy lock: creating …"), so that
// the host is named once; another error is returned as it is.
func opFailed(op string, err error) error {
	if he, ok := err.(*executor.HostError); ok {
		if he.Op != "" {
			op += ": " + he.Op
		}
		return &executor.HostError{Host: he.Host, Op: op, Err: he.Err}
	}
	return err
}

// hostOpFailed says that op failed on host with err, naming the host once.
func hostOpFailed(host, op string, err error) error {
	if he, ok := err.(*executor.HostError); ok && he.Host == host {
		return opFailed(op, err)
	}
	return &executor.HostError{Host: host, Op: op, Err: err}
}

// HostsOf returns the hosts of a fleet's connections, by name. Each one
// connects again when its connection is lost, and tells reconnected (when
// not nil).
func HostsOf(conns map[string]*executor.Conn, reconnected func(host string, lost error)) map[string]Host {
	hosts := make(map[string]Host, len(conns))
	for name, c := range conns {
		hosts[name] = &connHost{c: c, reconnected: reconnected}
	}
	return hosts
}
