// Command testreport runs `go test -json` commands and shows a person how
// they go: a line for each top-level test as it passes, fails or is skipped,
// with its time; a line for each package; the whole output of whatever
// failed; a "still running" line every so often, so that a long test is
// never minutes of silence; and at the end the slowest tests and a closing
// line that CI reads as the result:
//
//	12 passed, 1 failed, 2 skipped
//
// Each argument is a command for bash, and they run as lines of a script
// would: the next waits for one to finish, unless it ends with & and runs in
// the background; "wait" waits for all:
//
//	testreport [-slowest 10] [-every 30s] 'go test -json ./integration &' 'go test -json ./plan' wait 'go test -json -fuzz ...'
//
// It exits 1 when anything failed: a test, a package that did not build, a
// package that failed outside its tests (in TestMain, say), or a command that
// exited non-zero without a failure in its JSON. Subtests are counted with
// their top-level test and shown only when it fails.
package main

import (
	"bufio"
	"cmp"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"time"
)

func main() {
	slowest := flag.Int("slowest", 10, "how many of the slowest tests to name at the end")
	every := flag.Duration("every", 30*time.Second, "how often to say what is still running")
	times := flag.String("times", "", "a file that keeps how long each test took, for -deal")
	groups := flag.Int("deal", 0, "instead of running commands, split the tests of -package named on standard input into `N` -run patterns of about equal time")
	pkg := flag.String("package", "", "the import path of the tests to -deal")
	cpu := flag.Bool("cpu", false, "say the machine's busy CPU time during each top-level test too (from /proc/stat): the test's own cost only when tests run one at a time")
	flag.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: testreport [-slowest N] [-every D] [-times FILE] 'go test -json ... [&]' ...")
		fmt.Fprintln(os.Stderr, "       testreport -deal N -package P [-times FILE] < test-names")
		flag.PrintDefaults()
	}
	flag.Parse()
	if *groups > 0 {
		if err := deal(os.Stdin, os.Stdout, *pkg, *groups, readTimes(*times)); err != nil {
			fmt.Fprintln(os.Stderr, "testreport:", err)
			os.Exit(1)
		}
		return
	}
	if flag.NArg() == 0 {
		flag.Usage()
		os.Exit(2)
	}
	// Ctrl-C reaches the commands too: they end as they do on it (the
	// integration tests take their hosts down first), and testreport says
	// what they said until then. Caught, not ignored, so that they do not
	// inherit an ignored SIGINT.
	signal.Notify(make(chan os.Signal, 1), os.Interrupt)
	r := newReport(os.Stdout, modulePath())
	r.slowest = *slowest
	if *cpu {
		r.cpu = busyCPU
	}
	r.runAll(flag.Args(), *every)
	r.summary()
	if *times != "" {
		if err := r.writeTimes(*times); err != nil {
			fmt.Fprintln(os.Stderr, "testreport: keeping the tests' times:", err)
		}
	}
	if r.failed > 0 {
		os.Exit(1)
	}
}

// modulePath is what is left off package names: github.com/x/y/plan is plan.
func modulePath() string {
	out, err := exec.Command("go", "list", "-m").Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}

// event is one line of `go test -json` (see `go doc test2json`), with the
// fields of build output that go test adds to it.
type event struct {
	Action      string
	Package     string
	Test        string
	Elapsed     float64
	Output      string
	ImportPath  string // build-output, build-fail
	FailedBuild string // fail of a package that did not build
}

// test is one top-level test of one package, with its subtests.
type test struct {
	pkg, name string
	start     time.Time
	output    []string // its own and its subtests', framing left out
	elapsed   time.Duration
	passed    bool
	told      time.Duration // how long it had run when last said to be running
	cpu       time.Duration // the machine's busy CPU: at its start, then during it (with -cpu)
}

type pkg struct {
	name                    string
	running                 bool // its test binary started and has not ended
	testsSeen               bool
	passed, failed, skipped int
	output                  []string // outside any test: TestMain, a crash
}

