package rollouttest

import (
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/fleetdeploy/fleet/executor"
	"github.com/fleetdeploy/fleet/plan"
	"github.com/fleetdeploy/fleet/rollout"
)

// Names of what TestEngine makes on a host: it removes its containers;
// the caller removes the network and the volume of a real host.
const (
	ContractContainer = "fleet-contract-web-1"
	ContractNetwork   = "fleet-contract-net"
	ContractVolume    = "fleet-contract-data"
)

// TestEngine checks that eng keeps the contract of [rollout.Engine] that
// a rollout relies on, with image, which must be on the host and run until
// stopped. The fake passes it in its own tests, and a real engine on a
// real host in the integration tests: what the rollout's unit tests learn
// from the fake holds of the real engine.
func TestEngine(t *testing.T, eng rollout.Engine, image string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	notFound := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, executor.ErrNotFound) {
			t.Errorf("%s: %v, want an error matching executor.ErrNotFound", what, err)
		}
	}
	const absent = "fleet-contract/absent:0"
	_, err := eng.ImageInspect(ctx, absent)
	notFound("inspecting an image the host lacks", err)
	_, err = eng.Create(ctx, executor.ContainerSpec{Name: "fleet-contract-absent", Image: absent})
	notFound("creating a container of an image the host lacks", err)

	img, err := eng.ImageInspect(ctx, image)
	if err != nil || img.ID == "" {
		t.Fatalf("inspecting image %s: %+v, %v", image, img, err)
	}
	if err := eng.EnsureNetwork(ctx, ContractNetwork, nil); err != nil {
		t.Fatal(err)
	}
	if err := eng.EnsureNetwork(ctx, ContractNetwork, nil); err != nil {
		t.Errorf("ensuring a network that exists: %v", err)
	}
	if err := eng.EnsureVolume(ctx, ContractVolume, nil); err != nil {
		t.Fatal(err)
	}
	if err := eng.EnsureVolume(ctx, ContractVolume, nil); err != nil {
		t.Errorf("ensuring a volume that exists: %v", err)
	}

	spec := executor.ContainerSpec{
		Name: ContractContainer, Image: image,
		Labels:   map[string]string{executor.LabelProject: "fleet-contract", plan.LabelService: "web", plan.LabelSlot: "1"},
		Env:      map[string]string{"CONTRACT": "a value"},
		Volumes:  []executor.Mount{{Source: ContractVolume, Target: "/data"}},
		Networks: []string{ContractNetwork},
		Restart:  "on-failure:3", CPUs: 0.5, Memory: 64 << 20,
	}
	id, err := eng.Create(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { eng.Remove(context.Background(), id, true) })
	c := inspect(t, eng, id)
	if c.ID != id || c.Name != spec.Name || c.Image != image || c.ImageID != img.ID || c.Running || c.Status != "created" {
		t.Errorf("created: id %s name %s image %s (%s) running %v status %s; want %s %s %s (%s), not running, created",
			c.ID, c.Name, c.Image, c.ImageID, c.Running, c.Status, id, spec.Name, image, img.ID)
	}
	for k, v := range spec.Labels {
		if c.Labels[k] != v {
			t.Errorf("label %s is %q, want %q", k, c.Labels[k], v)
		}
	}
	if c.Env["CONTRACT"] != "a value" || c.Restart != "on-failure:3" || c.CPUs != 0.5 || c.Memory != 64<<20 {
		t.Errorf("created: env %q restart %q cpus %v memory %d; want \"a value\", on-failure:3, 0.5, %d", c.Env["CONTRACT"], c.Restart, c.CPUs, c.Memory, 64<<20)
	}
	if _, ok := c.Networks[ContractNetwork]; !ok {
		t.Errorf("created: networks %v, want %s", c.Networks, ContractNetwork)
	}
	if _, err := eng.Create(ctx, spec); err == nil {
		t.Error("a second container of the same name was created")
	}
	if l, err := eng.List(ctx, map[string]string{executor.LabelProject: "fleet-contract", plan.LabelService: "web"}); err != nil || len(l) != 1 || l[0].ID != id || l[0].Running {
		t.Errorf("listing the containers of the project's service: %+v, %v; want the one created, not running", l, err)
	}
	if l, err := eng.List(ctx, map[string]string{executor.LabelProject: "fleet-contract", plan.LabelService: "other"}); err != nil || len(l) != 0 {
		t.Errorf("listing the containers of another service: %+v, %v; want none", l, err)
	}

	// Renamed and back, by id; the old name then names nothing, and a
	// name in use is refused.
	if err := eng.Rename(ctx, id, ContractContainer+"-renamed"); err != nil {
		t.Fatal(err)
	}
	if c, err := eng.Inspect(ctx, ContractContainer+"-renamed"); err != nil || c.ID != id {
		t.Errorf("inspecting the container by its new name: %v", err)
	}
	_, err = eng.Inspect(ctx, ContractContainer)
	notFound("inspecting a container by the name it had", err)
	other, err := eng.Create(ctx, spec)
	if err != nil {
		t.Fatalf("creating a container with a name set free by a rename: %v", err)
	}
	if err := eng.Rename(ctx, id, ContractContainer); err == nil {
		t.Error("a container was renamed to a name in use")
	}
	if err := eng.Remove(ctx, other, true); err != nil {
		t.Fatal(err)
	}
	if err := eng.Rename(ctx, id, ContractContainer); err != nil {
		t.Fatal(err)
	}

	if err := eng.Start(ctx, id); err != nil {
		t.Fatal(err)
	}
	if c := inspect(t, eng, id); !c.Running || c.Status != "running" || c.RestartCount != 0 {
		t.Errorf("started: running %v status %s restarts %d", c.Running, c.Status, c.RestartCount)
	}
	if err := eng.Start(ctx, id); err != nil {
		t.Errorf("starting a running container: %v, want no error", err)
	}
	if err := eng.Remove(ctx, id, false); err == nil {
		t.Fatal("a running container was removed without force")
	}

	if err := eng.Update(ctx, id, 0.25, 96<<20, "unless-stopped"); err != nil {
		t.Fatal(err)
	}
	if err := eng.Update(ctx, id, 0, 0, ""); err != nil {
		t.Fatal(err)
	}
	if c := inspect(t, eng, id); c.CPUs != 0.25 || c.Memory != 96<<20 || c.Restart != "unless-stopped" || !c.Running {
		t.Errorf("updated in place, then with nothing: cpus %v memory %d restart %q running %v; want 0.25, %d, unless-stopped, running", c.CPUs, c.Memory, c.Restart, c.Running, 96<<20)
	}

	if err := eng.Stop(ctx, id, time.Second); err != nil {
		t.Fatal(err)
	}
	if c := inspect(t, eng, id); c.Running || c.Status != "exited" {
		t.Errorf("stopped: running %v status %s", c.Running, c.Status)
	}
	if err := eng.Stop(ctx, id, time.Second); err != nil {
		t.Errorf("stopping a stopped container: %v, want no error", err)
	}
	if _, err := eng.Exec(ctx, id, []string{"/no-such-command"}, io.Discard, io.Discard); err == nil {
		t.Error("a command ran in a stopped container")
	}
	if err := eng.Start(ctx, id); err != nil {
		t.Fatal(err)
	}
	if c := inspect(t, eng, id); !c.Running {
		t.Errorf("started again: status %s", c.Status)
	}
	if err := eng.Remove(ctx, id, true); err != nil {
		t.Fatal(err)
	}

	_, err = eng.Inspect(ctx, id)
	notFound("inspecting a removed container", err)
	if l, err := eng.List(ctx, map[string]string{executor.LabelProject: "fleet-contract"}); err != nil || len(l) != 0 {
		t.Errorf("listing the project's containers once removed: %+v, %v; want none", l, err)
	}
	notFound("starting a removed container", eng.Start(ctx, id))
	notFound("stopping a removed container", eng.Stop(ctx, id, time.Second))
	notFound("updating a removed container", eng.Update(ctx, id, 0.5, 0, ""))
	notFound("removing a removed container", eng.Remove(ctx, id, true))

	// A call whose context has ended fails, and says so.
	done, stop := context.WithCancel(ctx)
	stop()
	if _, err := eng.Inspect(done, id); !errors.Is(err, context.Canceled) {
		t.Errorf("a call with an ended context: %v, want an error matching context.Canceled", err)
	}
}

func inspect(t *testing.T, eng rollout.Engine, id string) *executor.Container {
	t.Helper()
	c, err := eng.Inspect(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
