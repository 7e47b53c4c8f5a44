package plan

import (
	"fmt"
	"io"
	"strings"
)

// Style colours the human output; the zero value prints plain text, for
// pipes, cron logs and NO_COLOR.
type Style struct {
	Color bool
}

func (st Style) paint(code, s string) string {
	if !st.Color {
		return s
	}
	return "\x1b[" + code + "m" + s + "\x1b[0m"
}

func (st Style) marker(k Kind) string {
	m := fmt.Sprintf("%-3s", k.Marker())
	switch k {
	case Create:
		return st.paint("32", m)
	case Remove:
		return st.paint("31", m)
	case Replace:
		return st.paint("33", m)
	case Update, Start:
		return st.paint("36", m)
	}
	return m
}

// groupAbove is the number of a service's action lines above which the
// human plan shows alike actions as one line, unless verbose.
const groupAbove = 50

// someHosts names the first hosts of a group and counts the rest.
func someHosts(hosts []string) string {
	const named = 3
	if len(hosts) <= named+1 {
		return strings.Join(hosts, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(hosts[:named], ", "), len(hosts)-named)
}

// Render writes the plan for people: by service, then host, one line per
// action with its marker and reasons (alike actions as one line with
// their count, for a service with many and unless verbose), then the
// service's notes and warnings; unchanged instances only when verbose;
// then the unreachable hosts and a summary line.
func (p *Plan) Render(w io.Writer, st Style, verbose bool) error {
	var b strings.Builder
	if len(p.ProxyUpgrades) > 0 {
		b.WriteString(st.paint("1", "proxy") + "\n")
		for _, u := range p.ProxyUpgrades {
			if u.From == u.To {
				fmt.Fprintf(&b, "  %s %-12s %s: an upgrade cut short is finished\n", st.marker(Update), u.Host, u.To)
				continue
			}
			fmt.Fprintf(&b, "  %s %-12s %s → %s: proxy_image changed; the new proxy starts beside the old one, which then finishes its requests and stops\n", st.marker(Update), u.Host, u.From, u.To)
		}
		b.WriteString("\n")
	}
	var lbs []string
	for _, lb := range p.Balancers {
		if lb.Reason == "" && !verbose {
			continue
		}
		marker, to := st.marker(Update), strings.Join(lb.Hosts, ", ")
		switch {
		case lb.Reason == "":
			marker, lb.Reason = st.marker(Unchanged), "unchanged"
		case lb.Was == nil:
			marker = st.marker(Create)
		case len(lb.Hosts) == 0:
			marker, to = st.marker(Remove), "nothing"
		}
		lbs = append(lbs, fmt.Sprintf("  %s %-12s %s → %s: %s\n", marker, lb.LB, lb.Service, to, lb.Reason))
	}
	if len(lbs) > 0 {
		b.WriteString(st.paint("1", "load balancers") + "\n" + strings.Join(lbs, "") + "\n")
	}
	for _, sp := range p.Services {
		var lines []string
		type group struct {
			kind    Kind
			reasons string
			hosts   []string
		}
		var groups []*group
		byKey := map[string]*group{}
		for _, a := range sp.Actions {
			if a.Kind == Unchanged && !verbose {
				continue
			}
			reasons := strings.Join(a.Reasons, "; ")
			if a.Drift {
				reasons += " " + st.paint("35", "(drift)")
			}
			switch a.Kind {
			case Unchanged:
				reasons = "unchanged"
			case Update:
				// Said in words: a ~ alone is easily read as a replacement.
				reasons = "in place: " + reasons
			}
			lines = append(lines, fmt.Sprintf("  %s %-12s slot %-3d %s", st.marker(a.Kind), a.Host, a.Slot, reasons))
			key := string(a.Kind) + "\x00" + reasons
			if byKey[key] == nil {
				byKey[key] = &group{kind: a.Kind, reasons: reasons}
				groups = append(groups, byKey[key])
			}
			byKey[key].hosts = append(byKey[key].hosts, a.Host)
		}
		if len(lines) > groupAbove && !verbose {
			// A thousand lines that say the same bury the one that does
			// not: alike actions are one line each, with their count.
			lines = lines[:0]
			for _, g := range groups {
				lines = append(lines, fmt.Sprintf("  %s %d × on %s: %s", st.marker(g.kind), len(g.hosts), someHosts(g.hosts), g.reasons))
			}
			lines = append(lines, "  (fleet plan -v lists every instance)")
		}
		if len(lines) == 0 && len(sp.Notes) == 0 {
			continue
		}
		head := "service " + st.paint("1", sp.Name)
		if sp.NewRevision && hasChange(sp, Create, Replace) {
			head += fmt.Sprintf(" (revision %d)", sp.Revision)
		}
		b.WriteString(head + "\n")
		for _, l := range lines {
			b.WriteString(l + "\n")
		}
		for _, n := range sp.Notes {
			b.WriteString("  " + st.paint("33", "note:") + " " + n + "\n")
		}
		for _, w := range sp.Warnings {
			b.WriteString("  " + st.paint("31", "warning:") + " " + w + "\n")
		}
		b.WriteString("\n")
	}
	for _, u := range p.Unreachable {
		fmt.Fprintf(&b, "%s host %s %s: %s\n", st.paint("31", "!"), u.Host, u.State, u.Reason)
	}
	if len(p.Unreachable) > 0 {
		b.WriteString("\n")
	}
	b.WriteString(p.SummaryLine() + "\n")
	_, err := io.WriteString(w, b.String())
	return err
}

func hasChange(sp *ServicePlan, kinds ...Kind) bool {
	for _, a := range sp.Actions {
		for _, k := range kinds {
			if a.Kind == k {
				return true
			}
		}
	}
	return false
}

// SummaryLine is the plan's last line: "Plan: 2 to create, 4 to replace,
// 1 to remove, 3 unchanged." or that there is nothing to do.
func (p *Plan) SummaryLine() string {
	s := p.Summary
	if !p.Changes() {
		line := fmt.Sprintf("No changes: %s as desired.", plural(s.Unchanged, "instance"))
		if len(p.Unreachable) > 0 {
			line = fmt.Sprintf("No changes on the hosts that answered: %s as desired; %s.", plural(s.Unchanged, "instance"), p.Problems(0))
		}
		return line
	}
	var parts []string
	add := func(n int, what string) {
		if n > 0 {
			parts = append(parts, fmt.Sprintf("%d to %s", n, what))
		}
	}
	add(s.Create, "create")
	add(s.Update, "update in place")
	add(s.Replace, "replace")
	add(s.Start, "start")
	add(s.Remove, "remove")
	if s.ProxyUpgrade > 0 {
		parts = append(parts, fmt.Sprintf("the proxy to upgrade on %s", plural(s.ProxyUpgrade, "host")))
	}
	if s.Balance > 0 {
		parts = append(parts, fmt.Sprintf("%s to change", plural(s.Balance, "load-balancer route")))
	}
	line := "Plan: " + strings.Join(parts, ", ") + fmt.Sprintf(", %d unchanged.", s.Unchanged)
	if len(p.Unreachable) > 0 {
		line += fmt.Sprintf(" %s.", p.Problems(0))
	}
	return line
}

func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
