// Package testfleet brings up a fleet of real hosts on one Linux machine, for
// fleet's integration tests and its demo.
//
// Every host is what fleet meets in production: its own network namespace and
// address, its own sshd that offers rsa, ecdsa and ed25519 host keys, and its
// own dockerd with its own containers, images and port space. Nothing is
// simulated; only the machine is shared. A host is
//
//   - a network namespace "fleet-NAME-HOST" joined by a veth pair to the
//     fleet's bridge, at 198.18.N.(10+k) (the benchmarking range, so no test
//     traffic ever targets a private or public network);
//   - a private mount and UTS namespace held open by an anchor process, with
//     per-host directories bound over /run, /tmp, /var/lib/docker,
//     /var/lib/fleet and /root, so the engine answers on the usual
//     /var/run/docker.sock and root has a home of its own;
//   - sshd and dockerd started inside those namespaces, every process of the
//     host (containers included, through dockerd's --cgroup-parent) in one
//     cgroup, which is how teardown finds and kills all of it.
//
// The fleet also writes what a user of fleet would have: a client key, a
// known_hosts file that holds only each host's ed25519 key (as real
// known_hosts files usually do), and an inventory. A "laptop" dockerd of the
// harness builds the example images, which are then loaded onto the hosts.
//
// Hosts are daemons: they outlive the process that started them, so the demo
// can leave a sandbox running. [Fleet.Down] removes everything; [Up] first
// removes whatever a crashed run of the same name left behind, so every run
// starts clean. Everything here needs root.
package testfleet

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// DefaultStateDir holds every fleet's files: keys, configs, logs, engine data.
// It must not lie under a directory that hosts bind over (/run, /tmp,
// /var/lib/docker, /var/lib/fleet, /root).
const DefaultStateDir = "/var/lib/fleet-testfleet"

// Options describe the fleet to bring up.
type Options struct {
	// Name identifies the fleet: namespaces, links, cgroups and its state
	// directory carry it. Up to 6 characters of [a-z0-9]. Two fleets can run
	// at once when both Name and Subnet differ.
	Name string
	// Hosts is the number of hosts, named h1…hN.
	Hosts int
	// Subnet is N in 198.18.N.0/24, 1 to 254.
	Subnet int
	// StateDir defaults to DefaultStateDir.
	StateDir string
	// KnownHostKeys lists the host key types written to known_hosts for each
	// host (ed25519, ecdsa, rsa). Hosts offer all three regardless; the
	// default writes ed25519 alone, which is what trips clients that
	// negotiate another algorithm first.
	KnownHostKeys []string
	// Labels gives host k (1-based) its inventory labels; by default hosts
	// are spread over zones a, b and c.
	Labels func(k int) map[string]string
	// WithoutSFTP says whether host k (1-based) has an sshd without the
	// SFTP subsystem, as hardened hosts do; by default every host offers it,
	// as Debian's sshd does. [Host.SetSFTP] changes it later.
	WithoutSFTP func(k int) bool
	// NATPortsOnly publishes the containers' ports by the engine's NAT
	// rules alone, without a docker-proxy process per port
	// (--userland-proxy=false): Docker's default is the proxy, but a
	// test suite that starts hundreds of containers spends a sixth of
	// its CPU starting proxies.
	NATPortsOnly bool
	// DiskSize gives host k (1-based) a disk of that many bytes for
	// /var/lib/docker and /var/lib/fleet together (a tmpfs of that size),
	// which [Host.FillDisk] can fill as a full disk would be; 0, the
	// default, keeps them on this machine's disk.
	DiskSize func(k int) int64
	// InsecureRegistries lets the hosts' engines and the laptop's use a
	// registry in the fleet's address range without TLS, as a registry on
	// one test host must be used by the others.
	InsecureRegistries bool
	// Log receives progress lines; nil discards them.
	Log io.Writer
}

