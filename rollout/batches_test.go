package rollout

import (
	"fmt"
	"strings"
	"testing"

	"github.com/fleetdeploy/fleet/plan"
)

func TestSteps(t *testing.T) {
	w := func(waves ...plan.Wave) plan.Parallelism { return plan.Parallelism{Waves: waves} }
	n := func(c int) plan.Wave { return plan.Wave{Count: c} }
	pct := func(p float64) plan.Wave { return plan.Wave{Percent: p} }
	for _, c := range []struct {
		p    plan.Parallelism
		n    int
		want string
	}{
		{w(n(1)), 3, "[1 1 1]"},
		{w(n(2)), 5, "[2 2 1]"},
		{w(n(10)), 3, "[3]"},
		{w(pct(25)), 10, "[3 3 3 1]"},
		{w(pct(50)), 1, "[1]"},
		{w(pct(1)), 10, "[1 1 1 1 1 1 1 1 1 1]"},
		{w(n(1), n(2), pct(50)), 10, "[1 2 5 2]"},
		{w(n(1), n(2), pct(50)), 2, "[1 1]"},
		{w(n(1)), 0, "[]"},
	} {
		if got := fmt.Sprint(Steps(c.p, c.n)); got != c.want {
			t.Errorf("Steps(%+v, %d) = %s, want %s", c.p.Waves, c.n, got, c.want)
		}
	}
}

// TestRollingSteps: the creates go in one step before the replacements'
// steps, and a plan without either (starts, in-place updates, removals
// alone) has no step, which the applier must take as it is.
func TestRollingSteps(t *testing.T) {
	acts := func(kind plan.Kind, n int) []*plan.Action {
		var out []*plan.Action
		for i := range n {
			out = append(out, &plan.Action{Kind: kind, Host: fmt.Sprintf("h%d", i+1), Slot: i + 1})
		}
		return out
	}
	show := func(steps [][]*plan.Action) string {
		var parts []string
		for _, step := range steps {
			var names []string
			for _, a := range step {
				names = append(names, fmt.Sprintf("%s:%s", a.Kind, a.Host))
			}
			parts = append(parts, "["+strings.Join(names, " ")+"]")
		}
		return strings.Join(parts, " ")
	}
	two := plan.Parallelism{Waves: []plan.Wave{{Count: 2}}}
	for _, c := range []struct {
		creates, replaces int
		want              string
	}{
		{0, 0, ""},
		{2, 0, "[create:h1 create:h2]"},
		{0, 3, "[replace:h1 replace:h2] [replace:h3]"},
		{1, 3, "[create:h1] [replace:h1 replace:h2] [replace:h3]"},
	} {
		if got := show(rollingSteps(acts(plan.Create, c.creates), acts(plan.Replace, c.replaces), two)); got != c.want {
			t.Errorf("%d creates, %d replaces: steps %q, want %q", c.creates, c.replaces, got, c.want)
		}
	}
}

func TestOrder(t *testing.T) {
	p, err := plan.ParseProject("fleet.yaml", []byte(`
project: p
services:
  web: {image: x:1, depends_on: [api, cache]}
  api: {image: x:1, depends_on: [db]}
  worker: {image: x:1}
  db: {image: x:1}
  cache: {image: x:1}
`), nil)
	if err != nil {
		t.Fatal(err)
	}
	order, err := Order(p)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range order {
		names = append(names, s.Name)
	}
	if got := strings.Join(names, " "); got != "db api cache web worker" {
		t.Errorf("order %s", got)
	}
}
