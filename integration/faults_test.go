package integration

// The fault matrix: each test breaks one thing in the middle of a
// deploy, as it breaks on real fleets, and checks what a user would: the
// fleet kept serving, the run's exit code and message name the host and
// what happened, and the next run converges with nothing lost.

import (
	"bufio"
	"context"
	"crypto/rand"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fleetdeploy/fleet/integration/testfleet"
)

const faultYAML = `project: fault
services:
  web:
    image: fleet-example/hello:VERSION
    pull: never
    ports: ["8096:8080"]
    healthcheck: {http: /up, port: 8080, interval: 200ms}
    update: {parallelism: 1, monitor: 0s, healthy_deadline: 10s}
`

func faultProject(version string) string { return strings.ReplaceAll(faultYAML, "VERSION", version) }

// faultRelease deploys version 1 of the fault project to every host and
// writes version 2 for the test's apply.
func faultRelease(t *testing.T) *project {
	t.Helper()
	p := deployedProject(t, "fault", faultProject("1"))
	p.write(faultProject("2"))
	return p
}

// converges checks that the next apply (saying want) brings every host to
// exactly one container of version 2, with nothing left to change.
func converges(t *testing.T, p *project, want []string) {
	t.Helper()
	out := p.expect(0, want, "apply", "--yes")
	t.Logf("the next apply:\n%s", out)
	p.expect(0, []string{"No changes"}, "plan", "--detailed-exitcode")
	for host, n := range containersPerHost(t, "fault") {
		if n != 1 {
			t.Errorf("%s has %d containers of the project, want exactly 1", host, n)
		}
	}
	eachHost(t, func(h *testfleet.Host) error { return serving(context.Background(), h.Addr+":8096", "2") })
}

// ownKnownHosts gives p an inventory of its own, the fleet's with a copy
// of its known_hosts file, and returns that copy's path.
func ownKnownHosts(t *testing.T, p *project) string {
	t.Helper()
	kh := filepath.Join(p.dir, "known_hosts")
	b, err := os.ReadFile(fleet.KnownHosts)
	if err == nil {
		err = os.WriteFile(kh, b, 0o600)
	}
	inv, rerr := os.ReadFile(fleet.Inventory)
	if err == nil {
		err = rerr
	}
	if err != nil {
		t.Fatal(err)
	}
	p.inventory = filepath.Join(p.dir, "inventory.yaml")
	if err := os.WriteFile(p.inventory, []byte(strings.ReplaceAll(string(inv), fleet.KnownHosts, kh)), 0o600); err != nil {
		t.Fatal(err)
	}
	return kh
}

