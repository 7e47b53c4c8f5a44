package main

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/fleetdeploy/fleet/plan"
	"github.com/fleetdeploy/fleet/rollout"
)

// metrics is what --metrics-file says of one run, in the Prometheus text
// format that node_exporter's textfile collector reads: the file is
// written whole (a temporary file renamed), its samples carry no
// timestamps (the collector refuses them), and times are values.
type metrics struct {
	path    string
	project string
	started time.Time
	// changesOK: exit code 2 (plan --detailed-exitcode: changes pending)
	// is a success too.
	changesOK bool

	// Known once the hosts were read.
	read     bool
	up, down int
	drift    map[[2]string]int // service, kind: instances not as fleet.yaml says
	changes  map[[2]string]int // service, kind: changes made
	desired  map[string]int
	running  map[string]int
	revision map[string]int
	services []string
	// proxyPending: hosts whose proxy the run found on another image than
	// proxy_image; proxyUpgraded: those it upgraded.
	proxyPending, proxyUpgraded int
	lastSuccess                 float64 // of an earlier run, from the file as it was
}

// metricKinds are the kinds of change, each said even when none was
// found, so that an alert can tell none from unknown.
var metricKinds = []plan.Kind{plan.Create, plan.Start, plan.Update, plan.Replace, plan.Remove}

// newMetrics checks that a metrics file can be written at path, before
// any host is contacted; nil without a path.
func newMetrics(path string) (*metrics, error) {
	if path == "" {
		return nil, nil
	}
	dir := filepath.Dir(path)
	if fi, err := os.Stat(path); err == nil && fi.IsDir() {
		return nil, fmt.Errorf("--metrics-file %s is a directory: name a file in it, such as %s", path, filepath.Join(path, "fleet.prom"))
	}
	f, err := os.CreateTemp(dir, ".fleet-metrics-*")
	if err != nil {
		return nil, fmt.Errorf("--metrics-file %s: cannot write in %s: %w (node_exporter's textfile directory must exist and be writable by this user)", path, dir, errors.Unwrap(err))
	}
	f.Close()
	os.Remove(f.Name())
	m := &metrics{path: path, started: time.Now()}
	m.project, m.lastSuccess = lastSuccess(path)
	return m, nil
}

// lastSuccess reads, from the metrics file an earlier run wrote, its
// project and when its last successful run was (0 if none was).
func lastSuccess(path string) (project string, when float64) {
	f, err := os.Open(path)
	if err != nil {
		return "", 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line, ok := strings.CutPrefix(sc.Text(), "fleet_last_success_timestamp_seconds{")
		if !ok {
			continue
		}
		labels, value, ok := strings.Cut(line, "} ")
		if v, err := strconv.ParseFloat(value, 64); ok && err == nil {
			name, _ := strconv.Unquote(strings.TrimPrefix(labels, "project="))
			return name, v
		}
	}
	return "", 0
}

// observe takes what the hosts run now, and what the plan finds to
// change in it.
func (m *metrics) observe(s *session, p *plan.Plan) {
	if m == nil {
		return
	}
	m.read = true
	m.project = s.project.Name
	m.down = len(p.Unreachable)
	m.up = len(s.scope) - m.down
	m.proxyPending = len(p.ProxyUpgrades)
	m.drift = map[[2]string]int{}
	m.desired, m.running, m.revision = map[string]int{}, map[string]int{}, map[string]int{}
	m.services = nil
	for _, sp := range p.Services {
		m.services = append(m.services, sp.Name)
		for _, a := range sp.Actions {
			if a.Kind != plan.Unchanged {
				m.drift[[2]string{sp.Name, string(a.Kind)}]++
			}
		}
		if svc := s.project.Service(sp.Name); svc != nil {
			m.desired[sp.Name] = desiredOf(s, svc)
		}
	}
	m.count(s)
}

// desiredOf is how many instances of svc should run in the run's scope.
func desiredOf(s *session, svc *plan.Service) int {
	if svc.ReplicasSet {
		return svc.Replicas
	}
	inScope := map[string]bool{}
	for _, h := range s.scope {
		inScope[h.Name] = true
	}
	n := 0
	for _, h := range svc.SelectedHosts(s.inv) {
		if inScope[h.Name] {
			n++
		}
	}
	return n
}

// count counts the running instances of each service, and the newest
// revision they run, in what the session read last.
func (m *metrics) count(s *session) {
	live := s.fleet.Live(s.project.Name)
	clear(m.running)
	clear(m.revision)
	for _, h := range live.Hosts {
		for _, c := range h.Containers {
			svc := c.Labels[plan.LabelService]
			if c.Labels[plan.LabelProject] != s.project.Name || !c.Running || !slices.Contains(m.services, svc) {
				continue
			}
			m.running[svc]++
			rev, _ := strconv.Atoi(c.Labels[plan.LabelRevision])
			m.revision[svc] = max(m.revision[svc], rev)
		}
	}
}

