package integration

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fleetdeploy/fleet/integration/testfleet"
)

// The tests in this file prove the harness itself: every later test trusts
// that a host is a real, separate machine that can fail as machines do.

func TestContainerOnEveryHostOverSSH(t *testing.T) {
	ctx := context.Background()
	eachHost(t, func(h *testfleet.Host) error {
		if _, err := h.SSH(ctx, "docker run -d --name harness-hello -p 8080:8080 "+testfleet.ExampleImage+":1"); err != nil {
			return err
		}
		return serving(ctx, h.Addr+":8080", "1")
	})
	t.Cleanup(func() {
		eachHost(t, func(h *testfleet.Host) error {
			_, err := h.SSH(ctx, "docker rm -f harness-hello")
			return err
		})
	})
	// Each host has its own engine: a container is on its host alone.
	out, err := fleet.Hosts[0].SSH(ctx, "docker ps --filter name=harness-hello --format '{{.Names}}'")
	if err != nil || strings.TrimSpace(string(out)) != "harness-hello" {
		t.Fatalf("h1 lists %q (%v), want its one harness-hello", out, err)
	}
	for _, h := range fleet.Hosts {
		name, err := h.SSH(ctx, "hostname")
		if err != nil || strings.TrimSpace(string(name)) != h.Name {
			t.Errorf("%s calls itself %q (%v)", h.Name, name, err)
		}
	}
}

func TestCutOffAndHeal(t *testing.T) {
	ctx := context.Background()
	h := fleet.Hosts[2]
	if _, err := h.SSH(ctx, "docker run -d --name harness-cut -p 8081:8080 "+testfleet.ExampleImage+":2"); err != nil {
		t.Fatal(err)
	}
	defer h.Run(ctx, "docker", "rm", "-f", "harness-cut")
	if err := serving(ctx, h.Addr+":8081", "2"); err != nil {
		t.Fatal(err)
	}

	if err := h.CutOff(ctx); err != nil {
		t.Fatal(err)
	}
	healed := false
	defer func() {
		if !healed {
			h.Heal(ctx)
		}
	}()
	if _, err := h.SSH(ctx, "true"); err == nil {
		t.Fatalf("ssh to cut-off %s succeeded", h.Name)
	} else if !strings.Contains(err.Error(), "timed out") {
		t.Errorf("ssh to cut-off %s: %v, want a time-out (packets dropped, not refused)", h.Name, err)
	}
	if _, err := get(ctx, "http://"+h.Addr+":8081/version"); err == nil {
		t.Errorf("HTTP to cut-off %s succeeded", h.Name)
	}
	// The host itself goes on: its container still runs.
	if out, err := h.Run(ctx, "docker", "inspect", "--format", "{{.State.Running}}", "harness-cut"); err != nil || strings.TrimSpace(string(out)) != "true" {
		t.Errorf("container on cut-off host: running=%q (%v)", out, err)
	}
	// The others are untouched.
	if _, err := fleet.Hosts[0].SSH(ctx, "true"); err != nil {
		t.Errorf("cutting off %s took down h1: %v", h.Name, err)
	}

	if err := h.Heal(ctx); err != nil {
		t.Fatal(err)
	}
	healed = true
	if _, err := h.SSH(ctx, "true"); err != nil {
		t.Errorf("ssh after heal: %v", err)
	}
	if err := serving(ctx, h.Addr+":8081", "2"); err != nil {
		t.Errorf("after heal: %v", err)
	}
}

func TestHostsOfferThreeKeyTypesKnownHostsHoldsOne(t *testing.T) {
	ctx := context.Background()
	h := fleet.Hosts[0]
	out, err := exec.CommandContext(ctx, "ssh-keyscan", "-T", "5", "-t", "rsa,ecdsa,ed25519", h.Addr).Output()
	if err != nil {
		t.Fatal(err)
	}
	offered := map[string]bool{}
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == h.Addr {
			offered[f[1]] = true
		}
	}
	for _, typ := range []string{"ssh-rsa", "ecdsa-sha2-nistp256", "ssh-ed25519"} {
		if !offered[typ] {
			t.Errorf("%s does not offer %s (offers %v)", h.Name, typ, offered)
		}
	}
	kh, err := os.ReadFile(fleet.KnownHosts)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range fleet.Hosts {
		var types []string
		for _, line := range strings.Split(string(kh), "\n") {
			if f := strings.Fields(line); len(f) >= 2 && f[0] == h.Addr {
				types = append(types, f[1])
			}
		}
		if len(types) != 1 || types[0] != "ssh-ed25519" {
			t.Errorf("known_hosts holds %v for %s, want only ssh-ed25519", types, h.Name)
		}
	}
}

