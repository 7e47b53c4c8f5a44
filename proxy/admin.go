// Package proxy drives the reverse proxy that fleet runs on each host that
// serves proxied services: one Caddy container per host, shared by every
// project there, configured only through Caddy's admin API. The admin API
// listens on a Unix socket inside the proxy's volume and is reached through
// the host's SSH connection, so no admin port is ever published.
//
// Each proxied service has one route in the proxy's configuration, with
// the @id "fleet.<project>.<service>": its host name and path, and the
// addresses of the service's healthy containers on that host. A rollout
// adds a new container to the route once it is healthy, takes the old one
// out, and waits for the old one's requests in flight to end before it
// stops it (see [Admin.Drain]). A route with TLS (proxy.tls) is served on
// a second server, for HTTPS, and the plain one redirects to it.
package proxy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
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
	socket string
	client *http.Client

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

// Dialer opens a connection from the host's side, as the SSH connection
// carries it: "unix" to a socket path, "tcp" to an address.
type Dialer func(ctx context.Context, network, addr string) (net.Conn, error)

// NewAdmin returns the admin API listening on socket, on the host reached
// by dial. host names the host in errors.
func NewAdmin(host string, dial Dialer, socket string) *Admin {
	return &Admin{host: host, socket: socket, client: &http.Client{
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) { return dial(ctx, "unix", socket) },
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

// Swap puts add in the route and takes remove out of it, in one change:
// either may be "". Upstreams for which stale (if not nil) is true go out
// in the same change. A route left with no upstream is removed: the proxy
// then answers 404 for its host rather than 502, and no route names a
// container that is gone.
//
// Every change reloads Caddy's configuration, and a reload under load is
// not free: Caddy starts new servers that accept on the same sockets and
// shuts the old ones down, which closes the kept-alive connections of
// every client, and Go's server drops a request that it reads from a
// fresh connection while it shuts down. Two reloads in a row catch the clients reconnecting after
// the first; one change per instance replaced does not. A change that
// changes nothing is not sent.
func (a *Admin) Swap(ctx context.Context, r Route, add, remove string, stale func(upstream string) bool) error {
	return a.update(ctx, func(cfg *config) (bool, error) {
		rt, tls := cfg.routeAndTLS(r.ID)
		var now []string
		if rt != nil {
			now = rt.upstreams()
		}
		next := slices.DeleteFunc(slices.Clone(now), func(u string) bool {
			return u == remove || u == add || (stale != nil && stale(u))
		})
		if add != "" {
			next = append(next, add)
		}
		switch {
		case rt == nil && len(next) == 0:
			return false, nil
		case rt.same(r) && tls == r.TLS && slices.Equal(slices.Sorted(slices.Values(now)), slices.Sorted(slices.Values(next))):
			return false, nil
		}
		cfg.setRoute(r, next)
		return true, nil
	})
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
				out[strings.TrimPrefix(id, prefix)] = RouteState{Host: host, Path: path, TLS: tls, Upstreams: r.upstreams()}
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
// No request in flight is believed before drainSettle has passed: the
// server of the configuration before the change still hands on what it
// read from its clients just before, and a request counts against its
// upstream only once it is on its way there. A container stopped at a
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
