package rollouttest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/fleetdeploy/fleet/executor"
	"github.com/fleetdeploy/fleet/plan"
)

func TestFakeKeepsTheEngineContract(t *testing.T) {
	f := New("h1")
	f.Load("hello:1")
	TestEngine(t, f.Hosts()["h1"].Engine(), "hello:1")
}

// TestBehaviors: each scripted behaviour shows as a real container's
// would, through the engine's calls alone.
func TestBehaviors(t *testing.T) {
	ctx := context.Background()
	for _, c := range []struct {
		behavior string
		looks    int    // inspects after the start
		want     string // status/health after them
	}{
		{"", 1, "running/healthy"},
		{"crash", 1, "exited/"},
		{"unhealthy", 3, "running/unhealthy"},
		{"healthy-after=3", 2, "running/starting"},
		{"healthy-after=3", 3, "running/healthy"},
		{"crash-after=2", 1, "running/healthy"},
		{"crash-after=2", 2, "exited/"},
		{"crash@h2", 1, "running/healthy"},
		{"unhealthy@h1", 1, "running/unhealthy"},
	} {
		f := New("h1")
		f.Load("hello:1")
		eng := f.Hosts()["h1"].Engine()
		id, err := eng.Create(ctx, executor.ContainerSpec{Name: "x", Image: "hello:1", Env: map[string]string{BehaviorEnv: c.behavior}})
		if err != nil {
			t.Fatal(err)
		}
		if err := eng.Start(ctx, id); err != nil {
			t.Fatal(err)
		}
		var got *executor.Container
		for range c.looks {
			if got, err = eng.Inspect(ctx, id); err != nil {
				t.Fatal(err)
			}
		}
		if s := got.Status + "/" + got.Health; s != c.want {
			t.Errorf("%q after %d looks: %s, want %s", c.behavior, c.looks, s, c.want)
		}
	}
}

func TestStopFailsAndStartHangs(t *testing.T) {
	f := New("h1")
	f.Load("hello:1")
	eng := f.Hosts()["h1"].Engine()
	ctx := context.Background()
	id, _ := eng.Create(ctx, executor.ContainerSpec{Name: "x", Image: "hello:1", Env: map[string]string{BehaviorEnv: "stop-fails,start-hangs"}})
	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if err := eng.Start(short, id); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("a start that hangs: %v, want the context's error", err)
	}
	// Carried out all the same.
	if c, _ := eng.Inspect(ctx, id); !c.Running {
		t.Error("a start that hung was not carried out")
	}
	if err := eng.Stop(ctx, id, 0); err == nil {
		t.Error("a stop scripted to fail did not")
	}
}

// TestOOM: a memory limit below OOMBelow gets a container killed; the
// engine restarts it under a restart policy, and counts it.
func TestOOM(t *testing.T) {
	f := New("h1")
	f.OOMBelow = 64 << 20
	f.Load("hello:1")
	eng := f.Hosts()["h1"].Engine()
	ctx := context.Background()
	for _, restart := range []string{"unless-stopped", "no"} {
		id, _ := eng.Create(ctx, executor.ContainerSpec{Name: "x-" + restart, Image: "hello:1", Restart: restart, Memory: 128 << 20})
		eng.Start(ctx, id)
		if err := eng.Update(ctx, id, 0, 32<<20, ""); err != nil {
			t.Fatal(err)
		}
		c, _ := eng.Inspect(ctx, id)
		switch {
		case restart == "no" && (c.Running || c.ExitCode != 137):
			t.Errorf("restart no, out of memory: running %v exit %d, want exited 137", c.Running, c.ExitCode)
		case restart != "no" && (!c.Running || c.RestartCount == 0):
			t.Errorf("restart %s, out of memory: running %v restarts %d, want running, restarted", restart, c.Running, c.RestartCount)
		}
	}
}

// TestMostDown counts the instances of a service with a container, none
// of them running.
func TestMostDown(t *testing.T) {
	f := New("h1", "h2")
	f.Load("hello:1")
	ctx := context.Background()
	ids := map[string]string{}
	for _, h := range []string{"h1", "h2"} {
		eng := f.Hosts()[h].Engine()
		id, _ := eng.Create(ctx, executor.ContainerSpec{Name: "web", Image: "hello:1", Labels: map[string]string{plan.LabelService: "web", plan.LabelSlot: "1"}})
		eng.Start(ctx, id)
		ids[h] = id
	}
	f.ResetMostDown()
	f.Hosts()["h1"].Engine().Stop(ctx, ids["h1"], 0)
	f.Hosts()["h1"].Engine().Start(ctx, ids["h1"])
	f.Hosts()["h2"].Engine().Stop(ctx, ids["h2"], 0)
	if n := f.MostDown("web"); n != 1 {
		t.Errorf("most down %d, want 1", n)
	}
	f.Hosts()["h1"].Engine().Stop(ctx, ids["h1"], 0)
	if n := f.MostDown("web"); n != 2 {
		t.Errorf("most down %d, want 2", n)
	}
}
