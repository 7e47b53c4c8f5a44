package integration

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fleetdeploy/fleet/integration/testfleet"
	"github.com/fleetdeploy/fleet/plan"
)

// laptop runs the docker CLI against the test fleet's laptop engine, the
// one that plays the user's machine.
func laptop(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("docker", append([]string{"--host", fleet.LaptopDocker}, args...)...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "DOCKER_BUILDKIT=0")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("docker %v: %v\n%s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

// TestPushSendsOnlyTheLayersAHostLacks: images built on the laptop reach
// the hosts with fleet push, without a registry. After the hosts hold v1
// (the example, a 2 MiB base layer, a 1 MiB app layer), v2, which changes
// only the app layer, costs each host that layer and a few KiB, as its
// network link counts it; a host that holds v2 is sent nothing; one that
// never had v1 gets the base layer too. Every host ends with v2 under its
// name and with the laptop's image ID, and runs it.
func TestPushSendsOnlyTheLayersAHostLacks(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	noise := func(name string, n int) {
		b := make([]byte, n)
		rand.Read(b)
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	noise("base.bin", 2<<20)
	os.WriteFile(filepath.Join(dir, "Dockerfile.base"), []byte("FROM "+testfleet.ExampleImage+":2\nCOPY base.bin /base.bin\n"), 0o644)
	laptop(t, dir, "build", "-q", "-f", "Dockerfile.base", "-t", "push-test/base", ".")
	ids := map[string]string{}
	for _, v := range []string{"1", "2"} {
		noise("app.bin", 1<<20)
		os.WriteFile(filepath.Join(dir, "Dockerfile.app"), []byte("FROM push-test/base\nCOPY app.bin /app.bin\n"), 0o644)
		laptop(t, dir, "build", "-q", "-f", "Dockerfile.app", "-t", "push-test/app:"+v, ".")
		ids[v] = laptop(t, dir, "image", "inspect", "--format", "{{.Id}}", "push-test/app:"+v)
	}
	t.Cleanup(func() {
		laptop(t, dir, "rmi", "push-test/app:1", "push-test/app:2", "push-test/base")
		for _, h := range fleet.Hosts {
			h.Run(ctx, "docker", "rmi", "push-test/app:1", "push-test/app:2")
		}
	})
	var appLayer int64 = 1 << 20

	p := newProject(t, "project: pushed\nservices: {}\n")
	p.env = []string{"DOCKER_HOST=" + fleet.LaptopDocker}
	three := fleet.Hosts[:3]
	hostList := "h1,h2,h3"
	p.expect(0, []string{"h1: push-test/app:1 3.", "(1 of 3 layers there already)"}, "--hosts", hostList, "push", "push-test/app:1")

	received := func(hs []*testfleet.Host) []int64 {
		var n []int64
		for _, h := range hs {
			b, err := h.ReceivedBytes()
			if err != nil {
				t.Fatal(err)
			}
			n = append(n, b)
		}
		return n
	}
	before := received(three)
	out := p.expect(0, nil, "--hosts", hostList, "--json", "push", "push-test/app:2")
	after := received(three)
	var report struct {
		Hosts map[string][]struct {
			Bytes   int64 `json:"bytes_sent"`
			Already bool  `json:"already_there"`
			Whole   bool  `json:"whole"`
		}
	}
	if err := json.Unmarshal([]byte(out), &report); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for i, h := range three {
		link := after[i] - before[i]
		sent := report.Hosts[h.Name][0].Bytes
		t.Logf("%s: fleet sent %d bytes, the host's link received %d: %.3f× the changed layer", h.Name, sent, link, float64(link)/float64(appLayer))
		if max := appLayer*105/100 + 16<<10; link > max || report.Hosts[h.Name][0].Whole {
			t.Errorf("%s received %d bytes for a %d-byte layer (at most %d allowed)", h.Name, link, appLayer, max)
		}
		if got := strings.TrimSpace(string(must(h.Run(ctx, "docker", "image", "inspect", "--format", "{{.Id}}", "push-test/app:2")))); got != ids["2"] {
			t.Errorf("%s: push-test/app:2 is %s, want the laptop's %s", h.Name, got, ids["2"])
		}
	}

	// --gzip: a layer that compresses costs a fraction of itself.
	os.WriteFile(filepath.Join(dir, "text.bin"), []byte(strings.Repeat("fleet pushes only what a host lacks\n", 1<<20/36)), 0o644)
	os.WriteFile(filepath.Join(dir, "Dockerfile.text"), []byte("FROM push-test/base\nCOPY text.bin /text.bin\n"), 0o644)
	laptop(t, dir, "build", "-q", "-f", "Dockerfile.text", "-t", "push-test/text:1", ".")
	t.Cleanup(func() {
		laptop(t, dir, "rmi", "push-test/text:1")
		h1 := fleet.Hosts[0]
		h1.Run(ctx, "docker", "rmi", "push-test/text:1")
	})
	before = received(three[:1])
	p.expect(0, []string{"h1: push-test/text:1 "}, "--hosts", "h1", "push", "--gzip", "push-test/text:1")
	if link := received(three[:1])[0] - before[0]; link > appLayer/4 {
		t.Errorf("h1 received %d bytes for a 1 MiB layer of text, gzipped", link)
	} else {
		t.Logf("h1 received %d bytes for a 1 MiB layer of text, gzipped", link)
	}
	if got := strings.TrimSpace(string(must(fleet.Hosts[0].Run(ctx, "docker", "image", "inspect", "--format", "{{.Id}}", "push-test/text:1")))); got != laptop(t, dir, "image", "inspect", "--format", "{{.Id}}", "push-test/text:1") {
		t.Errorf("h1: push-test/text:1 is %s after a gzipped push, not the laptop's image", got)
	}

	// Again: nothing to send. A host that never had v1 gets the base too.
	p.expect(0, []string{"h1: push-test/app:2 already there", "h3: push-test/app:2 already there"}, "--hosts", hostList, "push", "push-test/app:2")
	h4 := fleet.Hosts[3]
	out = p.expect(0, []string{"h4: push-test/app:2 3."}, "--hosts", "h4", "push", "push-test/app:2")
	t.Log(out)

	// A host without room for what it lacks is told before anything is
	// sent. Ctrl-C in the middle of a push leaves no image and no
	// temporary file behind, here or on the host, and the next push sends
	// the image.
	h5 := fleet.Hosts[4]
	free, err := h5.FillDisk(1 << 20)
	if err != nil {
		t.Fatal(err)
	}
	p.expect(1, []string{"h5: not pushed: only 1.", "free for Docker, and image push-test/app:2 needs about", "fleet prune"}, "--hosts", "h5", "push", "push-test/app:2")
	if err := free(); err != nil {
		t.Fatal(err)
	}
	if err := h5.Delay(ctx, 50*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	p.env = append(p.env, "TMPDIR="+tmp)
	start, err := h5.ReceivedBytes()
	if err != nil {
		t.Fatal(err)
	}
	run := p.start(nil, "--hosts", "h5", "push", "push-test/app:2")
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(10 * time.Millisecond) {
		if n, _ := h5.ReceivedBytes(); n-start > 1<<20 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the push to h5 never got going:\n%s", run)
		}
	}
	run.cmd.Process.Signal(syscall.SIGINT)
	code, out := run.wait()
	if sent, _ := h5.ReceivedBytes(); code != 130 || sent-start > 3<<20 {
		t.Fatalf("fleet push interrupted after 1 MiB: exit %d after %d bytes sent (want 130 before the whole image)\n%s", code, sent-start, out)
	}
	if left, _ := os.ReadDir(tmp); len(left) > 0 {
		t.Errorf("an interrupted push left %d files in TMPDIR: %v", len(left), left)
	}
	if _, err := h5.Run(ctx, "docker", "image", "inspect", "push-test/app:2"); err == nil {
		t.Error("an interrupted push left push-test/app:2 on h5")
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		left, _ := h5.Run(ctx, "sh", "-c", "ls /var/lib/docker/tmp")
		if strings.TrimSpace(string(left)) == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("an interrupted push left on h5, in /var/lib/docker/tmp: %s", left)
			break
		}
	}
	// Again, on a terminal: its progress while it runs, host by host.
	screen, code := p.runTTY("--hosts", "h5", "push", "push-test/app:2")
	h5.Delay(ctx, 0)
	if code != 0 || !strings.Contains(screen, "pushing: 0 of 1 hosts done, ") || !strings.Contains(screen, "  h5: ") || !strings.Contains(screen, "h5: push-test/app:2 3.") {
		t.Errorf("fleet push on a terminal: exit %d, want 0 with its progress, the bytes h5 was sent, then the report:\n%q", code, screen)
	}

	// image_delivery: push: a build on the laptop and fleet apply are
	// the whole release, even when the tag stays the same.
	cleanupProject(t, "pushed")
	p.write(`project: pushed
services:
  web:
    image: push-test/app:live
    image_delivery: push
    hosts: h1,h2,h3,h4
    ports: ["8099:8080"]
    healthcheck: {http: /up, port: 8080}
`)
	four := append(three, h4)
	t.Cleanup(func() {
		laptop(t, dir, "rmi", "push-test/app:live")
		for _, h := range four {
			h.Run(ctx, "docker", "rmi", "push-test/app:live")
		}
	})
	build := func() string {
		noise("app.bin", 1<<20)
		laptop(t, dir, "build", "-q", "-f", "Dockerfile.app", "-t", "push-test/app:live", ".")
		return laptop(t, dir, "image", "inspect", "--format", "{{.Id}}", "push-test/app:live")
	}
	// A saved plan carries out the image it showed or nothing, not one
	// built since under the same tag: here a plan of creates alone,
	// whose actions read the same with either image.
	planned := build()
	saved := filepath.Join(p.dir, "release.plan")
	p.expect(0, []string{"4 to create"}, "plan", "-o", saved)
	rebuilt := build()
	p.expect(1, []string{"release.plan is stale, nothing was changed", "image push-test/app:live on this machine is " + plan.ShortImageID(rebuilt) + " now, not " + plan.ShortImageID(planned) + " as planned"}, "apply", saved)
	for _, h := range four {
		if ids := strings.TrimSpace(string(must(h.Run(ctx, "docker", "ps", "-aq", "--filter", "label=fleet.project=pushed")))); ids != "" {
			t.Errorf("after the stale plan, %s has containers of the project: %s", h.Name, ids)
		}
	}
	var id string
	for round, want := range []string{"4 to create", "4 to replace"} {
		id = build()
		out := p.expect(0, []string{want, "is pushed first from this machine, only the layers each host lacks: h1 1.0", "h4 1.0"}, "plan")
		if round == 1 {
			if !strings.Contains(out, "image push-test/app:live here is "+strings.TrimPrefix(id, "sha256:")[:12]) {
				t.Errorf("the plan does not say that the laptop's image changed:\n%s", out)
			}
			t.Logf("the plan after a build under the same tag:\n%s", out)
		}
		p.expect(0, []string{"pushed push-test/app:live (1.0", "4 changed"}, "apply", "--yes")
		for _, h := range four {
			running := strings.TrimSpace(string(must(h.Run(ctx, "sh", "-c", "docker inspect --format '{{.Image}}' $(docker ps -q --filter label=fleet.project=pushed)"))))
			if running != id {
				t.Errorf("round %d: %s runs %s, want the laptop's %s", round+1, h.Name, running, id)
			}
			if err := serving(ctx, h.Addr+":8099", "2"); err != nil {
				t.Error(err)
			}
		}
		p.expect(0, []string{"No changes"}, "plan")
	}

	// A timer's reconcile on a machine without the image (no engine at
	// all here) repairs with what the hosts have, and says it could not
	// push; the commands that only look do not need the image.
	if _, err := fleet.Hosts[0].Run(ctx, "sh", "-c", "docker stop $(docker ps -q --filter label=fleet.project=pushed)"); err != nil {
		t.Fatal(err)
	}
	laptopEnv := p.env
	p.env = []string{"DOCKER_HOST=unix:///nonexistent/docker.sock"}
	p.expect(0, []string{"no local Docker engine to read image push-test/app:live from", "the hosts keep the image they have", "h1"}, "reconcile")
	if err := serving(ctx, fleet.Hosts[0].Addr+":8099", "2"); err != nil {
		t.Error(err)
	}
	p.expect(0, []string{"push-test/app:live"}, "status")
	p.env = laptopEnv

	// What is not in the laptop's engine is named.
	p.expect(1, []string{"image push-test/app:9 is not in the local Docker engine", "docker images"}, "push", "push-test/app:9")
}

func must(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}
