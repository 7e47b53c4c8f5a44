// Command scale measures fleet on a simulated fleet of up to thousands of
// hosts, in one process and without root.
//
// Each simulated host is an SSH server on a loopback port (x/crypto/ssh's
// server side: real handshakes, a host key of its own, recorded in a
// known_hosts file), which forwards the engine's socket
// (direct-streamlocal@openssh.com to /var/run/docker.sock, the way fleet
// reaches a real engine first) to an in-memory Docker engine answering the
// Engine API over HTTP/1.1, and serves SFTP from an in-memory file system
// for fleet's locks and revision history. Every answer comes a round trip
// after its request, and container starts and stops take the engine's
// configured time. fleet itself runs unchanged, as a child
// process built from this tree, against the inventory, fleet.yaml and
// known_hosts written for it.
//
// A run deploys version 1 (not measured), then measures `fleet plan` of the
// converged fleet and `fleet apply` of an image change rolled out 10% at a
// time, and checks that every host ends on the new image and that a plan
// after it has nothing to do:
//
//	go run ./integration/scale -hosts 1000 -rtt 30ms -json
package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"
)

func main() {
	var o options
	flag.IntVar(&o.Hosts, "hosts", 100, "simulated hosts")
	flag.DurationVar(&o.RTT, "rtt", 30*time.Millisecond, "round trip between fleet and every host")
	flag.DurationVar(&o.Times.Start, "start", 300*time.Millisecond, "engine time of a container start")
	flag.DurationVar(&o.Times.Stop, "stop", 150*time.Millisecond, "engine time of a container stop")
	flag.DurationVar(&o.Times.Pull, "pull", 0, "engine time of an image pull")
	flag.DurationVar(&o.Times.Healthy, "healthy", 200*time.Millisecond, "time from a start to the container's health check passing")
	flag.DurationVar(&o.Monitor, "monitor", time.Second, "the service's update.monitor")
	flag.StringVar(&o.Parallelism, "parallelism", "10%", "the service's update.parallelism")
	flag.StringVar(&o.Fleet, "fleet", "", "fleet binary to measure (default: built from this tree)")
	flag.StringVar(&o.Args, "args", "", "extra global flags for every fleet run, space-separated (e.g. \"--parallel 64\")")
	flag.BoolVar(&o.JSON, "json", false, "print the result as one JSON object")
	flag.BoolVar(&o.PlanOnly, "plan-only", false, "measure the plan alone (no apply of version 2)")
	flag.BoolVar(&o.PQ, "pq", false, "hosts offer the post-quantum key exchange of OpenSSH 9.9 and newer (mlkem768x25519-sha256); by default, OpenSSH 9.2's, as Debian 12")
	flag.BoolVar(&o.Trace, "trace", false, "print every handshake, channel, SFTP and engine request the hosts serve, with its time")
	flag.BoolVar(&o.Keep, "keep", false, "keep the run's directory (inventory, known_hosts, fleet.yaml, outputs)")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of the simulated hosts (not of fleet) to this file")
	flag.Parse()
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "scale:", err)
			os.Exit(1)
		}
		pprof.StartCPUProfile(f)
		defer pprof.StopCPUProfile()
	}
	res, err := run(context.Background(), o, os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "scale:", err)
		pprof.StopCPUProfile()
		os.Exit(1)
	}
	if o.JSON {
		json.NewEncoder(os.Stdout).Encode(res)
		return
	}
	res.print(os.Stdout)
}

type options struct {
	Hosts       int
	RTT         time.Duration
	Times       Times
	Monitor     time.Duration
	Parallelism string
	Fleet       string
	Args        string
	JSON        bool
	Keep        bool
	PlanOnly    bool
	Trace       bool
	PQ          bool
}

