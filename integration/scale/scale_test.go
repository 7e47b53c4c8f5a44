package main

import (
	"context"
	"os"
	"testing"
	"time"
)

// TestSimulatedFleet runs the real fleet binary against 20 simulated hosts:
// a first deploy, a plan of the converged fleet, a rolling image change,
// and a plan after it. It needs no root and no Docker.
func TestSimulatedFleet(t *testing.T) {
	if testing.Short() {
		t.Skip("builds fleet and runs it four times")
	}
	o := options{
		Hosts:       20,
		RTT:         2 * time.Millisecond,
		Times:       Times{Start: 20 * time.Millisecond, Stop: 10 * time.Millisecond, Healthy: 20 * time.Millisecond},
		Monitor:     0,
		Parallelism: "25%",
	}
	res, err := run(context.Background(), o, os.Stderr)
	if err != nil {
		t.Fatal(err)
	}
	if res.OnNewImage != o.Hosts {
		t.Errorf("%d of %d hosts run the new image after the apply", res.OnNewImage, o.Hosts)
	}
	if !res.Converged {
		t.Error("a plan after the apply still has something to do")
	}
	if len(res.Unknown) > 0 || res.Execs > 0 {
		t.Errorf("fleet asked the simulated hosts for what they do not serve: %v", res.Unknown)
	}
	// One connection per host per run.
	if want := int64(2 * o.Hosts); res.Handshakes != want {
		t.Errorf("%d SSH handshakes for a plan and an apply of %d hosts, want %d", res.Handshakes, o.Hosts, want)
	}
	if res.Steps != 4 {
		t.Errorf("%d steps at 25%% of %d, want 4", res.Steps, o.Hosts)
	}
}