// TestHostKeyChangedBetweenPlanAndApply: a saved plan whose host now
// presents another key than known_hosts holds is refused as a whole,
// before any host is touched, naming the host and the changed key; once
// the key is sorted out, the next apply converges.
func TestHostKeyChangedBetweenPlanAndApply(t *testing.T) {
	ctx := context.Background()
	p := faultRelease(t)
	kh := ownKnownHosts(t, p)
	saved := filepath.Join(p.dir, "plan.json")
	p.expect(0, []string{"5 to replace"}, "plan", "-o", saved)

	good, err := os.ReadFile(kh)
	if err != nil {
		t.Fatal(err)
	}
	h2 := fleet.Hosts[1]
	other, err := os.ReadFile(changedKeyKnownHosts(t, h2))
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, l := range strings.Split(strings.TrimSpace(string(good)), "\n") {
		if !strings.HasPrefix(l, h2.Addr+" ") {
			lines = append(lines, l)
		}
	}
	lines = append(lines, strings.TrimSpace(strings.Split(string(other), "\n")[1]))
	if err := os.WriteFile(kh, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	out := p.expect(1, []string{"h2", "HOST KEY CHANGED", "ssh-keygen -R", "nothing was changed"}, "apply", "--yes", saved)
	t.Logf("apply of the saved plan said:\n%s", out)
	eachHost(t, func(h *testfleet.Host) error { return serving(ctx, h.Addr+":8096", "1") })

	if err := os.WriteFile(kh, good, 0o600); err != nil {
		t.Fatal(err)
	}
	converges(t, p, []string{"5 changed"})
}

// TestDockerdFrozenMidStep: a host's dockerd that stops answering for
// 20 s (SIGSTOP) while its instance is being replaced holds that step up
// and breaks nothing: the fleet keeps serving with at most one instance
// down, the run ends by itself (done, or rolled back naming the host), and
// the next apply converges.
func TestDockerdFrozenMidStep(t *testing.T) {
	p := faultRelease(t)
	h3 := fleet.Hosts[2]
	thaw := func() { h3.Signal("dockerd", syscall.SIGCONT) }
	t.Cleanup(thaw)

	avail := sampleAvailability(t, "8096")
	frozen := false
	run := applyWatching(t, p, func(event string) {
		if !frozen && strings.Contains(event, `"host":"h3"`) && strings.Contains(event, `"what":"replacing`) {
			if n, err := h3.Signal("dockerd", syscall.SIGSTOP); err != nil || n != 1 {
				t.Fatalf("freezing dockerd on h3: %d processes, %v", n, err)
			}
			frozen = true
			time.AfterFunc(20*time.Second, thaw)
		}
	})
	samples, worst := avail()
	all := run.stdout + run.stderr
	if !frozen {
		t.Fatalf("apply never replaced h3's instance:\n%s", all)
	}
	code := run.code
	t.Logf("apply with h3's dockerd frozen for 20 s: exit %d; %d samples, fewest hosts answering %d", code, samples, worst)
	switch {
	case code == 3 && !strings.Contains(all, "h3"):
		t.Errorf("rolled back without naming h3:\n%s", all)
	case code != 0 && code != 3:
		t.Errorf("exit %d, want 0 (done once dockerd answered) or 3 (rolled back):\n%s", code, all)
	}
	if worst < len(fleet.Hosts)-1 {
		t.Errorf("only %d of %d hosts answered at one point; parallelism 1 allows %d", worst, len(fleet.Hosts), len(fleet.Hosts)-1)
	}

	converges(t, p, nil)
}

// TestSSHDRestartedMidStep: sshd restarted on a host while its instance
// is being replaced, as a package upgrade restarts it (the listener goes
// and comes back; the connections it had forked stay), does not disturb
// the run: it goes on over its open connection and ends done, and the
// next run connects to the new sshd.
func TestSSHDRestartedMidStep(t *testing.T) {
	ctx := context.Background()
	p := faultRelease(t)
	h3 := fleet.Hosts[2]
	restarted := false
	run := applyWatching(t, p, func(event string) {
		if !restarted && strings.Contains(event, `"host":"h3"`) && strings.Contains(event, `"what":"replacing`) {
			if err := h3.StopSSHD(ctx); err != nil {
				t.Fatal(err)
			}
			if err := h3.StartSSHD(ctx); err != nil {
				t.Fatal(err)
			}
			restarted = true
		}
	})
	if !restarted {
		t.Fatalf("apply never replaced h3's instance:\n%s", run.stdout+run.stderr)
	}
	if run.code != 0 {
		t.Errorf("apply with h3's sshd restarted in its step: exit %d, want 0\n%s", run.code, run.stdout+run.stderr)
	}
	converges(t, p, nil)
}

// TestConnectionLostMidStep: every SSH connection to a host dropped while
// its new instance waits for its health check (as a broken NAT entry or an
// sshd killed by the OOM killer drops them) does not fail the release: the
// run says so, connects again, sees the instance healthy over the new
// connection and goes on; its lock holds, it ends done, the others serve
// throughout, and nothing is left to change.
func TestConnectionLostMidStep(t *testing.T) {
	p := faultRelease(t)
	// Healthy 2 s after it starts: time to drop the connections while
	// the run waits for it.
	p.write(strings.Replace(faultProject("2"), "    pull: never\n", "    pull: never\n    env: {HELLO_MODE: slow, HELLO_HEALTHY_AFTER: 2s}\n", 1))
	h3 := fleet.Hosts[2]
	avail := sampleAvailability(t, "8096")
	dropped := -1
	run := applyWatching(t, p, func(event string) {
		if dropped < 0 && strings.Contains(event, `"host":"h3"`) && strings.Contains(event, `"what":"waiting for its health check`) {
			n, err := h3.DropSSHConnections()
			if err != nil {
				t.Fatal(err)
			}
			dropped = n
		}
	})
	samples, worst := avail()
	all := run.stdout + run.stderr
	if dropped <= 0 {
		t.Fatalf("no SSH connection of the run to h3 was dropped (%d):\n%s", dropped, all)
	}
	if run.code != 0 {
		t.Errorf("apply with h3's connections dropped in its step: exit %d, want 0\n%s", run.code, all)
	}
	// Said in the health check when the loss cut a call short, and as
	// the host's own event when the next call found it lost.
	for _, want := range []string{"connection lost", "connected again"} {
		if !slices.ContainsFunc(strings.Split(run.stdout, "\n"), func(line string) bool {
			return strings.Contains(line, `"host":"h3"`) && strings.Contains(line, want)
		}) {
			t.Errorf("the run did not say %q for h3:\n%s", want, all)
		}
	}
	if strings.Contains(all, "could not be recorded") {
		t.Errorf("the revision was not recorded over the new connection:\n%s", all)
	}
	for _, line := range strings.Split(run.stdout, "\n") {
		if strings.Contains(line, "connected again") || strings.Contains(line, "connection lost") {
			t.Log(line)
		}
	}
	t.Logf("%d SSH processes killed; %d samples, fewest hosts answering %d", dropped, samples, worst)
	if worst < len(fleet.Hosts)-1 {
		t.Errorf("only %d of %d hosts answered at one point; parallelism 1 allows one down", worst, len(fleet.Hosts))
	}
	converges(t, p, []string{"No changes"})
}

// TestConnectionLostWhileRollingBack: every SSH connection to a host
// dropped as its new instance fails its health check, when the run puts
// it back: the run connects again and puts it back all the same;
// the release counts as rolled back with nothing left behind.
func TestConnectionLostWhileRollingBack(t *testing.T) {
	p := faultRelease(t)
	p.write(strings.NewReplacer("    pull: never\n", "    pull: never\n    env: {HELLO_MODE: unhealthy}\n", "healthy_deadline: 10s", "healthy_deadline: 2s").Replace(faultProject("2")))
	h1 := fleet.Hosts[0]
	dropped := -1
	run := applyWatching(t, p, func(event string) {
		if dropped < 0 && strings.Contains(event, `"host":"h1"`) && strings.Contains(event, `"what":"failed"`) {
			n, err := h1.DropSSHConnections()
			if err != nil {
				t.Fatal(err)
			}
			dropped = n
		}
	})
	all := run.stdout + run.stderr
	if dropped <= 0 {
		t.Fatalf("no SSH connection of the run to h1 was dropped (%d):\n%s", dropped, all)
	}
	if run.code != 3 || strings.Contains(all, "could not be put back") {
		t.Errorf("apply with h1's connections dropped as it rolls back: exit %d, want 3 with every instance put back\n%s", run.code, all)
	}
	if !strings.Contains(all, "connected again") {
		t.Errorf("the run did not say that it connected again:\n%s", all)
	}
	for _, line := range strings.Split(run.stdout, "\n") {
		if strings.Contains(line, `"host":"h1"`) && (strings.Contains(line, "connect") || strings.Contains(line, "back on")) {
			t.Log(line)
		}
	}
	for host, n := range containersPerHost(t, "fault") {
		if n != 1 {
			t.Errorf("%s has %d containers of the project, want exactly 1", host, n)
		}
	}
	eachHost(t, func(h *testfleet.Host) error { return serving(context.Background(), h.Addr+":8096", "1") })
}

// TestHostCutOffMidStep: a host cut off from the network while its
// instance is being replaced fails its step; the run puts the other hosts
// back, says which host it could not put back and why, and exits 3 (or,
// if the lock's lease on that host runs out first, stops as on Ctrl-C,
// naming it); the hosts that answer keep serving throughout. Once the
// host is back, the next apply does not trust what the cut run left there
// unchecked, and converges.
func TestHostCutOffMidStep(t *testing.T) {
	ctx := context.Background()
	p := faultRelease(t)
	h3 := fleet.Hosts[2]
	healed := false
	heal := func() {
		if !healed {
			healed = true
			if err := h3.Heal(ctx); err != nil {
				t.Error(err)
			}
		}
	}
	t.Cleanup(heal)

	avail := sampleAvailability(t, "8096")
	cut := false
	// Cut as its new container is started: the start takes the engine
	// several hundred milliseconds, and the health check comes after, so
	// the step is still under way when the link goes. (Cut at the health
	// check, the step could pass its one probe, with monitor 0s, first.)
	run := applyWatching(t, p, func(event string) {
		if !cut && strings.Contains(event, `"host":"h3"`) && strings.Contains(event, `"what":"starting the new container`) {
			if err := h3.CutOff(ctx); err != nil {
				t.Fatal(err)
			}
			cut = true
		}
	})
	samples, worst := avail()
	all := run.stdout + run.stderr
	if !cut {
		t.Fatalf("apply never started h3's new container:\n%s", all)
	}
	// The cut host answers nobody; of the others, at most the one in its
	// step may be down.
	t.Logf("%d samples, fewest hosts answering %d", samples, worst)
	if worst < len(fleet.Hosts)-2 {
		t.Errorf("only %d of %d hosts answered at one point; with h3 cut off, parallelism 1 allows %d", worst, len(fleet.Hosts), len(fleet.Hosts)-2)
	}
	// Two ends are right, whichever comes first: h3's step fails (its
	// health check, then the keepalives give up) and the others are put
	// back; or the lock's lease on h3 cannot be renewed, and the run stops
	// as on Ctrl-C, its done steps kept. Either way the run names h3.
	switch {
	case run.code == 3:
		if !strings.Contains(all, "h3/3 could not be put back: ") || !strings.Contains(all, "unreachable") {
			t.Errorf("rolled back without saying that h3 could not be put back, and why:\n%s", all)
		}
		for _, h := range fleet.Hosts {
			if h != h3 {
				if err := serving(ctx, h.Addr+":8096", "1"); err != nil {
					t.Error(err)
				}
			}
		}
	case run.code == 1:
		if !strings.Contains(run.stderr, "lost the deploy lock on h3") || !strings.Contains(run.stderr, "run it again once h3 answers") {
			t.Errorf("stopped without naming h3:\n%s", all)
		}
	default:
		t.Errorf("exit %d, want 3 (rolled back) or 1 (stopped, the lock on h3 lost):\n%s", run.code, all)
	}
	t.Logf("the run cut off from h3 ended with exit %d", run.code)

	heal()
	converges(t, p, []string{"never seen healthy"})
}

// watchedRun is what a watched apply printed, and its exit code.
type watchedRun struct {
	stdout, stderr string
	code           int
}

// applyWatching runs "fleet --json apply --yes" on p and hands each event
// it prints to on, as it comes, so that a test can break something at that
// very moment; it returns once the run has ended.
func applyWatching(t *testing.T, p *project, on func(event string)) watchedRun {
	t.Helper()
	cmd := exec.Command(fleetBin, "--ssh-config", "none", "--json", "-f", filepath.Join(p.dir, "fleet.yaml"), "-i", p.inventory, "apply", "--yes")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var said strings.Builder
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		said.WriteString(sc.Text() + "\n")
		on(sc.Text())
	}
	cmd.Wait()
	return watchedRun{said.String(), stderr.String(), cmd.ProcessState.ExitCode()}
}