// Result is one run's measurements; its JSON is what -json prints.
type Result struct {
	Hosts int     `json:"hosts"`
	RTTms float64 `json:"rtt_ms"`
	Cores int     `json:"cores"`
	Kex   string  `json:"kex"` // the key exchange the hosts offer first

	PlanS       float64 `json:"plan_s"`
	ApplyS      float64 `json:"apply_s"`
	FloorS      float64 `json:"floor_s"` // the apply's engine times and health gates, step after step
	ApplyFloorX float64 `json:"apply_x_floor"`
	Steps       int     `json:"steps"`

	PeakRSSMiB float64 `json:"peak_rss_mib"` // the larger of plan's and apply's
	PlanRSSMiB float64 `json:"plan_rss_mib"`
	PlanCPUS   float64 `json:"plan_cpu_s"` // CPU time of the fleet process
	ApplyCPUS  float64 `json:"apply_cpu_s"`
	// The share of the machine's CPU its hypervisor gave to others during
	// the plan and the apply (steal time), in percent: the wall times are
	// the simulation's CPU and fleet's on what was left.
	PlanStolenPct  float64 `json:"plan_stolen_pct"`
	ApplyStolenPct float64 `json:"apply_stolen_pct"`
	// The CPU time of the simulated hosts themselves during the plan and
	// the apply. Real hosts would spend it on their own machines; here it
	// is taken from the cores fleet runs on.
	PlanHostsCPUS  float64 `json:"plan_hosts_cpu_s"`
	ApplyHostsCPUS float64 `json:"apply_hosts_cpu_s"`
	MaxFDs         int     `json:"max_fds"`
	MaxThreads     int     `json:"max_threads"` // of the fleet process; its goroutines are not visible from outside
	Handshakes     int64   `json:"handshakes"`  // SSH handshakes the hosts served, in the measured plan and apply
	Channels       int64   `json:"channels"`
	Execs          int64   `json:"execs"`
	// ApplyEngineRequests counts the Engine API requests of the apply,
	// most of them health checks: the engine's inspect of each new
	// container until it passes and through monitor.
	ApplyEngineRequests int64    `json:"apply_engine_requests"`
	FDLimit             int      `json:"fd_limit"` // the fleet process's soft limit on open files, as it ran
	PlanLines           int      `json:"plan_lines"`
	ApplyLines          int      `json:"apply_lines"`
	OnNewImage          int      `json:"on_new_image"` // hosts whose instance runs the new image after the apply
	Converged           bool     `json:"converged"`    // a plan after the apply has nothing to do
	Unknown             []string `json:"unknown_requests,omitempty"`

	Deploy1S float64 `json:"deploy_v1_s"` // the first deploy, not a measurement of interest
}

func (r *Result) print(w *os.File) {
	fmt.Fprintf(w, "%d hosts, rtt %.0f ms, %d cores, key exchange %s\n", r.Hosts, r.RTTms, r.Cores, r.Kex)
	fmt.Fprintf(w, "plan   %6.2f s   rss %6.1f MiB   CPU: fleet %.2f s, the hosts %.2f s   (%.0f%% of the CPU stolen by the hypervisor)\n", r.PlanS, r.PlanRSSMiB, r.PlanCPUS, r.PlanHostsCPUS, r.PlanStolenPct)
	fmt.Fprintf(w, "apply  %6.2f s   floor %.2f s (%d steps)  %.2f× floor   CPU: fleet %.2f s, the hosts %.2f s   (%.0f%% stolen)\n", r.ApplyS, r.FloorS, r.Steps, r.ApplyFloorX, r.ApplyCPUS, r.ApplyHostsCPUS, r.ApplyStolenPct)
	fmt.Fprintf(w, "peak rss %.1f MiB, fds %d, threads %d, handshakes %d, channels %d, execs %d\n", r.PeakRSSMiB, r.MaxFDs, r.MaxThreads, r.Handshakes, r.Channels, r.Execs)
	fmt.Fprintf(w, "output lines: plan %d, apply %d; on the new image: %d/%d; converged after: %v\n", r.PlanLines, r.ApplyLines, r.OnNewImage, r.Hosts, r.Converged)
	for _, u := range r.Unknown {
		fmt.Fprintln(w, "unknown request:", u)
	}
}

const project = "scale"

