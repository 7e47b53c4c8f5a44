package main

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/fleetdeploy/fleet/export"
)

type exportCmd struct {
	Format string `arg:"" placeholder:"FORMAT" help:"swarm (a stack file for docker stack deploy), kubernetes (manifests for kubectl apply) or nomad (a job for nomad job run)."`
	Output string `short:"o" placeholder:"FILE" help:"Write to FILE instead of stdout."`
}

// exportHelp is the text under "fleet export --help": what each format
// becomes, and that what does not carry over is said in the output.
const exportHelp = `Write the desired state of fleet.yaml in another orchestrator's format, to
move a project or to compare: a Swarm stack file, Kubernetes manifests
or a Nomad job. No host is contacted; the inventory's host labels become
node labels the placement rules refer to.

Each setting that does not carry over, or means something else there, is
a comment at its place in the output, saying what was dropped and why:
read them before deploying. Secret values are never written: the output
refers to secrets the orchestrator keeps and says how to create them.

  swarm       services with update_config and rollback, healthchecks,
              placement constraints, external secrets, volumes, networks
  kubernetes  a Deployment (DaemonSet for one per host) with the update
              policy as RollingUpdate, probes, limits, node affinity; a
              Service, an Ingress for the proxy, PersistentVolumeClaims
  nomad       one job, a group per service: update block with auto_revert,
              checks, constraints, host volumes, secrets from variables`

func (c *exportCmd) Help() string { return exportHelp }

func (c *exportCmd) Run(g *globals, out *output) error {
	if !slices.Contains(export.Formats, c.Format) {
		return fmt.Errorf("unknown export format %q: want one of %s", c.Format, strings.Join(export.Formats, ", "))
	}
	inv, p, err := g.loadBoth()
	if err != nil {
		return err
	}
	if g.Hosts != "" {
		// The orchestrator places on its own nodes: there is no scope.
		fmt.Fprintf(out.stderr, "fleet: warning: --hosts %s is not applied: the export is the whole project, placed by the node labels it lists\n", g.Hosts)
	}
	data, err := export.Render(c.Format, p, inv)
	if err != nil {
		return err
	}
	if c.Output == "" {
		_, err := out.stdout.Write(data)
		return err
	}
	// Written aside and renamed, so that an interrupted export leaves the
	// previous file whole.
	tmp, err := os.CreateTemp(filepath.Dir(c.Output), "."+filepath.Base(c.Output)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), c.Output); err != nil {
		return err
	}
	fmt.Fprintf(out.stderr, "wrote %s (%s, project %s)\n", c.Output, c.Format, p.Name)
	return nil
}
