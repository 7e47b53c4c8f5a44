package integration

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fleetdeploy/fleet/integration/testfleet"
)

const reconcileYAML = `project: recon
services:
  web:
    image: fleet-example/hello:VERSION
    pull: never
    replicas: 3
    ports: ["8095:8080"]
    resources: {memory: 64M}
    env: {EXTRA}
    healthcheck: {http: /up, port: 8080, interval: 500ms}
    update: {parallelism: 3, monitor: 500ms, healthy_deadline: 20s}
`

func reconcileProject(version, extra string) string {
	return strings.NewReplacer("VERSION", version, "EXTRA", extra).Replace(reconcileYAML)
}

// reconcile runs fleet reconcile and checks its exit code; it returns
// its output and the metrics file it wrote.
func (p *project) reconcile(code int, args ...string) (out, metrics string) {
	p.t.Helper()
	prom := filepath.Join(p.dir, "fleet.prom")
	stdout, stderr, got := p.run(append([]string{"reconcile", "--metrics-file", prom}, args...)...)
	out = stdout + stderr
	if got != code {
		p.t.Fatalf("fleet reconcile %s: exit %d, want %d\n%s", strings.Join(args, " "), got, code, out)
	}
	b, err := os.ReadFile(prom)
	if err != nil {
		p.t.Fatal(err)
	}
	return out, string(b)
}

// wantSamples checks that the metrics hold each sample, exactly.
func wantSamples(t *testing.T, metrics string, samples ...string) {
	t.Helper()
	for _, s := range samples {
		if !strings.Contains(metrics, s+"\n") {
			t.Errorf("the metrics lack %s:\n%s", s, metrics)
		}
	}
}

// hostsOf returns the hosts that run a container of the project.
func hostsOf(t *testing.T, project string) []*testfleet.Host {
	t.Helper()
	counts := containersPerHost(t, project)
	var on []*testfleet.Host
	for _, h := range fleet.Hosts {
		if counts[h.Name] > 0 {
			on = append(on, h)
		}
	}
	return on
}

// TestReconcileRepairsDriftAndIsSilentOtherwise: what a timer running
// fleet reconcile gets. It deploys, then says nothing while nothing
// drifts; drift made by hand on three hosts (stopped, removed, memory
// changed) is repaired in one run that names each; a host cut off has its
// instance placed on another and the extra removed once it is back; a
// plan beyond --max-changes changes nothing; and the metrics file says
// each of these.
func TestReconcileRepairsDriftAndIsSilentOtherwise(t *testing.T) {
	ctx := context.Background()
	cleanupProject(t, "recon")
	p := newProject(t, reconcileProject("1", ""))

	out, m := p.reconcile(0)
	if !strings.Contains(out, "3 changed") {
		t.Errorf("the first reconcile:\n%s", out)
	}
	wantSamples(t, m, `fleet_changes{project="recon",service="web",kind="create"} 3`,
		`fleet_instances{project="recon",service="web",state="running"} 3`, `fleet_revision{project="recon",service="web"} 1`)

	out, m = p.reconcile(0)
	if out != "" {
		t.Errorf("a reconcile of a converged fleet printed:\n%s", out)
	}
	wantSamples(t, m, `fleet_exit_code{project="recon"} 0`, `fleet_hosts{project="recon",state="up"} 5`,
		`fleet_hosts{project="recon",state="unreachable"} 0`, `fleet_changes{project="recon",service="web",kind="create"} 0`,
		`fleet_drift{project="recon",service="web",kind="start"} 0`,
		`fleet_instances{project="recon",service="web",state="desired"} 3`, `fleet_instances{project="recon",service="web",state="running"} 3`)

	// Drift made by hand on each of the three hosts.
	on := hostsOf(t, "recon")
	if len(on) != 3 {
		t.Fatalf("the service runs on %d hosts, want 3", len(on))
	}
	for i, cmd := range []string{"docker stop", "docker rm -f", "docker update --memory 32M"} {
		if _, err := on[i].Run(ctx, "sh", "-c", cmd+" $(docker ps -q --filter label=fleet.project=recon)"); err != nil {
			t.Fatal(err)
		}
	}
	out, m = p.reconcile(0)
	t.Logf("the repair said:\n%s", out)
	for _, want := range []string{on[0].Name, "container exited", "container missing", on[2].Name, "in place", "3 changed"} {
		if !strings.Contains(out, want) {
			t.Errorf("the repair does not say %q:\n%s", want, out)
		}
	}
	wantSamples(t, m, `fleet_drift{project="recon",service="web",kind="start"} 1`, `fleet_drift{project="recon",service="web",kind="create"} 1`,
		`fleet_drift{project="recon",service="web",kind="update"} 1`, `fleet_changes{project="recon",service="web",kind="start"} 1`,
		`fleet_changes{project="recon",service="web",kind="create"} 1`, `fleet_changes{project="recon",service="web",kind="update"} 1`,
		`fleet_instances{project="recon",service="web",state="running"} 3`, `fleet_exit_code{project="recon"} 0`)
	if out, _ = p.reconcile(0); out != "" {
		t.Errorf("the reconcile after the repair printed:\n%s", out)
	}

	// A host cut off: its instance goes elsewhere; back, the extra goes.
	gone := hostsOf(t, "recon")[0]
	if err := gone.CutOff(ctx); err != nil {
		t.Fatal(err)
	}
	out, m = p.reconcile(0)
	gone.Heal(ctx)
	t.Logf("with %s cut off:\n%s", gone.Name, out)
	if !strings.Contains(out, gone.Name) || !strings.Contains(out, "1 changed") {
		t.Errorf("the reconcile with %s cut off:\n%s", gone.Name, out)
	}
	wantSamples(t, m, `fleet_hosts{project="recon",state="unreachable"} 1`, `fleet_hosts{project="recon",state="up"} 4`,
		`fleet_instances{project="recon",service="web",state="running"} 3`, `fleet_exit_code{project="recon"} 0`)
	out, m = p.reconcile(0)
	if !strings.Contains(out, gone.Name) || !strings.Contains(out, "1 changed") {
		t.Errorf("the reconcile once %s is back:\n%s", gone.Name, out)
	}
	wantSamples(t, m, `fleet_changes{project="recon",service="web",kind="remove"} 1`)
	total := 0
	for _, n := range containersPerHost(t, "recon") {
		total += n
	}
	if total != 3 {
		t.Errorf("%d containers of the service once the host is back, want 3", total)
	}

	// More changes than allowed: nothing changes.
	p.write(reconcileProject("2", ""))
	out, m = p.reconcile(1, "--max-changes", "2")
	if !strings.Contains(out, "3 changes, more than --max-changes 2: nothing was changed") {
		t.Errorf("beyond --max-changes:\n%s", out)
	}
	wantSamples(t, m, `fleet_exit_code{project="recon"} 1`, `fleet_revision{project="recon",service="web"} 1`)
	for _, h := range hostsOf(t, "recon") {
		if err := wantContainers(ctx, h, "recon", 1, "1"); err != nil {
			t.Errorf("%s: %v", h.Name, err)
		}
	}
}

