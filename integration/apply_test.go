package integration

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/fleetdeploy/fleet/integration/testfleet"
)

const rollYAML = `project: roll
services:
  web:
    image: fleet-example/hello:VERSION
    pull: never
    ports: ["8091:8080"]
    env: {EXTRA}
    healthcheck: {http: /up, port: 8080, interval: 500ms}
    update: {parallelism: 2, monitor: 1s, healthy_deadline: 6s}
`

func rollProject(version, extra string) string {
	return strings.NewReplacer("VERSION", version, "EXTRA", extra).Replace(rollYAML)
}

// cleanupProject removes, once the test ends, the project's containers
// and what fleet keeps of it on the hosts (history, lock): the next test
// of the same project starts from nothing.
func cleanupProject(t *testing.T, name string) {
	t.Cleanup(func() {
		eachHost(t, func(h *testfleet.Host) error { return h.RemoveProject(context.Background(), name) })
	})
}

// deployedProject is a project called name, made from fleetYAML and
// applied to the five hosts, removed from them when the test ends.
func deployedProject(t *testing.T, name, fleetYAML string) *project {
	t.Helper()
	return deployedOn(t, name, fleet.Hosts, fleetYAML)
}

// deployedOn is deployedProject for a fleetYAML that places an instance
// on each of hosts.
func deployedOn(t *testing.T, name string, hosts []*testfleet.Host, fleetYAML string) *project {
	t.Helper()
	cleanupProject(t, name)
	p := newProject(t, fleetYAML)
	p.expect(0, []string{fmt.Sprintf("%d changed", len(hosts))}, "apply", "--yes")
	return p
}

// TestRollingUpdate rolls a new version over the five hosts, two at a
// time, while a client keeps asking every host: never fewer than three
// answer. Then a crashing release and a never-healthy one are each rolled
// back, exit 3, with every host serving the previous version.
func TestRollingUpdate(t *testing.T) {
	ctx := context.Background()
	cleanupProject(t, "roll")
	p := newProject(t, rollProject("1", ""))
	p.expect(0, []string{"5 changed"}, "apply", "--yes")
	eachHost(t, func(h *testfleet.Host) error { return serving(ctx, h.Addr+":8091", "1") })

	// Sample availability while version 2 rolls out.
	avail := sampleAvailability(t, "8091")
	p.write(rollProject("2", ""))
	p.expect(0, []string{"5 changed"}, "apply", "--yes")
	samples, worst := avail()
	t.Logf("%d availability samples during the rollout; fewest hosts answering: %d", samples, worst)
	if worst < len(fleet.Hosts)-2 {
		t.Errorf("only %d of %d hosts answered at one point; parallelism 2 allows %d", worst, len(fleet.Hosts), len(fleet.Hosts)-2)
	}
	if samples < 5 {
		t.Errorf("only %d samples: the check saw too little of the rollout", samples)
	}
	eachHost(t, func(h *testfleet.Host) error { return serving(ctx, h.Addr+":8091", "2") })

	for _, mode := range []string{"crash", "unhealthy"} {
		t.Run(mode, func(t *testing.T) {
			p.write(rollProject("1", "HELLO_MODE: "+mode))
			p.expect(3, []string{"ROLLED BACK", "rolled back"}, "apply", "--yes")
			eachHost(t, func(h *testfleet.Host) error { return serving(ctx, h.Addr+":8091", "2") })
			// What runs is exactly revision 2 again: nothing left to do.
			p.write(rollProject("2", ""))
			p.expect(0, []string{"No changes"}, "plan", "--detailed-exitcode")
		})
	}
}

