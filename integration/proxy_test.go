package integration

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/fleetdeploy/fleet/integration/testfleet"
)

// The proxy image is built once per test binary, by the first test that
// needs it, and loaded on every host.
var proxyImage = sync.OnceValues(func() (string, error) {
	ctx := context.Background()
	ref, err := fleet.BuildProxy(ctx)
	if err == nil {
		err = fleet.LoadImage(ctx, ref)
	}
	return ref, err
})

// withProxy makes the test proxy image ready on every host, and takes the
// proxy (container and volume) off every host when the test ends.
func withProxy(t *testing.T) string {
	t.Helper()
	ref, err := proxyImage()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		eachHost(t, func(h *testfleet.Host) error {
			if t.Failed() {
				out, _ := h.Run(context.Background(), "sh", "-c", "docker logs fleet-proxy 2>&1 | grep -v \"No such container\" | grep -v '\"level\":\"info\"' | tail -20")
				t.Logf("%s: the proxy's warnings and errors:\n%s", h.Name, out)
			}
			_, err := h.Run(context.Background(), "sh", "-c", "docker rm -f fleet-proxy fleet-proxy-next >/dev/null 2>&1; docker volume rm -f fleet-proxy >/dev/null")
			return err
		})
	})
	return ref
}

// load is steady traffic through the hosts' proxies (every host's unless
// named): clients goroutines, each sending GET requests with the
// service's host name to the hosts in turn, keeping its connections alive
// as a browser does, and, as a browser does, sending an idempotent request
// again when a kept-alive connection turns out closed before any answer
// (Go's client does that itself). Every answer other than 200 and every
// other error counts as failed, except the few a reload explains (see
// reloadDrop), which are counted apart.
//
// Not POST: a reload of Caddy closes the kept-alive connections that are
// idle, and a POST written on one at that instant is lost; clients may not
// send it again. Measured with POST when every route change reloaded: 5 of
// 17,653 requests of a rolling update failed that way, and with a fresh
// connection per request 33 of 14,203 (queued on the listening socket
// that the reload closes: net.ipv4.tcp_migrate_req=1 hands those over).
// Rolling updates no longer reload, so their phases POST too (see
// startPostingLoad); scaling and upgrades still reload.
type load struct {
	ok, failed atomic.Int64
	dropped    atomic.Int64 // by a reload (see reloadDrop)
	// slow counts the requests that took over a second, and slowest is
	// the longest any took, in nanoseconds.
	slow, slowest atomic.Int64
	mu            sync.Mutex
	errs          []string
	// firstSeen is when each version was first answered by each host.
	firstSeen map[string]map[string]time.Time
	stop      chan struct{}
	wg        sync.WaitGroup
}

// clientPace is the least time between two requests of one client.
const clientPace = 40 * time.Millisecond

func startLoad(t *testing.T, site string, clients int, hosts ...*testfleet.Host) *load {
	return startLoadOver(t, "http", nil, false, site, clients, hosts...)
}

// startPostingLoad is startLoad with every other client sending POST,
// which no client sends again: a reload, which closes kept-alive
// connections, fails some of them (see load).
func startPostingLoad(t *testing.T, site string, clients int) *load {
	return startLoadOver(t, "http", nil, true, site, clients)
}

// startLoadOver is startLoad over HTTPS when scheme is https, trusting
// the CAs in roots, and with every other client sending POST if post.
func startLoadOver(t *testing.T, scheme string, roots *x509.CertPool, post bool, site string, clients int, hosts ...*testfleet.Host) *load {
	t.Helper()
	return startLoadWaiting(t, scheme, roots, post, site, clients, clientWait, hosts...)
}

// clientWait is how long a client of the load waits for an answer.
const clientWait = 20 * time.Second

