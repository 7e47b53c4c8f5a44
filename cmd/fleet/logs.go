package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/fleetdeploy/fleet/executor"
	"github.com/fleetdeploy/fleet/plan"
)

type logsCmd struct {
	Service    string `arg:"" help:"The service whose instances' logs are shown."`
	Follow     bool   `short:"F" help:"(-F, as -f names fleet.yaml) Keep following: new lines as they come (in time order, within a quarter of a second), through a host's lost connection (resumed from the last line seen) and into the container that a rollout puts in an instance's place. Ctrl-C ends it."`
	Tail       int    `placeholder:"N" help:"Only the last N lines of each instance."`
	Since      string `placeholder:"D|TIME" help:"Only lines written since D ago (90s, 10m, 2h) or since TIME (2026-12-01T10:00:00Z, 2026-12-01T10:00:00+01:00, or a day: 2026-12-01)."`
	Until      string `placeholder:"D|TIME" help:"Only lines written before D ago, or before TIME (as --since)."`
	Slot       int    `placeholder:"N" help:"Only the instance in slot N (fleet status shows the slots)."`
	Grep       string `placeholder:"RE" help:"Only lines that match RE (Go's regular expressions: error|warn, (?i)timeout)."`
	Timestamps bool   `short:"t" help:"Show the time of each line."`
	Project    string `placeholder:"NAME" help:"The project's instances, found by their labels: no fleet.yaml needed, only the inventory."`
}

// logLine is one line that an instance wrote.
type logLine struct {
	Time      time.Time `json:"time"`
	Host      string    `json:"host"`
	Slot      int       `json:"slot"`
	Container string    `json:"container"`
	Stream    string    `json:"stream"` // stdout or stderr
	Line      string    `json:"line"`
}

func (c *logsCmd) Run(ctx context.Context, g *globals, out *output) error {
	now := time.Now()
	since, err := logTime("--since", c.Since, now)
	if err != nil {
		return err
	}
	until, err := logTime("--until", c.Until, now)
	if err != nil {
		return err
	}
	var grep *regexp.Regexp
	if c.Grep != "" {
		if grep, err = regexp.Compile(c.Grep); err != nil {
			return fmt.Errorf("--grep %q: %v (Go's regular expression syntax: https://pkg.go.dev/regexp/syntax)", c.Grep, err)
		}
	}
	if c.Tail < 0 || c.Slot < 0 {
		return errors.New("--tail and --slot take a number above 0")
	}
	if c.Follow && !until.IsZero() {
		return errors.New("--until and --follow: a bound in the past ends what --follow would keep following; give one of them")
	}
	s, err := c.open(ctx, g)
	if err != nil {
		return err
	}
	defer s.close()

	all, err := instancesOf(s, c.Service, c.Slot, c.Project != "")
	if err != nil {
		return err
	}
	pr := newLogPrinter(g, out, all, c.Timestamps)
	if c.Follow {
		return c.follow(ctx, s, pr, all, grep, since)
	}

	// Each instance's logs are read at once, in parallel, with the time
	// of each line, then merged in time order.
	var (
		mu    sync.Mutex
		lines []logLine
		errs  = map[string]error{}
		wg    sync.WaitGroup
	)
	opts := executor.LogOptions{Tail: c.Tail, Since: since, Until: until, Timestamps: true}
	for _, in := range all {
		wg.Add(1)
		go func() {
			defer wg.Done()
			stdout := &logSplitter{}
			stderr := &logSplitter{}
			err := s.fleet.Conns[in.host].Engine().Logs(ctx, in.c.ID, opts, stdout, stderr)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs[in.host] = err
				return
			}
			for stream, sp := range map[string]*logSplitter{"stdout": stdout, "stderr": stderr} {
				for _, raw := range sp.lines() {
					l := in.line(stream, raw)
					if grep == nil || grep.MatchString(l.Line) {
						lines = append(lines, l)
					}
				}
			}
		}()
	}
	wg.Wait()
	sort.SliceStable(lines, func(i, j int) bool { return lines[i].Time.Before(lines[j].Time) })

	for _, l := range lines {
		if err := pr.print(l); err != nil {
			return err
		}
	}
	if len(all) == 0 && !g.JSON {
		fmt.Fprintf(out.stderr, "fleet: no instance of %s on the hosts that answered (%d of %d)\n", c.Service, len(s.fleet.States), len(s.scope))
	}
	var failed []string
	for _, host := range slices.Sorted(maps.Keys(errs)) {
		fmt.Fprintf(out.stderr, "fleet: %s: %v\n", host, errs[host])
		failed = append(failed, host)
	}
	for _, host := range slices.Sorted(maps.Keys(s.fleet.Unreachable)) {
		fmt.Fprintf(out.stderr, "fleet: host %s unreachable: %s\n", host, s.fleet.Unreachable[host])
		failed = append(failed, host)
	}
	if len(failed) > 0 {
		return silentError{1, fmt.Sprintf("no logs from %s", strings.Join(failed, ", "))}
	}
	return nil
}

// instancesOf finds the instances of service on the hosts that answered,
// running or not, in slot (0 for all), sorted by host and slot. With
// byLabels (--project), no fleet.yaml said the service exists: one with
// no instance is an error.
func instancesOf(s *session, service string, slot int, byLabels bool) ([]logInstance, error) {
	var all []logInstance
	services, slots := map[string]bool{}, map[int]bool{}
	for host, st := range s.fleet.States {
		for _, ct := range st.Containers {
			svc := ct.Labels[plan.LabelService]
			services[svc] = true
			if svc != service {
				continue
			}
			n, _ := strconv.Atoi(ct.Labels[plan.LabelSlot])
			slots[n] = true
			if slot == 0 || n == slot {
				all = append(all, logInstance{host, n, ct})
			}
		}
	}
	switch {
	case byLabels && !services[service]:
		return nil, fmt.Errorf("project %s has no instance of a service %s on the hosts that answered; its services there: %s", s.project.Name, service, orNone(slices.Sorted(maps.Keys(services))))
	case slot != 0 && !slots[slot]:
		return nil, fmt.Errorf("--slot %d: %s has no instance in that slot; its slots: %s", slot, service, orNone(slotNames(slots)))
	}
	sort.Slice(all, func(i, j int) bool {
		if all[i].host != all[j].host {
			return all[i].host < all[j].host
		}
		return all[i].slot < all[j].slot
	})
	return all, nil
}

