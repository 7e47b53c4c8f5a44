package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"golang.org/x/term"

	"github.com/fleetdeploy/fleet/executor"
	"github.com/fleetdeploy/fleet/rollout"
)

type hostsCmd struct{}

// Help is the detail of "fleet hosts --help".
func (*hostsCmd) Help() string {
	return "Each host that cannot be used gets a state that says what is wrong (unreachable, refused, " +
		"auth refused, host key, engine down, ...) and a reason with what to check. On a terminal the " +
		"reasons are cut to its width; -v prints them whole, with the error they were read from. " +
		"In a pipe or a log (cron) they are never cut. Exit 1 when any host failed."
}

// hostReport is one line of "fleet hosts".
type hostReport struct {
	Host string `json:"host"`
	// Reachable is set once fleet is logged in to the host, even when its
	// engine then fails.
	Reachable bool `json:"reachable"`
	// State is "ok", or the fault: "unreachable", "refused", "engine down", ...
	State     string  `json:"state"`
	Error     string  `json:"error,omitempty"`
	RTTms     float64 `json:"rtt_ms,omitempty"`
	Docker    string  `json:"docker,omitempty"`
	CPUs      int     `json:"cpus,omitempty"`
	MemFree   int64   `json:"mem_available,omitempty"`
	DiskFree  int64   `json:"disk_free,omitempty"`
	Instances int     `json:"instances"`

	// reason is what the table shows after the state; cause, what -v adds.
	reason, cause string
}