// proc is one command and what of it is not over.
type proc struct {
	command string
	started time.Time
	failed  int             // failures counted from its output
	pkgs    map[string]*pkg // by import path
	running map[string]*test
	builds  map[string][]string // build output not said yet, by import path
}

type report struct {
	w       io.Writer
	prefix  string // the module path and a slash
	slowest int
	now     func() time.Time
	// cpu, when set (-cpu), reads the machine's busy CPU time so far.
	cpu func() (time.Duration, error)

	done                    []*test
	passed, failed, skipped int
	failures                []string // what failed, for the end
	lastPrint               time.Time
}

func newReport(w io.Writer, module string) *report {
	r := &report{w: w, now: time.Now}
	if module != "" {
		r.prefix = module + "/"
	}
	return r
}

func newProc(command string, started time.Time) *proc {
	return &proc{command: command, started: started, pkgs: map[string]*pkg{}, running: map[string]*test{}, builds: map[string][]string{}}
}

func (r *report) printf(format string, args ...any) {
	fmt.Fprintf(r.w, format, args...)
	r.lastPrint = r.now()
}

// line is one line a command wrote: JSON on its standard output, or
// anything on its standard error; or, with done, its exit.
type line struct {
	p      *proc
	text   string
	stderr bool
	done   bool
	err    error
}

// runAll runs the commands as the shell would run them one to a line: one
// that ends with & runs in the background, alongside the ones after it; the
// one after any other waits for it to finish; "wait" waits for all. It
// reports on their output as it comes.
func (r *report) runAll(commands []string, every time.Duration) {
	lines := make(chan line)
	tick := time.NewTicker(every)
	defer tick.Stop()
	var procs []*proc // running
	var fg *proc      // the one the next command waits for
	waitAll := false
	for next := 0; ; {
		if len(procs) == 0 {
			waitAll = false
		}
		for next < len(commands) && fg == nil && !waitAll {
			command := strings.TrimSpace(commands[next])
			next++
			if command == "wait" {
				waitAll = true
				continue
			}
			p := r.start(strings.TrimSuffix(command, "&"), lines)
			if p == nil {
				continue
			}
			procs = append(procs, p)
			if !strings.HasSuffix(command, "&") {
				fg = p
			}
		}
		if len(procs) == 0 {
			if next < len(commands) {
				continue // after a wait with nothing to wait for
			}
			return
		}
		select {
		case l := <-lines:
			switch {
			case l.done:
				r.finish(l.p, l.err)
				procs = slices.DeleteFunc(procs, func(p *proc) bool { return p == l.p })
				if fg == l.p {
					fg = nil
				}
			case l.stderr:
				r.printf("%s\n", l.text)
			default:
				r.handle(l.p, l.text)
			}
		case <-tick.C:
			r.still(procs, every)
		}
	}
}

// start starts a command whose lines, and then its exit, come on lines.
func (r *report) start(command string, lines chan<- line) *proc {
	cmd := exec.Command("bash", "-c", command)
	stdout, err := cmd.StdoutPipe()
	var stderr io.Reader
	if err == nil {
		stderr, err = cmd.StderrPipe()
	}
	if err == nil {
		err = cmd.Start()
	}
	if err != nil {
		r.fail(command, err.Error())
		return nil
	}
	p := newProc(command, r.now())
	scanned := make(chan bool)
	scan := func(from io.Reader, stderr bool) {
		s := bufio.NewScanner(from)
		s.Buffer(make([]byte, 64*1024), 64*1024*1024)
		for s.Scan() {
			lines <- line{p: p, text: s.Text(), stderr: stderr}
		}
		scanned <- true
	}
	go scan(stdout, false)
	go scan(stderr, true)
	go func() {
		<-scanned
		<-scanned
		lines <- line{p: p, done: true, err: cmd.Wait()}
	}()
	return p
}