func TestDaemonsStopAndStart(t *testing.T) {
	ctx := context.Background()
	h := fleet.Hosts[1]

	if err := h.StopDocker(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := h.SSH(ctx, "docker info"); err == nil || !strings.Contains(err.Error(), "Cannot connect to the Docker daemon") {
		t.Errorf("docker on %s with dockerd stopped: %v, want a refused connection", h.Name, err)
	}
	if err := h.StartDocker(ctx); err != nil {
		t.Fatal(err)
	}
	// The engine comes back with its images: a restart, not a new host.
	if out, err := h.SSH(ctx, "docker image inspect --format ok "+testfleet.ExampleImage+":1"); err != nil || strings.TrimSpace(string(out)) != "ok" {
		t.Errorf("after restarting dockerd: %q, %v", out, err)
	}

	if err := h.StopSSHD(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := h.SSH(ctx, "true"); err == nil || !strings.Contains(err.Error(), "refused") {
		t.Errorf("ssh with sshd stopped: %v, want connection refused", err)
	}
	if err := h.StartSSHD(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := h.SSH(ctx, "true"); err != nil {
		t.Errorf("ssh after restarting sshd: %v", err)
	}
}

const crashChildEnv = "FLEET_TESTFLEET_CRASH_CHILD"

// crashFleet is the fleet the crash test kills half-way up, named and
// placed after the shared one so that concurrent runs stay apart.
func crashFleet(hosts int) testfleet.Options {
	name := fleetName
	if len(name) > 5 {
		name = name[:5]
	}
	return testfleet.Options{Name: "x" + name, Hosts: hosts, Subnet: 100 + fleetSubnet}
}

// crashChild brings up a fleet until the parent test kills it.
func crashChild() {
	f, err := testfleet.Up(context.Background(), crashFleet(3))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	for _, h := range f.Hosts {
		h.Run(context.Background(), "docker", "run", "-d", "--name", "left-behind", "--restart", "always", "-p", "8080:8080", testfleet.ExampleImage+":1")
	}
	fmt.Println("up")
	time.Sleep(time.Hour)
}

// TestCrashThenCleanStart kills a process in the middle of bringing up a
// fleet, checks that a new Up of that fleet starts from nothing, and that
// Down then leaves nothing behind.
func TestCrashThenCleanStart(t *testing.T) {
	ctx := context.Background()
	child := exec.Command(os.Args[0], "-test.run=^$")
	child.Env = append(os.Environ(), crashChildEnv+"=1")
	child.Stderr = os.Stderr
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	// Kill it once its second host has a network namespace: half-way up.
	prefix := "fleet-" + crashFleet(0).Name + "-"
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(netnsList(t), prefix+"h2") && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond)
	child.Process.Signal(syscall.SIGKILL)
	child.Wait()
	if !strings.Contains(netnsList(t), prefix) {
		t.Fatal("the killed run left no namespace: the crash came too late or too early to test anything")
	}

	f, err := testfleet.Up(ctx, crashFleet(2))
	if err != nil {
		t.Fatalf("Up after a crash: %v", err)
	}
	down := false
	defer func() {
		if !down {
			f.Down(ctx)
		}
	}()
	for _, h := range f.Hosts {
		out, err := h.SSH(ctx, "docker ps -aq")
		if err != nil {
			t.Fatal(err)
		}
		if s := strings.TrimSpace(string(out)); s != "" {
			t.Errorf("%s after a clean start has containers %q", h.Name, s)
		}
	}
	if strings.Contains(netnsList(t), prefix+"h3") {
		t.Error("host h3 of the crashed run survived the new Up")
	}

	if err := f.Down(ctx); err != nil {
		t.Fatal(err)
	}
	down = true
	for _, left := range leftovers(t, f) {
		t.Error("left behind: " + left)
	}
}

func netnsList(t *testing.T) string {
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

// leftovers looks for any trace of fleet f, by the means an administrator
// would use, not by the harness's own bookkeeping.
func leftovers(t *testing.T, f *testfleet.Fleet) []string {
	var left []string
	for _, line := range strings.Split(netnsList(t), "\n") {
		if strings.HasPrefix(line, "fleet-"+f.Name+"-") {
			left = append(left, "network namespace "+line)
		}
	}
	links, _ := exec.Command("ip", "-o", "link", "show").Output()
	for _, line := range strings.Split(string(links), "\n") {
		if strings.Contains(line, "flt-"+f.Name) {
			left = append(left, "link "+line)
		}
	}
	if _, err := os.Stat(f.Dir); err == nil {
		left = append(left, "directory "+f.Dir)
	}
	cgroups, _ := filepath.Glob("/sys/fs/cgroup/*/fleet-testfleet/" + f.Name)
	more, _ := filepath.Glob("/sys/fs/cgroup/fleet-testfleet/" + f.Name)
	for _, cg := range append(cgroups, more...) {
		left = append(left, "cgroup "+cg)
	}
	procs, _ := filepath.Glob("/proc/[0-9]*")
	for _, p := range procs {
		cmdline, _ := os.ReadFile(p + "/cmdline")
		stat, _ := os.ReadFile(p + "/stat")
		if strings.Contains(string(stat), ") Z ") {
			continue // exited, waiting for its parent to reap it
		}
		if strings.Contains(string(cmdline), f.Dir) || strings.Contains(string(cmdline), "fleet-"+f.Name+"-") {
			left = append(left, "process "+p+": "+strings.ReplaceAll(string(cmdline), "\x00", " "))
		}
		if mounts, err := os.ReadFile(p + "/mountinfo"); err == nil && strings.Contains(string(mounts), f.Dir) {
			left = append(left, "mounts in "+p)
		}
	}
	return left
}