func (c *hostsCmd) Run(ctx context.Context, g *globals, out *output) error {
	// The project, when fleet.yaml is there, to count its instances.
	inv, hosts, project, err := g.hostsAndProject()
	if err != nil {
		return err
	}
	ex := executor.New(ctx, g.executorOptions(inv))
	defer ex.Close()
	targets := make([]executor.Target, len(hosts))
	for i, h := range hosts {
		targets[i] = rollout.Target(h)
	}
	results, _ := executor.Map(ctx, ex, targets, "reading facts", func(ctx context.Context, c *executor.Conn) (hostReport, error) {
		// Map runs this only on a host it connected to: whatever fails
		// from here on, the host was reached.
		rtt, err := c.Ping(ctx)
		if err != nil {
			return hostReport{Reachable: true}, err
		}
		st, err := c.Engine().State(ctx, project)
		if err != nil {
			return hostReport{Reachable: true, RTTms: ms(rtt)}, err
		}
		return hostReport{Reachable: true, State: "ok", RTTms: ms(rtt), Docker: st.Facts.DockerVersion,
			CPUs: st.Facts.CPUs, MemFree: st.Facts.MemAvailable, DiskFree: st.Facts.DiskFree, Instances: len(st.Containers)}, nil
	})
	reports := make([]hostReport, len(results))
	for i, r := range results {
		reports[i] = r.Value
		reports[i].Host = r.Host
		if r.Err != nil {
			reports[i] = failedReport(r.Host, r.Value.Reachable, r.Err)
		}
	}
	if g.JSON {
		enc := json.NewEncoder(out.stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(reports); err != nil {
			return err
		}
	} else {
		width := 0
		if !g.Verbose {
			width = terminalWidth(out.stdout)
		}
		if cut := writeHostsTable(out.stdout, reports, project != "", g.Verbose, width); cut {
			fmt.Fprintln(out.stderr, "fleet: reasons cut to the terminal's width: \"fleet hosts -v\" prints them whole")
		}
	}
	return hostsSummary(reports)
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// failedReport describes a host that failed: its state is the fault, and
// its reason the error without the host's name, which the line begins with.
func failedReport(host string, reachable bool, err error) hostReport {
	rep := hostReport{Host: host, Reachable: reachable, State: "error", Error: err.Error()}
	if f := executor.FaultOf(err); f != "" {
		rep.State = string(f)
	} else if !reachable {
		rep.State = "unreachable"
	}
	rep.reason = strings.TrimPrefix(rep.Error, "host "+host+": ")
	var he *executor.HostError
	if rep.State != "error" && errors.As(err, &he) && he.Host == host {
		// The fault says it all, without what was being done when it
		// struck ("connecting", "reading state").
		rep.reason = he.Err.Error()
	}
	// One wording per fault, read from errors that differ (an i/o time-out,
	// a deadline, "no route to host"): -v shows which.
	var ce *executor.ConnectError
	if errors.As(err, &ce) && ce.Err != nil {
		rep.cause = ce.Err.Error()
	}
	return rep
}

// writeHostsTable writes the hosts as a table. A failed host's line ends
// with its reason, which is not part of the table's columns; with width
// above zero (a terminal), a reason that would run past it is cut. It
// reports whether a reason was cut.
func writeHostsTable(w io.Writer, reports []hostReport, counted, verbose bool, width int) (cut bool) {
	var buf bytes.Buffer
	tw := tabwriter.NewWriter(&buf, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "HOST\tSTATE\tRTT\tDOCKER\tCPUS\tMEM FREE\tDISK FREE\tINSTANCES")
	for _, r := range reports {
		if r.State != "ok" {
			reason := r.reason
			if verbose && r.cause != "" {
				reason += " [" + r.cause + "]"
			}
			// One line per host, whatever the error holds.
			fmt.Fprintf(tw, "%s\t%s\t%s\n", r.Host, r.State, strings.ReplaceAll(reason, "\n", " "))
			continue
		}
		inst := strconv.Itoa(r.Instances)
		if !counted {
			inst = "-"
		}
		fmt.Fprintf(tw, "%s\tok\t%s\t%s\t%d\t%s\t%s\t%s\n", r.Host, time.Duration(r.RTTms*float64(time.Millisecond)).Round(100*time.Microsecond),
			r.Docker, r.CPUs, gib(r.MemFree), gib(r.DiskFree), inst)
	}
	tw.Flush()
	lines := strings.SplitAfter(buf.String(), "\n")
	for i, line := range lines {
		if i == 0 || i > len(reports) || reports[i-1].State == "ok" || width <= 0 {
			continue
		}
		text := strings.TrimSuffix(line, "\n")
		if utf8.RuneCountInString(text) > width {
			lines[i] = cutTo(text, width) + "\n"
			cut = true
		}
	}
	io.WriteString(w, strings.Join(lines, ""))
	return cut
}

// cutTo shortens s to width characters, the last of them an ellipsis.
func cutTo(s string, width int) string {
	n := 0
	for i := range s {
		if n == width-1 {
			return strings.TrimRight(s[:i], " ") + "…"
		}
		n++
	}
	return s
}

// terminalWidth is the width of the terminal w writes to, or 0 when w is
// no terminal: a pipe or a log keeps every reason whole.
func terminalWidth(w io.Writer) int {
	f, ok := w.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return 0
	}
	if cols, _, err := term.GetSize(int(f.Fd())); err == nil && cols > 0 {
		return cols
	}
	if cols, err := strconv.Atoi(os.Getenv("COLUMNS")); err == nil && cols > 0 {
		return cols
	}
	return 80
}

// hostsSummary is the command's error when hosts failed: how many, and of
// which kind.
func hostsSummary(reports []hostReport) error {
	var unreachable, engineDown, failed int
	for _, r := range reports {
		switch {
		case r.State == "ok":
		case !r.Reachable:
			unreachable++
		case r.State == string(executor.FaultEngineDown):
			engineDown++
		default:
			failed++
		}
	}
	n := len(reports)
	switch bad := unreachable + engineDown + failed; {
	case bad == 0:
		return nil
	case bad == unreachable:
		return silentError{1, fmt.Sprintf("%d of %d hosts unreachable", bad, n)}
	case bad == engineDown:
		return silentError{1, fmt.Sprintf("%d of %d hosts with their docker engine down", bad, n)}
	case bad == failed:
		return silentError{1, fmt.Sprintf("%d of %d hosts failed", bad, n)}
	default:
		var parts []string
		for _, p := range []struct {
			n    int
			what string
		}{{unreachable, "unreachable"}, {engineDown, "engine down"}, {failed, "failed"}} {
			if p.n > 0 {
				parts = append(parts, fmt.Sprintf("%d %s", p.n, p.what))
			}
		}
		return silentError{1, fmt.Sprintf("%d of %d hosts not ready: %s", bad, n, strings.Join(parts, ", "))}
	}
}

func gib(b int64) string { return fmt.Sprintf("%.1fG", float64(b)/(1<<30)) }