// finish closes what a command left open when it exited.
func (r *report) finish(p *proc, err error) {
	// Tests whose binary exited under them (a crash, a timeout) never end.
	for _, t := range sorted(p.running) {
		r.end(p, t, "fail", 0, "did not finish")
	}
	for _, name := range slices.Sorted(maps.Keys(p.pkgs)) {
		if pk := p.pkgs[name]; pk.running {
			r.pkgEnd(p, pk, "fail", 0, "")
		}
	}
	// Build output that no failed package named (none should be left).
	for _, path := range slices.Sorted(maps.Keys(p.builds)) {
		r.printf("      %s\n", r.short(path))
		r.indent(p.builds[path])
	}
	if err != nil && p.failed == 0 {
		r.fail(p.command, err.Error())
	}
}

// fail counts a failure that is not a test's and says what it was.
func (r *report) fail(what, why string) {
	r.failed++
	r.failures = append(r.failures, what)
	r.printf("FAIL  %s: %s\n", what, why)
}

func (r *report) short(pkg string) string { return strings.TrimPrefix(pkg, r.prefix) }

// handle handles one line of go test -json.
func (r *report) handle(p *proc, text string) {
	var e event
	if !strings.HasPrefix(text, "{") || json.Unmarshal([]byte(text), &e) != nil {
		r.printf("%s\n", text) // not JSON: say it as it is
		return
	}
	if e.Action == "build-output" {
		// Said with the first package that fails for it.
		p.builds[e.ImportPath] = append(p.builds[e.ImportPath], e.Output)
		return
	}
	if e.Package == "" {
		return // build-fail: the packages that needed it fail with FailedBuild
	}
	pk := p.pkgs[e.Package]
	if pk == nil {
		pk = &pkg{name: e.Package}
		p.pkgs[e.Package] = pk
	}
	top, _, sub := strings.Cut(e.Test, "/")
	switch {
	case e.Test == "":
		switch e.Action {
		case "start":
			pk.running = true
		case "output":
			if framing(e.Output) {
				return
			}
			pk.output = append(pk.output, e.Output)
			// Said as it comes: TestMain's setup is progress too.
			r.printf("      %-14s %s", r.short(e.Package), ensureNewline(e.Output))
		case "skip":
			pk.running = false // no test files
		case "pass", "fail":
			for _, t := range sorted(p.running) {
				if t.pkg == e.Package { // its binary exited under it
					r.end(p, t, "fail", 0, "did not finish")
				}
			}
			r.pkgEnd(p, pk, e.Action, e.Elapsed, e.FailedBuild)
		}
	case e.Action == "run" && !sub:
		pk.testsSeen = true
		t := &test{pkg: e.Package, name: top, start: r.now()}
		if r.cpu != nil {
			t.cpu, _ = r.cpu()
		}
		p.running[e.Package+"\x00"+top] = t
	default:
		t := p.running[e.Package+"\x00"+top]
		if t == nil {
			return
		}
		switch e.Action {
		case "output":
			if !framing(e.Output) {
				t.output = append(t.output, e.Output)
			}
		case "pass", "fail", "skip":
			if !sub {
				r.end(p, t, e.Action, e.Elapsed, "")
			}
		}
	}
}

// framing is what go test -v prints around tests, which says nothing that
// testreport does not say itself.
func framing(output string) bool {
	for _, f := range []string{"=== RUN", "=== PAUSE", "=== CONT", "=== NAME", "PASS\n", "FAIL\n", "ok  \t", "FAIL\t", "?   \t", "testing: warning: no tests to run"} {
		if strings.HasPrefix(output, f) {
			return true
		}
	}
	return false
}

func ensureNewline(s string) string {
	if strings.HasSuffix(s, "\n") {
		return s
	}
	return s + "\n"
}