func run(ctx context.Context, o options, log *os.File) (*Result, error) {
	dir, err := os.MkdirTemp("", "fleet-scale-")
	if err != nil {
		return nil, err
	}
	if o.Keep {
		fmt.Fprintln(log, "scale: files in", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	bin := o.Fleet
	if bin == "" {
		bin = filepath.Join(dir, "fleet")
		build := exec.Command("go", "build", "-o", bin, "./cmd/fleet")
		build.Dir = moduleRoot()
		if out, err := build.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("building fleet: %v\n%s", err, out)
		}
	}
	s, err := startSim(o, dir)
	if err != nil {
		return nil, err
	}
	defer s.close()

	f := &fleetRun{bin: bin, dir: dir, extra: strings.Fields(o.Args)}
	res := &Result{Hosts: o.Hosts, RTTms: float64(o.RTT) / 1e6, Cores: runtime.NumCPU(), Kex: openSSH92Kex[0]}
	if o.PQ {
		res.Kex = ssh.KeyExchangeMLKEM768X25519
	}

	m, err := f.run("v1", "apply", "--yes")
	if err != nil {
		return nil, fmt.Errorf("deploying version 1: %w", err)
	}
	res.Deploy1S = m.wall.Seconds()

	before := s.counts()
	plan, err := f.run("v1", "plan")
	if err != nil {
		return nil, fmt.Errorf("plan of the converged fleet: %w", err)
	}
	if !nothingToDo(plan.out) {
		return nil, fmt.Errorf("plan of the converged fleet has something to do:\n%s", tail(plan.out, 20))
	}
	if o.PlanOnly {
		return &Result{Hosts: o.Hosts, RTTms: res.RTTms, Cores: res.Cores, Kex: res.Kex, PlanS: round(plan.wall.Seconds()), PlanRSSMiB: round(plan.rssMiB), PlanCPUS: round(plan.cpu.Seconds()), PlanStolenPct: round(plan.stolen), PlanHostsCPUS: round(plan.hostsCPU.Seconds()),
			PeakRSSMiB: round(plan.rssMiB), MaxFDs: plan.fds, MaxThreads: plan.threads, PlanLines: lines(plan.out),
			Handshakes: s.counts().handshakes - before.handshakes, Deploy1S: res.Deploy1S}, nil
	}
	beforeApply := s.counts()
	apply, err := f.run("v2", "apply", "--yes")
	if err != nil {
		return nil, fmt.Errorf("apply of version 2: %w", err)
	}
	after := s.counts()
	res.ApplyEngineRequests = after.requests - beforeApply.requests
	again, err := f.run("v2", "plan")
	if err != nil {
		return nil, fmt.Errorf("plan after the apply: %w", err)
	}

	res.PlanS, res.ApplyS = round(plan.wall.Seconds()), round(apply.wall.Seconds())
	res.PlanRSSMiB = round(plan.rssMiB)
	res.PlanCPUS, res.ApplyCPUS = round(plan.cpu.Seconds()), round(apply.cpu.Seconds())
	res.PlanStolenPct, res.ApplyStolenPct = round(plan.stolen), round(apply.stolen)
	res.PlanHostsCPUS, res.ApplyHostsCPUS = round(plan.hostsCPU.Seconds()), round(apply.hostsCPU.Seconds())
	res.PeakRSSMiB = round(max(plan.rssMiB, apply.rssMiB))
	res.MaxFDs = max(plan.fds, apply.fds)
	res.FDLimit = apply.fdLimit
	res.MaxThreads = max(plan.threads, apply.threads)
	res.Handshakes = after.handshakes - before.handshakes
	res.Channels = after.channels - before.channels
	res.Execs = s.stats.Execs.Load()
	res.PlanLines, res.ApplyLines = lines(plan.out), lines(apply.out)
	res.Converged = nothingToDo(again.out)
	res.Unknown = s.stats.Unknown()
	for _, h := range s.hosts {
		imgs := h.eng.running(project)
		if len(imgs) == 1 && imgs[0] == imageRef("v2") {
			res.OnNewImage++
		}
	}
	// Each step stops the old instances, starts the new ones, waits for
	// their health check and then for monitor: nothing can do it faster.
	res.Steps = steps(o.Parallelism, o.Hosts)
	res.FloorS = round(float64(res.Steps) * (o.Times.Stop + o.Times.Start + o.Times.Healthy + o.Monitor).Seconds())
	res.ApplyFloorX = round(res.ApplyS / res.FloorS)
	if o.Keep {
		for name, out := range map[string]string{"plan.out": plan.out, "apply.out": apply.out, "plan-after.out": again.out} {
			os.WriteFile(filepath.Join(dir, name), []byte(out), 0o644)
		}
	}
	return res, nil
}

func round(x float64) float64 { return float64(int64(x*100+0.5)) / 100 }

func lines(s string) int { return strings.Count(s, "\n") }

func tail(s string, n int) string {
	l := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(l[max(0, len(l)-n):], "\n")
}

// nothingToDo says whether a plan's output says plainly that it has
// nothing to do, as the README promises.
func nothingToDo(out string) bool {
	return strings.Contains(strings.ToLower(out), "no changes")
}

// steps is how many steps a rolling update of n instances takes at
// parallelism p ("10%" or a number).
func steps(p string, n int) int {
	per := 1
	if pct, ok := strings.CutSuffix(p, "%"); ok {
		v, _ := strconv.Atoi(pct)
		per = max(1, n*v/100)
	} else if v, err := strconv.Atoi(p); err == nil && v > 0 {
		per = v
	}
	return (n + per - 1) / per
}

func imageRef(version string) string {
	return "registry.example/scale/web:" + strings.TrimPrefix(version, "v")
}

func moduleRoot() string {
	dir, _ := os.Getwd()
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d
		}
		if filepath.Dir(d) == d {
			return dir
		}
	}
}

