package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"net"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/fleetdeploy/fleet/plan"
)

type statusCmd struct {
	Service string `arg:"" optional:"" help:"Only this service."`
	Project string `placeholder:"NAME" help:"The project's instances, found by their labels: no fleet.yaml needed, only the inventory."`
	Watch   bool   `short:"w" help:"Keep the table on screen, drawn again whenever a host's engine reports a change to the project's containers (no polling); Ctrl-C ends it. With --json, a document per change."`
}

// instanceStatus is one line of "fleet status".
type instanceStatus struct {
	Service  string    `json:"service"`
	Host     string    `json:"host"`
	Slot     int       `json:"slot"`
	Revision int       `json:"revision"`
	Image    string    `json:"image"`
	State    string    `json:"state"`
	Health   string    `json:"health,omitempty"`
	Started  time.Time `json:"started,omitempty"`
	Name     string    `json:"container"`
	// InRoute says, for a proxied service, whether the instance is in its
	// route on its host's proxy.
	InRoute *bool `json:"in_route,omitempty"`
}

func (c *statusCmd) Run(ctx context.Context, g *globals, out *output) error {
	s, err := c.open(ctx, g)
	if err != nil {
		return err
	}
	defer s.close()
	if c.Watch {
		return c.watch(ctx, g, out, s)
	}
	return c.show(ctx, g, out, s)
}

// show prints the table (or the JSON document) of the fleet as read.
func (c *statusCmd) show(ctx context.Context, g *globals, out *output, s *session) error {
	list := []instanceStatus{}
	// Routes are shown for a project with proxied services, and with
	// --project, where fleet.yaml does not say, when the hosts' proxies
	// have some of its routes.
	proxied := c.Project != ""
	for _, svc := range s.project.Services {
		proxied = proxied || svc.Proxy != nil
	}
	if proxied && s.fleet.Routes == nil {
		s.fleet.ReadRoutes(ctx, s.project.Name)
	}
	routes := s.fleet.Routes
	if c.Project != "" {
		proxied = false
		for _, r := range routes {
			proxied = proxied || len(r) > 0
		}
	}
	for host, st := range s.fleet.States {
		for _, ct := range st.Containers {
			svc := ct.Labels[plan.LabelService]
			if c.Service != "" && svc != c.Service {
				continue
			}
			slot, _ := strconv.Atoi(ct.Labels[plan.LabelSlot])
			rev, _ := strconv.Atoi(ct.Labels[plan.LabelRevision])
			is := instanceStatus{Service: svc, Host: host, Slot: slot, Revision: rev, Image: ct.Image,
				State: ct.Status, Health: ct.Health, Name: ct.Name}
			if ct.Running {
				is.Started = ct.StartedAt
			}
			// A proxied service whose route is gone from a proxy that
			// answered has every instance out of it.
			ups, proxied := routes[host][svc]
			if ds := s.project.Service(svc); ds != nil && ds.Proxy != nil && routes[host] != nil {
				proxied = true
			}
			if proxied {
				in := false
				for _, ip := range ct.Networks {
					for _, u := range ups.Upstreams {
						if h, _, _ := net.SplitHostPort(u); ip != "" && h == ip {
							in = true
						}
					}
				}
				is.InRoute = &in
			}
			list = append(list, is)
		}
	}
	sort.Slice(list, func(i, j int) bool {
		a, b := list[i], list[j]
		if a.Service != b.Service {
			return a.Service < b.Service
		}
		if a.Host != b.Host {
			return a.Host < b.Host
		}
		return a.Slot < b.Slot
	})
	balancers := balancersOf(s, routes)
	if g.JSON {
		enc := json.NewEncoder(out.stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(map[string]any{"instances": list, "balancers": balancers, "unreachable": s.fleet.Unreachable}); err != nil {
			return err
		}
	} else {
		if len(list) == 0 {
			what := "project " + s.project.Name
			if c.Service != "" {
				what = c.Service + " (" + what + ")"
			}
			fmt.Fprintf(out.stdout, "No instance of %s on the hosts that answered (%d of %d).\n", what, len(s.fleet.States), len(s.scope))
		} else {
			tw := tabwriter.NewWriter(out.stdout, 0, 0, 2, ' ', 0)
			header := "SERVICE\tHOST\tSLOT\tREV\tIMAGE\tSTATE\tHEALTH\tUPTIME"
			if proxied {
				header += "\tROUTE"
			}
			fmt.Fprintln(tw, header)
			for _, is := range list {
				uptime := "-"
				if !is.Started.IsZero() {
					uptime = time.Since(is.Started).Round(time.Second).String()
				}
				route := "-"
				switch {
				case is.InRoute == nil:
				case *is.InRoute:
					route = "in"
				default:
					route = "out"
				}
				line := fmt.Sprintf("%s\t%s\t%d\t%d\t%s\t%s\t%s\t%s", is.Service, is.Host, is.Slot, is.Revision, is.Image, is.State, dash(is.Health), uptime)
				if proxied {
					line += "\t" + route
				}
				fmt.Fprintln(tw, line)
			}
			tw.Flush()
		}
		for _, b := range balancers {
			if c.Service == "" || b.Service == c.Service {
				fmt.Fprintf(out.stdout, "load balancer %s: %s → %s\n", b.LB, b.Service, strings.Join(b.Hosts, ", "))
			}
		}
		for _, host := range slices.Sorted(maps.Keys(s.fleet.Unreachable)) {
			fmt.Fprintf(out.stdout, "! host %s unreachable: %s\n", host, s.fleet.Unreachable[host])
		}
	}
	if len(s.fleet.Unreachable) > 0 {
		return silentError{1, fmt.Sprintf("%d of %d hosts unreachable", len(s.fleet.Unreachable), len(s.scope))}
	}
	return nil
}

// open reads the hosts for the project that --project names, or else
// fleet.yaml's.
func (c *statusCmd) open(ctx context.Context, g *globals) (*session, error) {
	if c.Project != "" {
		return g.openProject(ctx, c.Project)
	}
	if _, err := os.Stat(g.File); errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("desired state %s: no such file: name it with -f FILE, or give the project with --project NAME to list its instances from the inventory alone", g.File)
	}
	var services []string
	if c.Service != "" {
		services = []string{c.Service}
	}
	return g.open(ctx, services, stateOnly)
}

// balancerStatus is a load balancer's route for a service, as its proxy
// has it: the hosts it sends to (an address that is no host's as it is).
type balancerStatus struct {
	LB      string   `json:"lb"`
	Service string   `json:"service"`
	Hosts   []string `json:"hosts"`
}

// balancersOf are the routes of the load balancers that answered.
func balancersOf(s *session, routes map[string]map[string]plan.LiveRoute) []balancerStatus {
	byAddr := map[string]string{}
	for _, h := range s.inv.Hosts {
		byAddr[plan.LBAddress(h)] = h.Name
	}
	out := []balancerStatus{}
	for _, h := range s.scope {
		if !h.LB {
			continue
		}
		for _, svc := range slices.Sorted(maps.Keys(routes[h.Name])) {
			b := balancerStatus{LB: h.Name, Service: svc, Hosts: []string{}}
			for _, u := range routes[h.Name][svc].Upstreams {
				if name, ok := byAddr[u]; ok {
					u = name
				}
				b.Hosts = append(b.Hosts, u)
			}
			slices.Sort(b.Hosts)
			out = append(out, b)
		}
	}
	return out
}
