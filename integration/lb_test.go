package integration

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"
)

// lbClientWait is how long the clients of TestLoadBalancerSkipsACutOffHost
// wait for an answer.
const lbClientWait = 10 * time.Second

// TestLoadBalancerSkipsACutOffHost puts h5 in front of the other four
// hosts as a load balancer (--lb h5, through FLEET_LB): the proxied
// service runs on h1-h4 only, and h5's proxy sends its requests to their
// proxies. Under steady load through h5 alone:
//   - a rolling update during which h4 drops every packet (and keeps
//     dropping them for longer than the clients wait) fails no request:
//     h5 leaves h4 out once its health check fails, and sends a request
//     that h4 held to another host after drain_timeout;
//   - h4, back, serves again, and the next apply finishes its update;
//   - scaling in to three hosts takes h4 out of the load balancer before
//     its instance goes.
//
// Then tls: internal is the load balancer's alone: it serves HTTPS with
// its own CA and redirects HTTP, while h1-h4 go on serving plain HTTP.
func TestLoadBalancerSkipsACutOffHost(t *testing.T) {
	ctx := context.Background()
	image := withProxy(t)
	cleanupProject(t, "lbx")
	const site = "lbx.fleet.test"
	lb, cut := fleet.Hosts[4], fleet.Hosts[3]
	t.Cleanup(func() { cut.Unblackhole(context.Background()) })
	project := func(version, hosts string) string {
		// drain_timeout 5s: a request that h4 holds is sent elsewhere
		// after 5 s, well within the clients' wait (lbClientWait).
		yaml := strings.Replace(proxiedProject("lbx", image, site, version, "", "failure_action: continue"), "parallelism: 2", "parallelism: 1", 1)
		yaml = strings.Replace(yaml, "drain_timeout: 10s", "drain_timeout: 5s", 1)
		return strings.Replace(yaml, "    pull: never\n", "    pull: never\n"+hosts, 1)
	}
	p := newProject(t, project("1", ""))
	p.env = append(p.env, "FLEET_LB="+lb.Name)

	// The load balancer runs no instance, and its route is in the plan.
	p.expect(2, []string{"load balancers", "h5           web → h1, h2, h3, h4: route missing", "Plan: 4 to create, 1 load-balancer route to change"}, "plan", "--detailed-exitcode")
	p.expect(0, []string{"4 changed"}, "apply", "--yes")
	if err := servesThrough(ctx, lb, site, "1"); err != nil {
		t.Fatalf("through the load balancer: %v", err)
	}
	if out := p.expect(0, []string{"load balancer h5: web → h1, h2, h3, h4"}, "status"); strings.Contains(out, "h5 ") {
		t.Errorf("an instance runs on the load balancer:\n%s", out)
	}
	p.expect(0, []string{"No changes"}, "plan", "--detailed-exitcode")
	var plan struct {
		Balanced  bool `json:"balanced"`
		Balancers []struct {
			LB, Service string
			Hosts, Was  []string
			Reason      string
		} `json:"balancers"`
	}
	out, _, _ := p.run("plan", "--json")
	if err := json.Unmarshal([]byte(out), &plan); err != nil || !plan.Balanced || len(plan.Balancers) != 1 ||
		!slices.Equal(plan.Balancers[0].Was, []string{"h1", "h2", "h3", "h4"}) || plan.Balancers[0].Reason != "" {
		t.Errorf("plan --json: %v: want one converged load-balancer route to h1-h4:\n%s", err, out)
	}

	// A rolling update, one host at a time, with h4 cut off once it began.
	l := startLoadWaiting(t, "http", nil, false, site, loadClients, lbClientWait, lb)
	l.until(1000)
	p.write(project("2", ""))
	applied := make(chan string, 1)
	go func() {
		out, errOut, _ := p.run("apply", "--yes")
		applied <- out + errOut
	}()
	time.Sleep(1500 * time.Millisecond)
	if err := cut.Blackhole(ctx); err != nil {
		t.Fatal(err)
	}
	cutAt := time.Now()
	var during string
	select {
	case during = <-applied:
	case <-time.After(3 * time.Minute):
		t.Fatal("apply did not end within 3 minutes with h4 cut off")
	}
	t.Logf("apply with h4 cut off:\n%s", during)
	// Longer than the clients wait for an answer: a request held by h4
	// all that time would fail.
	time.Sleep(lbClientWait + 2*time.Second - time.Since(cutAt))
	l.until(10000)
	l.check(t, "a rolling update with h4 cut off")
	if !strings.Contains(during, "h4") {
		t.Errorf("apply with h4 cut off does not name it:\n%s", during)
	}
	if err := cut.Unblackhole(ctx); err != nil {
		t.Fatal(err)
	}

	// Back on the network, h4 is updated by the next apply, and every
	// host serves the new version through the load balancer.
	l = startLoad(t, site, loadClients, lb)
	t.Logf("apply with h4 back:\n%s", p.expect(0, nil, "apply", "--yes"))
	l.until(5000)
	l.check(t, "h4 back and updated")
	for _, h := range fleet.Hosts[:4] {
		throughProxyOn(ctx, t, h, site, "2")
	}
	p.expect(0, []string{"No changes"}, "plan", "--detailed-exitcode")
	if ids, err := cut.ContainersOf(ctx, "fleet.project=lbx"); err != nil || len(ids) != 1 {
		out, _ := cut.Run(ctx, "docker", "ps", "-a", "--filter", "label=fleet.project=lbx")
		t.Errorf("h4 holds %d containers of the project, want its one instance (%v):\n%s", len(ids), err, out)
	}

	// Scaling in: h4 leaves the load balancer, which has no request in
	// flight to it any more, before its instance goes. Its route change
	// reloads h5's proxy once.
	p.write(project("2", "    hosts: [h1, h2, h3]\n"))
	p.expect(2, []string{"h5           web → h1, h2, h3: h4 leaves before its last instance goes"}, "plan", "--detailed-exitcode")
	l = startLoad(t, site, loadClients, lb)
	l.until(1000)
	p.expect(0, []string{" 0 failed"}, "apply", "--yes")
	l.until(5000)
	l.checkReloaded(t, "h4 taken out of the load balancer", 1)
	p.expect(0, []string{"No changes"}, "plan", "--detailed-exitcode")
	if err := servesThrough(ctx, lb, site, "2"); err != nil {
		t.Errorf("through the load balancer after scaling in: %v", err)
	}

	// TLS is the load balancer's: with tls: internal its own CA issues
	// the site's certificate, plain HTTP there redirects to HTTPS, and the
	// hosts' proxies go on serving plain HTTP to it, their routes as they
	// were.
	p.write(strings.Replace(project("2", "    hosts: [h1, h2, h3]\n"), "drain_timeout: 5s}", "drain_timeout: 5s, tls: internal}", 1))
	p.expect(2, []string{"h5           web → h1, h2, h3: serves http://" + site + "/, not https://" + site + "/ (tls: internal)",
		"Plan: 1 load-balancer route to change, 3 unchanged."}, "plan", "--detailed-exitcode")
	p.expect(0, []string{"load balancer sends to h1, h2, h3"}, "apply", "--yes")
	pem, err := lb.Run(ctx, "sh", "-c", `cat "$(docker volume inspect -f '{{.Mountpoint}}' fleet-proxy)/caddy/pki/authorities/local/root.crt"`)
	roots := x509.NewCertPool()
	if err != nil || !roots.AppendCertsFromPEM(pem) {
		t.Fatalf("the root of h5's CA: %v %s", err, pem)
	}
	client := &http.Client{
		Transport:     &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: site}},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Timeout:       5 * time.Second,
	}
	// The first certificate is issued once the route is there.
	var last string
	for end := time.Now().Add(20 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+lb.Addr+"/version", nil)
		req.Host = site
		resp, err := client.Do(req)
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && strings.TrimSpace(string(body)) == "2" {
				break
			}
			last = fmt.Sprintf("%s %q", resp.Status, body)
		} else {
			last = err.Error()
		}
		if time.Now().After(end) {
			t.Fatalf("https through the load balancer answers %s", last)
		}
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+lb.Addr+"/version", nil)
	req.Host = site
	if resp, err := client.Do(req); err != nil || resp.StatusCode != http.StatusPermanentRedirect {
		t.Errorf("http through the load balancer: %v %v, want a redirect to https", resp, err)
	} else {
		resp.Body.Close()
	}
	if err := servesThrough(ctx, fleet.Hosts[0], site, "2"); err != nil {
		t.Errorf("h1's proxy over plain HTTP: %v", err)
	}
	p.expect(0, []string{"No changes"}, "plan", "--detailed-exitcode")
}
