package integration

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/fleetdeploy/fleet/executor"
	"github.com/fleetdeploy/fleet/integration/testfleet"
)

// The tests in this file drive hosts through the executor: real sshd, real
// dockerd, known_hosts as users have it.

// target is how the inventory would describe h: root with the fleet's key,
// checked against the fleet's known_hosts.
func target(h *testfleet.Host) executor.Target {
	return executor.Target{
		Name: h.Name, Address: h.Addr, User: "root",
		IdentityFiles:   []string{fleet.IdentityFile},
		KnownHostsFiles: []string{fleet.KnownHosts},
	}
}

func targets(hosts ...*testfleet.Host) []executor.Target {
	if len(hosts) == 0 {
		hosts = fleet.Hosts
	}
	var ts []executor.Target
	for _, h := range hosts {
		ts = append(ts, target(h))
	}
	return ts
}

// newExecutor returns an executor for one test, without the agent of
// whoever runs the tests, closed at the end of the test.
func newExecutor(t *testing.T, ctx context.Context, opts executor.Options) *executor.Executor {
	t.Helper()
	opts.AgentSocket = "none"
	e := executor.New(ctx, opts)
	t.Cleanup(func() { e.Close() })
	return e
}

func hostnames(t *testing.T, ctx context.Context, e *executor.Executor, ts []executor.Target) ([]executor.Result[string], error) {
	t.Helper()
	return executor.Map(ctx, e, ts, "asking its name", func(ctx context.Context, c *executor.Conn) (string, error) {
		out, err := c.Output(ctx, "hostname")
		return strings.TrimSpace(string(out)), err
	})
}

func TestStrictHostKeysWithOnlyEd25519Known(t *testing.T) {
	// Every host offers rsa, ecdsa and ed25519; known_hosts holds ed25519
	// alone (TestHostsOfferThreeKeyTypesKnownHostsHoldsOne).
	ctx := context.Background()
	e := newExecutor(t, ctx, executor.Options{HostKeyPolicy: executor.Strict})
	res, err := hostnames(t, ctx, e, targets())
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res {
		if r.Value != r.Host {
			t.Errorf("%s calls itself %q", r.Host, r.Value)
		}
	}
}

func TestStrictHostKeysWithOneOtherTypeKnown(t *testing.T) {
	// known_hosts written by ssh-keyscan with one key type at a time: the
	// executor asks each host for exactly that type.
	ctx := context.Background()
	h := fleet.Hosts[0]
	for _, typ := range []string{"rsa", "ecdsa", "ed25519"} {
		t.Run(typ, func(t *testing.T) {
			out, err := exec.CommandContext(ctx, "ssh-keyscan", "-T", "5", "-t", typ, h.Addr).Output()
			if err != nil {
				t.Fatal(err)
			}
			kh := filepath.Join(t.TempDir(), "known_hosts")
			if err := os.WriteFile(kh, out, 0o600); err != nil {
				t.Fatal(err)
			}
			tg := target(h)
			tg.KnownHostsFiles = []string{kh}
			e := newExecutor(t, ctx, executor.Options{})
			c, err := e.Connect(ctx, tg)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := c.Output(ctx, "true"); err != nil {
				t.Error(err)
			}
		})
	}
}