// Fleet is a running test fleet. Its exported fields are saved in the state
// directory, so a later process can [Attach] to it.
type Fleet struct {
	Name   string
	Subnet int
	Dir    string // this fleet's state directory
	Hosts  []*Host

	Inventory    string // inventory.yaml for fleet, native format
	KnownHosts   string // known_hosts with the keys chosen in Options
	IdentityFile string // private key that every host's root accepts

	// LaptopDocker is the DOCKER_HOST of the harness's own engine, the one
	// that builds images; empty until the first build.
	LaptopDocker string

	natPortsOnly bool
	insecure     bool
	log          io.Writer
	mu           sync.Mutex
}

// daemonJSON is the configuration of the fleet's engines.
func (f *Fleet) daemonJSON() []byte {
	if f.insecure {
		return []byte(`{"insecure-registries": ["198.18.0.0/15"]}` + "\n")
	}
	return []byte("{}\n")
}

func diskSize(opts Options, k int) int64 {
	if opts.DiskSize == nil {
		return 0
	}
	return opts.DiskSize(k)
}

var (
	nameRE = regexp.MustCompile(`^[a-z0-9]{1,6}$`)
	userRE = regexp.MustCompile(`^[a-z][a-z0-9]{0,15}$`)
)

// Up brings up a fleet as opts describe, after removing any leftovers of a
// fleet with the same name. On error, whatever was started is removed again.
func Up(ctx context.Context, opts Options) (*Fleet, error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("testfleet: root is needed to create network namespaces and run sshd and dockerd; run with sudo")
	}
	if !nameRE.MatchString(opts.Name) {
		return nil, fmt.Errorf("testfleet: name %q: want 1 to 6 characters of a-z and 0-9", opts.Name)
	}
	if opts.Hosts < 1 || opts.Hosts > 200 {
		return nil, fmt.Errorf("testfleet: %d hosts: want 1 to 200", opts.Hosts)
	}
	if opts.Subnet < 1 || opts.Subnet > 254 {
		return nil, fmt.Errorf("testfleet: subnet %d: want 1 to 254", opts.Subnet)
	}
	if opts.StateDir == "" {
		opts.StateDir = DefaultStateDir
	}
	if len(opts.KnownHostKeys) == 0 {
		opts.KnownHostKeys = []string{"ed25519"}
	}
	for _, t := range opts.KnownHostKeys {
		if !validKeyType(t) {
			return nil, fmt.Errorf("testfleet: known host key type %q: want ed25519, ecdsa or rsa", t)
		}
	}
	if opts.Labels == nil {
		opts.Labels = func(k int) map[string]string {
			return map[string]string{"zone": string(rune('a' + (k-1)%3))}
		}
	}
	log := opts.Log
	if log == nil {
		log = io.Discard
	}
	if err := checkTools(ctx, log); err != nil {
		return nil, err
	}

	f := &Fleet{
		Name:   opts.Name,
		Subnet: opts.Subnet,
		Dir:    filepath.Join(opts.StateDir, opts.Name),

		natPortsOnly: opts.NATPortsOnly,
		insecure:     opts.InsecureRegistries,
		log:          log,
	}
	if err := purge(ctx, opts.StateDir, opts.Name, f.log); err != nil {
		return nil, fmt.Errorf("testfleet: removing leftovers of fleet %q: %w", opts.Name, err)
	}
	for k := 1; k <= opts.Hosts; k++ {
		f.Hosts = append(f.Hosts, &Host{
			Name:     fmt.Sprintf("h%d", k),
			Addr:     fmt.Sprintf("198.18.%d.%d", opts.Subnet, 10+k),
			Labels:   opts.Labels(k),
			Dir:      filepath.Join(f.Dir, "hosts", fmt.Sprintf("h%d", k)),
			NoSFTP:   opts.WithoutSFTP != nil && opts.WithoutSFTP(k),
			DiskSize: diskSize(opts, k),
			fleet:    f,
		})
	}
	if err := f.up(ctx, opts); err != nil {
		downErr := f.Down(context.WithoutCancel(ctx))
		return nil, errors.Join(err, downErr)
	}
	return f, nil
}

