// Package proxy drives the reverse proxy that fleet runs on each host that
// serves proxied services: one Caddy container per host, shared by every
// project there, configured only through Caddy's admin API. The admin API
// listens on a Unix socket inside the proxy's volume and is reached through
// the host's SSH connection, so no admin port is ever published.
//
// Each proxied service has one route in the proxy's configuration, with
// the @id "fleet.<project>.<service>": its host name and path, and one
// upstream per slot of the service on that host, whose address Caddy reads
// from the slot's file for every request (see [Admin.Swap]). A rollout
// writes a new container's address in its slot once it is healthy, and
// waits for the old one's requests in flight to end before it stops it
// (see [Admin.Drain]): no change of the configuration, so no reload. A route with TLS (proxy.tls) is served on
// a second server, for HTTPS, and the plain one redirects to it.
package proxy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"path"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/fleetdeploy/fleet/plan"
)

// Admin is the admin API of one host's proxy.
type Admin struct {
	// Image is what the proxy's container was made from.
	Image string
	// CutShort says that the proxy is the new one of an upgrade cut short
	// (still called fleet-proxy-next): Upgrade finishes it.
	CutShort bool

	host   string
	h      Host
	dir    string // the proxy's volume, on the host
	socket string
	client *http.Client
	// slotsMade says that the slot files' directory exists.
	slotsMade bool

	// mu makes this run's changes to the proxy one at a time, each at
	// least reloadSpacing after the one before (see Swap).
	mu         sync.Mutex
	lastReload time.Time
}

// drainSettle is the least time a drain waits (see Drain).
const drainSettle = time.Second

// reloadSpacing is the least time between two changes of one proxy by a
// run: the clients whose connections a reload closed have reconnected by
// then.
const reloadSpacing = 300 * time.Millisecond

// Host is a proxy's host as the SSH connection reaches it: connections
// from its side ("unix" to a socket path, "tcp" to an address), and its
// files, which the login user reads and writes (the slot files, see
// [Admin.Swap]); WriteFile replaces a file atomically.
type Host interface {
	DialContext(ctx context.Context, network, addr string) (net.Conn, error)
	ReadFile(ctx context.Context, path string) ([]byte, error)
	WriteFile(ctx context.Context, path string, r io.Reader, mode fs.FileMode) error
	MkdirAll(ctx context.Context, path string) error
}

// NewAdmin returns the admin API of the proxy whose volume is at dir on
// h, listening on socket there. host names the host in errors.
func NewAdmin(host string, h Host, dir, socket string) *Admin {
	socket = path.Join(dir, socket)
	return &Admin{host: host, h: h, dir: dir, socket: socket, client: &http.Client{
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) { return h.DialContext(ctx, "unix", socket) },
			// Each request is one stream of the SSH connection; a change
			// reloads Caddy's configuration, which a kept-alive stream
			// would outlive.
			DisableKeepAlives: true,
		},
		Timeout: 30 * time.Second,
	}}
}

// call sends one request; out, when not nil, receives the JSON answer.
// It returns the answer's Etag.
func (a *Admin) call(ctx context.Context, method, path string, body any, ifMatch string, out any) (string, error) {
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return "", err
		}
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://fleet-proxy"+path, r)
	if err != nil {
		return "", err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if ifMatch != "" {
		req.Header.Set("If-Match", ifMatch)
	}
	resp, err := a.client.Do(req)
	if err != nil {
		return "", fmt.Errorf("proxy on %s: %s %s: %w", a.host, method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return "", fmt.Errorf("proxy on %s: %s %s: %w", a.host, method, path, err)
	}
	if resp.StatusCode != http.StatusOK {
		var apiErr struct{ Error string }
		json.Unmarshal(data, &apiErr)
		if apiErr.Error == "" {
			apiErr.Error = strings.TrimSpace(string(data))
		}
		return "", &APIError{Host: a.host, Status: resp.StatusCode, Msg: fmt.Sprintf("%s %s: %s", method, path, apiErr.Error)}
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			return "", fmt.Errorf("proxy on %s: %s %s: unreadable answer: %w", a.host, method, path, err)
		}
	}
	return resp.Header.Get("Etag"), nil
}

// APIError is an answer of the admin API other than 200.
type APIError struct {
	Host   string
	Status int
	Msg    string
}

func (e *APIError) Error() string {
	return fmt.Sprintf("proxy on %s: %s (HTTP %d)", e.Host, e.Msg, e.Status)
}

// Ping asks the admin API for the configuration, to see that it answers.
func (a *Admin) Ping(ctx context.Context) error {
	_, err := a.call(ctx, http.MethodGet, "/config/", nil, "", nil)
	return err
}

// Route is one service's route through the proxy.
type Route struct {
	ID   string // fleet.<project>.<service>
	Host string
	Path string // a prefix: / or /api
	TLS  plan.TLS
	// DrainTimeout bounds how long a removed upstream may finish its
	// requests; the proxy's grace period on a reload is at least this.
	DrainTimeout time.Duration
}

