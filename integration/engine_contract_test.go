package integration

import (
	"context"
	"testing"

	"github.com/fleetdeploy/fleet/executor"
	"github.com/fleetdeploy/fleet/integration/testfleet"
	"github.com/fleetdeploy/fleet/rollout"
	"github.com/fleetdeploy/fleet/rollout/rollouttest"
)

// TestEngineKeepsTheRolloutsContract runs, against a real engine over SSH,
// the suite that the fake engine of the rollout's unit tests passes: what
// those tests learn from the fake holds of the real thing.
func TestEngineKeepsTheRolloutsContract(t *testing.T) {
	ctx := context.Background()
	h := fleet.Hosts[0]
	e := newExecutor(t, ctx, executor.Options{})
	c, err := e.Connect(ctx, target(h))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		h.Run(context.Background(), "docker", "rm", "-f", rollouttest.ContractContainer)
		h.Run(context.Background(), "docker", "network", "rm", rollouttest.ContractNetwork)
		h.Run(context.Background(), "docker", "volume", "rm", rollouttest.ContractVolume)
	})
	eng := rollout.HostsOf(map[string]*executor.Conn{h.Name: c}, nil)[h.Name].Engine()
	rollouttest.TestEngine(t, eng, testfleet.ExampleImage+":1")
}
