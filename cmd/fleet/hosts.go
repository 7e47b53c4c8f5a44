package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/fleetdeploy/fleet/executor"
	"github.com/fleetdeploy/fleet/plan"
	"github.com/fleetdeploy/fleet/rollout"
)

type hostsCmd struct{}

// hostReport is one line of "fleet hosts".
type hostReport struct {
	Host      string  `json:"host"`
	Reachable bool    `json:"reachable"`
	Error     string  `json:"error,omitempty"`
	RTTms     float64 `json:"rtt_ms,omitempty"`
	Docker    string  `json:"docker,omitempty"`
	CPUs      int     `json:"cpus,omitempty"`
	MemFree   int64   `json:"mem_available,omitempty"`
	DiskFree  int64   `json:"disk_free,omitempty"`
	Instances int     `json:"instances"`
}

func (c *hostsCmd) Run(ctx context.Context, g *globals, out *output) error {
	inv, err := g.loadInventory()
	if err != nil {
		return err
	}
	hosts, err := g.selected(inv)
	if err != nil {
		return err
	}
	// The project, when fleet.yaml is there, to count its instances.
	project := ""
	if _, err := os.Stat(g.File); err == nil {
		if p, err := plan.LoadProject(g.File, inv); err == nil {
			project = p.Name
		}
	}
	ex := executor.New(ctx, executor.Options{Parallel: g.Parallel, HostKeyPolicy: executor.HostKeyPolicy(g.HostKeys), HashKnownHosts: hashKnownHosts(inv)})
	defer ex.Close()
	targets := make([]executor.Target, len(hosts))
	for i, h := range hosts {
		targets[i] = rollout.Target(h)
	}
	results, _ := executor.Map(ctx, ex, targets, "reading facts", func(ctx context.Context, c *executor.Conn) (hostReport, error) {
		rtt, err := c.Ping(ctx)
		if err != nil {
			return hostReport{}, err
		}
		st, err := c.Engine().State(ctx, project)
		if err != nil {
			return hostReport{}, err
		}
		return hostReport{Reachable: true, RTTms: float64(rtt.Microseconds()) / 1000, Docker: st.Facts.DockerVersion,
			CPUs: st.Facts.CPUs, MemFree: st.Facts.MemAvailable, DiskFree: st.Facts.DiskFree, Instances: len(st.Containers)}, nil
	})
	var reports []hostReport
	down := 0
	for _, r := range results {
		rep := r.Value
		rep.Host = r.Host
		if r.Err != nil {
			down++
			rep = hostReport{Host: r.Host, Error: r.Err.Error()}
		}
		reports = append(reports, rep)
	}
	if g.JSON {
		enc := json.NewEncoder(out.stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(reports); err != nil {
			return err
		}
	} else {
		tw := tabwriter.NewWriter(out.stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "HOST\tSTATE\tRTT\tDOCKER\tCPUS\tMEM FREE\tDISK FREE\tINSTANCES")
		for _, r := range reports {
			if !r.Reachable {
				fmt.Fprintf(tw, "%s\tunreachable: %s\t\t\t\t\t\t\n", r.Host, strings.TrimPrefix(r.Error, "host "+r.Host+": "))
				continue
			}
			inst := fmt.Sprint(r.Instances)
			if project == "" {
				inst = "-"
			}
			fmt.Fprintf(tw, "%s\tok\t%s\t%s\t%d\t%s\t%s\t%s\n", r.Host, time.Duration(r.RTTms*float64(time.Millisecond)).Round(100*time.Microsecond),
				r.Docker, r.CPUs, gib(r.MemFree), gib(r.DiskFree), inst)
		}
		tw.Flush()
	}
	if down > 0 {
		return silentError{1, fmt.Sprintf("%d of %d hosts unreachable", down, len(hosts))}
	}
	return nil
}

func gib(b int64) string { return fmt.Sprintf("%.1fG", float64(b)/(1<<30)) }