// startLoadWaiting is startLoadOver with clients that wait for an answer
// for at most wait.
func startLoadWaiting(t *testing.T, scheme string, roots *x509.CertPool, post bool, site string, clients int, wait time.Duration, hosts ...*testfleet.Host) *load {
	t.Helper()
	if len(hosts) == 0 {
		hosts = fleet.Hosts
	}
	l := &load{stop: make(chan struct{}), firstSeen: map[string]map[string]time.Time{}}
	tr := &http.Transport{MaxIdleConnsPerHost: clients, MaxConnsPerHost: clients, TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: site}}
	client := &http.Client{Transport: tr, Timeout: wait}
	for i := range clients {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			// Each client asks at most every clientPace: as many clients
			// at once, at about half the rate they could reach, so that
			// the test's own load takes one core, not the machine.
			pace := time.NewTicker(clientPace)
			defer pace.Stop()
			for n := i; ; n++ {
				select {
				case <-l.stop:
					return
				case <-pace.C:
				}
				h := hosts[n%len(hosts)]
				// Whether the connection was kept alive tells a reload's
				// closing of idle connections from a refused one.
				reused := false
				trace := &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) { reused = i.Reused }}
				method, body := http.MethodGet, io.Reader(nil)
				if post && i%2 == 1 {
					method, body = http.MethodPost, strings.NewReader("a form")
				}
				req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), method, scheme+"://"+h.Addr+"/version", body)
				req.Host = site
				began := time.Now()
				resp, err := client.Do(req)
				l.took(time.Since(began))
				if err != nil {
					err = fmt.Errorf("%w (on a kept-alive connection: %v; at %s)", err, reused, began.Format("15:04:05.000"))
				}
				if err == nil {
					body, rerr := io.ReadAll(resp.Body)
					resp.Body.Close()
					switch {
					case rerr != nil:
						err = rerr
					case resp.StatusCode != http.StatusOK:
						err = fmt.Errorf("%s: %s", h.Name, resp.Status)
					default:
						l.ok.Add(1)
						v := strings.TrimSpace(string(body))
						l.mu.Lock()
						if l.firstSeen[h.Name] == nil {
							l.firstSeen[h.Name] = map[string]time.Time{}
						}
						if _, ok := l.firstSeen[h.Name][v]; !ok {
							l.firstSeen[h.Name][v] = time.Now()
						}
						l.mu.Unlock()
						continue
					}
				}
				if reloadDrop(err, reused) {
					l.dropped.Add(1)
				} else {
					l.failed.Add(1)
				}
				l.mu.Lock()
				if len(l.errs) < 5 {
					l.errs = append(l.errs, err.Error())
				}
				l.mu.Unlock()
			}
		}()
	}
	t.Cleanup(func() { l.end(); tr.CloseIdleConnections() })
	return l
}

// reloadDrop reports a request that failed as a reload of Caddy's
// configuration, or the old proxy's stop in an upgrade, can fail it: sent
// on a fresh connection, which was closed, or reset, before any answer.
// Caddy binds a new socket for the new configuration (SO_REUSEPORT) and
// shuts the old server down: the connections still queued on the old
// socket are reset (unless the host sets net.ipv4.tcp_migrate_req), and
// Go's server drops a request it reads on a fresh connection once its
// shutdown began. Clients send such a request again only on a kept-alive
// connection; browsers do the same. README states the cost: a slot that
// joins or leaves a route reloads, a rolling update does not.
func reloadDrop(err error, reused bool) bool {
	return !reused && (errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET))
}

// dropsAllowed is the most reload drops (see reloadDrop) a check lets
// pass in n requests of a phase that reloads or stops a proxy events
// times: what is queued on the old socket at that moment is reset, so the
// drops follow the events, not the requests. Measured: 4 in 36,397 in the
// benchmark (10 hosts' upgrades), 2 in 12,227 and 3 in 5,013 in
// whole-suite runs (5 hosts' upgrades); allowed, 4 an event.
func dropsAllowed(n int64, events int) int64 { return max(4*int64(events), n/2000) }

// took counts a request that took d.
func (l *load) took(d time.Duration) {
	if d > time.Second {
		l.slow.Add(1)
	}
	for {
		was := l.slowest.Load()
		if int64(d) <= was || l.slowest.CompareAndSwap(was, int64(d)) {
			return
		}
	}
}

// until keeps the load going until at least n requests were answered.
func (l *load) until(n int64) {
	for l.ok.Load()+l.failed.Load()+l.dropped.Load() < n {
		time.Sleep(50 * time.Millisecond)
	}
}

func (l *load) end() {
	select {
	case <-l.stop:
	default:
		close(l.stop)
	}
	l.wg.Wait()
}

// check ends the load and fails the test for every failed request: what
// a rolling update, a rollback or a TLS change costs through the proxy,
// which changes slot files, not Caddy's configuration.
func (l *load) check(t *testing.T, during string) {
	t.Helper()
	l.checkReloaded(t, during, 0)
}

// checkReloaded is check for a phase that reloads Caddy's configuration
// (a slot that joins or leaves a route) or replaces a proxy, events times
// in all: it lets pass the few requests a reload drops (see reloadDrop).
func (l *load) checkReloaded(t *testing.T, during string, events int) {
	t.Helper()
	l.end()
	ok, failed, dropped := l.ok.Load(), l.failed.Load(), l.dropped.Load()
	all := ok + failed + dropped
	allowed := func(int64) int64 { return 0 }
	if events > 0 {
		allowed = func(n int64) int64 { return dropsAllowed(n, events) }
	}
	t.Logf("%s: %d requests answered, %d failed, %d on a fresh connection closed unanswered; %d took over a second, the slowest %s",
		during, ok, failed, dropped, l.slow.Load(), time.Duration(l.slowest.Load()).Round(time.Millisecond))
	if failed > 0 {
		t.Errorf("%s: %d of %d requests failed through the proxy, e.g. %q", during, failed, all, l.errs)
	}
	if dropped > allowed(all) {
		t.Errorf("%s: %d of %d requests were sent on a fresh connection that was closed unanswered (%d allowed), e.g. %q", during, dropped, all, allowed(all), l.errs)
	}
	if ok == 0 {
		t.Errorf("%s: no request was answered", during)
	}
}

