package proxy

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/fleetdeploy/fleet/executor"
	"github.com/fleetdeploy/fleet/plan"
)

const (
	// ContainerName is the proxy's container on every host.
	ContainerName = plan.ProxyContainer
	// Volume holds the proxy's state (certificates, its last
	// configuration) and its admin socket.
	Volume = "fleet-proxy"
	// Label marks the proxy's container and volume: no project owns them,
	// so no project's plan removes them.
	Label = "fleet.proxy"
	// MinVersion is the oldest Caddy that fleet can drain with: older ones
	// stop listing an upstream taken out of its route while requests to it
	// are still in flight.
	MinVersion = "2.11.2"

	dataDir     = "/data"
	adminSocket = "admin.sock"
)

// Engine is what the proxy needs of a host's container engine.
type Engine interface {
	Create(ctx context.Context, spec executor.ContainerSpec) (string, error)
	Start(ctx context.Context, id string) error
	Remove(ctx context.Context, id string, force bool) error
	Inspect(ctx context.Context, id string) (*executor.Container, error)
	EnsureVolume(ctx context.Context, name string, labels map[string]string) error
	ImageInspect(ctx context.Context, ref string) (*executor.Image, error)
	Pull(ctx context.Context, ref string, auth *executor.RegistryAuth) error
	Exec(ctx context.Context, id string, argv []string, stdout, stderr io.Writer) (int, error)
	Stop(ctx context.Context, id string, grace time.Duration) error
	Rename(ctx context.Context, id, name string) error
}

// Ensure makes sure that the host runs the proxy and returns its admin
// API. A proxy already there is used as it is, whatever its image (see
// Upgrade); a stopped one is started. A new one runs image, pulled first
// when the host lacks it (with auth, which may be nil), on the host's
// network so that it reaches every container's address and binds the
// host's ports itself.
func Ensure(ctx context.Context, host string, eng Engine, h Host, image string, auth *executor.RegistryAuth) (*Admin, error) {
	if err := settle(ctx, host, eng); err != nil {
		return nil, err
	}
	c, err := eng.Inspect(ctx, ContainerName)
	if errors.Is(err, executor.ErrNotFound) {
		c, err = create(ctx, host, eng, image, auth, ContainerName)
	}
	if err != nil {
		return nil, err
	}
	if c.Labels[Label] == "" {
		return nil, notOurs(host, ContainerName)
	}
	if !c.Running {
		if err := eng.Start(ctx, c.ID); err != nil {
			return nil, fmt.Errorf("starting the proxy on %s: %w", host, err)
		}
	}
	a, err := adminOf(host, h, c)
	if err != nil {
		return nil, err
	}
	if err := waitReady(ctx, host, eng, c, a); err != nil {
		return nil, err
	}
	if err := checkVersion(ctx, host, eng, c.ID); err != nil {
		return nil, err
	}
	return a, nil
}

// nextName is the container of a new proxy while it takes over from the
// old one (see Upgrade).
const nextName = ContainerName + "-next"

// Upgrade hands the host's proxy over to a new one that runs image, and
// fails no request doing it: the new Caddy starts beside the old one on
// the host's network, resumes the configuration the old one saved, and
// binds the same ports (Caddy listens with SO_REUSEPORT on Linux, so both
// accept connections for a moment). Once it answers with the old one's
// configuration (a change made since it started, by another project, is
// copied over), the old one is stopped gracefully: it stops accepting and
// finishes the requests it has in flight, within its grace period. The
// new one then takes the proxy's name. A handover cut short is taken up
// by the next Upgrade or Ensure (see settle).
// said, if not nil, is told each step as it is reached.
func Upgrade(ctx context.Context, host string, eng Engine, h Host, image string, auth *executor.RegistryAuth, said func(step string)) (*Admin, error) {
	if said == nil {
		said = func(string) {}
	}
	if err := settle(ctx, host, eng); err != nil {
		return nil, err
	}
	old, err := eng.Inspect(ctx, ContainerName)
	if errors.Is(err, executor.ErrNotFound) {
		return Ensure(ctx, host, eng, h, image, auth)
	}
	if err != nil {
		return nil, err
	}
	if old.Labels[Label] == "" {
		return nil, notOurs(host, ContainerName)
	}
	if old.Image == image {
		return Ensure(ctx, host, eng, h, image, auth)
	}
	if !old.Running {
		// It serves nothing: replaced at once.
		if err := eng.Remove(ctx, old.ID, true); err != nil {
			return nil, fmt.Errorf("removing the stopped proxy on %s: %w", host, err)
		}
		return Ensure(ctx, host, eng, h, image, auth)
	}
	from, err := adminOf(host, h, old)
	if err != nil {
		return nil, err
	}
	next, err := eng.Inspect(ctx, nextName)
	switch {
	case err == nil && next.Labels[Label] == "":
		return nil, notOurs(host, nextName)
	case err == nil && next.Running && next.Image == image:
		// Left by a handover cut short: it serves beside the old one.
	case err == nil:
		if err := eng.Remove(ctx, next.ID, true); err != nil {
			return nil, fmt.Errorf("removing %s, left on %s by an upgrade cut short: %w", nextName, host, err)
		}
		next = nil
	case errors.Is(err, executor.ErrNotFound):
		next = nil
	default:
		return nil, err
	}
	if next == nil {
		if next, err = create(ctx, host, eng, image, auth, nextName); err != nil {
			return nil, err
		}
	}
	a, err := adminOf(host, h, next)
	if err == nil {
		err = waitReady(ctx, host, eng, next, a)
	}
	if err == nil {
		err = checkVersion(ctx, host, eng, next.ID)
	}
	var grace time.Duration
	if err == nil {
		grace, err = a.copyFrom(ctx, from)
	}
	if err != nil {
		// The old one serves on, alone again.
		eng.Remove(context.WithoutCancel(ctx), next.ID, true)
		return nil, fmt.Errorf("upgrading the proxy on %s to %s: %w", host, image, err)
	}
	said("both serve: the old one stops next")
	// From here the handover is finished even when the run is
	// interrupted: the old one's graceful stop fails no request, and two
	// proxies left serving would each take only some of the changes.
	ctx = context.WithoutCancel(ctx)
	// Caddy ends its requests in flight within its grace period, and is
	// killed only after it.
	if err := eng.Stop(ctx, old.ID, max(old.StopGrace, grace+5*time.Second)); err != nil {
		return nil, fmt.Errorf("stopping the old proxy on %s (the new one serves beside it): %w", host, err)
	}
	if err := eng.Remove(ctx, old.ID, false); err != nil {
		return nil, fmt.Errorf("removing the old proxy on %s (the new one serves): %w", host, err)
	}
	if err := eng.Rename(ctx, next.ID, ContainerName); err != nil {
		return nil, fmt.Errorf("naming the new proxy on %s %s: %w", host, ContainerName, err)
	}
	return a, nil
}