func (f *Fleet) up(ctx context.Context, opts Options) error {
	start := time.Now()
	if err := os.MkdirAll(f.Dir, 0o700); err != nil {
		return err
	}
	f.IdentityFile = filepath.Join(f.Dir, "id_ed25519")
	if _, err := run(ctx, "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "fleet-testfleet", "-f", f.IdentityFile); err != nil {
		return err
	}
	if err := f.network(ctx); err != nil {
		return err
	}
	if err := cgroupCreate(f.cgroup()); err != nil {
		return err
	}
	err := parallel(f.Hosts, func(h *Host) error { return h.up(ctx) })
	if err != nil {
		return err
	}
	if err := f.writeKnownHosts(opts.KnownHostKeys); err != nil {
		return err
	}
	if err := f.writeInventory(); err != nil {
		return err
	}
	if err := f.save(); err != nil {
		return err
	}
	f.logf("fleet %s: %d hosts up in %s (inventory %s)", f.Name, len(f.Hosts), time.Since(start).Round(time.Millisecond), f.Inventory)
	return nil
}

// Attach returns the running fleet called name, as a previous Up left it.
func Attach(stateDir, name string) (*Fleet, error) {
	if stateDir == "" {
		stateDir = DefaultStateDir
	}
	b, err := os.ReadFile(filepath.Join(stateDir, name, "fleet.json"))
	if err != nil {
		return nil, fmt.Errorf("testfleet: no fleet %q is up: %w", name, err)
	}
	f := &Fleet{log: io.Discard}
	if err := json.Unmarshal(b, f); err != nil {
		return nil, fmt.Errorf("testfleet: fleet %q: %w", name, err)
	}
	for _, h := range f.Hosts {
		h.fleet = f
	}
	return f, nil
}

// SetLog sends progress lines to w.
func (f *Fleet) SetLog(w io.Writer) { f.log = w }

// Host returns the host called name, or nil.
func (f *Fleet) Host(name string) *Host {
	for _, h := range f.Hosts {
		if h.Name == name {
			return h
		}
	}
	return nil
}

// Down stops every process of the fleet and removes its namespaces, links,
// cgroups and files. It is safe to call on a partly started fleet and more
// than once.
func (f *Fleet) Down(ctx context.Context) error {
	return purge(ctx, filepath.Dir(f.Dir), f.Name, f.log)
}

func (f *Fleet) save() error {
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(f.Dir, "fleet.json"), b, 0o600)
}

func (f *Fleet) logf(format string, args ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fmt.Fprintf(f.log, "testfleet: "+format+"\n", args...)
}

// bridge is the name of the fleet's bridge in the root namespace; the
// laptop side reaches hosts through it at 198.18.N.1.
func (f *Fleet) bridge() string { return "flt-" + f.Name }

func (f *Fleet) gateway() string { return fmt.Sprintf("198.18.%d.1", f.Subnet) }

func (f *Fleet) cgroup() string { return "fleet-testfleet/" + f.Name }

func (f *Fleet) network(ctx context.Context) error {
	br := f.bridge()
	steps := [][]string{
		{"ip", "link", "add", br, "type", "bridge"},
		{"ip", "addr", "add", f.gateway() + "/24", "dev", br},
		{"ip", "link", "set", br, "up"},
	}
	for _, s := range steps {
		if _, err := run(ctx, s[0], s[1:]...); err != nil {
			return err
		}
	}
	// With br_netfilter loaded (Docker loads it), frames crossing the bridge
	// traverse iptables FORWARD, whose policy Docker sets to DROP: let
	// host-to-host traffic (jump hosts, load balancers) through.
	if b, err := os.ReadFile("/proc/sys/net/bridge/bridge-nf-call-iptables"); err == nil && strings.TrimSpace(string(b)) == "1" {
		if _, err := run(ctx, "iptables", forwardRule("-I", br)...); err != nil {
			return err
		}
	}
	return nil
}

