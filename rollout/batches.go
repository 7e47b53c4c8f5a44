package rollout

import (
	"fmt"
	"math"
	"strings"

	"github.com/fleetdeploy/fleet/plan"
)

// Steps splits n instances to change into the sizes of the rolling
// update's steps: each wave of the parallelism in turn, the last one
// repeating, a percentage taken of n and rounded up (at least 1).
//
//	[1, 2, "50%"] over 10 instances: 1, 2, 5, 2
func Steps(p plan.Parallelism, n int) []int {
	var steps []int
	for i := 0; n > 0; i++ {
		w := p.Waves[min(i, len(p.Waves)-1)]
		size := w.Count
		if w.Percent > 0 {
			size = int(math.Ceil(float64(n0(steps, n)) * w.Percent / 100))
		}
		size = max(1, min(size, n))
		steps = append(steps, size)
		n -= size
	}
	return steps
}

// rollingSteps orders the new containers of a service into steps: the
// creates all at once (they take nothing down), then the replacements in
// the steps of the update policy. A plan of starts, in-place updates and
// removals alone has no step at all.
func rollingSteps(creates, replaces []*plan.Action, p plan.Parallelism) [][]*plan.Action {
	var steps [][]*plan.Action
	if len(creates) > 0 {
		steps = append(steps, creates)
	}
	i := 0
	for _, n := range Steps(p, len(replaces)) {
		steps = append(steps, replaces[i:i+n])
		i += n
	}
	return steps
}

// n0 is the number of instances the steps were made for: a percentage is
// of all of them, not of what is left.
func n0(steps []int, left int) int {
	for _, s := range steps {
		left += s
	}
	return left
}

// Order returns the services in an order that respects depends_on: each
// after the services it depends on, otherwise as in fleet.yaml. The
// project was checked for cycles when it was read.
func Order(p *plan.Project) ([]*plan.Service, error) {
	var out []*plan.Service
	state := map[string]int{}
	var visit func(s *plan.Service, path []string) error
	visit = func(s *plan.Service, path []string) error {
		switch state[s.Name] {
		case 1:
			return fmt.Errorf("depends_on forms a cycle: %s", strings.Join(append(path, s.Name), " → "))
		case 2:
			return nil
		}
		state[s.Name] = 1
		for _, dep := range s.DependsOn {
			d := p.Service(dep)
			if d == nil {
				return fmt.Errorf("service %s depends on %q, which is not a service", s.Name, dep)
			}
			if err := visit(d, append(path, s.Name)); err != nil {
				return err
			}
		}
		state[s.Name] = 2
		out = append(out, s)
		return nil
	}
	for _, s := range p.Services {
		if err := visit(s, nil); err != nil {
			return nil, err
		}
	}
	return out, nil
}