// throughProxy waits until every host's proxy serves version for site.
func throughProxy(ctx context.Context, t *testing.T, site, version string) {
	t.Helper()
	eachHost(t, func(h *testfleet.Host) error { return servesThrough(ctx, h, site, version) })
}

// throughProxyOn waits until h's proxy serves version for site.
func throughProxyOn(ctx context.Context, t *testing.T, h *testfleet.Host, site, version string) {
	t.Helper()
	if err := servesThrough(ctx, h, site, version); err != nil {
		t.Errorf("%s: %v", h.Name, err)
	}
}

// servesThrough waits, for at most 10 s, until h's proxy serves version
// for site.
func servesThrough(ctx context.Context, h *testfleet.Host, site, version string) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+h.Addr+"/version", nil)
		req.Host = site
		resp, err := http.DefaultClient.Do(req)
		var body []byte
		if err == nil {
			body, _ = io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && strings.TrimSpace(string(body)) == version {
				return nil
			}
			err = fmt.Errorf("%s answers %s %q, want version %s", site, resp.Status, body, version)
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// proxyAlone checks that h runs one proxy container, fleet-proxy, on image.
func proxyAlone(ctx context.Context, h *testfleet.Host, image string) error {
	out, err := h.Run(ctx, "docker", "ps", "-a", "--filter", "label=fleet.proxy", "--format", "{{.Names}} {{.Image}} {{.State}}")
	if want := "fleet-proxy " + image + " running"; err == nil && strings.TrimSpace(string(out)) != want {
		err = fmt.Errorf("%s: proxy containers %q, want %q alone", h.Name, out, want)
	}
	return err
}

// routedExactly checks that route id on h's proxy sends requests to
// exactly the running containers of project, and returns their addresses.
func routedExactly(ctx context.Context, t *testing.T, h *testfleet.Host, project, id string) []string {
	t.Helper()
	out, err := h.Run(ctx, "sh", "-c", `ids=$(docker ps -q --filter label=fleet.project=`+project+`) && docker inspect --format '{{range .NetworkSettings.Networks}}{{.IPAddress}}:8080 {{end}}' $ids`)
	if err != nil {
		t.Fatalf("%s: %v", h.Name, err)
	}
	running := slices.Sorted(slices.Values(strings.Fields(string(out))))
	// The admin API listens on a socket in the proxy's volume, named by
	// its CADDY_ADMIN.
	out, err = h.Run(ctx, "docker", "volume", "inspect", "fleet-proxy", "--format", "{{.Mountpoint}}")
	if err != nil {
		t.Fatalf("%s: %v", h.Name, err)
	}
	volume := strings.TrimSpace(string(out))
	out, err = h.Run(ctx, "sh", "-c", `a=$(docker inspect fleet-proxy --format '{{range .Config.Env}}{{println .}}{{end}}' | sed -n 's|^CADDY_ADMIN=unix//data/||p') &&
curl -sSf --unix-socket "`+volume+`/$a" http://proxy/id/`+id)
	if err != nil {
		t.Fatalf("%s: reading route %s: %v: %s", h.Name, id, err, out)
	}
	var route any
	if err := json.Unmarshal(out, &route); err != nil {
		t.Fatalf("%s: route %s: %v: %s", h.Name, id, err, out)
	}
	var upstreams []string
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			if dial, ok := v["dial"].(string); ok {
				upstreams = append(upstreams, dial)
			}
			for _, e := range v {
				walk(e)
			}
		case []any:
			for _, e := range v {
				walk(e)
			}
		}
	}
	walk(route)
	// An upstream may be a slot: the file named in its placeholder holds
	// the address.
	for i, u := range upstreams {
		if file, ok := strings.CutPrefix(u, "{file./data/"); ok {
			out, err := h.Run(ctx, "cat", volume+"/"+strings.TrimSuffix(file, "}"))
			if err != nil {
				t.Fatalf("%s: reading slot %s: %v", h.Name, u, err)
			}
			upstreams[i] = strings.TrimSpace(string(out))
		}
	}
	slices.Sort(upstreams)
	if !slices.Equal(upstreams, running) {
		t.Errorf("%s: route %s sends to %v; the running containers of %s are at %v", h.Name, id, upstreams, project, running)
	}
	return running
}

// proxiedProject is project name's fleet.yaml: the example at version,
// with env, on the five hosts behind their proxies at site, two at a time.
func proxiedProject(name, image, site, version, env, update string) string {
	if update != "" {
		update = ", " + update
	}
	return `project: ` + name + `
proxy_image: ` + image + `
services:
  web:
    image: fleet-example/hello:` + version + `
    pull: never
    proxy: {host: ` + site + `, port: 8080, drain_timeout: 10s}
    healthcheck: {http: /up, interval: 200ms}
    env: {` + env + `}
    update: {parallelism: 2, monitor: 0s` + update + `}
`
}