// TestValuesAndSecretsReachTheContainerLiterally sends values full of
// shell metacharacters and a secret: they arrive exactly, run nothing, and
// the secret shows in no output, saved plan or process list.
func TestValuesAndSecretsReachTheContainerLiterally(t *testing.T) {
	ctx := context.Background()
	cleanupProject(t, "lit")
	const nasty = "$(touch /tmp/pwned-env); `touch /tmp/pwned-tick`; 'single' \"double\" \\ ; | & > /tmp/pwned-redirect"
	const secret = "s3cr3t-$(touch /tmp/pwned-secret)-value"
	t.Setenv("FLEET_IT_SECRET", secret)
	p := newProject(t, `project: lit
services:
  web:
    image: fleet-example/hello:1
    pull: never
    hosts: h1
    env:
      NASTY: '`+strings.ReplaceAll(nasty, "'", "''")+`'
    secrets:
      TOKEN: env:FLEET_IT_SECRET
    healthcheck: {tcp: 8080}
`)
	file := filepath.Join(p.dir, "lit.plan")
	planOut := p.expect(2, []string{"Plan: 1 to create"}, "plan", "--detailed-exitcode", "-o", file)
	applyOut := p.expect(0, []string{"1 changed"}, "apply", "--yes")
	jsonOut := p.expect(0, nil, "plan", "--json")
	saved, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	for what, text := range map[string]string{"plan output": planOut, "apply output": applyOut, "plan --json": jsonOut, "saved plan": string(saved)} {
		if strings.Contains(text, "s3cr3t") {
			t.Errorf("the secret's value is in the %s", what)
		}
	}

	h := fleet.Hosts[0]
	env, err := h.Run(ctx, "sh", "-c", "docker inspect --format '{{range .Config.Env}}{{println .}}{{end}}' $(docker ps -q --filter label=fleet.project=lit)")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(env), "NASTY="+nasty+"\n") {
		t.Errorf("NASTY did not arrive literally:\n%s", env)
	}
	if !strings.Contains(string(env), "TOKEN="+secret+"\n") {
		t.Errorf("the secret did not reach the container")
	}
	// The revision records fleet keeps on the host never hold the
	// secret's value.
	if out, _ := h.Run(ctx, "sh", "-c", "grep -rl 's3cr3t-' /var/lib/fleet; true"); strings.TrimSpace(string(out)) != "" {
		t.Errorf("the secret's value is in files fleet wrote on the host: %s", out)
	}
	// Nor anything derived from it: a new value at the secret's source is
	// rolled out, and every label, record and output stays what it was.
	labels := func() string {
		out, err := h.Run(ctx, "sh", "-c", "docker inspect --format '{{json .Config.Labels}}' $(docker ps -q --filter label=fleet.project=lit); cat /var/lib/fleet/lit/revisions/web/*.json")
		if err != nil {
			t.Fatal(err)
		}
		return string(out)
	}
	before := labels()
	t.Setenv("FLEET_IT_SECRET", secret+"-rotated")
	p.expect(2, []string{"secret TOKEN changed", "Plan: 1 to replace"}, "plan", "--detailed-exitcode")
	p.expect(0, []string{"1 changed"}, "apply", "--yes")
	if after := labels(); after != before {
		t.Errorf("a label or record of the container changed with the secret's value alone:\nbefore %s\nafter  %s", before, after)
	}
	spec := regexp.MustCompile(`"spec": ?"[^"]*"`)
	if a, b := spec.FindAllString(jsonOut, -1), spec.FindAllString(p.expect(0, nil, "plan", "--json"), -1); len(a) == 0 || !slices.Equal(a, b) {
		t.Errorf("the spec in plan --json changed with the secret's value alone: %q, then %q", a, b)
	}
	env, err = h.Run(ctx, "sh", "-c", "docker inspect --format '{{range .Config.Env}}{{println .}}{{end}}' $(docker ps -q --filter label=fleet.project=lit)")
	if err != nil || !strings.Contains(string(env), "TOKEN="+secret+"-rotated\n") {
		t.Errorf("the rotated secret did not reach the container (%v)", err)
	}
	if fi, err := os.Stat(file); err != nil {
		t.Error(err)
	} else if fi.Mode().Perm() != 0o600 {
		t.Errorf("the saved plan has mode %v; want 0600", fi.Mode().Perm())
	}
	// Any /tmp/pwned* file means a shell ran a value; the bracket keeps
	// this very command out of the count of processes showing the secret.
	if out, _ := h.Run(ctx, "sh", "-c", "ls /tmp/pwned* 2>/dev/null; ps -eo args | grep -c '[s]3cr3t-' || true"); strings.TrimSpace(string(out)) != "0" {
		t.Errorf("a value was run by a shell, or the secret is in a process's arguments: %q", out)
	}
}

