package integration

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/fleetdeploy/fleet/integration/testfleet"
)

const pruneYAML = `project: prune
services:
  app:
    image: REF
    hosts: h1
    healthcheck: {http: /up, port: 8080}
    update: {monitor: 0s}
    history: 3
EXTRA`

const pruneExtra = `  old:
    image: fleet-example/hello:1
    pull: never
    hosts: h1
    healthcheck: {http: /up, port: 8080}
`

// TestPruneKeepsWhatRollbacksNeed deploys 12 releases with history: 3,
// each an image of its own pulled from a registry on h1, and prunes: only
// the images of the last three revisions stay of what fleet pulled, and
// fleet rollback --to each of them still works with the registry gone.
// What is not fleet's stays: an image the user pulled, an image the user
// tagged too, an image and a container of the user's. A stopped container
// of a service fleet.yaml no longer has goes. A host that cannot be
// reached is named, and the others are pruned all the same.
func TestPruneKeepsWhatRollbacksNeed(t *testing.T) {
	ctx := context.Background()
	h1, h2 := fleet.Hosts[0], fleet.Hosts[1]
	cleanupProject(t, "prune")
	if err := h1.StartRegistry(ctx, "", ""); err != nil {
		t.Fatal(err)
	}
	defer h1.StopRegistry(ctx)
	repo := fmt.Sprintf("127.0.0.1:%d/prune/app", testfleet.RegistryPort)
	ref := func(n int) string { return fmt.Sprintf("%s:%d", repo, n) }
	t.Cleanup(func() {
		h1.Run(ctx, "sh", "-c", "docker rm -f prune-bystander; docker rmi -f $(docker images -q "+repo+") user/keep:1 user/five:1")
	})
	// Each release is the example image with a layer of its own, so that
	// removing it frees bytes: a container of it is given other bytes in
	// a file and committed, twelve times (cheaper than twelve builds).
	dir := filepath.Join(h1.Dir, "prune-build")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	if out, err := h1.Run(ctx, "docker", "create", "--name", "prune-build", testfleet.ExampleImage+":1"); err != nil {
		t.Fatalf("docker create: %v\n%s", err, out)
	}
	defer h1.Run(ctx, "docker", "rm", "prune-build")
	noise := filepath.Join(dir, "noise")
	for n := 1; n <= 12; n++ {
		b := make([]byte, 100_000)
		rand.Read(b)
		if err := os.WriteFile(noise, b, 0o644); err != nil {
			t.Fatal(err)
		}
		for _, argv := range [][]string{
			{"docker", "cp", noise, "prune-build:/noise"},
			{"docker", "commit", "--change", fmt.Sprintf("LABEL release=%d", n), "prune-build", ref(n)},
			{"docker", "push", ref(n)},
			{"docker", "rmi", ref(n)},
		} {
			if out, err := h1.Run(ctx, argv...); err != nil {
				t.Fatalf("%v: %v\n%s", argv, err, out)
			}
		}
	}
	// The user's own: release 1 pulled by hand before fleet deploys it,
	// an image, and a container that is not running.
	for _, argv := range [][]string{
		{"docker", "pull", ref(1)},
		{"docker", "tag", testfleet.ExampleImage + ":1", "user/keep:1"},
		{"docker", "create", "--name", "prune-bystander", testfleet.ExampleImage + ":2"},
	} {
		if out, err := h1.Run(ctx, argv...); err != nil {
			t.Fatalf("%v: %v\n%s", argv, err, out)
		}
	}

	release := func(n int, extra string) string {
		return strings.NewReplacer("REF", ref(n), "EXTRA", extra).Replace(pruneYAML)
	}
	p := newProject(t, release(1, pruneExtra))
	p.expect(0, []string{"Applied"}, "apply", "--yes")
	for n := 2; n <= 12; n++ {
		p.write(release(n, pruneExtra))
		p.expect(0, []string{"1 changed"}, "apply", "--yes")
		if n == 5 {
			if out, err := h1.Run(ctx, "docker", "tag", ref(5), "user/five:1"); err != nil {
				t.Fatalf("docker tag: %v\n%s", err, out)
			}
		}
	}
	// old is stopped by hand, then dropped from fleet.yaml.
	if out, err := h1.Run(ctx, "sh", "-c", "docker stop $(docker ps -q --filter label=fleet.project=prune --filter label=fleet.service=old)"); err != nil {
		t.Fatalf("docker stop: %v\n%s", err, out)
	}
	p.write(release(12, ""))

	present := func() map[int]bool {
		t.Helper()
		out, err := h1.Run(ctx, "docker", "images", "--format", "{{.Tag}}", repo)
		if err != nil {
			t.Fatalf("docker images: %v\n%s", err, out)
		}
		have := map[int]bool{}
		for _, tag := range strings.Fields(string(out)) {
			var n int
			fmt.Sscan(tag, &n)
			have[n] = true
		}
		return have
	}
	// 2 to 9 are fleet's and no kept revision's: 8, but 5 is the user's
	// too.
	out := p.expect(0, []string{"h1: would remove 7 images and 1 stopped container", "kept: also tagged user/five:1", "5 hosts: would remove 7 images and 1 stopped container"}, "prune", "--dry-run")
	t.Logf("fleet prune --dry-run:\n%s", out)
	if have := present(); len(have) != 12 {
		t.Fatalf("a dry run removed images: %v are left\n%s", have, out)
	}

	if err := h2.CutOff(ctx); err != nil {
		t.Fatal(err)
	}
	out = p.expect(1, []string{"h1: removed 7 images and 1 stopped container", "4 hosts: removed 7 images", "host h2 not pruned: unreachable", "1 of 5 hosts not pruned (h2)"}, "prune", "--connect-timeout", "2s")
	if err := h2.Heal(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("fleet prune:\n%s", out)
	if m := regexp.MustCompile(`h1: removed .*; freed ([0-9.]+)([kM]?)B`).FindStringSubmatch(out); m == nil || m[2] == "" {
		t.Errorf("fleet prune freed no more than a few bytes on h1:\n%s", out)
	}
	have := present()
	for n := 1; n <= 12; n++ {
		// 1 is the user's pull, 5 the user's tag; 10 to 12 are kept.
		want := n == 1 || n == 5 || n >= 10
		if have[n] != want {
			t.Errorf("after fleet prune, release %d on h1: %v, want %v", n, have[n], want)
		}
	}
	for _, check := range []string{
		"docker image inspect user/keep:1 user/five:1 " + testfleet.ExampleImage + ":1",
		"docker container inspect prune-bystander",
		"test -z \"$(docker ps -aq --filter label=fleet.project=prune --filter label=fleet.service=old)\"",
	} {
		if out, err := h1.Run(ctx, "sh", "-c", check+" >/dev/null"); err != nil {
			t.Errorf("after fleet prune, %s: %v\n%s", check, err, out)
		}
	}

	// Without the registry, each kept revision can still be rolled back to.
	if err := h1.StopRegistry(ctx); err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{10, 11, 12} {
		p.expect(0, []string{"1 changed"}, "rollback", "app", "--to", fmt.Sprint(n), "--yes")
		out, err := h1.Run(ctx, "sh", "-c", "docker inspect --format '{{.Config.Image}}' $(docker ps -q --filter label=fleet.project=prune --filter label=fleet.service=app)")
		if err != nil || strings.TrimSpace(string(out)) != ref(n) {
			t.Errorf("after fleet rollback app --to %d, h1 runs %q (%v)", n, out, err)
		}
	}
}