// loadClients is the rollout test's load: the 50 clients and 10,000
// requests a phase that issue 10 asks for. What it proves is that no
// request fails: a route that points at nothing for a moment fails many.
// A reload fails few, and not every time: with a reload forced on every
// slot change, one run failed 22 of 13,413 requests, and two runs on
// another day (at 25 and at 50 clients) failed none.
const loadClients = 50

// TestProxyRolloutsDropNoRequest serves the example through every host's
// proxy under steady load (50 clients, 1,250 requests a second): a rolling
// update over the five hosts, a rollback, a never-healthy release rolled
// back automatically, and an upgrade of the proxy itself each fail no
// request, and requests 3 s long in flight when their instance is
// replaced complete, answered by the old instance.
func TestProxyRolloutsDropNoRequest(t *testing.T) {
	ctx := context.Background()
	image := withProxy(t)
	cleanupProject(t, "px")
	const site = "px.fleet.test"
	project := func(version, extra string) string {
		return proxiedProject("px", image, site, version, extra, "healthy_deadline: 3s")
	}
	p := newProject(t, project("1", ""))
	p.expect(2, []string{"the proxy is made (or started) first on h1, h2, h3, h4, h5"}, "plan", "--detailed-exitcode")
	p.expect(0, []string{"5 changed"}, "apply", "--yes")
	throughProxy(ctx, t, site, "1")
	// fleet status says that every instance is in its route.
	if table := p.expect(0, []string{"ROUTE"}, "status"); strings.Count(table, " in\n") != len(fleet.Hosts) {
		t.Errorf("status does not show every instance in its route:\n%s", table)
	}
	out, errOut, code := p.run("status", "--json")
	if code != 0 || strings.Count(out, `"in_route": true`) != len(fleet.Hosts) {
		t.Errorf("status --json: exit %d, want every instance in its route:\n%s%s", code, out, errOut)
	}

	// Half the clients POST, which no client sends again: a reload may
	// fail some of them. Each phase counts at least 10,000 requests.
	l := startPostingLoad(t, site, loadClients)
	// Requests 3 s long, started on every host every 300 ms while the
	// update runs: some are in flight when their instance is replaced.
	long := startLong(site)
	p.write(project("2", ""))
	p.expect(0, []string{"5 changed"}, "apply", "--yes")
	l.until(10000)
	l.check(t, "rolling update")
	long.check(t, l)
	throughProxy(ctx, t, site, "2")

	l = startPostingLoad(t, site, loadClients)
	p.expect(0, []string{"Rolling web back to revision"}, "rollback", "web", "--yes")
	l.until(10000)
	l.check(t, "rollback")
	throughProxy(ctx, t, site, "1")

	p.write(project("2", "HELLO_MODE: unhealthy"))
	l = startLoad(t, site, loadClients)
	p.expect(3, []string{"ROLLED BACK"}, "apply", "--yes")
	l.until(10000)
	l.check(t, "a never-healthy release rolled back")
	throughProxy(ctx, t, site, "1")

	// The proxy itself, upgraded under the same load, alone in its plan:
	// the new one starts beside the old one, which finishes its requests
	// and goes. (The same Caddy under another name: what is proved is
	// the handover.)
	next := image + "-next"
	eachHost(t, func(h *testfleet.Host) error { _, err := h.Run(ctx, "docker", "tag", image, next); return err })
	p.write(strings.Replace(project("1", ""), "proxy_image: "+image, "proxy_image: "+next, 1))
	p.expect(2, []string{"h1           " + image + " → " + next + ": proxy_image changed", "Plan: the proxy to upgrade on 5 hosts, 5 unchanged."}, "plan", "--detailed-exitcode")
	l = startLoad(t, site, loadClients)
	p.expect(0, []string{"proxy upgraded on h1, h2, h3, h4, h5"}, "apply", "--yes")
	l.until(10000)
	l.checkReloaded(t, "a proxy upgrade", len(fleet.Hosts))
	throughProxy(ctx, t, site, "1")
	eachHost(t, func(h *testfleet.Host) error { return proxyAlone(ctx, h, next) })
	p.expect(0, []string{"No changes"}, "plan", "--detailed-exitcode")
}