// end says how a top-level test ended: one line, and its output when it
// failed, or why it was skipped.
func (r *report) end(p *proc, t *test, action string, elapsed float64, note string) {
	delete(p.running, t.pkg+"\x00"+t.name)
	t.elapsed = seconds(elapsed)
	if note != "" {
		t.elapsed = r.now().Sub(t.start)
		note = ", " + note
	}
	if r.cpu != nil {
		if now, err := r.cpu(); err == nil {
			t.cpu = now - t.cpu
			note += fmt.Sprintf(", %.1f CPU-s", t.cpu.Seconds())
		}
	}
	r.done = append(r.done, t)
	pk := p.pkgs[t.pkg]
	word := map[string]string{"pass": "PASS", "fail": "FAIL", "skip": "SKIP"}[action]
	r.printf("%s  %-14s %s (%s%s)\n", word, r.short(t.pkg), t.name, duration(t.elapsed), note)
	switch action {
	case "pass":
		r.passed++
		pk.passed++
		t.passed = true
	case "fail":
		r.failed++
		p.failed++
		pk.failed++
		r.failures = append(r.failures, r.short(t.pkg)+" "+t.name)
		r.indent(t.output)
	case "skip":
		r.skipped++
		pk.skipped++
		var why []string
		for _, o := range t.output {
			if !strings.HasPrefix(strings.TrimSpace(o), "--- SKIP") {
				why = append(why, o)
			}
		}
		r.indent(why)
	}
}

// pkgEnd says how a package ended. A package that failed with no test
// failing failed outside its tests: it did not build, or its TestMain or its
// exit failed it. That counts as one failure.
func (r *report) pkgEnd(p *proc, pk *pkg, action string, elapsed float64, failedBuild string) {
	counts := fmt.Sprintf("%d passed", pk.passed)
	if pk.failed > 0 {
		counts += fmt.Sprintf(", %d failed", pk.failed)
	}
	if pk.skipped > 0 {
		counts += fmt.Sprintf(", %d skipped", pk.skipped)
	}
	name := r.short(pk.name)
	switch {
	case action == "fail" && failedBuild != "":
		r.failed++
		p.failed++
		r.failures = append(r.failures, name+" [build failed]")
		r.printf("FAIL  %-14s [build failed: %s]\n", name, r.short(failedBuild))
		r.indent(p.builds[failedBuild])
		delete(p.builds, failedBuild)
	case action == "fail" && pk.failed == 0:
		r.failed++
		p.failed++
		r.failures = append(r.failures, name+" (outside its tests)")
		r.printf("FAIL  %-14s failed outside its tests; %s (%s)\n", name, counts, duration(seconds(elapsed)))
		// Its own output was said as it came; it is said again here, by the
		// failure, since it is all there is to say why.
		r.indent(pk.output)
	case action == "fail":
		r.printf("FAIL  %-14s %s (%s)\n", name, counts, duration(seconds(elapsed)))
	case pk.testsSeen: // not when -run left it none
		r.printf("ok    %-14s %s (%s)\n", name, counts, duration(seconds(elapsed)))
	}
	delete(p.pkgs, pk.name)
}

func (r *report) indent(output []string) {
	text := strings.TrimRight(strings.Join(output, ""), "\n")
	if text == "" {
		return
	}
	for _, l := range strings.Split(text, "\n") {
		r.printf("      %s\n", l)
	}
}

