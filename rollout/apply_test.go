package rollout

import (
	"errors"
	"slices"
	"testing"

	"github.com/fleetdeploy/fleet/executor"
)

// TestLeftBehind: what a run stopped at once leaves behind is told from
// what it said of each instance last, one line per host; finished work
// is not in it.
func TestLeftBehind(t *testing.T) {
	a := &Applier{}
	a.startFirst = map[string]bool{"web": false, "api": true}
	for _, e := range []Event{
		{Service: "web", Host: "h1", Slot: 1, What: "replacing: image a → b", Begin: true},
		{Service: "web", Host: "h1", Slot: 1, What: "stopping the old container", Progress: true},
		{Service: "web", Host: "h1", Slot: 1, What: "waiting for its health check", Progress: true},
		{Service: "web", Host: "h2", Slot: 2, What: "replacing: image a → b", Begin: true},
		{Service: "web", Host: "h3", Slot: 3, What: "replacing: image a → b", Begin: true},
		{Service: "web", Host: "h3", Slot: 3, What: "healthy (revision 2)", End: true},
		{Service: "web", Host: "h4", Slot: 4, What: "creating", Begin: true},
		{Service: "web", Host: "h4", Slot: 4, What: "starting the new container", Progress: true},
		{Service: "api", Host: "h1", Slot: 1, What: "replacing: image a → b", Begin: true},
		{Service: "api", Host: "h1", Slot: 1, What: "waiting for its health check", Progress: true},
		{Service: "web", Host: "h5", Slot: 0, What: "pulling web:2", Begin: true},
		{Service: "web", Host: "h6", Slot: 0, What: "pulling web:2", Begin: true},
		{Service: "web", Host: "h6", Slot: 0, What: "failed", End: true},
		{Service: "db", Host: "h6", Slot: 1, What: "starting (was container exited)", Begin: true},
		{Service: "db", Host: "h6", Slot: 1, What: "not healthy yet: connection refused", Progress: true},
		{Service: "web", What: "step 1 of 2: h1/1, h2/2"},
		{Service: "cache", Host: "h7", Slot: 1, What: "updating in place: memory 1G → 256M", Begin: true},
		{Service: "cache", Host: "h7", Slot: 1, What: "waiting for its health check", Progress: true},
	} {
		a.event(e)
	}
	want := []string{
		"h1: api/1 runs its old container; a new one may be left beside it; web/1 DOWN (its old container stopped, the new one not yet healthy)",
		"h2: web/2 runs its old container (not yet stopped)",
		"h4: web/4 not running yet (it was being created)",
		"h5: web: pulling web:2 cut short (nothing changed)",
		"h6: db/1 DOWN (it was being started)",
		"h7: cache/1 runs on its old limits or its new ones (it was being updated in place)",
	}
	if got := a.LeftBehind(); !slices.Equal(got, want) {
		t.Errorf("LeftBehind:\n%q\nwant\n%q", got, want)
	}
}

// TestHostNamedOnce: what failed on a host names the host once, whether
// the error came from the host's connection (which names it) or not.
func TestHostNamedOnce(t *testing.T) {
	conn := &executor.HostError{Host: "h6", Op: "writing /var/lib/fleet/x", Err: errors.New("disk full")}
	for _, c := range []struct {
		err  error
		want string
	}{
		{conn, "host h6: recording revision 2: writing /var/lib/fleet/x: disk full"},
		{errors.New("bad record"), "host h6: recording revision 2: bad record"},
		{&executor.HostError{Host: "h6", Err: errors.New("connection lost")}, "host h6: recording revision 2: connection lost"},
	} {
		if got := hostOpFailed("h6", "recording revision 2", c.err).Error(); got != c.want {
			t.Errorf("got %q, want %q", got, c.want)
		}
	}
	if got := opFailed("taking the deploy lock", conn).Error(); got != "host h6: taking the deploy lock: writing /var/lib/fleet/x: disk full" {
		t.Errorf("opFailed: %q", got)
	}
}