// TestProxyServesHTTPS serves the example with tls: internal on two hosts:
// the proxy's own CA issues the site's certificate, HTTPS answers with it,
// plain HTTP redirects there, and a rolling update and an upgrade of the
// proxy under HTTPS load fail no request. Back to plain HTTP, the route
// alone changes, in place: the plan says why, the containers stay, and
// HTTP answers again.
func TestProxyServesHTTPS(t *testing.T) {
	ctx := context.Background()
	image := withProxy(t)
	cleanupProject(t, "pxs")
	const site = "pxs.fleet.test"
	hosts := fleet.Hosts[:2]
	project := func(version, tls string) string {
		return strings.Replace(proxiedProject("pxs", image, site, version, "", ""),
			"drain_timeout: 10s}", "drain_timeout: 10s, tls: "+tls+"}\n    hosts: [h1, h2]", 1)
	}
	p := newProject(t, project("1", "internal"))
	p.expect(2, []string{"serving ports 80 and 443"}, "plan", "--detailed-exitcode")
	p.expect(0, []string{"2 changed"}, "apply", "--yes")

	// The site's certificate chains to the root of the proxy's CA, kept
	// in its volume on each host: each host's proxy has a CA of its own.
	roots := x509.NewCertPool()
	for _, h := range hosts {
		pem, err := h.Run(ctx, "sh", "-c", `cat "$(docker volume inspect -f '{{.Mountpoint}}' fleet-proxy)/caddy/pki/authorities/local/root.crt"`)
		if err != nil || !roots.AppendCertsFromPEM(pem) {
			t.Fatalf("%s: the root of the proxy's CA: %v %s", h.Name, err, pem)
		}
	}
	client := &http.Client{
		Transport:     &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: site}},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Timeout:       5 * time.Second,
	}
	// answers waits, for at most 20 s (the first certificate is issued
	// once the route is there), until h answers url as want says.
	answers := func(h *testfleet.Host, url string, want func(*http.Response, string) bool) {
		t.Helper()
		var last string
		for end := time.Now().Add(20 * time.Second); time.Now().Before(end); time.Sleep(200 * time.Millisecond) {
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, strings.Replace(url, site, h.Addr, 1), nil)
			req.Host = site
			resp, err := client.Do(req)
			if err != nil {
				last = err.Error()
				continue
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if want(resp, strings.TrimSpace(string(body))) {
				return
			}
			last = fmt.Sprintf("%s %q, Location %q", resp.Status, body, resp.Header.Get("Location"))
		}
		t.Errorf("%s: %s answers %s", h.Name, url, last)
	}
	version := func(v string) func(*http.Response, string) bool {
		return func(r *http.Response, body string) bool { return r.StatusCode == http.StatusOK && body == v }
	}
	for _, h := range hosts {
		answers(h, "https://"+site+"/version", version("1"))
		answers(h, "http://"+site+"/version?x=1", func(r *http.Response, _ string) bool {
			return r.StatusCode == http.StatusPermanentRedirect && r.Header.Get("Location") == "https://"+site+"/version?x=1"
		})
	}
	if t.Failed() {
		return
	}

	l := startLoadOver(t, "https", roots, false, site, 10, hosts...)
	p.write(project("2", "internal"))
	p.expect(0, []string{"2 changed"}, "apply", "--yes")
	l.until(1000)
	l.check(t, "a rolling update over HTTPS")
	for _, h := range hosts {
		answers(h, "https://"+site+"/version", version("2"))
	}

	// The proxy upgraded under HTTPS load: the new one binds 443 (TCP and
	// UDP) beside the old one, and serves the certificate the old one
	// kept in the volume, from the same CA.
	next := image + "-tls"
	for _, h := range hosts {
		if _, err := h.Run(ctx, "docker", "tag", image, next); err != nil {
			t.Fatal(err)
		}
	}
	l = startLoadOver(t, "https", roots, false, site, 10, hosts...)
	p.write(strings.Replace(project("2", "internal"), "proxy_image: "+image, "proxy_image: "+next, 1))
	p.expect(0, []string{"proxy upgraded on h1, h2"}, "apply", "--yes")
	l.until(500)
	l.checkReloaded(t, "a proxy upgrade under HTTPS load", len(hosts))
	for _, h := range hosts {
		answers(h, "https://"+site+"/version", version("2"))
	}

	ids := func() []string {
		var all []string
		for _, h := range hosts {
			list, err := h.ContainersOf(ctx, "fleet.project=pxs")
			if err != nil {
				t.Fatal(err)
			}
			all = append(all, list...)
		}
		slices.Sort(all)
		return all
	}
	before := ids()
	// The route alone changes: proxy_image stays the upgraded one.
	p.write(strings.Replace(project("2", "false"), "proxy_image: "+image, "proxy_image: "+next, 1))
	p.expect(2, []string{"its route serves https://" + site + "/ (tls: internal), not http://" + site + "/", "Plan: 2 to update in place, 0 unchanged."}, "plan", "--detailed-exitcode")
	p.expect(0, []string{"2 changed"}, "apply", "--yes")
	for _, h := range hosts {
		answers(h, "http://"+site+"/version", version("2"))
	}
	if after := ids(); !slices.Equal(after, before) {
		t.Errorf("taking TLS off replaced containers: %q before, %q after", before, after)
	}
	p.expect(0, []string{"No changes"}, "plan", "--detailed-exitcode")
}

