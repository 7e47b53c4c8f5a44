package main

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/fleetdeploy/fleet/inventory"
)

type inventoryCmd struct{}

func (c *inventoryCmd) Run(g *globals, out *output) error {
	inv, err := g.loadInventory()
	if err != nil {
		return err
	}
	hosts, err := g.selected(inv)
	if err != nil {
		return err
	}
	for _, w := range inv.Warnings {
		fmt.Fprintf(out.stderr, "%s: warning: %s\n", w.Pos, w.Msg)
	}
	listing := inv.Listing()
	if g.Hosts != "" {
		keep := map[string]inventory.ListedHost{}
		for _, h := range hosts {
			keep[h.Name] = listing.Hosts[h.Name]
		}
		listing.Hosts = keep
	}
	if g.JSON {
		enc := json.NewEncoder(out.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(listing)
	}
	tw := tabwriter.NewWriter(out.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "HOST\tADDRESS\tUSER\tKEY\tJUMP\tSUDO\tLABELS\tGROUPS")
	for _, h := range hosts {
		l := listing.Hosts[h.Name]
		addr := l.Address
		if l.Port != 22 {
			addr = fmt.Sprintf("%s:%d", addr, l.Port)
		}
		var labels []string
		for _, k := range slices.Sorted(maps.Keys(l.Labels)) {
			labels = append(labels, k+"="+l.Labels[k])
		}
		sudo := "-"
		if l.Sudo {
			sudo = "yes"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", h.Name, addr, l.User, dash(l.IdentityFile),
			dash(strings.Join(l.Jump, ">")), sudo, dash(strings.Join(labels, ",")), dash(strings.Join(l.Groups, ",")))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(out.stderr, "%s from %s (%s)\n", plural(len(hosts), "host"), g.Inventory, inv.Format)
	return nil
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