// logInstance is an instance whose logs are read.
type logInstance struct {
	host string
	slot int
	c    executor.Container
}

// line reads one raw line of the instance's logs: the engine's time of
// it, a space, its text.
func (in logInstance) line(stream, raw string) logLine {
	l := logLine{Host: in.host, Slot: in.slot, Container: in.c.Name, Stream: stream, Line: raw}
	if stamp, text, ok := strings.Cut(raw, " "); ok {
		if t, err := time.Parse(time.RFC3339Nano, stamp); err == nil {
			l.Time, l.Line = t, text
		}
	}
	return l
}

// logPrinter prints lines as JSON, or prefixed by host and slot (in a
// colour per host on a terminal).
type logPrinter struct {
	out        *output
	json       *json.Encoder
	width      int
	color      bool
	hosts      map[string]int
	timestamps bool
	mu         sync.Mutex
	buf        bytes.Buffer
}

func newLogPrinter(g *globals, out *output, all []logInstance, timestamps bool) *logPrinter {
	pr := &logPrinter{out: out, color: g.style(out).Color, hosts: map[string]int{}, timestamps: timestamps}
	if g.JSON {
		pr.json = json.NewEncoder(out.stdout)
	}
	for _, in := range all {
		pr.width = max(pr.width, len(in.host)+1+len(strconv.Itoa(in.slot)))
		if _, ok := pr.hosts[in.host]; !ok {
			pr.hosts[in.host] = len(pr.hosts)
		}
	}
	return pr
}

func (pr *logPrinter) print(l logLine) error {
	if pr.json != nil {
		pr.mu.Lock()
		defer pr.mu.Unlock()
		return pr.json.Encode(l)
	}
	return pr.printTo(pr.out.stdout, l)
}

// printTo writes l to w as a line prefixed by its host and slot.
func (pr *logPrinter) printTo(w io.Writer, l logLine) error {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	b := &pr.buf
	b.Reset()
	who := fmt.Sprintf("%-*s", pr.width, l.Host+"/"+strconv.Itoa(l.Slot))
	if pr.color {
		who = fmt.Sprintf("\x1b[%dm%s\x1b[0m", hostColors[pr.hosts[l.Host]%len(hostColors)], who)
	}
	b.WriteString(who)
	b.WriteString(" | ")
	if pr.timestamps {
		b.WriteString(l.Time.Local().Format("2006-01-02T15:04:05.000Z07:00 "))
	}
	b.WriteString(l.Line)
	b.WriteByte('\n')
	_, err := w.Write(b.Bytes())
	return err
}

// hostColors are the ANSI colours that tell hosts apart on a terminal.
var hostColors = []int{36, 33, 35, 32, 34, 31}

// open reads the hosts for the project that --project names, or else
// fleet.yaml's, which must have the service.
func (c *logsCmd) open(ctx context.Context, g *globals) (*session, error) {
	return g.openService(ctx, c.Project, c.Service)
}

// openService reads the hosts for project, or with project "" for
// fleet.yaml's, which must have service.
func (g *globals) openService(ctx context.Context, project, service string) (*session, error) {
	if project != "" {
		return g.openProject(ctx, project)
	}
	if _, err := os.Stat(g.File); errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("desired state %s: no such file: name it with -f FILE, or give the project with --project NAME to find its instances with the inventory alone", g.File)
	}
	inv, p, err := g.loadBoth()
	if err != nil {
		return nil, err
	}
	if p.Service(service) == nil {
		var names []string
		for _, s := range p.Services {
			names = append(names, s.Name)
		}
		return nil, fmt.Errorf("%s has no service %s; its services: %s", g.File, service, orNone(names))
	}
	return g.openLoaded(ctx, inv, p, []string{service}, stateOnly)
}

// logTime reads --since or --until: a duration before now, an RFC 3339
// time, or a day (midnight, local time). "" is no bound.
func logTime(flag, v string, now time.Time) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	if d, err := time.ParseDuration(v); err == nil && d >= 0 {
		return now.Add(-d), nil
	}
	if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
		return t, nil
	}
	if t, err := time.ParseInLocation(time.DateOnly, v, time.Local); err == nil {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("%s %q: want a duration before now (90s, 10m, 2h), a time (2026-12-01T10:00:00Z) or a day (2026-12-01)", flag, v)
}

func slotNames(slots map[int]bool) []string {
	var out []string
	for _, n := range slices.Sorted(maps.Keys(slots)) {
		out = append(out, strconv.Itoa(n))
	}
	return out
}

func orNone(list []string) string {
	if len(list) == 0 {
		return "none"
	}
	return strings.Join(list, ", ")
}

// logSplitter keeps what one stream of a container wrote, as lines.
type logSplitter struct{ buf bytes.Buffer }

func (s *logSplitter) Write(p []byte) (int, error) { return s.buf.Write(p) }

// lines are the lines written, the last one even without its newline.
func (s *logSplitter) lines() []string {
	text := strings.TrimSuffix(s.buf.String(), "\n")
	if text == "" {
		return nil
	}
	return strings.Split(text, "\n")
}
