package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/fleetdeploy/fleet/plan"
)

// hookRun is what a hook is told of the run, in FLEET_* variables.
type hookRun struct {
	command string
	user    string
	p       *plan.Plan
	hosts   []string // those the run changes
	outcome string   // planned, deployed, rolled back, failed, interrupted
	err     error
}

// runHook runs fleet.yaml's hook name, if it has one: its argument vector
// as it is, without a shell, from fleet.yaml's directory, its output
// beside fleet's (on stderr when stdout carries JSON).
func (s *session) runHook(ctx context.Context, g *globals, out *output, name string, argv []string, r hookRun) error {
	if len(argv) == 0 {
		return nil
	}
	var services, revisions []string
	for _, sp := range r.p.Services {
		if slices.ContainsFunc(sp.Actions, func(a *plan.Action) bool { return a.Kind != plan.Unchanged }) {
			services = append(services, sp.Name)
			revisions = append(revisions, sp.Name+"="+strconv.Itoa(sp.Revision))
		}
	}
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	// A relative path is taken from there too.
	cmd.Dir = filepath.Dir(s.project.File)
	cmd.Env = append(os.Environ(),
		"FLEET_HOOK="+name,
		"FLEET_PROJECT="+s.project.Name,
		"FLEET_COMMAND="+r.command,
		"FLEET_USER="+r.user,
		"FLEET_SERVICES="+strings.Join(services, " "),
		"FLEET_REVISIONS="+strings.Join(revisions, " "),
		"FLEET_HOSTS="+strings.Join(r.hosts, " "),
		"FLEET_OUTCOME="+r.outcome,
	)
	if r.err != nil {
		cmd.Env = append(cmd.Env, "FLEET_ERROR="+r.err.Error())
	}
	var stdout io.Writer = out.stdout
	if g.JSON {
		stdout = out.stderr
	}
	cmd.Stdout, cmd.Stderr = stdout, out.stderr
	if err := cmd.Run(); err != nil {
		// Said, not wrapped: the hook's exit status is not fleet's.
		return fmt.Errorf("hooks.%s (%s): %v", name, strings.Join(argv, " "), err)
	}
	return nil
}