// TestRegistryFrozenDuringPull: a registry that stops answering (SIGSTOP:
// the kernel still takes connections, nothing answers on them) would
// hold Docker's pull, and the apply, for ever. The pull is given up once
// it makes no progress for --pull-stall-timeout, naming the host, the
// image and the registry; nothing is changed. Once the registry answers
// again, the next apply pulls and deploys.
func TestRegistryFrozenDuringPull(t *testing.T) {
	ctx := context.Background()
	h := fleet.Hosts[3]
	registry, ref := withRegistry(t, h, "", "")
	cleanupProject(t, "frozen")
	p := newProject(t, `project: frozen
services:
  web:
    image: `+ref+`
    hosts: `+h.Name+`
    pull: always
    ports: ["8097:8080"]
    healthcheck: {http: /up, port: 8080}
`)
	if n, err := h.Signal("docker-registry", syscall.SIGSTOP); err != nil || n != 1 {
		t.Fatalf("freezing the registry: %d processes, %v", n, err)
	}
	thaw := func() { h.Signal("docker-registry", syscall.SIGCONT) }
	defer thaw()
	out := p.expect(1, []string{"host " + h.Name, "pulling " + ref, "no progress for 3s", "is the registry " + registry + " answering?"},
		"apply", "--yes", "--pull-stall-timeout", "3s")
	t.Logf("with the registry frozen:\n%s", out)
	if n := containersPerHost(t, "frozen")[h.Name]; n != 0 {
		t.Errorf("a stalled pull left %d containers", n)
	}
	thaw()
	p.expect(0, []string{"pulled " + ref, "1 changed"}, "apply", "--yes", "--pull-stall-timeout", "3s")
	if err := serving(ctx, h.Addr+":8097", "2"); err != nil {
		t.Error(err)
	}
}

