package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/alecthomas/kong"
	"gopkg.in/yaml.v3"
)

// The files of examples/cron are what a user copies to keep a fleet
// converged from a timer: their fleet command lines must parse, the
// systemd units must pass systemd's own check, and the alert rules must
// ask about metrics that fleet writes.

const cronDir = "../../examples/cron"

// parses checks that a fleet command line is one this fleet takes.
func parses(t *testing.T, where string, args []string) {
	t.Helper()
	var c cli
	parser, err := kong.New(&c, kong.Name("fleet"), kong.Exit(func(int) { t.Errorf("%s: fleet %v exits while parsing", where, args) }))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := parser.Parse(args); err != nil {
		t.Errorf("%s: fleet %s: %v", where, strings.Join(args, " "), err)
	}
}

func TestCronExamplesCommandLinesParse(t *testing.T) {
	service := string(read(t, filepath.Join(cronDir, "fleet-reconcile.service")))
	start := regexp.MustCompile(`(?m)^ExecStart=\S+/fleet (.*)$`).FindStringSubmatch(service)
	if start == nil {
		t.Fatal("fleet-reconcile.service has no ExecStart of fleet")
	}
	parses(t, "fleet-reconcile.service", strings.Fields(start[1]))

	var lines []string
	for _, line := range strings.Split(string(read(t, filepath.Join(cronDir, "fleet-reconcile.cron"))), "\n") {
		if line != "" && !strings.HasPrefix(line, "#") && !strings.Contains(line, "=") {
			lines = append(lines, line)
		}
	}
	if len(lines) != 1 {
		t.Fatalf("fleet-reconcile.cron has %d job lines, want 1", len(lines))
	}
	// /etc/cron.d: five time fields, the user, then the command.
	f := strings.Fields(lines[0])
	if len(f) < 7 || f[5] != "fleet" || f[6] != "flock" {
		t.Fatalf("the cron line is not \"m h dom mon dow fleet flock ...\": %s", lines[0])
	}
	i := slices.Index(f, "fleet")
	rest := f[i+1:]
	i = slices.Index(rest, "fleet")
	if i < 0 {
		t.Fatalf("the cron line runs no fleet under flock: %s", lines[0])
	}
	parses(t, "fleet-reconcile.cron", rest[i+1:])
}

// TestCronExamplesSystemdUnitsVerify runs systemd-analyze verify on the
// service and timer, the service's fleet being this test's binary; a
// warning fails it as an error does.
func TestCronExamplesSystemdUnitsVerify(t *testing.T) {
	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		t.Skip("no systemd-analyze (scripts/deps installs it)")
	}
	dir := t.TempDir()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"fleet-reconcile.service", "fleet-reconcile.timer"} {
		unit := strings.ReplaceAll(string(read(t, filepath.Join(cronDir, name))), "/usr/local/bin/fleet", self)
		if err := os.WriteFile(filepath.Join(dir, name), []byte(unit), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command("systemd-analyze", "verify", filepath.Join(dir, "fleet-reconcile.service"), filepath.Join(dir, "fleet-reconcile.timer"))
	out, err := cmd.CombinedOutput()
	var ours []string
	for _, line := range strings.Split(string(out), "\n") {
		// Other units of this machine may have warnings of their own.
		if strings.Contains(line, "fleet-reconcile") {
			ours = append(ours, line)
		}
	}
	if err != nil || len(ours) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, strings.Join(ours, "\n"))
	}
}

// TestCronExamplesAlertsAskForFleetsMetrics reads alerts.yml as Prometheus
// does (groups of rules, each an alert with an expression) and checks
// that every fleet_ metric it names is one that --metrics-file writes;
// then promtool checks the rules, expressions included.
func TestCronExamplesAlertsAskForFleetsMetrics(t *testing.T) {
	path := filepath.Join(cronDir, "alerts.yml")
	var rules struct {
		Groups []struct {
			Name  string `yaml:"name"`
			Rules []struct {
				Alert       string            `yaml:"alert"`
				Expr        string            `yaml:"expr"`
				For         string            `yaml:"for"`
				Labels      map[string]string `yaml:"labels"`
				Annotations map[string]string `yaml:"annotations"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	dec := yaml.NewDecoder(strings.NewReader(string(read(t, path))))
	dec.KnownFields(true)
	if err := dec.Decode(&rules); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	// The metrics fleet writes, from a file it wrote.
	prom := filepath.Join(t.TempDir(), "fleet.prom")
	m, err := newMetrics(prom)
	if err != nil {
		t.Fatal(err)
	}
	m.project, m.read, m.services = "shop", true, []string{"web"}
	if err := m.write(0); err != nil {
		t.Fatal(err)
	}
	written := string(read(t, prom))
	name := regexp.MustCompile(`\bfleet_[a-z_]+`)
	n := 0
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			n++
			if r.Alert == "" || r.Expr == "" || r.Annotations["summary"] == "" {
				t.Errorf("%s: rule %q lacks an alert name, expression or summary", path, r.Alert)
			}
			for _, metric := range name.FindAllString(r.Expr, -1) {
				if !strings.Contains(written, "\n"+metric+"{") {
					t.Errorf("%s: %s asks for %s, which fleet does not write", path, r.Alert, metric)
				}
			}
		}
	}
	if n < 5 {
		t.Errorf("%s has %d rules, want at least drift, no success, stale file, hosts unreachable, instances missing", path, n)
	}
	promtool := findPromtool()
	if promtool == "" {
		t.Skip("no promtool (scripts/deps unpacks Debian's into fleet's cache): the expressions themselves are not checked")
	}
	if out, err := exec.Command(promtool, "check", "rules", path).CombinedOutput(); err != nil {
		t.Errorf("promtool check rules: %v\n%s", err, out)
	}
}

// findPromtool finds promtool on PATH, or where scripts/deps unpacks it.
func findPromtool() string {
	if p, err := exec.LookPath("promtool"); err == nil {
		return p
	}
	if cache, err := os.UserCacheDir(); err == nil {
		p := filepath.Join(cache, "fleet", "prometheus", "usr", "bin", "promtool")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return ""
}
