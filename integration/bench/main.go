// Command bench measures fleet against the floor and against Ansible on a
// fleet of 10 real test hosts, side by side, alternating rounds, and
// prints medians and ratios:
//
//   - plan: "fleet plan" and "fleet reconcile" (what a timer runs) on a
//     converged fleet; the floor (one OpenSSH ssh
//     per host, in parallel, running docker ps -aq | xargs docker inspect);
//     ansible-playbook --check of one equivalent docker_container task
//     (forks 50, pipelining on).
//
//   - rolling update: "fleet apply" of a new image, 2 hosts at a time, each
//     step gated on HTTP health, stop-first on a published port as Ansible
//     must, and start-first without a host port; the floor (one OpenSSH
//     ssh per host, two at a time, docker stop/rm/run and curl until 200);
//     Ansible doing the same with serial: 2 and a uri check until 200.
//
//   - traffic: the same steady load (50 clients, 1,250 requests a second)
//     sent to each contender's service during its rolling updates: fleet
//     through the hosts' proxies, fleet stop-first on a published port,
//     and Ansible; failed requests and latency. It builds the test hosts'
//     Caddy as the integration tests do (once per machine).
//
//   - delivery: a one-layer change (a new 5 MiB app layer over a 20 MiB
//     base that the hosts hold) to every host, three ways: fleet push, docker
//     save | ssh docker load to every host at once, and a registry on the
//     first host (docker push from the laptop, then every host pulls); the
//     time, and the bytes the hosts' network links received.
//
//     go run ./integration/bench [-rounds 5] [-hosts 10] [-only plan|rolling|traffic|delivery]
//
// It needs root, and Debian's ansible and python3-docker, which it
// installs when missing.
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/fleetdeploy/fleet/integration/testfleet"
)

