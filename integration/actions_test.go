package integration

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/fleetdeploy/fleet/integration/testfleet"
)

const aloneYAML = `project: alone
services:
  web:
    image: fleet-example/hello:VERSION
    pull: never
    hosts: HOSTS
    ports: ["8093:8080"]
    resources: {memory: MEMORY}
    healthcheck: {http: /up, port: 8080, interval: 500ms}
    update: {parallelism: 2, monitor: 500ms, healthy_deadline: 20s}
`

func aloneProject(version, hosts, memory string) string {
	return strings.NewReplacer("VERSION", version, "HOSTS", hosts, "MEMORY", memory).Replace(aloneYAML)
}

// containersOf lists the project's containers on h as "name state image",
// one line each.
func containersOf(ctx context.Context, h *testfleet.Host, project string) ([]string, error) {
	out, err := h.Run(ctx, "docker", "ps", "-a", "--filter", "label=fleet.project="+project,
		"--format", "{{.Names}} {{.State}} {{.Image}}")
	if err != nil {
		return nil, err
	}
	var list []string
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if line != "" {
			list = append(list, line)
		}
	}
	return list, nil
}

// wantContainers checks that h runs exactly n containers of the project,
// all running the image of version.
func wantContainers(ctx context.Context, h *testfleet.Host, project string, n int, version string) error {
	got, err := containersOf(ctx, h, project)
	if err != nil {
		return err
	}
	if len(got) != n {
		return fmt.Errorf("%d containers of %s, want %d: %v", len(got), project, n, got)
	}
	for _, c := range got {
		if !strings.HasSuffix(c, " running fleet-example/hello:"+version) {
			return fmt.Errorf("container %s: want running fleet-example/hello:%s", c, version)
		}
	}
	return nil
}

// TestEveryActionAlone applies plans made of one kind of action only — a
// start (a container stopped by hand), an update in place, removals (a
// scale-down) — and then all kinds at once with a replacement: each one
// converges, says what it changed, and the next plan has nothing to do.
func TestEveryActionAlone(t *testing.T) {
	ctx := context.Background()
	cleanupProject(t, "alone")
	p := newProject(t, aloneProject("1", "h1,h2,h3,h4,h5", "64M"))
	p.expect(0, []string{"5 changed"}, "apply", "--yes")

	t.Run("start", func(t *testing.T) {
		h := fleet.Hosts[2]
		if _, err := h.Run(ctx, "sh", "-c", "docker stop $(docker ps -q --filter label=fleet.project=alone)"); err != nil {
			t.Fatal(err)
		}
		p.expect(2, []string{">   h3", "container exited", "Plan: 1 to start"}, "plan", "--detailed-exitcode")
		p.expect(0, []string{"1 changed", "4 unchanged"}, "apply", "--yes")
		if err := serving(ctx, h.Addr+":8093", "1"); err != nil {
			t.Error(err)
		}
		p.expect(0, []string{"No changes"}, "plan", "--detailed-exitcode")
	})

	t.Run("update in place", func(t *testing.T) {
		p.write(aloneProject("1", "h1,h2,h3,h4,h5", "96M"))
		p.expect(2, []string{"Plan: 5 to update in place"}, "plan", "--detailed-exitcode")
		p.expect(0, []string{"5 changed"}, "apply", "--yes")
		eachHost(t, func(h *testfleet.Host) error {
			out, err := h.Run(ctx, "sh", "-c", "docker inspect --format '{{.HostConfig.Memory}}' $(docker ps -q --filter label=fleet.project=alone)")
			if err != nil {
				return err
			}
			if got := strings.TrimSpace(string(out)); got != fmt.Sprint(96<<20) {
				return fmt.Errorf("memory limit %s, want %d", got, 96<<20)
			}
			return serving(ctx, h.Addr+":8093", "1")
		})
		p.expect(0, []string{"No changes"}, "plan", "--detailed-exitcode")
	})

	t.Run("remove", func(t *testing.T) {
		p.write(aloneProject("1", "h1,h2,h3", "96M"))
		p.expect(2, []string{"Plan: 2 to remove"}, "plan", "--detailed-exitcode")
		p.expect(0, []string{"2 changed", "3 unchanged"}, "apply", "--yes")
		for i, h := range fleet.Hosts {
			n := 1
			if i >= 3 {
				n = 0
			}
			if err := wantContainers(ctx, h, "alone", n, "1"); err != nil {
				t.Errorf("%s: %v", h.Name, err)
			}
		}
		p.expect(0, []string{"No changes"}, "plan", "--detailed-exitcode")
	})

	t.Run("every kind at once", func(t *testing.T) {
		// h1 stopped by hand (start), h2's memory lowered by hand (drift,
		// updated in place), h3 removed from the selection (remove), h4
		// and h5 back (create).
		if _, err := fleet.Hosts[0].Run(ctx, "sh", "-c", "docker stop $(docker ps -q --filter label=fleet.project=alone)"); err != nil {
			t.Fatal(err)
		}
		if _, err := fleet.Hosts[1].Run(ctx, "sh", "-c", "docker update --memory 64M $(docker ps -q --filter label=fleet.project=alone)"); err != nil {
			t.Fatal(err)
		}
		p.write(aloneProject("1", "h1,h2,h4,h5", "96M"))
		p.expect(2, []string{"Plan: 2 to create, 1 to update in place, 1 to start, 1 to remove"}, "plan", "--detailed-exitcode")
		p.expect(0, []string{"5 changed", "0 unchanged"}, "apply", "--yes")
		for i, h := range fleet.Hosts {
			n := 1
			if i == 2 {
				n = 0
			}
			if err := wantContainers(ctx, h, "alone", n, "1"); err != nil {
				t.Errorf("%s: %v", h.Name, err)
			}
		}
		// And a replacement with the rest: version 2 everywhere, h3 back,
		// a new memory limit.
		if _, err := fleet.Hosts[1].Run(ctx, "sh", "-c", "docker stop $(docker ps -q --filter label=fleet.project=alone)"); err != nil {
			t.Fatal(err)
		}
		p.write(aloneProject("2", "h1,h2,h3,h4,h5", "128M"))
		p.expect(0, []string{"5 changed"}, "apply", "--yes")
		eachHost(t, func(h *testfleet.Host) error {
			if err := wantContainers(ctx, h, "alone", 1, "2"); err != nil {
				return err
			}
			return serving(ctx, h.Addr+":8093", "2")
		})
		p.expect(0, []string{"No changes"}, "plan", "--detailed-exitcode")
	})
}