// RouteID names the route of a project's service.
func RouteID(project, service string) string { return "fleet." + project + "." + service }

// ServerName and TLSServerName are the HTTP servers, in the proxy's
// configuration, that hold fleet's routes: plain HTTP, and HTTPS.
const (
	ServerName    = "fleet"
	TLSServerName = "fleet-tls"
)

// update changes the configuration: fn edits the HTTP servers that hold
// fleet's routes, which it finds made if there were none, and says whether
// it changed anything. The change is made only if nothing else changed
// the configuration since it was read (If-Match), so that two projects
// deploying on one host at once do not undo each other's routes; on a
// clash it is read and made again.
func (a *Admin) update(ctx context.Context, fn func(cfg *config) (bool, error)) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	for tries := 0; ; tries++ {
		var raw map[string]any
		etag, err := a.call(ctx, http.MethodGet, "/config/", nil, "", &raw)
		if err != nil {
			return err
		}
		cfg, err := readConfig(raw)
		if err != nil {
			return fmt.Errorf("proxy on %s: %w", a.host, err)
		}
		changed, err := fn(cfg)
		if err != nil || !changed {
			return err
		}
		if wait := reloadSpacing - time.Since(a.lastReload); wait > 0 {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(wait):
			}
		}
		a.lastReload = time.Now()
		_, err = a.call(ctx, http.MethodPost, "/config/", cfg.raw(), etag, nil)
		var apiErr *APIError
		if errors.As(err, &apiErr) && apiErr.Status == http.StatusPreconditionFailed && tries < 20 {
			continue
		}
		return err
	}
}

// Swap makes add (an address) serve the route's slot, in place of what
// served it, or with add "" takes the slot out of the route if remove
// serves it or if what serves it does not run (live says no). Each slot
// has a file in the proxy's volume that holds the address serving it,
// and Caddy reads the file for every request it sends to the slot: a
// slot already in the route changes hands with one atomic write of the
// file, and the configuration is not changed at all. Only a slot that
// joins or leaves the route, or another host name, path or TLS, changes
// the configuration.
//
// In the same change, every other slot whose address live says does not
// run leaves the route, as do upstreams written as addresses (by fleet
// before slots) that are remove, add or not live; a nil live keeps them
// all. A route left with no upstream is removed: the proxy then answers
// 404 for its host rather than 502, and no route names a container that
// is gone. Swap returns the address that served the slot before ("" for
// none), whose requests in flight may need draining.
//
// A change of the configuration reloads Caddy, and a reload under load is
// not free: Caddy binds new sockets for the new servers (SO_REUSEPORT)
// and shuts the old ones down, which closes the kept-alive connections of
// every client, resets the connections still queued on the old sockets,
// and drops a request that Go's server reads from a fresh connection
// while it shuts down. Slots keep reloads out of rolling updates and
// rollbacks; a change that changes nothing is not sent.
func (a *Admin) Swap(ctx context.Context, r Route, slot int, add, remove string, live func(addr string) bool) (was string, err error) {
	if live == nil {
		live = func(string) bool { return true }
	}
	mine := slotDial(r.ID, slot)
	err = a.update(ctx, func(cfg *config) (bool, error) {
		was = ""
		rt, tls := cfg.routeAndTLS(r.ID)
		var now []string
		if rt != nil {
			now = rt.upstreams()
		}
		var next []string
		for _, u := range now {
			n, isSlot := slotOf(r.ID, u)
			if !isSlot {
				if u == remove || u == add || !live(u) {
					if u == remove {
						was = remove
					}
					continue
				}
				next = append(next, u)
				continue
			}
			at, err := a.slotAddr(ctx, r.ID, n)
			if err != nil {
				return false, err
			}
			if n == slot {
				was = at
				if add == "" && (at == remove || at == "" || !live(at)) {
					continue
				}
			} else if at == "" || !live(at) {
				continue
			}
			next = append(next, u)
		}
		if add != "" {
			if was != add {
				if err := a.writeSlot(ctx, r.ID, slot, add); err != nil {
					return false, err
				}
			}
			if !slices.Contains(next, mine) {
				next = append(next, mine)
			}
		}
		switch {
		case rt == nil && len(next) == 0:
			return false, nil
		case rt.same(r) && tls == r.TLS && slices.Equal(now, next):
			return false, nil
		}
		cfg.setRoute(r, next)
		return true, nil
	})
	return was, err
}

// slotPath is where the file of a route's slot is on the host.
func (a *Admin) slotPath(id string, slot int) string {
	return path.Join(a.dir, slotsDir, slotFile(id, slot))
}