// TestTwoReconcilesAtOnce: one does the work; the other, started on the
// same machine meanwhile, exits 4 at once in one line naming the first,
// before it contacts any host. A reconcile that meets an apply's deploy
// lock on the hosts exits 4 in one line too.
func TestTwoReconcilesAtOnce(t *testing.T) {
	cleanupProject(t, "recon")
	p := newProject(t, reconcileProject("1", ""))
	p.reconcile(0)
	// A release whose instances take a while to become healthy holds
	// the locks long enough.
	p.write(reconcileProject("2", "HELLO_MODE: slow, HELLO_HEALTHY_AFTER: 3s"))
	first, firstOut := backgroundCommand(t, p, "reconcile")
	untilLocked(t, hostsOf(t, "recon")[0], "recon", firstOut)
	start := time.Now()
	out, m := p.reconcile(4)
	t.Logf("the second reconcile ended after %s", time.Since(start).Round(time.Millisecond))
	oneLine(t, out, "held by another fleet reconcile (pid ")
	wantSamples(t, m, `fleet_exit_code{project="recon"} 4`, `fleet_lock_held{project="recon"} 1`)
	if err := first.Wait(); err != nil {
		t.Fatalf("the first reconcile: %v\n%s", err, firstOut.String())
	}
	for _, h := range hostsOf(t, "recon") {
		if err := wantContainers(context.Background(), h, "recon", 1, "2"); err != nil {
			t.Errorf("%s: %v", h.Name, err)
		}
	}

	p.write(reconcileProject("1", "HELLO_MODE: slow, HELLO_HEALTHY_AFTER: 3s"))
	apply, applyOut := backgroundApply(t, p)
	untilLocked(t, hostsOf(t, "recon")[0], "recon", applyOut)
	out, _ = p.reconcile(4)
	oneLine(t, out, "is held by root@")
	if err := apply.Wait(); err != nil {
		t.Fatalf("the apply: %v\n%s", err, applyOut.String())
	}
}

// oneLine checks that out is one line that says want.
func oneLine(t *testing.T, out, want string) {
	t.Helper()
	if lines := strings.Split(strings.TrimSpace(out), "\n"); len(lines) != 1 || !strings.Contains(out, want) {
		t.Errorf("said, in %d lines:\n%s\nwant one line saying %q", len(lines), out, want)
	}
}