func forwardRule(op, br string) []string {
	return []string{"-w", op, "FORWARD", "-i", br, "-o", br, "-m", "comment", "--comment", "fleet-testfleet", "-j", "ACCEPT"}
}

func (f *Fleet) writeKnownHosts(types []string) error {
	var b strings.Builder
	for _, h := range f.Hosts {
		for _, t := range types {
			pub, err := os.ReadFile(h.hostKey(t) + ".pub")
			if err != nil {
				return err
			}
			fields := strings.Fields(string(pub))
			if len(fields) < 2 {
				return fmt.Errorf("testfleet: %s: malformed public key", h.hostKey(t))
			}
			fmt.Fprintf(&b, "%s %s %s\n", h.Addr, fields[0], fields[1])
		}
	}
	f.KnownHosts = filepath.Join(f.Dir, "known_hosts")
	return os.WriteFile(f.KnownHosts, []byte(b.String()), 0o600)
}

func (f *Fleet) writeInventory() error {
	var b strings.Builder
	fmt.Fprintf(&b, "# Test fleet %q, written by fleet's testfleet harness.\n", f.Name)
	fmt.Fprintf(&b, "defaults:\n  user: root\n  identity_file: %s\n  known_hosts: %s\nhosts:\n", f.IdentityFile, f.KnownHosts)
	for _, h := range f.Hosts {
		fmt.Fprintf(&b, "  %s:\n    address: %s\n", h.Name, h.Addr)
		if len(h.Labels) > 0 {
			b.WriteString("    labels:\n")
			for _, k := range slices.Sorted(maps.Keys(h.Labels)) {
				fmt.Fprintf(&b, "      %s: %s\n", k, strconv.Quote(h.Labels[k]))
			}
		}
	}
	f.Inventory = filepath.Join(f.Dir, "inventory.yaml")
	return os.WriteFile(f.Inventory, []byte(b.String()), 0o600)
}

func validKeyType(t string) bool { return t == "ed25519" || t == "ecdsa" || t == "rsa" }

// checkTools installs the programs a fleet needs with apt-get when some are
// missing, and otherwise names every one still missing with its package.
func checkTools(ctx context.Context, log io.Writer) error {
	tools := map[string]string{
		"ip": "iproute2", "unshare": "util-linux", "nsenter": "util-linux",
		"dockerd": "docker.io", "docker": "docker.io", "iptables": "iptables",
		"/usr/sbin/sshd": "openssh-server", "ssh": "openssh-client", "ssh-keygen": "openssh-client",
		"sudo": "sudo",
	}
	missing := func() (names, pkgs []string) {
		seen := map[string]bool{}
		for tool, pkg := range tools {
			if _, err := exec.LookPath(tool); err != nil {
				names = append(names, fmt.Sprintf("%s (package %s)", tool, pkg))
				if !seen[pkg] {
					seen[pkg] = true
					pkgs = append(pkgs, pkg)
				}
			}
		}
		sort.Strings(names)
		sort.Strings(pkgs)
		return names, pkgs
	}
	if err := aptInstall(ctx, log, func() []string { _, pkgs := missing(); return pkgs }); err != nil {
		return err
	}
	names, _ := missing()
	if len(names) > 0 {
		return fmt.Errorf("testfleet: missing %s", strings.Join(names, ", "))
	}
	return nil
}

// run executes a command on this machine and returns its standard output;
// an error carries the command and its standard error.
func run(ctx context.Context, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	// Killed with the harness: a run killed half-way up (as
	// TestCrashThenCleanStart does) must leave no ssh-keygen behind to
	// write a host key into the next run's fresh directory.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.Bytes(), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.Bytes(), nil
}

// parallel runs fn for every host at once and joins the errors, each
// prefixed by its host.
func parallel(hosts []*Host, fn func(*Host) error) error {
	errs := make([]error, len(hosts))
	var wg sync.WaitGroup
	for i, h := range hosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := fn(h); err != nil {
				errs[i] = fmt.Errorf("host %s: %w", h.Name, err)
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}
