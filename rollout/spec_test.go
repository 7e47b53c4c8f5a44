package rollout

import (
	"encoding/json"
	"os"
	"regexp"
	"testing"

	"github.com/fleetdeploy/fleet/internal/golden"
	"github.com/fleetdeploy/fleet/inventory"
	"github.com/fleetdeploy/fleet/plan"
)

// TestContainerSpec: what an instance's container is made from, every
// field of testdata/containerspec.yaml in its place. executor's fuzz test
// holds a copy of containerSpec and checks it against the same golden
// file, so the two cannot drift apart unseen.
func TestContainerSpec(t *testing.T) {
	src, err := os.ReadFile("testdata/containerspec.yaml")
	if err != nil {
		t.Fatal(err)
	}
	inv, err := inventory.Parse("inventory.yaml", []byte("hosts:\n  h1: {address: 203.0.113.10}\n"), inventory.Options{SSHConfig: "none"})
	if err != nil {
		t.Fatal(err)
	}
	p, err := plan.ParseProject("containerspec.yaml", src, inv)
	if err != nil {
		t.Fatal(err)
	}
	secrets := map[string]string{"TOKEN": "s3cr3t"}
	pl := plan.Compute(plan.Input{Project: p, Inventory: inv, Scope: inv.Hosts,
		Live:    plan.Live{Hosts: map[string]*plan.LiveHost{"h1": {MemAvailable: 1 << 40, CPUs: 64}}},
		Secrets: map[string]map[string]string{"web": secrets}})
	spec := containerSpec(p.Name, p.Services[0], pl.Services[0], 1, secrets)
	// The name ends in a random suffix of its own.
	spec.Name = regexp.MustCompile(`-[0-9a-f]{6}$`).ReplaceAllString(spec.Name, "-SUFFIX")
	b, err := json.MarshalIndent(spec, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	golden.Check(t, "testdata/containerspec.golden", string(b)+"\n")
}
