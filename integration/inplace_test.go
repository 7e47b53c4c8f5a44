package integration

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/fleetdeploy/fleet/integration/testfleet"
)

const inPlaceYAML = `project: inplace
services:
  web:
    image: fleet-example/hello:1
    pull: never
    ports: ["8097:8080"]
    resources: {memory: MEMORY}
    healthcheck: {http: /up, port: 8080, interval: 500ms}
    update: {parallelism: 2, monitor: 0s, healthy_deadline: 10s}
`

// TestInPlaceUpdatesAreUndoneByARollback: a release that changes the
// memory limit, updated in place on four hosts, while on the fifth the
// image's tag now names an image that cannot start, so that instance is
// replaced and fails: the rollback puts the fifth back on its container
// and the four others back on their previous limit, in place.
func TestInPlaceUpdatesAreUndoneByARollback(t *testing.T) {
	ctx := context.Background()
	cleanupProject(t, "inplace")
	p := newProject(t, strings.Replace(inPlaceYAML, "MEMORY", "64M", 1))
	p.expect(0, []string{"5 changed"}, "apply", "--yes")

	h5 := fleet.Hosts[4]
	good, err := h5.Run(ctx, "docker", "image", "inspect", "--format", "{{.Id}}", testfleet.ExampleImage+":1")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		h5.Run(context.Background(), "docker", "tag", strings.TrimSpace(string(good)), testfleet.ExampleImage+":1")
	})
	if _, err := h5.Run(ctx, "sh", "-c", "c=$(docker create "+testfleet.ExampleImage+":1) && docker commit --change 'ENTRYPOINT [\"/no-such-binary\"]' $c "+testfleet.ExampleImage+":1 && docker rm $c"); err != nil {
		t.Fatal(err)
	}

	p.write(strings.Replace(inPlaceYAML, "MEMORY", "96M", 1))
	p.expect(2, []string{"~   h1", "in place: memory 64M → 96M", "-/+ h5", "Plan: 4 to update in place, 1 to replace, 0 unchanged."}, "plan", "--detailed-exitcode")
	p.expect(3, []string{"ROLLED BACK", "0 changed, 0 unchanged, 1 failed, 4 put back", "1 of 5 instances failed (h5/",
		"and those updated in place on their previous limits and restart policy"}, "apply", "--yes")
	// The tag back where it was, for docker ps to name the image.
	if _, err := h5.Run(ctx, "docker", "tag", strings.TrimSpace(string(good)), testfleet.ExampleImage+":1"); err != nil {
		t.Fatal(err)
	}
	eachHost(t, func(h *testfleet.Host) error {
		if err := wantContainers(ctx, h, "inplace", 1, "1"); err != nil {
			return err
		}
		out, err := h.Run(ctx, "sh", "-c", "docker inspect --format '{{.HostConfig.Memory}}' $(docker ps -q --filter label=fleet.project=inplace)")
		if err != nil {
			return err
		}
		if got := strings.TrimSpace(string(out)); got != fmt.Sprint(64<<20) {
			return fmt.Errorf("memory limit %s after the rollback, want %d", got, 64<<20)
		}
		return serving(ctx, h.Addr+":8097", "1")
	})
}
