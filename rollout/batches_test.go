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