func main() {
	rounds := flag.Int("rounds", 5, "rounds of each measurement")
	hosts := flag.Int("hosts", 10, "test hosts")
	only := flag.String("only", "", "run one part only: plan, rolling, traffic or delivery")
	flag.Parse()
	if err := run(*rounds, *hosts, *only); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

type bench struct {
	fleet *testfleet.Fleet
	dir   string
	bin   string
}

func run(rounds, hosts int, only string) error {
	ctx := context.Background()
	ansible := only != "delivery"
	if ansible {
		if err := ensureAnsible(); err != nil {
			return err
		}
	}
	f, err := testfleet.Up(ctx, testfleet.Options{Name: "bench", Hosts: hosts, Subnet: 7, InsecureRegistries: true, Log: os.Stderr})
	if err != nil {
		return err
	}
	defer f.Down(context.Background())
	for _, v := range []string{"1", "2"} {
		ref, err := f.BuildExample(ctx, v, 0)
		if err == nil {
			err = f.LoadImage(ctx, ref)
		}
		if err != nil {
			return err
		}
	}
	dir, err := os.MkdirTemp("", "fleet-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	b := &bench{fleet: f, dir: dir, bin: filepath.Join(dir, "fleet")}
	if out, err := exec.Command("go", "build", "-o", b.bin, "./cmd/fleet").CombinedOutput(); err != nil {
		return fmt.Errorf("building fleet: %v: %s", err, out)
	}
	fmt.Printf("\n%d hosts, %d rounds, alternating; medians\n\n", hosts, rounds)
	if only == "delivery" {
		return b.delivery(ctx, rounds)
	}
	if err := b.files(); err != nil {
		return err
	}
	// Both tools converge their own container first.
	if _, err := b.fleetCmd("v1", "apply", "--yes"); err != nil {
		return err
	}
	if _, _, err := b.ansible("converge.yml", "-e", "version=1"); err != nil {
		return err
	}

	if only == "" || only == "plan" {
		if err := b.reading(rounds); err != nil {
			return err
		}
	}
	if only == "" || only == "rolling" {
		// The floor's container is there before the first timed round.
		if err := b.floorRolling("1"); err != nil {
			return err
		}
		if err := b.rolling(rounds); err != nil {
			return err
		}
	}
	if only == "" || only == "traffic" {
		if err := b.traffic(ctx, rounds); err != nil {
			return err
		}
	}
	if only == "" {
		return b.delivery(ctx, rounds)
	}
	return nil
}

// reading times fleet plan, the floor and ansible-playbook --check on the
// converged fleet.
func (b *bench) reading(rounds int) error {
	var plan, reconcile, floor, check []time.Duration
	prom := filepath.Join(b.dir, "fleet.prom")
	for i := 0; i < rounds; i++ {
		plan = append(plan, timed(func() error {
			out, err := b.fleetCmd("v1", "plan", "--detailed-exitcode")
			if err == nil && !strings.Contains(out, "No changes") {
				err = fmt.Errorf("fleet plan on a converged fleet shows changes:\n%s", out)
			}
			return err
		}))
		reconcile = append(reconcile, timed(func() error {
			out, err := b.fleetCmd("v1", "reconcile", "--metrics-file", prom)
			if err == nil && out != "" {
				err = fmt.Errorf("fleet reconcile of a converged fleet said something:\n%s", out)
			}
			return err
		}))
		floor = append(floor, timed(b.floor))
		check = append(check, b.timedAnsible("converge.yml", "--check", "-e", "version=1"))
	}
	row("fleet plan", plan, floor, check)
	row("fleet reconcile --metrics-file", reconcile, floor, check)
	row("floor: ssh + docker inspect", floor, floor, check)
	row("ansible-playbook --check", check, floor, check)
	return nil
}

// rolling times rolling updates: fleet stop-first on the same published
// port as Ansible (the like-for-like row), fleet start-first with no host
// port (health checked through SSH), the floor, and Ansible. Every round
// changes every instance of each: the versions alternate, and the two
// fleet rows differ in their ports.
func (b *bench) rolling(rounds int) error {
	var stopFirst, startFirst, floor, ans []time.Duration
	for i := 0; i < rounds; i++ {
		v, w := []string{"2", "1"}[i%2], []string{"1", "2"}[i%2]
		stopFirst = append(stopFirst, timed(func() error { _, err := b.fleetCmd("v"+v, "apply", "--yes"); return err }))
		startFirst = append(startFirst, timed(func() error { _, err := b.fleetCmd("sf-v"+w, "apply", "--yes"); return err }))
		floor = append(floor, timed(func() error { return b.floorRolling(v) }))
		ans = append(ans, b.timedAnsible("rolling.yml", "-e", "version="+v))
	}
	fmt.Println()
	fmt.Printf("%-44s %9s %10s %12s\n", "rolling update, 10 hosts, 2 at a time", "median", "× floor", "× Ansible")
	for _, r := range []struct {
		name string
		d    []time.Duration
	}{
		{"fleet apply, stop-first, port 8080", stopFirst},
		{"fleet apply, start-first, no host port", startFirst},
		{"floor: ssh + docker stop/rm/run + curl", floor},
		{"ansible-playbook serial: 2", ans},
	} {
		fmt.Printf("%-44s %8.2fs %9.2f× %11.2f×\n", r.name, median(r.d).Seconds(), ratio(r.d, floor), ratio(r.d, ans))
	}
	return nil
}

// traffic sends the same steady load to each contender's service during
// its rolling updates: fleet through the hosts' proxies (start-first,
// drained), fleet stop-first on a published port, and Ansible (serial 2,
// on a published port). It counts every request that did not get a 200,
// and the latency of those that did.
func (b *bench) traffic(ctx context.Context, rounds int) error {
	image, err := b.fleet.BuildProxy(ctx)
	if err == nil {
		err = b.fleet.LoadImage(ctx, image)
	}
	if err != nil {
		return err
	}
	for _, v := range []string{"1", "2"} {
		yaml := fmt.Sprintf(`project: benchpx
proxy_image: %s
services:
  web:
    image: fleet-example/hello:%s
    pull: never
    proxy: {host: %s, port: 8080, drain_timeout: 10s}
    healthcheck: {http: /up, port: 8080, interval: 500ms}
    update: {parallelism: 2, monitor: 0s}
`, image, v, trafficSite)
		if err := os.WriteFile(filepath.Join(b.dir, "fleet-px-v"+v+".yaml"), []byte(yaml), 0o600); err != nil {
			return err
		}
	}
	if _, err := b.fleetCmd("px-v1", "apply", "--yes"); err != nil {
		return err
	}
	contenders := []struct {
		name   string
		port   string
		update func(version string) error
	}{
		{"fleet apply, proxied (start-first, drained)", "80", func(v string) error { _, err := b.fleetCmd("px-v"+v, "apply", "--yes"); return err }},
		{"fleet apply, stop-first, port 8080", "8080", func(v string) error { _, err := b.fleetCmd("v"+v, "apply", "--yes"); return err }},
		{"ansible-playbook serial: 2, port 8081", "8081", func(v string) error { _, _, err := b.ansible("rolling.yml", "-e", "version="+v); return err }},
	}
	// Each starts on version 1 (the rolling part may have left 2).
	for _, c := range contenders {
		if err := c.update("1"); err != nil {
			return err
		}
	}
	loads := make([]*load, len(contenders))
	for i := range loads {
		loads[i] = &load{}
	}
	for i := 0; i < rounds; i++ {
		v := []string{"2", "1"}[i%2]
		for j, c := range contenders {
			stop := loads[j].run(b.fleet.Hosts, c.port)
			err := c.update(v)
			stop()
			if err != nil {
				return err
			}
		}
	}
	fmt.Println()
	fmt.Printf("%-44s %9s %7s %9s %9s %9s\n", fmt.Sprintf("under load (%d clients), %d rollouts each", trafficClients, rounds), "requests", "failed", "p50", "p99", "max")
	for j, c := range contenders {
		l := loads[j]
		slices.Sort(l.took)
		q := func(f float64) string {
			if len(l.took) == 0 {
				return "-"
			}
			return fmt.Sprintf("%.1fms", float64(l.took[min(len(l.took)-1, int(f*float64(len(l.took))))].Microseconds())/1000)
		}
		fmt.Printf("%-44s %9d %7d %9s %9s %9s\n", c.name, len(l.took)+l.failed, l.failed, q(0.5), q(0.99), q(1))
		for _, e := range l.errs {
			fmt.Printf("    e.g. %s\n", e)
		}
	}
	return nil
}

const (
	trafficSite    = "bench.test"
	trafficClients = 50
)

// load is steady traffic: trafficClients clients, each asking at most
// every 40 ms, over kept-alive connections, the hosts in turn.
type load struct {
	mu     sync.Mutex
	took   []time.Duration // of the requests answered 200
	failed int
	errs   []string
}

// run starts the load on port of every host and returns what ends it.
func (l *load) run(hosts []*testfleet.Host, port string) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	client := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: trafficClients}}
	for i := range trafficClients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pace := time.NewTicker(40 * time.Millisecond)
			defer pace.Stop()
			for n := i; ; n++ {
				select {
				case <-done:
					return
				case <-pace.C:
				}
				req, _ := http.NewRequest(http.MethodGet, "http://"+net.JoinHostPort(hosts[n%len(hosts)].Addr, port)+"/version", nil)
				req.Host = trafficSite
				began := time.Now()
				resp, err := client.Do(req)
				if err == nil {
					_, err = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if err == nil && resp.StatusCode != http.StatusOK {
						err = fmt.Errorf("%s", resp.Status)
					}
				}
				l.mu.Lock()
				if err != nil {
					l.failed++
					if len(l.errs) < 3 {
						l.errs = append(l.errs, err.Error())
					}
				} else {
					l.took = append(l.took, time.Since(began))
				}
				l.mu.Unlock()
			}
		}()
	}
	return func() {
		close(done)
		wg.Wait()
		client.CloseIdleConnections()
	}
}