// TestHealthGatesOfEveryKind gates rollouts on the image's own HEALTHCHECK
// and on a command run inside the container (the FROM scratch image has no
// shell and no curl): good releases pass each gate, and a release whose
// command check never passes is rolled back, exit 3.
func TestHealthGatesOfEveryKind(t *testing.T) {
	ctx := context.Background()
	cleanupProject(t, "gates")
	project := func(version, health, extra string) string {
		return `project: gates
services:
  web:
    image: fleet-example/hello:` + version + `
    pull: never
    hosts: [h1, h2]
    ports: ["8093:8080"]
    env: {` + extra + `}
    healthcheck: ` + health + `
    update: {parallelism: 2, monitor: 0s, healthy_deadline: 20s}
`
	}
	// The shared images check themselves once an hour; this one as the
	// example's Dockerfile says.
	ref, err := fleet.BuildExample(ctx, "dockerhc", 0)
	if err == nil {
		err = fleet.LoadImage(ctx, ref, fleet.Hosts[:2]...)
	}
	if err != nil {
		t.Fatal(err)
	}
	p := newProject(t, project("dockerhc", "{docker: true}", ""))
	p.expect(0, []string{"2 changed"}, "apply", "--yes")
	for _, h := range fleet.Hosts[:2] {
		out, err := h.Run(ctx, "sh", "-c", "docker inspect --format '{{.State.Health.Status}}' $(docker ps -q --filter label=fleet.project=gates)")
		if err != nil || strings.TrimSpace(string(out)) != "healthy" {
			t.Errorf("%s: the image's own check says %q (%v) after a rollout gated on it", h.Name, out, err)
		}
	}

	// On a terminal, with the live view of the work under way.
	check := "{cmd: [/hello, check], interval: 200ms, retries: 2}"
	p.write(project("2", check, ""))
	screen, code := p.runTTY("apply", "--yes")
	for _, want := range []string{"web: step 1 of 1, 0 done", "h1/1", "starting the new container", "\x1b[J", "2 changed"} {
		if code != 0 || !strings.Contains(screen, want) {
			t.Errorf("apply on a terminal: exit %d, no %q in:\n%q", code, want, screen)
		}
	}
	for _, h := range fleet.Hosts[:2] {
		if err := serving(ctx, h.Addr+":8093", "2"); err != nil {
			t.Error(err)
		}
	}

	p.write(strings.Replace(project("1", check, "HELLO_MODE: unhealthy"), "healthy_deadline: 20s", "healthy_deadline: 3s", 1))
	screen, code = p.runTTY("apply", "--yes")
	for _, want := range []string{"not healthy yet: /hello exited 1", "ROLLED BACK"} {
		if code != 3 || !strings.Contains(screen, want) {
			t.Errorf("apply of a never-healthy release on a terminal: exit %d, no %q in:\n%q", code, want, screen)
		}
	}
	for _, h := range fleet.Hosts[:2] {
		if err := serving(ctx, h.Addr+":8093", "2"); err != nil {
			t.Error(err)
		}
	}
}

// TestApplyPullsWithRegistryCredentials deploys an image that only a
// password-protected registry has: apply pulls it on the host with the
// credentials from fleet.yaml's registries, for that one pull. A wrong
// password fails before anything changed, naming the host and the image;
// the password shows in no output and stays nowhere on the host.
func TestApplyPullsWithRegistryCredentials(t *testing.T) {
	ctx := context.Background()
	h := fleet.Hosts[2]
	const password = "reg-pw-$(touch /tmp/pwned-registry)"
	registry, ref := withRegistry(t, h, "puller", password)
	cleanupProject(t, "pull")
	p := newProject(t, `project: pull
services:
  web:
    image: `+ref+`
    hosts: `+h.Name+`
    pull: always
    ports: ["8095:8080"]
    healthcheck: {http: /up, port: 8080}
registries:
  "`+registry+`": {username: puller, password: env:FLEET_IT_REGISTRY}
`)
	t.Setenv("FLEET_IT_REGISTRY", "wrong")
	p.expect(1, []string{"host " + h.Name, "pulling " + ref}, "apply", "--yes")
	if n := containersPerHost(t, "pull")[h.Name]; n != 0 {
		t.Errorf("a failed pull left %d containers", n)
	}

	t.Setenv("FLEET_IT_REGISTRY", password)
	out := p.expect(0, []string{"pulled " + ref, "1 changed"}, "apply", "--yes")
	if err := serving(ctx, h.Addr+":8095", "2"); err != nil {
		t.Error(err)
	}
	if strings.Contains(out, "reg-pw") {
		t.Errorf("the registry password is in apply's output:\n%s", out)
	}
	if out, _ := h.Run(ctx, "sh", "-c", "cat /root/.docker/config.json 2>/dev/null; grep -rl reg-pw /root /etc/docker /var/lib/fleet 2>/dev/null; ls /tmp/pwned-registry 2>/dev/null; true"); strings.TrimSpace(string(out)) != "" {
		t.Errorf("the registry login is left on the host, or a shell ran the password: %q", out)
	}
}
