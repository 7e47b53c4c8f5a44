package integration

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
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
			_, err := h.Run(context.Background(), "sh", "-c", "docker rm -f fleet-proxy >/dev/null 2>&1; docker volume rm -f fleet-proxy >/dev/null")
			return err
		})
	})
	return ref
}

// load is steady traffic through the hosts' proxies (every host's unless
// named): clients goroutines, each sending GET requests with the
// service's host name to the hosts in turn, keeping its connections alive as a browser does. Every answer
// other than 200 and every connection error counts as failed.
type load struct {
	ok, failed atomic.Int64
	mu         sync.Mutex
	errs       []string
	versions   map[string]int // answers by the version they named, the last second
	stop       chan struct{}
	wg         sync.WaitGroup
}

func startLoad(t *testing.T, site string, clients int, hosts ...*testfleet.Host) *load {
	t.Helper()
	if len(hosts) == 0 {
		hosts = fleet.Hosts
	}
	l := &load{stop: make(chan struct{}), versions: map[string]int{}}
	tr := &http.Transport{MaxIdleConnsPerHost: clients, MaxConnsPerHost: clients}
	client := &http.Client{Transport: tr, Timeout: 20 * time.Second}
	for i := range clients {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for n := i; ; n++ {
				select {
				case <-l.stop:
					return
				default:
				}
				h := hosts[n%len(hosts)]
				// Whether the connection was kept alive tells a reload's
				// closing of idle connections from a refused one.
				reused := false
				trace := &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) { reused = i.Reused }}
				req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), http.MethodGet, "http://"+h.Addr+"/version", nil)
				req.Host = site
				began := time.Now()
				resp, err := client.Do(req)
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
						l.mu.Lock()
						l.versions[strings.TrimSpace(string(body))]++
						l.mu.Unlock()
						continue
					}
				}
				l.failed.Add(1)
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

// until keeps the load going until at least n requests were answered.
func (l *load) until(n int64) {
	for l.ok.Load()+l.failed.Load() < n {
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

// check ends the load and fails the test for every failed request.
func (l *load) check(t *testing.T, during string) {
	t.Helper()
	l.end()
	ok, failed := l.ok.Load(), l.failed.Load()
	t.Logf("%s: %d requests answered, %d failed", during, ok, failed)
	if failed > 0 {
		t.Errorf("%s: %d of %d requests failed through the proxy, e.g. %q", during, failed, ok+failed, l.errs)
	}
	if ok == 0 {
		t.Errorf("%s: no request was answered", during)
	}
}

// throughProxy waits until every host's proxy serves version for site.
func throughProxy(ctx context.Context, t *testing.T, site, version string) {
	t.Helper()
	eachHost(t, func(h *testfleet.Host) error {
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
	})
}

// TestProxyRolloutsDropNoRequest serves the example through every host's
// proxy under steady load (50 clients): a rolling update over the five
// hosts, a rollback, and a never-healthy release rolled back automatically
// each fail no request, and a request 3 s long in flight when its
// instance is replaced completes.
func TestProxyRolloutsDropNoRequest(t *testing.T) {
	ctx := context.Background()
	image := withProxy(t)
	cleanupProject(t, "px")
	const site = "px.fleet.test"
	project := func(version, extra string) string {
		return `project: px
proxy_image: ` + image + `
services:
  web:
    image: fleet-example/hello:` + version + `
    pull: never
    proxy: {host: ` + site + `, port: 8080, drain_timeout: 10s}
    healthcheck: {http: /up, interval: 200ms}
    env: {` + extra + `}
    update: {parallelism: 2, monitor: 0s, healthy_deadline: 3s}
`
	}
	p := newProject(t, project("1", ""))
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

	l := startLoad(t, site, 50)
	// A long request, in flight on its instance when it is replaced.
	long := make(chan error, len(fleet.Hosts))
	for _, h := range fleet.Hosts {
		go func() {
			req, _ := http.NewRequest(http.MethodGet, "http://"+h.Addr+"/?delay=3s", nil)
			req.Host = site
			resp, err := http.DefaultClient.Do(req)
			if err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					err = fmt.Errorf("%s: %s", h.Name, resp.Status)
				}
			}
			long <- err
		}()
	}
	time.Sleep(200 * time.Millisecond)
	p.write(project("2", ""))
	p.expect(0, []string{"5 changed"}, "apply", "--yes")
	l.until(10000)
	l.check(t, "rolling update")
	for range fleet.Hosts {
		if err := <-long; err != nil {
			t.Errorf("a 3 s request in flight while its instance was replaced: %v", err)
		}
	}
	throughProxy(ctx, t, site, "2")

	l = startLoad(t, site, 50)
	p.expect(0, []string{"Rolling web back to revision"}, "rollback", "web", "--yes")
	l.until(10000)
	l.check(t, "rollback")
	throughProxy(ctx, t, site, "1")

	p.write(project("2", "HELLO_MODE: unhealthy"))
	l = startLoad(t, site, 50)
	p.expect(3, []string{"ROLLED BACK"}, "apply", "--yes")
	l.until(10000)
	l.check(t, "a never-healthy release rolled back")
	throughProxy(ctx, t, site, "1")
}

// TestProxyServesEveryInstanceOfAHost runs two instances of a service on
// one host behind its proxy, with no port published: both get traffic,
// and scaling down to one takes the other out of the route first, with no
// request failing.
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
	l.check(t, "scaling down behind the proxy")
}

// TestProxyKilledAtAnyMomentDropsNoRequest kills apply with SIGKILL at
// each moment of a proxied instance's replacement under steady load: while
// the new container waits for its health check, once it took the old
// one's place in the route (before it is trusted, while the old one
// drains), and between two steps. No request fails across the kill and the next
// apply, which converges to one container per host, each in its route.
func TestProxyKilledAtAnyMomentDropsNoRequest(t *testing.T) {
	ctx := context.Background()
	image := withProxy(t)
	cleanupProject(t, "pxk")
	const site = "pxk.fleet.test"
	project := func(version string) string {
		return `project: pxk
proxy_image: ` + image + `
services:
  web:
    image: fleet-example/hello:` + version + `
    pull: never
    proxy: {host: ` + site + `, port: 8080, drain_timeout: 10s}
    healthcheck: {http: /up, interval: 200ms}
    update: {parallelism: 2, monitor: 0s}
`
	}
	p := newProject(t, project("1"))
	p.expect(0, []string{"5 changed"}, "apply", "--yes")
	version := 1
	for _, moment := range []string{"waiting for its health check", "in its route", "step 2 of"} {
		t.Run(moment, func(t *testing.T) {
			version = 3 - version
			v := strconv.Itoa(version)
			p.write(project(v))
			l := startLoad(t, site, 50)
			killed := killAt(t, p, `"what":"`+moment)
			p.expect(0, []string{"taking over the deploy lock"}, "apply", "--yes")
			l.until(5000)
			l.check(t, "killed at "+moment+", and the next apply")
			if t.Failed() {
				t.Logf("the killed apply said:\n%s", killed)
			}
			p.expect(0, []string{"No changes"}, "plan", "--detailed-exitcode")
			for host, n := range containersPerHost(t, "pxk") {
				if n != 1 {
					t.Errorf("%s has %d containers of the project, want exactly 1", host, n)
				}
			}
			out, _, _ := p.run("status", "--json")
			if strings.Count(out, `"in_route": true`) != len(fleet.Hosts) {
				t.Errorf("not every instance is in its route:\n%s", out)
			}
			throughProxy(ctx, t, site, v)
		})
	}
}
