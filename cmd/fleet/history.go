package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/user"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/fleetdeploy/fleet/plan"
	"github.com/fleetdeploy/fleet/rollout"
)

type historyCmd struct {
	Service string `arg:"" help:"The service."`
}

func (c *historyCmd) Run(ctx context.Context, g *globals, out *output) error {
	s, err := g.open(ctx, []string{c.Service}, stateOnly)
	if err != nil {
		return err
	}
	defer s.close()
	revs, err := rollout.History(ctx, s.fleet.Conns, s.project.Name, c.Service)
	if err != nil {
		return err
	}
	if g.JSON {
		list := make([]historyEntry, 0, len(revs))
		for _, r := range revs {
			list = append(list, entryOf(r))
		}
		enc := json.NewEncoder(out.stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(list); err != nil {
			return err
		}
	} else if len(revs) == 0 {
		fmt.Fprintf(out.stdout, "No revision of %s is recorded on the hosts that answered.\n", c.Service)
	} else if err := writeHistory(out.stdout, revs, terminalWidth(out.stdout)); err != nil {
		return err
	}
	return unreachableHosts(s)
}

// writeHistory prints one revision a line under a header, in aligned
// columns. On a terminal of the given width (0: none) a line longer than
// it loses the end of its change cause, the last column, unless too little
// of the cause would be left to read: then the terminal wraps it.
func writeHistory(w io.Writer, revs []rollout.Revision, width int) error {
	const header = "REV\tWHEN\tWHO\tIMAGE\tOUTCOME\tCAUSE"
	var b bytes.Buffer
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, header)
	for _, r := range revs {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\n", r.Revision, r.When.Local().Format("2006-01-02 15:04"),
			whoName(r.Who), r.Template.Image, dash(r.Outcome), dash(r.Cause))
	}
	tw.Flush()
	text := b.String()
	if first, _, _ := strings.Cut(text, "\n"); width-utf8.RuneCountInString(strings.TrimSuffix(first, "CAUSE")) < 20 {
		width = 0
	}
	for line := range strings.Lines(text) {
		line = strings.TrimSuffix(line, "\n")
		if width > 0 && utf8.RuneCountInString(line) > width {
			line = string([]rune(line)[:width-1]) + "…"
		}
		if _, err := fmt.Fprintln(w, line); err != nil {
			return err
		}
	}
	return nil
}

// whoName names the user of a record made on this machine whose user is
// a number: runs without $USER recorded the numeric user ID.
func whoName(who string) string {
	name, machine, ok := strings.Cut(who, "@")
	if _, err := strconv.Atoi(name); !ok || err != nil {
		return who
	}
	if here, _ := os.Hostname(); here != machine {
		return who
	}
	u, err := user.LookupId(name)
	if err != nil {
		return who
	}
	return u.Username + "@" + machine
}

// historyEntry is a revision as "fleet history --json" shows it: the keys
// in snake_case and durations and sizes written as in fleet.yaml. The
// record kept on the hosts (rollout.Revision) keeps its own format.
type historyEntry struct {
	Service   string           `json:"service"`
	Revision  int              `json:"revision"`
	When      time.Time        `json:"when"`
	Who       string           `json:"who"`
	Image     string           `json:"image"`
	Cause     string           `json:"cause"`
	Outcome   string           `json:"outcome"`
	Spec      string           `json:"spec"`
	Template  historyTemplate  `json:"template"`
	Resources historyResources `json:"resources"`
	Restart   string           `json:"restart"`
}

// historyTemplate is the container template with its stop_grace as a
// duration string; the field hides the template's own.
type historyTemplate struct {
	plan.Template
	StopGrace string `json:"stop_grace,omitempty"`
}

type historyResources struct {
	CPUs   float64 `json:"cpus,omitempty"`
	Memory string  `json:"memory,omitempty"`
}

func entryOf(r rollout.Revision) historyEntry {
	e := historyEntry{Service: r.Service, Revision: r.Revision, When: r.When, Who: whoName(r.Who), Image: r.Template.Image,
		Cause: r.Cause, Outcome: r.Outcome, Spec: r.Spec, Template: historyTemplate{Template: r.Template},
		Resources: historyResources{CPUs: r.Resources.CPUs, Memory: sizeText(r.Resources.Memory)}, Restart: r.Restart.String()}
	if r.Template.StopGrace != 0 {
		e.Template.StopGrace = plan.DurationText(r.Template.StopGrace)
	}
	return e
}

// sizeText writes a byte count as fleet.yaml would: 512M, 2G; "" for none.
func sizeText(n int64) string {
	switch {
	case n == 0:
		return ""
	case n%(1<<30) == 0:
		return strconv.FormatInt(n>>30, 10) + "G"
	case n%(1<<20) == 0:
		return strconv.FormatInt(n>>20, 10) + "M"
	case n%(1<<10) == 0:
		return strconv.FormatInt(n>>10, 10) + "K"
	}
	return strconv.FormatInt(n, 10)
}

type rollbackCmd struct {
	Service  string        `arg:"" help:"The service."`
	To       int           `placeholder:"REVISION" help:"The revision to go back to (default: the last one deployed before the current one)."`
	Yes      bool          `short:"y" help:"Do not ask for confirmation (needed without a terminal)."`
	LockWait time.Duration `placeholder:"D" help:"Wait up to D for another run's deploy lock."`
}

func (c *rollbackCmd) Run(ctx context.Context, g *globals, out *output) error {
	s, err := g.open(ctx, []string{c.Service}, toChange)
	if err != nil {
		return err
	}
	defer s.close()
	revs, err := rollout.History(ctx, s.fleet.Conns, s.project.Name, c.Service)
	if err != nil {
		return err
	}
	current, currentSpec := 0, ""
	for _, st := range s.fleet.States {
		for _, ct := range st.Containers {
			if ct.Labels[plan.LabelService] == c.Service && ct.Running {
				if n, _ := strconv.Atoi(ct.Labels[plan.LabelRevision]); n > current {
					current, currentSpec = n, ct.Labels[plan.LabelSpec]
				}
			}
		}
	}
	var target *rollout.Revision
	for i := len(revs) - 1; i >= 0; i-- {
		r := revs[i]
		if (c.To != 0 && r.Revision == c.To) || (c.To == 0 && r.Revision < current && r.Outcome == "deployed") {
			target = &revs[i]
			break
		}
	}
	if target == nil {
		if c.To != 0 {
			return fmt.Errorf("revision %d of %s is not kept on the hosts: fleet history %s lists those that are", c.To, c.Service, c.Service)
		}
		return fmt.Errorf("no deployed revision of %s before the current one (%d) is kept: fleet history %s lists them", c.Service, current, c.Service)
	}
	old, err := target.AsService(s.project.Service(c.Service))
	if err != nil {
		return err
	}
	project := *s.project
	project.Services = nil
	for _, svc := range s.project.Services {
		if svc.Name == c.Service {
			svc = old
		}
		project.Services = append(project.Services, svc)
	}
	s.project = &project
	fmt.Fprintf(out.stdout, "Rolling %s back to revision %d (%s, %s):\n\n", c.Service, target.Revision, target.Template.Image, target.When.Local().Format("2006-01-02 15:04"))
	return s.apply(ctx, g, out, applyRun{services: []string{c.Service}, yes: c.Yes, lockWait: c.LockWait,
		cause: fmt.Sprintf("rollback to revision %d", target.Revision), command: "fleet rollback " + c.Service,
		rollback: &plan.RollbackOf{To: target.Revision, From: current, FromSpec: currentSpec}})
}