// TestProxyServesEveryInstanceOfAHost runs two instances of a service on
// one host behind its proxy, with no port published: both get traffic,
// and scaling down to one takes the other out of the route first, with no
// request failing. Then the proxy is removed by hand: plan calls the
// instance out of its route drift, and reconcile makes the proxy and puts
// it back; the instance stopped by hand is started and put back too. An
// upgrade to a proxy_image the host cannot pull fails and changes nothing.
func TestProxyServesEveryInstanceOfAHost(t *testing.T) {
	ctx := context.Background()
	image := withProxy(t)
	cleanupProject(t, "px2")
	const site = "px2.fleet.test"
	h := fleet.Hosts[0]
	project := func(replicas int) string {
		return fmt.Sprintf(`project: px2
proxy_image: %s
services:
  web:
    image: fleet-example/hello:1
    pull: never
    hosts: %s
    replicas: %d
    max_per_host: 2
    proxy: {host: %s, path: /, port: 8080}
    healthcheck: {http: /up, interval: 200ms}
    update: {monitor: 0s}
`, image, h.Name, replicas, site)
	}
	p := newProject(t, project(2))
	p.expect(0, []string{"2 changed"}, "apply", "--yes")
	containers := map[string]int{}
	for range 40 {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+h.Addr+"/", nil)
		req.Host = site
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("through the proxy: %s %q", resp.Status, body)
		}
		containers[strings.TrimSpace(string(body))]++
	}
	if len(containers) != 2 {
		t.Errorf("40 requests reached %d instances, want both: %v", len(containers), containers)
	}

	l := startLoad(t, site, 20, h)
	p.write(project(1))
	p.expect(0, []string{"1 changed, 1 unchanged"}, "apply", "--yes")
	l.until(2000)
	l.checkReloaded(t, "scaling down behind the proxy", 1)

	// The proxy removed by hand, state and all: the instance serves
	// nothing, which plan calls drift and reconcile repairs.
	if _, err := h.Run(ctx, "sh", "-c", "docker rm -f fleet-proxy && docker volume rm fleet-proxy"); err != nil {
		t.Fatal(err)
	}
	p.expect(2, []string{"not in its route on the host's proxy", "(drift)"}, "plan", "--detailed-exitcode")
	if out, _ := p.reconcile(0); !strings.Contains(out, "1 changed") {
		t.Errorf("reconcile did not put the instance back in its route:\n%s", out)
	}
	throughProxyOn(ctx, t, h, site, "1")
	p.expect(0, []string{"No changes"}, "plan", "--detailed-exitcode")

	// Stopped by hand, and its address taken by another container
	// meanwhile (on the same network, answering on the same port):
	// started again at another address, checked, and put back in its
	// route, where the address it had is no upstream any more.
	was := routedExactly(ctx, t, h, "px2", "fleet.px2.web")
	if _, err := h.Run(ctx, "sh", "-c", "docker stop $(docker ps -q --filter label=fleet.project=px2)"); err != nil {
		t.Fatal(err)
	}
	// The engine gives out the lowest free address: containers are
	// started until one has the instance's.
	t.Cleanup(func() {
		h.Run(context.Background(), "sh", "-c", "docker rm -f $(docker ps -aq --filter label=px2-squatter)")
	})
	for i := 0; ; i++ {
		out, err := h.Run(ctx, "sh", "-c", "docker inspect --format '{{range .NetworkSettings.Networks}}{{.IPAddress}}:8080{{end}}' $(docker run -d --label px2-squatter fleet-example/hello:1)")
		if err != nil {
			t.Fatal(err)
		}
		if strings.TrimSpace(string(out)) == was[0] {
			break
		}
		if i == 10 {
			t.Fatalf("10 containers started, none at the instance's address %s", was[0])
		}
	}
	p.expect(0, []string{"1 changed"}, "reconcile")
	throughProxyOn(ctx, t, h, site, "1")
	if now := routedExactly(ctx, t, h, "px2", "fleet.px2.web"); slices.Equal(now, was) {
		t.Errorf("the instance started again at its old address %v: the test cannot tell whether it is still an upstream", was)
	}

	// A proxy_image that the host cannot get: the upgrade fails before
	// anything else changes, and the old proxy serves on, alone.
	const absent = "127.0.0.1:9/fleet-test/absent:1" // refused at once
	p.write(strings.Replace(project(1), "proxy_image: "+image, "proxy_image: "+absent, 1))
	p.expect(2, []string{"h1           " + image + " → " + absent + ": proxy_image changed"}, "plan", "--detailed-exitcode")
	p.expect(1, []string{"proxy FAILED", "pulling the proxy's image on h1"}, "apply", "--yes")
	throughProxyOn(ctx, t, h, site, "1")
	if err := proxyAlone(ctx, h, image); err != nil {
		t.Errorf("after a failed upgrade: %v", err)
	}
}