type simCounts struct{ handshakes, channels, requests int64 }

func (s *sim) counts() simCounts {
	return simCounts{s.stats.Handshakes.Load(), s.stats.Channels.Load(), s.stats.EngineRequests.Load()}
}

// startSim starts the hosts and writes what fleet needs to reach them: the
// login key, known_hosts, the inventory and fleet.yaml for both versions.
func startSim(o options, dir string) (*sim, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "id_ed25519"), pem.EncodeToMemory(block), 0o600); err != nil {
		return nil, err
	}
	client, err := ssh.NewPublicKey(pub)
	if err != nil {
		return nil, err
	}
	s := &sim{client: client, rtt: o.RTT, pq: o.PQ, times: o.Times}
	if o.Trace {
		start := time.Now()
		var mu sync.Mutex
		s.trace = func(host, what string) {
			mu.Lock()
			defer mu.Unlock()
			fmt.Fprintf(os.Stderr, "%8.3fs %s %s\n", time.Since(start).Seconds(), host, what)
		}
	}
	var known, inv bytes.Buffer
	fmt.Fprintf(&inv, "defaults:\n  user: root\n  identity_file: %s\n  known_hosts: %s\nhosts:\n",
		filepath.Join(dir, "id_ed25519"), filepath.Join(dir, "known_hosts"))
	for i := range o.Hosts {
		name := fmt.Sprintf("h%04d", i+1)
		h, err := s.startHost(name)
		if err != nil {
			s.close()
			return nil, fmt.Errorf("host %s: %w", name, err)
		}
		s.hosts = append(s.hosts, h)
		fmt.Fprintf(&known, "[127.0.0.1]:%d %s", h.port, ssh.MarshalAuthorizedKey(h.key.PublicKey()))
		fmt.Fprintf(&inv, "  %s: {address: 127.0.0.1, port: %d, labels: {zone: z%d}}\n", name, h.port, i%3)
	}
	files := map[string][]byte{"known_hosts": known.Bytes(), "inventory.yaml": inv.Bytes()}
	for _, v := range []string{"v1", "v2"} {
		files["fleet-"+v+".yaml"] = fmt.Appendf(nil, `project: %s
services:
  web:
    image: %s
    env: {MODE: simulated}
    healthcheck: {docker: true, interval: 100ms}
    update: {parallelism: %q, monitor: %s}
`, project, imageRef(v), o.Parallelism, o.Monitor)
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			s.close()
			return nil, err
		}
	}
	return s, nil
}

func (s *sim) close() {
	for _, h := range s.hosts {
		h.close()
	}
}

// fleetRun runs the fleet binary against the simulated fleet.
type fleetRun struct {
	bin, dir string
	extra    []string
}

