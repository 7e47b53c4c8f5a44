package main

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/fleetdeploy/fleet/executor"
	"github.com/fleetdeploy/fleet/plan"
	"github.com/fleetdeploy/fleet/rollout"
)

type pruneCmd struct {
	DryRun   bool          `help:"Say what would be removed and how much it would free, and remove nothing."`
	LockWait time.Duration `placeholder:"D" help:"Wait up to D for another run's deploy lock."`
}

// pruneReport is "fleet prune --json": by host, what was removed (or would
// be), and the hosts that could not be pruned, with why.
type pruneReport struct {
	DryRun bool                       `json:"dry_run"`
	Hosts  map[string]*rollout.Pruned `json:"hosts"`
	Failed map[string]string          `json:"failed"`
}

func (c *pruneCmd) Run(ctx context.Context, g *globals, out *output) error {
	s, err := g.open(ctx, nil, stateOnly)
	if err != nil {
		return err
	}
	defer s.close()
	p := s.plan(nil, false)
	stopped := stoppedLeftovers(s, p)
	var keep []string
	for _, sp := range p.Services {
		keep = append(keep, sp.Template.Image)
	}
	var hosts []string
	for name := range s.fleet.Conns {
		hosts = append(hosts, name)
	}
	slices.Sort(hosts)
	if !c.DryRun && len(hosts) > 0 {
		conns := make([]*executor.Conn, 0, len(hosts))
		for _, h := range hosts {
			conns = append(conns, s.fleet.Conns[h])
		}
		lock, err := rollout.Acquire(ctx, conns, s.project.Name, rollout.Me("fleet prune"), c.LockWait, rollout.DefaultLease,
			func(msg string) { fmt.Fprintln(out.stderr, "fleet: warning: "+msg) })
		if err != nil {
			return err
		}
		defer lock.Release(context.WithoutCancel(ctx))
		var stop context.CancelFunc
		ctx, stop = lock.Context(ctx)
		defer stop()
	}
	report := pruneReport{DryRun: c.DryRun, Hosts: map[string]*rollout.Pruned{}, Failed: map[string]string{}}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, h := range hosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pruned, err := rollout.Prune(ctx, s.fleet.Conns[h], s.project.Name, stopped[h], keep, c.DryRun)
			mu.Lock()
			defer mu.Unlock()
			report.Hosts[h] = pruned
			if err != nil {
				report.Failed[h] = err.Error()
			}
		}()
	}
	wg.Wait()
	for h, why := range s.fleet.Unreachable {
		report.Failed[h] = "unreachable: " + why
	}
	if g.JSON {
		enc := json.NewEncoder(out.stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(report); err != nil {
			return err
		}
	} else {
		writePruneReport(out, report, hosts, g.Verbose)
	}
	if n := len(report.Failed); n > 0 {
		failed := slices.Sorted(maps.Keys(report.Failed))
		return silentError{1, fmt.Sprintf("%d of %d hosts not pruned (%s): the others were; run it again once they are back", n, len(s.scope), strings.Join(failed, ", "))}
	}
	return nil
}

// stoppedLeftovers are, by host, the stopped containers of the project that
// nothing asks for: those the plan would remove (a copy beside its slot's
// instance, a slot beyond the replicas, a host no longer selected), and
// those of services fleet.yaml no longer has. Running ones are left to
// apply, which takes them out of service with care.
func stoppedLeftovers(s *session, p *plan.Plan) map[string][]rollout.PrunedContainer {
	out := map[string][]rollout.PrunedContainer{}
	live := s.fleet.Live(s.project.Name)
	for host, lh := range live.Hosts {
		for _, c := range lh.Containers {
			if c.Running {
				continue
			}
			service := c.Labels[plan.LabelService]
			why := ""
			if s.project.Service(service) == nil {
				why = fmt.Sprintf("%s has no service %s", filepath.Base(s.project.File), service)
			}
			for _, sp := range p.Services {
				for _, a := range sp.Actions {
					if a.Kind == plan.Remove && a.Host == host && a.Container == c.ID {
						why = strings.Join(a.Reasons, "; ")
					}
				}
			}
			if why != "" {
				out[host] = append(out[host], rollout.PrunedContainer{Name: c.Name, ID: c.ID, Service: service, Why: why})
			}
		}
	}
	return out
}

// writePruneReport prints a line per host that has something to prune (or
// every host, with -v), under it (with -v, or for a dry run) a line per
// container and image, and a total.
func writePruneReport(out *output, r pruneReport, hosts []string, verbose bool) {
	removed, would := "removed", "freed"
	if r.DryRun {
		removed, would = "would remove", "would free at least"
	}
	var images, containers int
	var freed int64
	for _, h := range hosts {
		pr := r.Hosts[h]
		if pr == nil {
			continue
		}
		n := 0
		for _, img := range pr.Images {
			if img.Removed {
				n++
			}
		}
		images, containers, freed = images+n, containers+len(pr.Containers), freed+pr.Freed
		if len(pr.Images)+len(pr.Containers) == 0 && len(hosts) > 1 && !verbose {
			continue // the total says it
		}
		fmt.Fprintf(out.stdout, "%s: %s %s and %s; %s %s\n", h, removed, count(n, "image"), count(len(pr.Containers), "stopped container"), would, plan.SizeText(pr.Freed))
		if !verbose && !r.DryRun {
			continue
		}
		for _, c := range pr.Containers {
			fmt.Fprintf(out.stdout, "  - container %s (%s)\n", c.Name, c.Why)
		}
		for _, img := range pr.Images {
			name := strings.Join(img.Refs, ", ")
			if name == "" {
				name = "untagged"
			}
			mark := "-"
			if !img.Removed {
				mark = "="
			}
			fmt.Fprintf(out.stdout, "  %s image %s %s, %s of its own", mark, shortImageID(img.ID), name, plan.SizeText(img.Bytes))
			if img.Kept != "" {
				fmt.Fprintf(out.stdout, "; kept: %s", img.Kept)
			}
			fmt.Fprintln(out.stdout)
		}
	}
	if len(hosts) > 1 {
		fmt.Fprintf(out.stdout, "%d hosts: %s %s and %s; %s %s\n", len(hosts), removed, count(images, "image"), count(containers, "stopped container"), would, plan.SizeText(freed))
	}
	for _, h := range slices.Sorted(maps.Keys(r.Failed)) {
		fmt.Fprintf(out.stderr, "fleet: host %s not pruned: %s\n", h, r.Failed[h])
	}
}

func count(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

func shortImageID(id string) string {
	id = strings.TrimPrefix(id, "sha256:")
	if len(id) > 12 {
		id = id[:12]
	}
	return id
}