func TestStrictRefusesUnknownHost(t *testing.T) {
	ctx := context.Background()
	empty := filepath.Join(t.TempDir(), "known_hosts")
	e := newExecutor(t, ctx, executor.Options{})
	tg := target(fleet.Hosts[0])
	tg.KnownHostsFiles = []string{empty}
	_, err := e.Connect(ctx, tg)
	var hke *executor.HostKeyError
	if !errors.As(err, &hke) || !hke.Unknown {
		t.Fatalf("connecting to an unknown host under strict: %v, want an unknown-host error", err)
	}
	for _, want := range []string{"host h1", "not in known_hosts", "SHA256:", "accept-new"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if _, err := os.Stat(empty); err == nil {
		t.Error("strict wrote known_hosts")
	}
}

func TestAcceptNewRecordsHostsThenStrictSucceeds(t *testing.T) {
	ctx := context.Background()
	kh := filepath.Join(t.TempDir(), "ssh", "known_hosts")
	ts := targets()
	for i := range ts {
		ts[i].KnownHostsFiles = []string{kh}
	}
	e := newExecutor(t, ctx, executor.Options{HostKeyPolicy: executor.AcceptNew, HashKnownHosts: true})
	if _, err := hostnames(t, ctx, e, ts); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(kh)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) != len(ts) {
		t.Fatalf("known_hosts has %d lines for %d hosts:\n%s", len(lines), len(ts), b)
	}
	for _, l := range lines {
		// Hashed names, and the key OpenSSH itself would have recorded.
		if f := strings.Fields(l); len(f) != 3 || !strings.HasPrefix(f[0], "|1|") || f[1] != "ssh-ed25519" {
			t.Errorf("recorded line %q, want a hashed host and its ssh-ed25519 key", l)
		}
		if strings.Contains(l, "198.18.") {
			t.Errorf("hashed line names the host in clear: %q", l)
		}
	}

	// OpenSSH reads what was recorded.
	h := fleet.Hosts[0]
	args := append([]string{"-o", "UserKnownHostsFile=" + kh}, h.SSHArgs()...)
	if err := runLocal(ctx, "ssh", append(args, "true")...); err != nil {
		t.Errorf("OpenSSH with the recorded known_hosts: %v", err)
	}

	strict := newExecutor(t, ctx, executor.Options{HostKeyPolicy: executor.Strict})
	if _, err := hostnames(t, ctx, strict, ts); err != nil {
		t.Errorf("strict after accept-new: %v", err)
	}
}