// applied takes what a rollout changed.
func (m *metrics) applied(res *rollout.Result) {
	if m == nil || res == nil {
		return
	}
	if m.changes == nil {
		m.changes = map[[2]string]int{}
	}
	m.proxyUpgraded = len(res.ProxyUpgraded)
	for _, o := range res.Outcomes {
		for kind, n := range o.ByKind {
			m.changes[[2]string{o.Service, string(kind)}] += n
		}
	}
}

// write writes the file for a run that ends with code.
func (m *metrics) write(code int) error {
	if m == nil {
		return nil
	}
	now := time.Now()
	if code == 0 || code == 2 && m.changesOK {
		m.lastSuccess = unixSeconds(now)
	}
	var b strings.Builder
	project := label("project", m.project)
	gauge := func(name, help string) {
		fmt.Fprintf(&b, "# HELP %s %s\n# TYPE %s gauge\n", name, help, name)
	}
	sample := func(name, labels string, v float64) {
		fmt.Fprintf(&b, "%s{%s} %s\n", name, labels, strconv.FormatFloat(v, 'f', -1, 64))
	}
	gauge("fleet_last_run_timestamp_seconds", "When the last run ended, in seconds since the Unix epoch.")
	sample("fleet_last_run_timestamp_seconds", project, unixSeconds(now))
	gauge("fleet_last_success_timestamp_seconds", "When the last run that succeeded ended (0: none yet).")
	sample("fleet_last_success_timestamp_seconds", project, m.lastSuccess)
	gauge("fleet_run_duration_seconds", "How long the last run took.")
	sample("fleet_run_duration_seconds", project, now.Sub(m.started).Seconds())
	gauge("fleet_exit_code", "The last run's exit code: 0 converged or repaired, 1 error, 2 changes pending (plan --detailed-exitcode), 3 rolled back, 4 deploy lock held by another run.")
	sample("fleet_exit_code", project, float64(code))
	gauge("fleet_lock_held", "1 when the last run found the deploy lock held by another run.")
	sample("fleet_lock_held", project, b2f(code == 4))
	if m.read {
		gauge("fleet_hosts", "Hosts in the run's scope, by whether they could be read.")
		sample("fleet_hosts", project+","+label("state", "up"), float64(m.up))
		sample("fleet_hosts", project+","+label("state", "unreachable"), float64(m.down))
		gauge("fleet_drift", "Instances the run found not as fleet.yaml says (stopped, missing, changed by hand, or fleet.yaml changed), by the change that brings them back.")
		m.byKind(&b, "fleet_drift", m.drift, sample)
		gauge("fleet_changes", "Changes the last run made, by kind.")
		m.byKind(&b, "fleet_changes", m.changes, sample)
		gauge("fleet_proxy_upgrades", "Hosts whose proxy runs another image than proxy_image: found by the run, and upgraded by it.")
		sample("fleet_proxy_upgrades", project+","+label("state", "found"), float64(m.proxyPending))
		sample("fleet_proxy_upgrades", project+","+label("state", "upgraded"), float64(m.proxyUpgraded))
		gauge("fleet_instances", "Instances of each service: desired, and running after the run.")
		for _, svc := range m.services {
			sample("fleet_instances", project+","+label("service", svc)+","+label("state", "desired"), float64(m.desired[svc]))
			sample("fleet_instances", project+","+label("service", svc)+","+label("state", "running"), float64(m.running[svc]))
		}
		gauge("fleet_revision", "The newest revision of each service that runs (0: none runs).")
		for _, svc := range m.services {
			sample("fleet_revision", project+","+label("service", svc), float64(m.revision[svc]))
		}
	}
	return writeWhole(m.path, b.String())
}

// byKind writes one sample per service and kind of change, zeros too.
func (m *metrics) byKind(b *strings.Builder, name string, n map[[2]string]int, sample func(string, string, float64)) {
	for _, svc := range m.services {
		for _, k := range metricKinds {
			sample(name, label("project", m.project)+","+label("service", svc)+","+label("kind", string(k)), float64(n[[2]string{svc, string(k)}]))
		}
	}
}

// writeWhole writes content to path through a temporary file in the same
// directory, renamed over it: a reader sees the old file or the new one.
func writeWhole(path, content string) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("writing the metrics file: %w", err)
	}
	defer os.Remove(f.Name())
	_, err = f.WriteString(content)
	if err == nil {
		// The collector runs as another user.
		err = f.Chmod(0o644)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		return fmt.Errorf("writing the metrics file %s: %w", path, err)
	}
	return nil
}

// label is name="value", the value escaped as the text format wants.
func label(name, value string) string {
	return name + `="` + strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`).Replace(value) + `"`
}

func unixSeconds(t time.Time) float64 { return float64(t.UnixMilli()) / 1000 }

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// exitCodeOf is the exit code a command's error ends the process with.
func exitCodeOf(err error) int {
	if err == nil {
		return 0
	}
	var ec exitCoder
	if errors.As(err, &ec) {
		return ec.ExitCode()
	}
	return 1
}

// withMetrics runs a command and then writes its metrics file, if it has
// one, with the exit code its error gives.
func withMetrics(m *metrics, err error) error {
	if werr := m.write(exitCodeOf(err)); werr != nil {
		if err == nil {
			return werr
		}
		return fmt.Errorf("%w (and %v)", err, werr)
	}
	return err
}
