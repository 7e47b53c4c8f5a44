package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/fleetdeploy/fleet/internal/diag"
	"github.com/fleetdeploy/fleet/inventory"
	"github.com/fleetdeploy/fleet/plan"
)

// loadInventory reads the inventory named by -i.
func (g *globals) loadInventory() (*inventory.Inventory, error) {
	if _, err := os.Stat(g.Inventory); err != nil {
		return nil, fmt.Errorf("inventory %s: %w (name another with -i FILE or -i DIR, or run \"fleet init\" for a starter)", g.Inventory, errors.Unwrap(err))
	}
	inv, err := inventory.Load(g.Inventory, inventory.Options{SSHConfig: g.SSHConfig})
	if err != nil || g.LB == "" {
		return inv, err
	}
	lbs, err := g.selectIn(inv, "--lb", g.LB)
	if err != nil {
		return nil, err
	}
	for _, h := range lbs {
		h.LB = true
	}
	return inv, nil
}

// loadBoth reads the inventory and fleet.yaml, and returns every problem of
// both together.
func (g *globals) loadBoth() (*inventory.Inventory, *plan.Project, error) {
	inv, invErr := g.loadInventory()
	if _, err := os.Stat(g.File); err != nil {
		return nil, nil, errors.Join(invErr, fmt.Errorf("desired state %s: %w (name another with -f FILE, or run \"fleet init\" for a starter)", g.File, errors.Unwrap(err)))
	}
	var list *diag.List
	if invErr != nil && !errors.As(invErr, &list) {
		return nil, nil, invErr
	}
	// With a broken inventory, fleet.yaml is still checked on its own.
	p, projErr := plan.LoadProject(g.File, inv)
	if invErr == nil && projErr == nil {
		return inv, p, nil
	}
	all := &diag.List{}
	for _, err := range []error{invErr, projErr} {
		var l *diag.List
		if errors.As(err, &l) {
			all.Merge(l)
		} else if err != nil {
			return nil, nil, err
		}
	}
	return nil, nil, all
}

// hostsAndProject reads the inventory, the hosts that --hosts selects, and
// the project's name when fleet.yaml is there and valid ("" otherwise):
// what the commands that work on hosts rather than services need.
func (g *globals) hostsAndProject() (*inventory.Inventory, []*inventory.Host, string, error) {
	inv, err := g.loadInventory()
	if err != nil {
		return nil, nil, "", err
	}
	hosts, err := g.selected(inv)
	if err != nil {
		return nil, nil, "", err
	}
	project := ""
	if _, err := os.Stat(g.File); err == nil {
		if p, err := plan.LoadProject(g.File, inv); err == nil {
			project = p.Name
		}
	}
	return inv, hosts, project, nil
}

// selected applies --hosts to the inventory.
func (g *globals) selected(inv *inventory.Inventory) ([]*inventory.Host, error) {
	if g.Hosts == "" {
		return inv.Hosts, nil
	}
	return g.selectIn(inv, "--hosts", g.Hosts)
}

// selectIn returns the hosts that flag's selector text picks, at least one.
func (g *globals) selectIn(inv *inventory.Inventory, flag, text string) ([]*inventory.Host, error) {
	sel, err := inventory.ParseSelector(text)
	if err != nil {
		se := err.(*inventory.SelectorError)
		return nil, fmt.Errorf("%s %q: at character %d: %s", flag, text, se.Offset+1, se.Msg)
	}
	for _, p := range inv.Check(sel) {
		msg := fmt.Sprintf("%s %q: %s", flag, text, p.Msg)
		if p.Hint != "" {
			msg += " (" + p.Hint + ")"
		}
		return nil, errors.New(msg)
	}
	hosts := inv.Select(sel)
	if len(hosts) == 0 {
		return nil, fmt.Errorf("%s %q matches no host (\"fleet inventory\" lists them with labels and groups)", flag, text)
	}
	return hosts, nil
}