// TestProxyKilledAtAnyMomentDropsNoRequest kills apply with SIGKILL at
// each moment of a proxied instance's replacement under steady load: while
// the new container waits for its health check, once it took the old
// one's place in the route (before it is trusted, while the old one
// drains), and between two steps. No request fails across the kill and
// the next apply, which converges to one container per host, each in its
// route.
func TestProxyKilledAtAnyMomentDropsNoRequest(t *testing.T) {
	ctx := context.Background()
	image := withProxy(t)
	cleanupProject(t, "pxk")
	const site = "pxk.fleet.test"
	// Three hosts: two steps of two and one, as in the tests of failed
	// releases.
	hosts := fleet.Hosts[:3]
	project := func(version string) string {
		return strings.Replace(proxiedProject("pxk", image, site, version, "", ""), "    pull: never\n", "    pull: never\n    hosts: h1,h2,h3\n", 1)
	}
	p := newProject(t, project("1"))
	p.expect(0, []string{"3 changed"}, "apply", "--yes")
	serves := func(version string) {
		t.Helper()
		for _, h := range hosts {
			throughProxyOn(ctx, t, h, site, version)
		}
	}
	version := 1
	for _, moment := range []string{"waiting for its health check", "in its route", "step 2 of"} {
		t.Run(moment, func(t *testing.T) {
			version = 3 - version
			v := strconv.Itoa(version)
			p.write(project(v))
			// Ten clients: 250 requests a second find a route that
			// points at nothing for a tenth of a second, at a fifth of
			// the CPU of the rollout test's load.
			l := startLoad(t, site, 10, hosts...)
			killed := killAt(t, p, `"what":"`+moment)
			p.expect(0, []string{"taking over the deploy lock"}, "apply", "--yes")
			l.until(1000)
			l.checkReloaded(t, "killed at "+moment+", and the next apply", 1)
			if t.Failed() {
				t.Logf("the killed apply said:\n%s", killed)
			}
			p.expect(0, []string{"No changes"}, "plan", "--detailed-exitcode")
			for host, n := range containersPerHost(t, "pxk", hosts...) {
				if n != 1 {
					t.Errorf("%s has %d containers of the project, want exactly 1", host, n)
				}
			}
			out, _, _ := p.run("status", "--json")
			if strings.Count(out, `"in_route": true`) != len(hosts) {
				t.Errorf("not every instance is in its route:\n%s", out)
			}
			serves(v)
		})
	}

	// Killed in the middle of a proxy upgrade, with both proxies serving:
	// the next apply takes the handover up where it was left.
	t.Run("both proxies serve", func(t *testing.T) {
		next := image + "-k"
		eachHost(t, func(h *testfleet.Host) error { _, err := h.Run(ctx, "docker", "tag", image, next); return err })
		p.write(strings.Replace(project(strconv.Itoa(version)), "proxy_image: "+image, "proxy_image: "+next, 1))
		l := startLoad(t, site, 10, hosts...)
		killed := killAt(t, p, `"what":"both serve`)
		// h1 is upgraded again, or only renamed when its old proxy had
		// been told to stop before the kill.
		p.expect(0, []string{"taking over the deploy lock", "proxy upgraded on "}, "apply", "--yes")
		l.until(1000)
		l.checkReloaded(t, "killed during a proxy upgrade, and the next apply", len(hosts))
		if t.Failed() {
			t.Logf("the killed apply said:\n%s", killed)
		}
		eachOf(t, hosts, func(h *testfleet.Host) error { return proxyAlone(ctx, h, next) })
		p.expect(0, []string{"No changes"}, "plan", "--detailed-exitcode")
		serves(strconv.Itoa(version))
	})

	// Ctrl-C once both proxies serve: the handover on that host is
	// finished (the old one stops gracefully), the run stops before the
	// next host, and the next apply upgrades the others.
	t.Run("Ctrl-C while both proxies serve", func(t *testing.T) {
		next := image + "-i"
		eachHost(t, func(h *testfleet.Host) error { _, err := h.Run(ctx, "docker", "tag", image, next); return err })
		p.write(strings.Replace(project(strconv.Itoa(version)), "proxy_image: "+image, "proxy_image: "+next, 1))
		l := startLoad(t, site, 10, hosts...)
		said, code := signalAt(t, p, `"what":"both serve`, syscall.SIGINT)
		if code != 130 || !strings.Contains(said, "interrupted before the proxy on h2 was upgraded") {
			t.Errorf("Ctrl-C during a proxy upgrade: exit %d, want 130 and the hosts not upgraded named:\n%s", code, said)
		}
		if err := proxyAlone(ctx, hosts[0], next); err != nil {
			t.Errorf("the handover on h1, interrupted once both served: %v", err)
		}
		p.expect(0, []string{"proxy upgraded on h2, h3"}, "apply", "--yes")
		l.until(1000)
		l.checkReloaded(t, "Ctrl-C during a proxy upgrade, and the next apply", len(hosts))
		eachOf(t, hosts, func(h *testfleet.Host) error { return proxyAlone(ctx, h, next) })
		p.expect(0, []string{"No changes"}, "plan", "--detailed-exitcode")
		serves(strconv.Itoa(version))
	})
}