// slotAddr reads the address that serves a route's slot: "" when its file
// is missing, which Caddy takes for an upstream that refuses connections.
func (a *Admin) slotAddr(ctx context.Context, id string, slot int) (string, error) {
	b, err := a.h.ReadFile(ctx, a.slotPath(id, slot))
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("proxy on %s: %w", a.host, err)
	}
	return strings.TrimSpace(string(b)), nil
}

// writeSlot makes addr serve a route's slot, at once for every request
// that the proxy sends there from then on.
func (a *Admin) writeSlot(ctx context.Context, id string, slot int, addr string) error {
	if !a.slotsMade {
		if err := a.h.MkdirAll(ctx, path.Join(a.dir, slotsDir)); err != nil {
			return fmt.Errorf("proxy on %s: %w", a.host, err)
		}
		a.slotsMade = true
	}
	if err := a.h.WriteFile(ctx, a.slotPath(id, slot), strings.NewReader(addr+"\n"), 0o644); err != nil {
		return fmt.Errorf("proxy on %s: %w", a.host, err)
	}
	return nil
}

// copyFrom gives this proxy the configuration that from has, unless it
// has it already, and returns the grace period in it: how long from may
// take to finish its requests once it is told to stop.
func (a *Admin) copyFrom(ctx context.Context, from *Admin) (time.Duration, error) {
	var want map[string]any
	if _, err := from.call(ctx, http.MethodGet, "/config/", nil, "", &want); err != nil {
		return 0, fmt.Errorf("reading the old proxy's configuration: %w", err)
	}
	grace := time.Duration(0)
	if apps, ok := want["apps"].(map[string]any); ok {
		if h, ok := apps["http"].(map[string]any); ok {
			grace, _ = durationOf(h["grace_period"])
		}
	}
	err := a.update(ctx, func(cfg *config) (bool, error) {
		if reflect.DeepEqual(cfg.raw(), want) {
			return false, nil
		}
		cfg.root = want
		return true, nil
	})
	return grace, err
}

// RouteState is a route as the proxy has it.
type RouteState struct {
	Host, Path string // the path as a prefix, "" for /
	TLS        plan.TLS
	Upstreams  []string
}

// Routes returns the project's routes, by service.
func (a *Admin) Routes(ctx context.Context, project string) (map[string]RouteState, error) {
	var raw map[string]any
	if _, err := a.call(ctx, http.MethodGet, "/config/", nil, "", &raw); err != nil {
		return nil, err
	}
	cfg, err := readConfig(raw)
	if err != nil {
		return nil, fmt.Errorf("proxy on %s: %w", a.host, err)
	}
	prefix := RouteID(project, "")
	out := map[string]RouteState{}
	for _, name := range []string{ServerName, TLSServerName} {
		for _, r := range cfg.routes(name) {
			if id, ok := r["@id"].(string); ok && strings.HasPrefix(id, prefix) {
				host, path := r.site()
				_, tls := cfg.routeAndTLS(id)
				var ups []string
				for _, u := range r.upstreams() {
					if n, ok := slotOf(id, u); ok {
						if u, err = a.slotAddr(ctx, id, n); err != nil {
							return nil, err
						}
					}
					if u != "" {
						ups = append(ups, u)
					}
				}
				out[strings.TrimPrefix(id, prefix)] = RouteState{Host: host, Path: path, TLS: tls, Upstreams: ups}
			}
		}
	}
	return out, nil
}

// InFlight returns the requests the proxy has in flight to addr. Caddy
// lists an address taken out of every route for as long as requests to it
// are in flight (since 2.11.2), so an address not listed has none.
func (a *Admin) InFlight(ctx context.Context, addr string) (int, error) {
	var ups []struct {
		Address     string `json:"address"`
		NumRequests int    `json:"num_requests"`
	}
	if _, err := a.call(ctx, http.MethodGet, "/reverse_proxy/upstreams", nil, "", &ups); err != nil {
		return 0, err
	}
	for _, u := range ups {
		if u.Address == addr {
			return u.NumRequests, nil
		}
	}
	return 0, nil
}

// Drain waits until the proxy has no request in flight to addr, taken out
// of its route before, for at most timeout. It returns how many requests
// were still in flight when the time ran out.
//
// No request in flight is believed before drainSettle has passed: a
// request that read the slot's file (or, after a reload, that the old
// server read from its client) just before the change still goes to the
// old address, and it counts against it only once it is on its way there. A container stopped at a
// zero read at once refused such a request (1 in about 25,000 under
// load), and the old server does not try another upstream.
func (a *Admin) Drain(ctx context.Context, addr string, timeout time.Duration) (left int, err error) {
	began := time.Now()
	deadline := began.Add(timeout)
	for {
		n, err := a.InFlight(ctx, addr)
		settled := time.Since(began) >= min(drainSettle, timeout)
		if err != nil || (n == 0 && settled) || !time.Now().Before(deadline) {
			return n, err
		}
		select {
		case <-ctx.Done():
			return n, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}
