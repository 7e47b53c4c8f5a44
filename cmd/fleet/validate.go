package main

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/fleetdeploy/fleet/internal/diag"
)

type validateCmd struct{}

// validation is what "fleet validate --json" prints.
type validation struct {
	Valid    bool          `json:"valid"`
	Errors   []problemJSON `json:"errors"`
	Warnings []problemJSON `json:"warnings"`
	Project  string        `json:"project,omitempty"`
	Services int           `json:"services"`
	Hosts    int           `json:"hosts"`
}

type problemJSON struct {
	File    string `json:"file"`
	Line    int    `json:"line"`
	Column  int    `json:"column"`
	Message string `json:"message"`
	Hint    string `json:"hint,omitempty"`
}

func toJSON(errs []*diag.Error) []problemJSON {
	out := []problemJSON{}
	for _, e := range errs {
		out = append(out, problemJSON{e.Pos.File, e.Pos.Line, e.Pos.Col, e.Msg, e.Hint})
	}
	return out
}

func (c *validateCmd) Run(g *globals, out *output) error {
	inv, p, err := g.loadBoth()
	if g.JSON {
		v := validation{Valid: err == nil, Errors: []problemJSON{}, Warnings: []problemJSON{}}
		var list *diag.List
		switch {
		case errors.As(err, &list):
			v.Errors = toJSON(list.Errors())
		case err != nil:
			return err
		default:
			v.Warnings = toJSON(inv.Warnings)
			if w := p.IdleBalancersWarning(inv); w != "" {
				v.Warnings = append(v.Warnings, problemJSON{File: g.Inventory, Message: w})
			}
			v.Project, v.Services, v.Hosts = p.Name, len(p.Services), len(inv.Hosts)
		}
		enc := json.NewEncoder(out.stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(v); err != nil {
			return err
		}
		if !v.Valid {
			return silentExit(1)
		}
		return nil
	}
	if err != nil {
		return err
	}
	for _, w := range inv.Warnings {
		fmt.Fprintf(out.stderr, "%s: warning: %s\n", w.Pos, w.Msg)
	}
	if w := p.IdleBalancersWarning(inv); w != "" {
		fmt.Fprintf(out.stderr, "%s: warning: %s\n", g.Inventory, w)
	}
	fmt.Fprintf(out.stdout, "%s: project %s, %s\n", g.File, p.Name, plural(len(p.Services), "service"))
	fmt.Fprintf(out.stdout, "%s: %s (%s)\n", g.Inventory, plural(len(inv.Hosts), "host"), inv.Format)
	return nil
}

func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

// silentExit ends the command with a code and no further message: what
// had to be said was printed already.
type silentExit int

func (e silentExit) Error() string { return "" }
func (e silentExit) ExitCode() int { return int(e) }