// floorRolling is the least a tool that drives the docker CLI over SSH
// does for the same rolling update: on two hosts at a time, one ssh that
// stops and removes the old container, runs the new one and polls its
// health endpoint until it answers.
func (b *bench) floorRolling(version string) error {
	script := "docker stop -t 10 floor-web >/dev/null 2>&1; docker rm floor-web >/dev/null 2>&1; " +
		"docker run -d --name floor-web --restart unless-stopped -p 8082:8080 fleet-example/hello:" + version + " >/dev/null && " +
		"until curl -fs -o /dev/null http://127.0.0.1:8082/up; do sleep 0.05; done"
	hosts := b.fleet.Hosts
	for i := 0; i < len(hosts); i += 2 {
		step := hosts[i:min(i+2, len(hosts))]
		errs := make([]error, len(step))
		var wg sync.WaitGroup
		for j, h := range step {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, errs[j] = h.SSH(context.Background(), script)
			}()
		}
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				return err
			}
		}
	}
	return nil
}

func row(name string, d, floor, check []time.Duration) {
	if name == "fleet plan" {
		fmt.Printf("%-34s %9s %10s %12s\n", "reading 10 converged hosts", "median", "× floor", "× ansible")
	}
	fmt.Printf("%-34s %8.2fs %9.2f× %11.2f×\n", name, median(d).Seconds(), ratio(d, floor), ratio(d, check))
}