// measured is one fleet process's run.
type measured struct {
	out     string
	wall    time.Duration
	rssMiB  float64
	fds     int
	threads int
	cpu     time.Duration // of the fleet process, user and system
	fdLimit int
	// stolen is the share of the machine's CPU time that its hypervisor
	// took for others while fleet ran (steal in /proc/stat), in percent.
	stolen float64
	// hostsCPU is the simulated hosts' CPU time meanwhile (this process's).
	hostsCPU time.Duration
}

func (f *fleetRun) run(version string, args ...string) (*measured, error) {
	argv := append([]string{"--ssh-config", "none", "--no-color", "-f", filepath.Join(f.dir, "fleet-"+version+".yaml"),
		"-i", filepath.Join(f.dir, "inventory.yaml")}, f.extra...)
	cmd := exec.Command(f.bin, append(argv, args...)...)
	cmd.Dir = f.dir
	// No agent: the inventory's key alone, as on a build box.
	cmd.Env = append(withoutEnv(os.Environ(), "SSH_AUTH_SOCK"), "HOME="+f.dir)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	before, _ := cpuTimes()
	hostsBefore := ownCPU()
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	// Peak RSS is the process's VmHWM, sampled: the Maxrss of its rusage
	// is no use here, since Linux carries the high-water mark of the
	// memory an exec replaces into it, and Go starts a child with
	// CLONE_VM, from the simulator's own memory of thousands of hosts.
	m := &measured{}
	var stop atomic.Bool
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		pid := cmd.Process.Pid
		// Counting open files lists /proc/PID/fd, a thousand entries at a
		// thousand hosts: every tenth sample, so that the measuring does
		// not take the CPU that fleet and the simulated hosts share.
		for i := 0; !stop.Load(); i++ {
			if i%10 == 0 {
				if ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid)); err == nil {
					m.fds = max(m.fds, len(ents))
				}
			}
			if lim, err := os.ReadFile(fmt.Sprintf("/proc/%d/limits", pid)); err == nil {
				for _, l := range strings.Split(string(lim), "\n") {
					if rest, ok := strings.CutPrefix(l, "Max open files"); ok {
						if f := strings.Fields(rest); len(f) > 0 {
							m.fdLimit, _ = strconv.Atoi(f[0])
						}
					}
				}
			}
			if st, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid)); err == nil {
				for _, l := range strings.Split(string(st), "\n") {
					if v, ok := strings.CutPrefix(l, "Threads:"); ok {
						n, _ := strconv.Atoi(strings.TrimSpace(v))
						m.threads = max(m.threads, n)
					}
					if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
						kb, _ := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
						m.rssMiB = max(m.rssMiB, float64(kb)/1024)
					}
				}
			}
			time.Sleep(10 * time.Millisecond)
		}
	}()
	err := cmd.Wait()
	m.wall = time.Since(start)
	stop.Store(true)
	<-sampled
	m.out = out.String()
	m.cpu = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	m.hostsCPU = ownCPU() - hostsBefore
	if after, err := cpuTimes(); err == nil && before != nil {
		m.stolen = stolenPercent(before, after)
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return m, fmt.Errorf("fleet %s: exit %d:\n%s", strings.Join(args, " "), ee.ExitCode(), tail(m.out, 30))
	}
	return m, err
}

func withoutEnv(env []string, name string) []string {
	var out []string
	for _, kv := range env {
		if !strings.HasPrefix(kv, name+"=") {
			out = append(out, kv)
		}
	}
	return out
}

// ownCPU is this process's CPU time so far, user and system, without its
// children's.
func ownCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// cpuTimes reads the machine's CPU times, in clock ticks, from the first
// line of /proc/stat: user, nice, system, idle, iowait, irq, softirq,
// steal.
func cpuTimes() ([]int64, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return nil, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return nil, fmt.Errorf("/proc/stat: unexpected first line %q", line)
	}
	var t []int64
	for _, v := range f[1:9] {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return nil, err
		}
		t = append(t, n)
	}
	return t, nil
}

// stolenPercent is the steal time between two cpuTimes, as a share of
// all their time.
func stolenPercent(before, after []int64) float64 {
	var total int64
	for i := range before {
		total += after[i] - before[i]
	}
	if total <= 0 {
		return 0
	}
	return 100 * float64(after[7]-before[7]) / float64(total)
}