// changedKeyKnownHosts writes a known_hosts that holds, for h, an ed25519
// key other than h's: what the client sees when h was reinstalled or
// someone sits in the middle.
func changedKeyKnownHosts(t *testing.T, h *testfleet.Host) string {
	t.Helper()
	dir := t.TempDir()
	key := filepath.Join(dir, "other")
	if err := runLocal(context.Background(), "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key); err != nil {
		t.Fatal(err)
	}
	pub, err := os.ReadFile(key + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(pub))
	kh := filepath.Join(dir, "known_hosts")
	if err := os.WriteFile(kh, []byte("# a comment first\n"+h.Addr+" "+f[0]+" "+f[1]+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return kh
}

func TestChangedHostKeyIsRefused(t *testing.T) {
	ctx := context.Background()
	h := fleet.Hosts[0]
	kh := changedKeyKnownHosts(t, h)
	before, _ := os.ReadFile(kh)
	for _, policy := range []executor.HostKeyPolicy{executor.Strict, executor.AcceptNew} {
		t.Run(string(policy), func(t *testing.T) {
			e := newExecutor(t, ctx, executor.Options{HostKeyPolicy: policy})
			tg := target(h)
			tg.KnownHostsFiles = []string{kh}
			_, err := e.Connect(ctx, tg)
			var hke *executor.HostKeyError
			if !errors.As(err, &hke) || !hke.Changed() {
				t.Fatalf("connecting with a changed key: %v, want a changed-key error", err)
			}
			msg := err.Error()
			t.Log(msg)
			if n := strings.Count(msg, "SHA256:"); n < 2 {
				t.Errorf("error names %d fingerprints, want the presented and the known one: %s", n, msg)
			}
			for _, want := range []string{"host h1", h.Addr, "HOST KEY CHANGED", kh + ":2", "ssh-keygen -R"} {
				if !strings.Contains(msg, want) {
					t.Errorf("error does not say %q: %s", want, msg)
				}
			}
		})
	}
	if after, _ := os.ReadFile(kh); string(after) != string(before) {
		t.Errorf("known_hosts changed after a refused key:\n%s", after)
	}
	// Off is the one policy that lets it through.
	e := newExecutor(t, ctx, executor.Options{HostKeyPolicy: executor.Off})
	tg := target(h)
	tg.KnownHostsFiles = []string{kh}
	if _, err := e.Connect(ctx, tg); err != nil {
		t.Errorf("policy off: %v", err)
	}
}

func TestJumpHostChain(t *testing.T) {
	ctx := context.Background()
	bastion, inner, innermost := fleet.Hosts[1], fleet.Hosts[2], fleet.Hosts[3]
	// The laptop reaches only the bastion; inner only from the bastion;
	// innermost only from inner.
	if err := inner.Isolate(ctx, bastion); err != nil {
		t.Fatal(err)
	}
	defer inner.Unisolate(ctx)
	if err := innermost.Isolate(ctx, inner); err != nil {
		t.Fatal(err)
	}
	defer innermost.Unisolate(ctx)

	e := newExecutor(t, ctx, executor.Options{ConnectTimeout: time.Second})
	if _, err := e.Connect(ctx, target(inner)); err == nil {
		t.Fatal("reached the isolated host directly: the test proves nothing")
	}
	one := target(inner)
	one.Jump = []executor.Target{target(bastion)}
	two := target(innermost)
	two.Jump = []executor.Target{target(bastion), target(inner)}
	res, err := hostnames(t, ctx, e, []executor.Target{one, two})
	if err != nil {
		t.Fatal(err)
	}
	if res[0].Value != inner.Name || res[1].Value != innermost.Name {
		t.Errorf("through jump hosts: %+v", res)
	}

	// Each hop is checked against known_hosts by its own address.
	bad := target(inner)
	bad.Jump = []executor.Target{target(bastion)}
	bad.Jump[0].KnownHostsFiles = []string{changedKeyKnownHosts(t, bastion)}
	_, err = newExecutor(t, ctx, executor.Options{}).Connect(ctx, bad)
	if err == nil || !strings.Contains(err.Error(), "jump host "+bastion.Name) || !strings.Contains(err.Error(), "HOST KEY CHANGED") {
		t.Errorf("jump host with a changed key: %v", err)
	}
}

func TestSudoUserRunsDocker(t *testing.T) {
	ctx := context.Background()
	if err := fleet.AddUser(ctx, "deploy", true); err != nil {
		t.Fatal(err)
	}
	if err := fleet.AddUser(ctx, "nosudo", false); err != nil {
		t.Fatal(err)
	}
	h := fleet.Hosts[4]
	e := newExecutor(t, ctx, executor.Options{})
	tg := target(h)
	tg.User, tg.Sudo = "deploy", true
	c, err := e.Connect(ctx, tg)
	if err != nil {
		t.Fatal(err)
	}
	if out, err := c.Output(ctx, "id", "-un"); err != nil || strings.TrimSpace(string(out)) != "deploy" {
		t.Fatalf("id -un = %q, %v", out, err)
	}
	// Without sudo the user cannot reach the engine...
	if _, err := c.Output(ctx, "docker", "version"); err == nil {
		t.Fatal("deploy reaches docker without sudo: the test proves nothing")
	}
	// ...with it, the engine answers.
	st, err := c.Engine().State(ctx, "sudo-test")
	if err != nil {
		t.Fatal(err)
	}
	// Through sudo the engine is reached by the relay, which prints the
	// host's figures first.
	if st.Facts.DockerVersion == "" || st.Facts.CPUs != runtime.NumCPU() || st.Facts.MemTotal <= 0 || st.Facts.MemAvailable <= 0 || st.Facts.DiskFree <= 0 {
		t.Errorf("facts through sudo: %+v", st.Facts)
	}
	var out strings.Builder
	if err := c.Run(ctx, executor.Cmd{Args: []string{"docker", "image", "inspect", "--format", "ok", testfleet.ExampleImage + ":1"}, Privileged: true, Stdout: &out}); err != nil || strings.TrimSpace(out.String()) != "ok" {
		t.Errorf("privileged docker command: %q, %v", out.String(), err)
	}
	// A file goes up as the login user.
	if err := c.WriteFile(ctx, "/home/deploy/secret.env", strings.NewReader("A=1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got, err := h.Run(ctx, "stat", "-c", "%U %a", "/home/deploy/secret.env"); err != nil || strings.TrimSpace(string(got)) != "deploy 600" {
		t.Errorf("uploaded file: %q, %v", got, err)
	}

	// A user whom sudo asks for a password fails at once, and says why.
	tg.User = "nosudo"
	c, err = e.Connect(ctx, tg)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = c.Engine().State(ctx, "sudo-test")
	if !errors.Is(err, executor.ErrSudoPassword) || !strings.Contains(err.Error(), "host "+h.Name) {
		t.Errorf("sudo wanting a password: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("sudo wanting a password took %s to fail", d)
	}
}

func TestUnresponsiveSSHDEndsWithinDeadline(t *testing.T) {
	ctx := context.Background()
	h := fleet.Hosts[4]
	if err := h.FreezeSSHD(ctx); err != nil {
		t.Fatal(err)
	}
	defer h.ThawSSHD(ctx)
	e := newExecutor(t, ctx, executor.Options{HandshakeTimeout: 2 * time.Second})
	start := time.Now()
	res, err := hostnames(t, ctx, e, targets(fleet.Hosts[0], h))
	took := time.Since(start)
	if took > 5*time.Second {
		t.Errorf("the run took %s with a handshake deadline of 2s", took)
	}
	var errs executor.Errors
	if !errors.As(err, &errs) || len(errs) != 1 || errs[0].Host != h.Name {
		t.Fatalf("error %v, want one for %s", err, h.Name)
	}
	if !strings.Contains(err.Error(), "no answer within 2s") {
		t.Errorf("error does not say what happened: %v", err)
	}
	if res[0].Err != nil || res[0].Value != fleet.Hosts[0].Name {
		t.Errorf("the healthy host's outcome: %+v", res[0])
	}
	t.Logf("%s after %s", err, took.Round(time.Millisecond))

	// Behind the hung host as a bastion, every host fails within one
	// deadline, not one deadline each.
	behind := targets(fleet.Hosts[0], fleet.Hosts[1], fleet.Hosts[2])
	for i := range behind {
		behind[i].Jump = []executor.Target{target(h)}
	}
	e = newExecutor(t, ctx, executor.Options{HandshakeTimeout: 2 * time.Second})
	start = time.Now()
	_, err = hostnames(t, ctx, e, behind)
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("three hosts behind a hung bastion took %s", took)
	}
	if !errors.As(err, &errs) || len(errs) != 3 {
		t.Fatalf("behind a hung bastion: %v", err)
	}
	for _, he := range errs {
		if !strings.Contains(he.Error(), "jump host "+h.Name) {
			t.Errorf("error does not name the bastion: %v", he)
		}
	}
}

func TestCutOffMidCommandEndsByKeepalive(t *testing.T) {
	ctx := context.Background()
	h := fleet.Hosts[2]
	e := newExecutor(t, ctx, executor.Options{KeepaliveInterval: 500 * time.Millisecond, KeepaliveCountMax: 3})
	c, err := e.Connect(ctx, target(h))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { _, err := c.Output(ctx, "sleep", "60"); done <- err }()
	time.Sleep(500 * time.Millisecond)
	if err := h.CutOff(ctx); err != nil {
		t.Fatal(err)
	}
	defer h.Heal(ctx)
	start := time.Now()
	select {
	case err := <-done:
		t.Logf("%v after %s", err, time.Since(start).Round(time.Millisecond))
		if err == nil || !strings.Contains(err.Error(), "host "+h.Name) || !strings.Contains(err.Error(), "keepalive") {
			t.Errorf("command on a cut-off host: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a command on a cut-off host still hangs after 10s")
	}
	// A new session on the dead connection fails at once too.
	if _, err := c.Output(ctx, "true"); err == nil {
		t.Error("a command on the dead connection succeeded")
	}
}

func TestCancelLeavesNothingBehind(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	ctx, cancel := context.WithCancel(context.Background())
	e := executor.New(ctx, executor.Options{AgentSocket: "none"})
	started := make(chan struct{}, len(fleet.Hosts))
	done := make(chan error, 1)
	go func() {
		done <- executor.Each(ctx, e, targets(), "sleeping", func(ctx context.Context, c *executor.Conn) error {
			if _, err := c.Engine().State(ctx, "cancel"); err != nil {
				return err
			}
			started <- struct{}{}
			_, err := c.Output(ctx, "sleep", "60")
			return err
		})
	}()
	for range fleet.Hosts {
		select {
		case <-started:
		case err := <-done:
			t.Fatalf("ended before the cancel: %v", err)
		case <-time.After(20 * time.Second):
			t.Fatal("hosts did not start")
		}
	}
	if n := sshConns(t); n < len(fleet.Hosts) {
		t.Fatalf("%d SSH connections open, want at least %d", n, len(fleet.Hosts))
	}
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("after cancel: %v", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("the run did not end within 2s of the cancel")
	}
	deadline := time.Now().Add(2 * time.Second)
	for sshConns(t) > 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := sshConns(t); n > 0 {
		t.Errorf("%d SSH connections still open after the cancel", n)
	}
}

// sshConns counts this process's established TCP connections to the test
// fleet's sshd.
func sshConns(t *testing.T) int {
	t.Helper()
	b, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		t.Fatal(err)
	}
	inodes := map[string]bool{}
	fds, _ := filepath.Glob("/proc/self/fd/*")
	for _, fd := range fds {
		if l, err := os.Readlink(fd); err == nil && strings.HasPrefix(l, "socket:[") {
			inodes[strings.TrimSuffix(strings.TrimPrefix(l, "socket:["), "]")] = true
		}
	}
	// Remote 198.18.N.x:22, in /proc/net/tcp's little-endian hex.
	prefix := fmt.Sprintf("%02X12C6:0016", fleetSubnet)
	n := 0
	sc := bufio.NewScanner(strings.NewReader(string(b)))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) > 9 && strings.HasSuffix(f[2], prefix) && f[3] == "01" && inodes[f[9]] {
			n++
		}
	}
	return n
}

func TestEngineRunsContainerFromSpec(t *testing.T) {
	ctx := context.Background()
	h := fleet.Hosts[0]
	e := newExecutor(t, ctx, executor.Options{})
	c, err := e.Connect(ctx, target(h))
	if err != nil {
		t.Fatal(err)
	}
	eng := c.Engine()
	nasty := `$(touch /tmp/pwned); '"\` + "`touch /tmp/pwned2`\n$HOME !x * ~"
	spec := executor.ContainerSpec{
		Name:  "exec-test-web-1",
		Image: testfleet.ExampleImage + ":1",
		Labels: map[string]string{
			executor.LabelProject: "exectest", "fleet.service": "web", "fleet.slot": "1", "fleet.revision": "3",
		},
		Env:       map[string]string{"NASTY": nasty, "HELLO_PORT": "8080"},
		Ports:     []executor.Port{{HostPort: 8090, ContainerPort: 8080, Protocol: "tcp"}},
		Volumes:   []executor.Mount{{Source: "exectest-data", Target: "/data"}},
		Networks:  []string{"exectest-net"},
		Restart:   "unless-stopped",
		Memory:    64 << 20,
		CPUs:      0.5,
		StopGrace: 3 * time.Second,
	}
	if err := eng.EnsureNetwork(ctx, "exectest-net", map[string]string{executor.LabelProject: "exectest"}); err != nil {
		t.Fatal(err)
	}
	if err := eng.EnsureNetwork(ctx, "exectest-net", nil); err != nil {
		t.Fatalf("ensuring an existing network: %v", err)
	}
	if err := eng.EnsureVolume(ctx, "exectest-data", nil); err != nil {
		t.Fatal(err)
	}
	id, err := eng.Create(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		eng.Remove(context.Background(), id, true)
		h.Run(context.Background(), "docker", "network", "rm", "exectest-net")
		h.Run(context.Background(), "docker", "volume", "rm", "exectest-data")
	})
	if err := eng.Start(ctx, id); err != nil {
		t.Fatal(err)
	}
	if err := serving(ctx, h.Addr+":8090", "1"); err != nil {
		t.Fatal(err)
	}

	st, err := eng.State(ctx, "exectest")
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Containers) != 1 {
		t.Fatalf("state holds %d containers of the project, want 1", len(st.Containers))
	}
	got := st.Containers[0]
	if got.ID != id || got.Name != spec.Name || !got.Running || got.Image != spec.Image {
		t.Errorf("container read back: id %s name %s running %v image %s", got.ID, got.Name, got.Running, got.Image)
	}
	for k, v := range spec.Labels {
		if got.Labels[k] != v {
			t.Errorf("label %s = %q, want %q", k, got.Labels[k], v)
		}
	}
	if got.Env["NASTY"] != nasty {
		t.Errorf("env NASTY read back as %q, want %q", got.Env["NASTY"], nasty)
	}
	if len(got.Ports) != 1 || got.Ports[0] != spec.Ports[0] {
		t.Errorf("ports read back: %+v", got.Ports)
	}
	if got.Restart != "unless-stopped" || got.Memory != spec.Memory || got.CPUs != 0.5 || got.StopGrace != 3*time.Second {
		t.Errorf("restart %q memory %d cpus %v grace %s", got.Restart, got.Memory, got.CPUs, got.StopGrace)
	}
	if _, ok := got.Networks["exectest-net"]; !ok || len(got.Volumes) != 1 || got.Volumes[0].Source != "exectest-data" {
		t.Errorf("networks %v volumes %+v", got.Networks, got.Volumes)
	}
	version, err := h.Run(ctx, "docker", "version", "--format", "{{.Server.Version}}")
	if err != nil {
		t.Fatal(err)
	}
	if st.Facts.DockerVersion != strings.TrimSpace(string(version)) || st.Facts.CPUs != runtime.NumCPU() || st.Facts.MemTotal <= 0 || st.Facts.MemAvailable <= 0 || st.Facts.MemAvailable > st.Facts.MemTotal || st.Facts.DiskFree <= 0 {
		t.Errorf("facts: %+v; the host says docker %s and has %d CPUs", st.Facts, version, runtime.NumCPU())
	}
	// Without the figures: the same containers, and no memory, CPUs or disk.
	only, err := eng.StateOnly(ctx, "exectest")
	if err != nil {
		t.Fatal(err)
	}
	if len(only.Containers) != 1 || only.Containers[0].ID != id || only.Containers[0].Env["NASTY"] != nasty || only.Facts.DockerVersion != st.Facts.DockerVersion {
		t.Errorf("state without the figures: %d containers, facts %+v", len(only.Containers), only.Facts)
	}
	if only.Facts.CPUs != 0 || only.Facts.MemTotal != 0 || only.Facts.MemAvailable != 0 || only.Facts.DiskFree != 0 {
		t.Errorf("state without the figures has figures: %+v", only.Facts)
	}

	// The value reached the process as it was, and no shell ran any of it.
	pid, err := h.Run(ctx, "docker", "inspect", "--format", "{{.State.Pid}}", id)
	if err != nil {
		t.Fatal(err)
	}
	environ, err := h.Run(ctx, "cat", "/proc/"+strings.TrimSpace(string(pid))+"/environ")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(environ), "\x00NASTY="+nasty+"\x00") && !strings.HasPrefix(string(environ), "NASTY="+nasty+"\x00") {
		t.Errorf("the container's environment lacks NASTY as given: %q", environ)
	}
	for _, f := range []string{"/tmp/pwned", "/tmp/pwned2"} {
		if _, err := h.Run(ctx, "test", "-e", f); err == nil {
			t.Errorf("%s exists on %s: a shell ran a value", f, h.Name)
		}
		if _, err := os.Stat(f); err == nil {
			t.Errorf("%s exists on this machine: a shell ran a value", f)
		}
	}

	// Exec, without a shell, in the container.
	var out strings.Builder
	code, err := eng.Exec(ctx, id, []string{"/hello", "check"}, &out, &out)
	if err != nil || code != 0 {
		t.Errorf("exec /hello check: code %d, %v: %s", code, err, out.String())
	}
	var stdout, stderr strings.Builder
	if err := eng.Logs(ctx, id, executor.LogOptions{Tail: 10}, &stdout, &stderr); err != nil {
		t.Errorf("logs: %v", err)
	}
	// The service logs to standard error.
	if !strings.Contains(stderr.String(), "version 1 listening on :8080") || stdout.Len() != 0 {
		t.Errorf("logs: stdout %q, stderr %q", stdout.String(), stderr.String())
	}
	// Following ends with the context.
	fctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	start := time.Now()
	err = eng.Logs(fctx, id, executor.LogOptions{Follow: true}, io.Discard, io.Discard)
	cancel()
	if err != nil || time.Since(start) > 3*time.Second {
		t.Errorf("following logs until the context ends: %v after %s", err, time.Since(start))
	}

	if err := eng.Stop(ctx, id, time.Second); err != nil {
		t.Fatal(err)
	}
	if err := eng.Stop(ctx, id, time.Second); err != nil {
		t.Errorf("stopping a stopped container: %v", err)
	}
	if c, err := eng.Inspect(ctx, id); err != nil || c.Running {
		t.Errorf("after stop: running %v, %v", c != nil && c.Running, err)
	}
	if err := eng.Remove(ctx, id, false); err != nil {
		t.Fatal(err)
	}
	if _, err := eng.Inspect(ctx, id); !errors.Is(err, executor.ErrNotFound) {
		t.Errorf("inspecting a removed container: %v, want ErrNotFound", err)
	}
	st, err = eng.State(ctx, "exectest")
	if err != nil || len(st.Containers) != 0 {
		t.Errorf("state after remove: %d containers, %v", len(st.Containers), err)
	}
}

func TestEngineImages(t *testing.T) {
	ctx := context.Background()
	h := fleet.Hosts[1]
	e := newExecutor(t, ctx, executor.Options{})
	c, err := e.Connect(ctx, target(h))
	if err != nil {
		t.Fatal(err)
	}
	eng := c.Engine()
	img, err := eng.ImageInspect(ctx, testfleet.ExampleImage+":1")
	if err != nil || img.ID == "" {
		t.Fatalf("inspecting a present image: %+v, %v", img, err)
	}
	if _, err := eng.ImageInspect(ctx, "fleet-example/absent:1"); !errors.Is(err, executor.ErrNotFound) {
		t.Errorf("inspecting an absent image: %v, want ErrNotFound", err)
	}
	// Load a saved image from a stream: tag 1 again under another name.
	if _, err := h.Run(ctx, "docker", "tag", testfleet.ExampleImage+":1", "fleet-example/reloaded:1"); err != nil {
		t.Fatal(err)
	}
	saved, err := h.Run(ctx, "docker", "save", "fleet-example/reloaded:1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.Run(ctx, "docker", "rmi", "fleet-example/reloaded:1"); err != nil {
		t.Fatal(err)
	}
	if err := eng.Load(ctx, strings.NewReader(string(saved))); err != nil {
		t.Fatal(err)
	}
	defer h.Run(ctx, "docker", "rmi", "fleet-example/reloaded:1")
	if _, err := eng.ImageInspect(ctx, "fleet-example/reloaded:1"); err != nil {
		t.Errorf("after load: %v", err)
	}
	// No registry is reachable: a pull fails, naming the host and image.
	pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	err = eng.Pull(pctx, "127.0.0.1:1/fleet/none:1", &executor.RegistryAuth{Username: "u", Password: "p"})
	if err == nil || !strings.Contains(err.Error(), "host "+h.Name) || !strings.Contains(err.Error(), "pulling 127.0.0.1:1/fleet/none:1") {
		t.Errorf("pull from nowhere: %v", err)
	}
	if b, _ := h.Run(ctx, "sh", "-c", "cat /root/.docker/config.json 2>/dev/null"); strings.Contains(string(b), "auths") {
		t.Errorf("registry credentials stored on the host: %s", b)
	}
}

func TestEnginePullsWithCredentialsForOnePull(t *testing.T) {
	ctx := context.Background()
	h := fleet.Hosts[2]
	password := `s3cret $(touch /tmp/pwned) '"`
	_, ref := withRegistry(t, h, "puller", password)
	e := newExecutor(t, ctx, executor.Options{})
	c, err := e.Connect(ctx, target(h))
	if err != nil {
		t.Fatal(err)
	}
	eng := c.Engine()
	if _, err := eng.ImageInspect(ctx, ref); !errors.Is(err, executor.ErrNotFound) {
		t.Fatalf("%s is on the host before the pull: %v", ref, err)
	}
	if err := eng.Pull(ctx, ref, nil); err == nil {
		t.Fatal("pulled without credentials from a registry that wants them")
	}
	if err := eng.Pull(ctx, ref, &executor.RegistryAuth{Username: "puller", Password: "wrong"}); err == nil {
		t.Fatal("pulled with a wrong password")
	}
	if err := eng.Pull(ctx, ref, &executor.RegistryAuth{Username: "puller", Password: password}); err != nil {
		t.Fatal(err)
	}
	defer h.Run(ctx, "docker", "rmi", ref)
	if _, err := eng.ImageInspect(ctx, ref); err != nil {
		t.Errorf("after the pull: %v", err)
	}
	// Nothing of the login stays on the host.
	if out, err := h.Run(ctx, "sh", "-c", "cat /root/.docker/config.json 2>/dev/null; grep -rl puller /root /etc/docker 2>/dev/null; true"); err != nil || strings.TrimSpace(string(out)) != "" {
		t.Errorf("credentials left on the host: %q, %v", out, err)
	}
	if _, err := h.Run(ctx, "test", "-e", "/tmp/pwned"); err == nil {
		t.Error("a shell ran the password")
	}
}

func TestWriteFileIsAtomicAndPrivate(t *testing.T) {
	ctx := context.Background()
	h := fleet.Hosts[0]
	e := newExecutor(t, ctx, executor.Options{})
	c, err := e.Connect(ctx, target(h))
	if err != nil {
		t.Fatal(err)
	}
	dir := "/var/lib/fleet/exectest"
	if _, err := c.Output(ctx, "mkdir", "-p", dir); err != nil {
		t.Fatal(err)
	}
	defer c.Output(ctx, "rm", "-rf", dir)
	secret := "DATABASE_URL=postgres://u:p@db/x?sslmode=require'\"$(id)\n"
	for i := 0; i < 2; i++ { // the second write replaces the first
		if err := c.WriteFile(ctx, dir+"/web.env", strings.NewReader(secret), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	got, err := c.ReadFile(ctx, dir+"/web.env")
	if err != nil || string(got) != secret {
		t.Errorf("read back %q, %v", got, err)
	}
	if out, err := h.Run(ctx, "stat", "-c", "%a", dir+"/web.env"); err != nil || strings.TrimSpace(string(out)) != "600" {
		t.Errorf("mode %q, %v", out, err)
	}
	// A failed write leaves the old file and no temporary one.
	failing := io.MultiReader(strings.NewReader("partial"), errReader{})
	if err := c.WriteFile(ctx, dir+"/web.env", failing, 0o600); err == nil {
		t.Fatal("a write whose source fails succeeded")
	}
	if got, _ := c.ReadFile(ctx, dir+"/web.env"); string(got) != secret {
		t.Errorf("after a failed write: %q", got)
	}
	if out, _ := h.Run(ctx, "ls", "-A", dir); strings.TrimSpace(string(out)) != "web.env" {
		t.Errorf("left in %s: %q", dir, out)
	}
	if _, err := c.ReadFile(ctx, dir+"/absent"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("reading a missing file: %v", err)
	}
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errors.New("source failed") }

func TestTunnelReachesContainer(t *testing.T) {
	// A health check through the SSH connection: the container's bridge
	// address, no port published.
	ctx := context.Background()
	h := fleet.Hosts[3]
	if _, err := h.Run(ctx, "docker", "run", "-d", "--name", "exec-tunnel", testfleet.ExampleImage+":2"); err != nil {
		t.Fatal(err)
	}
	defer h.Run(ctx, "docker", "rm", "-f", "exec-tunnel")
	e := newExecutor(t, ctx, executor.Options{})
	c, err := e.Connect(ctx, target(h))
	if err != nil {
		t.Fatal(err)
	}
	ctr, err := c.Engine().Inspect(ctx, "exec-tunnel")
	if err != nil {
		t.Fatal(err)
	}
	addr := ctr.Networks["bridge"] + ":8080"
	client := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return c.DialContext(ctx, "tcp", addr)
	}}, Timeout: 5 * time.Second}
	var body string
	for range 50 {
		resp, err := client.Get("http://container/version")
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			body = string(b)
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if strings.TrimSpace(body) != "2" {
		t.Errorf("through the tunnel: %q", body)
	}
}

// runLocal runs a program on this machine, failing with its output.
func runLocal(ctx context.Context, name string, args ...string) error {
	if out, err := exec.CommandContext(ctx, name, args...).CombinedOutput(); err != nil {
		return fmt.Errorf("%s: %w: %s", name, err, out)
	}
	return nil
}

func TestManySessionsShareOneConnection(t *testing.T) {
	// sshd refuses an 11th session on a connection (MaxSessions 10): forty
	// commands at once, with the SFTP session and engine streams open
	// beside them, must queue for the executor's slots instead.
	ctx := context.Background()
	h := fleet.Hosts[1]
	e := newExecutor(t, ctx, executor.Options{})
	c, err := e.Connect(ctx, target(h))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Engine().State(ctx, "sessions"); err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 40)
	for i := range 40 {
		go func() {
			if i%10 == 0 {
				_, err := c.Engine().State(ctx, "sessions")
				errs <- err
				return
			}
			_, err := c.Output(ctx, "sleep", "0.2")
			errs <- err
		}()
	}
	for range 40 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	if n := sshConns(t); n != 1 {
		t.Errorf("%d connections to the fleet, want the one", n)
	}
}