// longRequests are requests 3 s long, started on every host every 300 ms
// until check, over kept-alive connections as the load's are.
type longRequests struct {
	client *http.Client
	stop   chan struct{}
	wg     sync.WaitGroup
	mu     sync.Mutex
	done   []longDone
}

type longDone struct {
	host    string
	version string // as the answer names it
	began   time.Time
	ended   time.Time
	err     error
}

func startLong(site string) *longRequests {
	lr := &longRequests{stop: make(chan struct{}), client: &http.Client{Transport: &http.Transport{}, Timeout: 30 * time.Second}}
	for _, h := range fleet.Hosts {
		lr.wg.Add(1)
		go func() {
			defer lr.wg.Done()
			tick := time.NewTicker(300 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-lr.stop:
					return
				case <-tick.C:
				}
				lr.wg.Add(1)
				go func() {
					defer lr.wg.Done()
					d := longDone{host: h.Name, began: time.Now()}
					req, _ := http.NewRequest(http.MethodGet, "http://"+h.Addr+"/?delay=3s", nil)
					req.Host = site
					resp, err := lr.client.Do(req)
					if err == nil {
						body, _ := io.ReadAll(resp.Body)
						resp.Body.Close()
						if resp.StatusCode != http.StatusOK {
							err = fmt.Errorf("%s", resp.Status)
						}
						if _, v, ok := strings.Cut(strings.TrimSpace(string(body)), "version "); ok {
							d.version = v
						}
					}
					d.ended, d.err = time.Now(), err
					lr.mu.Lock()
					lr.done = append(lr.done, d)
					lr.mu.Unlock()
				}()
			}
		}()
	}
	return lr
}

// check waits for the long requests in flight, fails the test for each one
// that failed, and for none having been answered by the old version after
// the same host's proxy answered with the new one: then none was in
// flight on an instance when it was replaced, and the test proved nothing.
func (lr *longRequests) check(t *testing.T, l *load) {
	t.Helper()
	close(lr.stop)
	lr.wg.Wait()
	overlapped := 0
	for _, d := range lr.done {
		if d.err != nil {
			t.Errorf("a 3 s request to %s begun at %s failed: %v", d.host, d.began.Format("15:04:05.000"), d.err)
			continue
		}
		if newer, ok := l.firstSeen[d.host]["2"]; ok && d.version == "1" && d.ended.After(newer) {
			overlapped++
		}
	}
	t.Logf("%d requests 3 s long, %d of them answered by the old instance after the new one served", len(lr.done), overlapped)
	if overlapped == 0 {
		t.Error("no 3 s request was in flight on an instance when it was replaced")
	}
}

// TestProxyThroughSudo deploys a proxied service as a login user other
// than root, with sudo: the proxy's admin socket and slot files, in its
// volume, are root's, and fleet reaches them through sudo (the socket by
// docker system dial-stdio). The first deploy, a rolling update under
// load that fails no request, status and plan all work as they do for
// root.
func TestProxyThroughSudo(t *testing.T) {
	ctx := context.Background()
	image := withProxy(t)
	cleanupProject(t, "pxu")
	if err := fleet.AddUser(ctx, "deploy", true); err != nil {
		t.Fatal(err)
	}
	const site = "pxu.fleet.test"
	hosts := fleet.Hosts[:2]
	project := func(version string) string {
		return strings.Replace(proxiedProject("pxu", image, site, version, "", ""), "    pull: never\n", "    pull: never\n    hosts: [h1, h2]\n", 1)
	}
	p := newProject(t, project("1"))
	inv, err := os.ReadFile(fleet.Inventory)
	if err != nil {
		t.Fatal(err)
	}
	p.inventory = filepath.Join(p.dir, "inventory.yaml")
	if err := os.WriteFile(p.inventory, []byte(strings.Replace(string(inv), "  user: root\n", "  user: deploy\n  sudo: true\n", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	if out := p.expect(2, nil, "plan", "--detailed-exitcode"); strings.Contains(out, "warning") {
		t.Errorf("the plan warns of a login with sudo:\n%s", out)
	}
	p.expect(0, []string{"2 changed"}, "apply", "--yes")
	for _, h := range hosts {
		throughProxyOn(ctx, t, h, site, "1")
	}
	l := startLoad(t, site, 10, hosts...)
	p.write(project("2"))
	p.expect(0, []string{"2 changed"}, "apply", "--yes")
	l.until(1000)
	l.check(t, "a rolling update through sudo")
	for _, h := range hosts {
		throughProxyOn(ctx, t, h, site, "2")
	}
	out, _, code := p.run("status", "--json")
	if code != 0 || strings.Count(out, `"in_route": true`) != len(hosts) {
		t.Errorf("status --json: exit %d, want every instance in its route:\n%s", code, out)
	}
	p.expect(0, []string{"No changes"}, "plan", "--detailed-exitcode")
}