// TestFullDisk: a host whose disk is full (its /var/lib/docker and
// /var/lib/fleet on one small filesystem, filled). With no room at all,
// the apply cannot take its lock there, over SFTP or without it; with room
// for the lock but not for the new image, its pull fails; with room for
// neither container, the new container cannot be created and the release
// is rolled back. Each time the run names the host and says that its disk
// is full and what to do, the old instance goes on serving and is the
// only one; once space is freed, the next apply converges.
func TestFullDisk(t *testing.T) {
	ctx := context.Background()
	h := fleet.Hosts[len(fleet.Hosts)-1]
	registry, _ := withRegistry(t, h, "", "")
	// The release to pull: the example with 2 MB of its own, which the
	// host's engine does not hold (only the registry does).
	ref := registry + "/full/web:2"
	noise := make([]byte, 2<<20)
	rand.Read(noise)
	if err := os.WriteFile(filepath.Join(h.Dir, "tmp", "noise"), noise, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, argv := range [][]string{
		{"docker", "create", "--name", "full-build", testfleet.ExampleImage + ":2"},
		{"docker", "cp", "/tmp/noise", "full-build:/noise"},
		{"docker", "commit", "full-build", ref},
		{"docker", "push", ref},
		{"docker", "rmi", ref},
		{"docker", "rm", "full-build"},
	} {
		if out, err := h.Run(ctx, argv...); err != nil {
			t.Fatalf("%v: %v\n%s", argv, err, out)
		}
	}
	cleanupProject(t, "full")
	project := func(image string) string {
		return `project: full
services:
  web:
    image: ` + image + `
    hosts: ` + h.Name + `
    ports: ["8098:8080"]
    healthcheck: {http: /up, port: 8080}
`
	}
	p := newProject(t, project(testfleet.ExampleImage+":1"))
	p.expect(0, []string{"1 changed"}, "apply", "--yes")
	if err := serving(ctx, h.Addr+":8098", "1"); err != nil {
		t.Fatal(err)
	}
	full := []string{"the disk is full", "fleet prune"}
	for _, c := range []struct {
		what  string
		image string
		sftp  bool
		leave int64 // bytes left free
		code  int
		want  []string
	}{
		{"full", ref, true, 0, 1, append(full, "host "+h.Name+": taking the deploy lock")},
		{"full, on a host without SFTP", ref, false, 0, 1, append(full, "host "+h.Name+": taking the deploy lock")},
		{"with room for the lock only", ref, true, 256 << 10, 1, append(full, "host "+h.Name+": the disk is full, pulling "+ref)},
		{"with no room for a container", testfleet.ExampleImage + ":2", true, 32 << 10, 3, append(full, h.Name+"/1: creating container", "rolled back to revision 1")},
	} {
		if !c.sftp {
			if err := h.SetSFTP(ctx, false); err != nil {
				t.Fatal(err)
			}
		}
		free, err := h.FillDisk(c.leave)
		if err != nil {
			t.Fatal(err)
		}
		p.write(project(c.image))
		out := p.expect(c.code, c.want, "apply", "--yes")
		t.Logf("disk %s:\n%s", c.what, out)
		if err := free(); err != nil {
			t.Fatal(err)
		}
		if !c.sftp {
			if err := h.SetSFTP(ctx, true); err != nil {
				t.Fatal(err)
			}
		}
		if err := serving(ctx, h.Addr+":8098", "1"); err != nil {
			t.Errorf("disk %s: %v", c.what, err)
		}
		if n := containersPerHost(t, "full")[h.Name]; n != 1 {
			t.Errorf("disk %s: %d containers of the project on %s, want the one that serves", c.what, n, h.Name)
		}
	}
	p.write(project(ref))
	p.expect(0, []string{"pulled " + ref, "1 changed"}, "apply", "--yes")
	if err := serving(ctx, h.Addr+":8098", "2"); err != nil {
		t.Error(err)
	}
}