func timed(fn func() error) time.Duration {
	start := time.Now()
	if err := fn(); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
	return time.Since(start)
}

func median(d []time.Duration) time.Duration {
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

func ratio(a, b []time.Duration) float64 { return median(a).Seconds() / median(b).Seconds() }

// fleetCmd runs fleet on the project file of a version.
func (b *bench) fleetCmd(version string, args ...string) (string, error) {
	cmd := exec.Command(b.bin, append([]string{"--ssh-config", "none", "--no-color",
		"-f", filepath.Join(b.dir, "fleet-"+version+".yaml"), "-i", b.fleet.Inventory}, args...)...)
	out, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); ok && ee.ExitCode() == 0 {
		err = nil
	}
	if err != nil {
		return string(out), fmt.Errorf("fleet %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// floor is the least any tool must do: one ssh per host, in parallel,
// reading every container's full document.
func (b *bench) floor() error {
	var wg sync.WaitGroup
	errs := make([]error, len(b.fleet.Hosts))
	for i, h := range b.fleet.Hosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = h.SSH(context.Background(), "docker ps -aq | xargs -r docker inspect")
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// ansible runs a playbook from a cold start, as a user's run begins: its
// SSH connections (kept open for the run's tasks by ControlPersist) live
// in a directory of the run's own, and are closed once it is over, so no
// run finds another's connections open. fleet, too, connects afresh in
// every run. It returns the output and the playbook's own wall time.
func (b *bench) ansible(playbook string, args ...string) (string, time.Duration, error) {
	cp, err := os.MkdirTemp(b.dir, "cp-")
	if err != nil {
		return "", 0, err
	}
	defer func() {
		masters, _ := filepath.Glob(filepath.Join(cp, "*"))
		for _, m := range masters {
			exec.Command("ssh", "-O", "exit", "-o", "ControlPath="+m, "closing").Run()
		}
		os.RemoveAll(cp)
	}()
	cmd := exec.Command("ansible-playbook", append([]string{"-i", filepath.Join(b.dir, "hosts.ini"), filepath.Join(b.dir, playbook)}, args...)...)
	cmd.Dir = b.dir
	cmd.Env = append(os.Environ(), "ANSIBLE_CONFIG="+filepath.Join(b.dir, "ansible.cfg"), "ANSIBLE_SSH_CONTROL_PATH_DIR="+cp)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	err = cmd.Run()
	took := time.Since(start)
	if err != nil {
		return out.String(), took, fmt.Errorf("ansible-playbook %s: %v\n%s", playbook, err, out.String())
	}
	return out.String(), took, nil
}

// timedAnsible runs a playbook as ansible does and returns its wall time;
// an error ends the benchmark, as in timed.
func (b *bench) timedAnsible(playbook string, args ...string) time.Duration {
	_, took, err := b.ansible(playbook, args...)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
	return took
}

// files writes fleet.yaml for both versions, and Ansible's inventory,
// configuration and playbooks for the same service on another port.
func (b *bench) files() error {
	files := map[string]string{}
	for _, v := range []string{"1", "2"} {
		files["fleet-v"+v+".yaml"] = fmt.Sprintf(`project: bench
services:
  web:
    image: fleet-example/hello:%s
    pull: never
    ports: ["8080:8080"]
    healthcheck: {http: /up, port: 8080, interval: 500ms}
    update: {parallelism: 2, monitor: 0s}
`, v)
		// The same service reached without a host port (through a load
		// balancer on the container network, or later fleet's proxy),
		// which lets the new container start beside the old one.
		files["fleet-sf-v"+v+".yaml"] = fmt.Sprintf(`project: bench
services:
  web:
    image: fleet-example/hello:%s
    pull: never
    healthcheck: {http: /up, port: 8080, interval: 500ms}
    update: {parallelism: 2, monitor: 0s, order: start-first}
`, v)
	}
	var inv strings.Builder
	inv.WriteString("[fleet]\n")
	for _, h := range b.fleet.Hosts {
		fmt.Fprintf(&inv, "%s ansible_host=%s\n", h.Name, h.Addr)
	}
	fmt.Fprintf(&inv, "\n[fleet:vars]\nansible_user=root\nansible_ssh_private_key_file=%s\nansible_python_interpreter=/usr/bin/python3\nansible_ssh_common_args='-o UserKnownHostsFile=%s -o StrictHostKeyChecking=yes -o IdentitiesOnly=yes'\n",
		b.fleet.IdentityFile, b.fleet.KnownHosts)
	files["hosts.ini"] = inv.String()
	files["ansible.cfg"] = "[defaults]\nforks = 50\ngathering = explicit\nhost_key_checking = True\nstdout_callback = default\n\n[ssh_connection]\npipelining = True\n"
	files["converge.yml"] = `- hosts: fleet
  gather_facts: false
  tasks:
    - community.docker.docker_container:
        name: ansible-web
        image: "fleet-example/hello:{{ version }}"
        pull: false
        published_ports: ["8081:8080"]
        restart_policy: unless-stopped
        state: started
`
	files["rolling.yml"] = `- hosts: fleet
  gather_facts: false
  serial: 2
  tasks:
    - community.docker.docker_container:
        name: ansible-web
        image: "fleet-example/hello:{{ version }}"
        pull: false
        published_ports: ["8081:8080"]
        restart_policy: unless-stopped
        state: started
    - ansible.builtin.uri:
        url: "http://{{ ansible_host }}:8081/up"
        status_code: 200
      register: up
      until: up.status == 200
      retries: 60
      delay: 0.5
      delegate_to: localhost
`
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(b.dir, name), []byte(content), 0o600); err != nil {
			return err
		}
	}
	return nil
}

func ensureAnsible() error {
	// ansible-core alone (what the tests need) lacks the community.docker
	// collection that Debian's ansible package brings.
	if _, err := exec.LookPath("ansible-playbook"); err == nil {
		if exec.Command("/usr/bin/python3", "-c", "import docker").Run() == nil &&
			exec.Command("ansible-doc", "-t", "module", "community.docker.docker_container", "--snippet").Run() == nil {
			return nil
		}
	}
	cmd := exec.Command("apt-get", "install", "-y", "-qq", "ansible", "python3-docker")
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("installing ansible and python3-docker: %v: %s", err, out)
	}
	return nil
}