// still says which tests have been running for a while, each again every
// so often; and, when no test runs and nothing was said for that long, what
// the commands are doing.
func (r *report) still(procs []*proc, every time.Duration) {
	now := r.now()
	testing := false
	for _, p := range procs {
		for _, t := range sorted(p.running) {
			testing = true
			if ran := now.Sub(t.start); ran >= every && ran-t.told >= every-time.Second {
				t.told = ran
				r.printf("      still running: %s %s (%s)\n", r.short(t.pkg), t.name, ran.Round(time.Second))
			}
		}
	}
	// A test that started lately is news enough.
	if testing || now.Sub(r.lastPrint) < every-time.Second {
		return
	}
	var setup []string
	for _, p := range procs {
		for _, pk := range p.pkgs {
			if pk.running && !pk.testsSeen {
				setup = append(setup, r.short(pk.name))
			}
		}
	}
	slices.Sort(setup)
	first := slices.MinFunc(procs, func(a, b *proc) int { return a.started.Compare(b.started) })
	ran := now.Sub(first.started).Round(time.Second)
	if len(setup) > 0 {
		r.printf("      still running: %s, before its tests (%s)\n", strings.Join(setup, ", "), ran)
		return
	}
	what := strings.ReplaceAll(first.command, r.prefix, "")
	if len(what) > 72 {
		what = what[:72] + "..."
	}
	r.printf("      still running: %s (%s), building or between packages\n", what, ran)
}

func sorted(m map[string]*test) []*test {
	ts := slices.Collect(maps.Values(m))
	slices.SortFunc(ts, func(a, b *test) int {
		return cmp.Or(a.start.Compare(b.start), cmp.Compare(a.pkg, b.pkg), cmp.Compare(a.name, b.name))
	})
	return ts
}

// summary names the slowest tests and what failed, and closes with the
// counts on a line of their own.
func (r *report) summary() {
	done := slices.Clone(r.done)
	slices.SortStableFunc(done, func(a, b *test) int { return cmp.Compare(b.elapsed, a.elapsed) })
	for len(done) > 0 && done[len(done)-1].elapsed < 10*time.Millisecond {
		done = done[:len(done)-1] // not worth naming
	}
	if n := min(r.slowest, len(done)); n > 0 {
		r.printf("\nslowest:\n")
		for _, t := range done[:n] {
			r.printf("%10s  %-14s %s\n", duration(t.elapsed), r.short(t.pkg), t.name)
		}
	}
	if r.cpu != nil {
		byCPU := slices.Clone(r.done)
		slices.SortStableFunc(byCPU, func(a, b *test) int { return cmp.Compare(b.cpu, a.cpu) })
		var all time.Duration
		for _, t := range byCPU {
			all += t.cpu
		}
		r.printf("\ncostliest in CPU (%.0f CPU-s in all):\n", all.Seconds())
		for _, t := range byCPU[:min(r.slowest, len(byCPU))] {
			r.printf("%8.1f CPU-s  %-14s %s (%s)\n", t.cpu.Seconds(), r.short(t.pkg), t.name, duration(t.elapsed))
		}
	}
	if len(r.failures) > 0 {
		r.printf("\nfailed:\n")
		for _, f := range r.failures {
			r.printf("    %s\n", f)
		}
	}
	r.printf("\n%d passed, %d failed, %d skipped\n", r.passed, r.failed, r.skipped)
}

func seconds(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

// duration is short: 0.01s, 12.3s, 2m05s.
func duration(d time.Duration) string {
	switch {
	case d < 10*time.Second:
		return fmt.Sprintf("%.2fs", d.Seconds())
	case d < time.Minute:
		return fmt.Sprintf("%.1fs", d.Seconds())
	default:
		d = d.Round(time.Second)
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	}
}

// busyCPU is the time the machine's processors have spent busy since it
// booted, from the first line of /proc/stat: user, nice, system, irq and
// softirq (guest time is counted in user already; idle, iowait and steal
// are not work), in ticks of 1/100 s (USER_HZ, 100 on every Linux).
func busyCPU() (time.Duration, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, err
	}
	first, _, _ := strings.Cut(string(b), "\n")
	fields := strings.Fields(first)
	if len(fields) < 5 || fields[0] != "cpu" {
		return 0, fmt.Errorf("/proc/stat begins %q", first)
	}
	var busy int64
	for _, i := range []int{1, 2, 3, 6, 7} {
		if i >= len(fields) {
			break
		}
		n, err := strconv.ParseInt(fields[i], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/stat: %w", err)
		}
		busy += n
	}
	return time.Duration(busy) * 10 * time.Millisecond, nil
}
