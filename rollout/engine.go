package rollout

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"net"
	"time"

	"github.com/fleetdeploy/fleet/executor"
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
	MarkUnchecked(ctx context.Context, project, id string, unchecked bool) error
	// RecordImage records that a run brought image id to the host, by
	// ref: fleet prune removes only what is recorded (see images.go).
	RecordImage(ctx context.Context, project, id, ref string) error
}

// connHost is a host reached over SSH by the executor.
type connHost struct{ *executor.Conn }

func (h connHost) Engine() Engine { return h.Conn.Engine() }

func (h connHost) MarkUnchecked(ctx context.Context, project, id string, unchecked bool) error {
	return markUnchecked(ctx, h.Conn, project, id, unchecked)
}

func (h connHost) RecordImage(ctx context.Context, project, id, ref string) error {
	if err := recordImage(ctx, h.Conn, project, id, ref); err != nil {
		return fmt.Errorf("host %s: recording image %s for fleet prune: %w", h.Host(), ref, err)
	}
	return nil
}

// HostsOf returns the hosts of a fleet's connections, by name.
func HostsOf(conns map[string]*executor.Conn) map[string]Host {
	hosts := make(map[string]Host, len(conns))
	for name, c := range conns {
		hosts[name] = connHost{c}
	}
	return hosts
}