// settle finishes a handover cut short once the old proxy had been told
// to stop, or was gone: the new one takes the name, and the old one goes
// rather than start again. With both running, Upgrade takes it up.
func settle(ctx context.Context, host string, eng Engine) error {
	next, err := eng.Inspect(ctx, nextName)
	if errors.Is(err, executor.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if next.Labels[Label] == "" {
		return notOurs(host, nextName)
	}
	old, err := eng.Inspect(ctx, ContainerName)
	switch {
	case errors.Is(err, executor.ErrNotFound):
	case err != nil:
		return err
	case old.Labels[Label] == "":
		return notOurs(host, ContainerName)
	case old.Running:
		return nil
	default:
		if err := eng.Remove(ctx, old.ID, true); err != nil {
			return fmt.Errorf("removing the old proxy on %s, stopped by an upgrade cut short: %w", host, err)
		}
	}
	if err := eng.Rename(ctx, next.ID, ContainerName); err != nil {
		return fmt.Errorf("naming the proxy on %s %s: %w", host, ContainerName, err)
	}
	return nil
}

func notOurs(host, name string) error {
	return fmt.Errorf("host %s has a container called %s that fleet did not make: rename or remove it (docker rm -f %s) so that fleet can run its proxy", host, name, name)
}

// waitReady waits until the proxy in c answers on its admin socket: Caddy
// makes the socket a moment after it starts.
func waitReady(ctx context.Context, host string, eng Engine, c *executor.Container, a *Admin) error {
	for wait := 50 * time.Millisecond; ; wait = min(2*wait, time.Second) {
		last := a.Ping(ctx)
		if last == nil {
			return nil
		}
		if time.Since(c.StartedAt) > 30*time.Second && c.Running {
			return fmt.Errorf("proxy on %s does not answer on its admin socket %s: %w; sshd opens it as the login user, who must be root (or may use the socket) with AllowStreamLocalForwarding allowed; see also docker logs %s", host, a.socket, last, c.Name)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
		if now, err := eng.Inspect(ctx, c.ID); err == nil {
			if !now.Running {
				return fmt.Errorf("proxy on %s exited with code %d: see docker logs %s", host, now.ExitCode, c.Name)
			}
			c = now
		}
	}
}

// Open returns the admin API of the proxy that runs on the host, or nil
// when none runs there. It makes nothing.
func Open(ctx context.Context, host string, eng interface {
	Inspect(ctx context.Context, id string) (*executor.Container, error)
}, h Host) (*Admin, error) {
	c, err := eng.Inspect(ctx, ContainerName)
	if err != nil && !errors.Is(err, executor.ErrNotFound) {
		return nil, err
	}
	if c == nil || c.Labels[Label] == "" || !c.Running {
		// An upgrade cut short once the old one had stopped or gone:
		// the new one serves.
		next, err := eng.Inspect(ctx, nextName)
		if err != nil && !errors.Is(err, executor.ErrNotFound) {
			return nil, err
		}
		if next == nil || next.Labels[Label] == "" || !next.Running {
			return nil, nil
		}
		c = next
	}
	return adminOf(host, h, c)
}

// adminOf is the admin API of the proxy in c: its socket is where the
// container's CADDY_ADMIN says, in its volume.
func adminOf(host string, h Host, c *executor.Container) (*Admin, error) {
	dir, err := dataSource(c)
	if err != nil {
		return nil, fmt.Errorf("proxy on %s: %w", host, err)
	}
	socket := adminSocket
	if rel, ok := strings.CutPrefix(c.Env["CADDY_ADMIN"], "unix/"+dataDir+"/"); ok && rel != "" && !strings.Contains(rel, "..") {
		socket = rel
	}
	a := NewAdmin(host, h, dir, socket)
	a.Image = c.Image
	a.CutShort = c.Name == nextName || c.Name == "/"+nextName
	return a, nil
}

func create(ctx context.Context, host string, eng Engine, image string, auth *executor.RegistryAuth, name string) (*executor.Container, error) {
	if _, err := eng.ImageInspect(ctx, image); errors.Is(err, executor.ErrNotFound) {
		if err := eng.Pull(ctx, image, auth); err != nil {
			return nil, fmt.Errorf("pulling the proxy's image on %s: %w", host, err)
		}
	} else if err != nil {
		return nil, err
	}
	labels := map[string]string{Label: "caddy"}
	if err := eng.EnsureVolume(ctx, Volume, labels); err != nil {
		return nil, err
	}
	// A socket of its own: during an upgrade two proxies share the volume.
	var tag [4]byte
	rand.Read(tag[:])
	socket := path.Join(dataDir, "admin-"+hex.EncodeToString(tag[:])+".sock")
	id, err := eng.Create(ctx, executor.ContainerSpec{
		Name:   name,
		Image:  image,
		Labels: labels,
		Env: map[string]string{
			// The admin API on a socket in the volume, reached through
			// SSH; Caddy's state (certificates, the configuration it
			// resumes after a restart) in the volume too.
			"CADDY_ADMIN":     "unix/" + socket,
			"XDG_DATA_HOME":   dataDir,
			"XDG_CONFIG_HOME": path.Join(dataDir, "config"),
		},
		Entrypoint: []string{"caddy"},
		Command:    []string{"run", "--resume"},
		Volumes:    []executor.Mount{{Source: Volume, Target: dataDir}},
		Networks:   []string{"host"},
		Restart:    "unless-stopped",
		StopGrace:  30 * time.Second,
	})
	if isConflict(err) {
		// Another run made it first.
		return eng.Inspect(ctx, name)
	}
	if err != nil {
		return nil, fmt.Errorf("creating the proxy on %s: %w", host, err)
	}
	if err := eng.Start(ctx, id); err != nil {
		eng.Remove(context.WithoutCancel(ctx), id, true)
		return nil, fmt.Errorf("starting the proxy on %s: %w", host, err)
	}
	return eng.Inspect(ctx, id)
}

func isConflict(err error) bool {
	var ee *executor.EngineError
	return errors.As(err, &ee) && ee.Status == 409
}

// dataSource is where the proxy's volume is on the host.
func dataSource(c *executor.Container) (string, error) {
	var doc struct {
		Mounts []struct{ Source, Destination string }
	}
	if err := json.Unmarshal(c.Raw, &doc); err != nil {
		return "", err
	}
	for _, m := range doc.Mounts {
		if m.Destination == dataDir && m.Source != "" {
			return m.Source, nil
		}
	}
	return "", fmt.Errorf("its container has no volume at %s: remove it (docker rm -f %s) and fleet makes it anew", dataDir, ContainerName)
}

var versionRE = regexp.MustCompile(`\bv?(\d+)\.(\d+)\.(\d+)`)

// checkVersion refuses a Caddy too old to drain.
func checkVersion(ctx context.Context, host string, eng Engine, id string) error {
	var out bytes.Buffer
	code, err := eng.Exec(ctx, id, []string{"caddy", "version"}, &out, io.Discard)
	if err != nil {
		return fmt.Errorf("asking the proxy on %s for its version: %w", host, err)
	}
	m := versionRE.FindStringSubmatch(out.String())
	if code != 0 || m == nil {
		return fmt.Errorf("proxy on %s: caddy version answered %q (exit %d): is it Caddy?", host, bytes.TrimSpace(out.Bytes()), code)
	}
	if !atLeast(m[1:], MinVersion) {
		return fmt.Errorf("proxy on %s runs Caddy %s.%s.%s; fleet needs %s or newer to drain old containers without failing requests: set proxy_image to a newer Caddy (caddy:2 is, once pulled anew: docker pull caddy:2 on the host) and remove the old proxy (docker rm -f %s)", host, m[1], m[2], m[3], MinVersion, ContainerName)
	}
	return nil
}

func atLeast(have []string, want string) bool {
	w := versionRE.FindStringSubmatch(want)
	for i := range 3 {
		h, _ := strconv.Atoi(have[i])
		n, _ := strconv.Atoi(w[i+1])
		if h != n {
			return h > n
		}
	}
	return true
}
