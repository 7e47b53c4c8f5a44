package main

import (
	"bytes"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
)

// feed gives the report lines of go test -json as one command's, with the
// clock moving a second a line, and returns what it said.
func feed(t *testing.T, r *report, out *bytes.Buffer, events string) string {
	t.Helper()
	p := newProc("go test", r.now())
	for _, l := range strings.Split(strings.TrimSpace(events), "\n") {
		r.handle(p, strings.TrimSpace(l))
	}
	r.finish(p, nil)
	said := out.String()
	out.Reset()
	return said
}

// fakeReport is a report whose clock moves only when told.
func fakeReport() (*report, *bytes.Buffer, *time.Time) {
	var out bytes.Buffer
	r := newReport(&out, "example.com/m")
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	r.now = func() time.Time { return now }
	return r, &out, &now
}

func wantLines(t *testing.T, said string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(said, w+"\n") {
			t.Errorf("no line %q in:\n%s", w, said)
		}
	}
}

func TestTestsAndPackages(t *testing.T) {
	r, out, _ := fakeReport()
	said := feed(t, r, out, `
		{"Action":"start","Package":"example.com/m/a"}
		{"Action":"run","Package":"example.com/m/a","Test":"TestPass"}
		{"Action":"output","Package":"example.com/m/a","Test":"TestPass","Output":"=== RUN   TestPass\n"}
		{"Action":"output","Package":"example.com/m/a","Test":"TestPass","Output":"    a_test.go:5: quiet\n"}
		{"Action":"pass","Package":"example.com/m/a","Test":"TestPass","Elapsed":0.52}
		{"Action":"run","Package":"example.com/m/a","Test":"TestSkip"}
		{"Action":"output","Package":"example.com/m/a","Test":"TestSkip","Output":"    a_test.go:6: no ansible here\n"}
		{"Action":"output","Package":"example.com/m/a","Test":"TestSkip","Output":"--- SKIP: TestSkip (0.00s)\n"}
		{"Action":"skip","Package":"example.com/m/a","Test":"TestSkip","Elapsed":0}
		{"Action":"run","Package":"example.com/m/a","Test":"TestSubs"}
		{"Action":"run","Package":"example.com/m/a","Test":"TestSubs/ok"}
		{"Action":"pass","Package":"example.com/m/a","Test":"TestSubs/ok","Elapsed":0}
		{"Action":"run","Package":"example.com/m/a","Test":"TestSubs/bad"}
		{"Action":"output","Package":"example.com/m/a","Test":"TestSubs/bad","Output":"=== RUN   TestSubs/bad\n"}
		{"Action":"output","Package":"example.com/m/a","Test":"TestSubs/bad","Output":"    a_test.go:9: wrong value\n"}
		{"Action":"output","Package":"example.com/m/a","Test":"TestSubs/bad","Output":"--- FAIL: TestSubs/bad (0.00s)\n"}
		{"Action":"fail","Package":"example.com/m/a","Test":"TestSubs/bad","Elapsed":0}
		{"Action":"fail","Package":"example.com/m/a","Test":"TestSubs","Elapsed":75}
		{"Action":"output","Package":"example.com/m/a","Output":"FAIL\n"}
		{"Action":"output","Package":"example.com/m/a","Output":"FAIL\texample.com/m/a\t0.343s\n"}
		{"Action":"fail","Package":"example.com/m/a","Elapsed":0.343}
		{"Action":"start","Package":"example.com/m/b"}
		{"Action":"output","Package":"example.com/m/b","Output":"?   \texample.com/m/b\t[no test files]\n"}
		{"Action":"skip","Package":"example.com/m/b","Elapsed":0}
	`)
	wantLines(t, said,
		"PASS  a              TestPass (0.52s)",
		"SKIP  a              TestSkip (0.00s)",
		"          a_test.go:6: no ansible here",
		"FAIL  a              TestSubs (1m15s)",
		"          a_test.go:9: wrong value",
		"      --- FAIL: TestSubs/bad (0.00s)",
		"FAIL  a              1 passed, 1 failed, 1 skipped (0.34s)",
	)
	for _, not := range []string{"quiet", "=== RUN", "SKIP: TestSkip", "ok/", "no test files", "\tFAIL"} {
		if strings.Contains(said, not) {
			t.Errorf("said %q:\n%s", not, said)
		}
	}
	if r.passed != 1 || r.failed != 1 || r.skipped != 1 {
		t.Errorf("counted %d passed, %d failed, %d skipped", r.passed, r.failed, r.skipped)
	}
}

func TestBuildFailures(t *testing.T) {
	r, out, _ := fakeReport()
	said := feed(t, r, out, `
		{"ImportPath":"example.com/m/b","Action":"build-output","Output":"# example.com/m/b\n"}
		{"ImportPath":"example.com/m/b","Action":"build-output","Output":"b/b.go:3:23: cannot use \"x\" as int value\n"}
		{"ImportPath":"example.com/m/b","Action":"build-fail"}
		{"Action":"start","Package":"example.com/m/g"}
		{"Action":"fail","Package":"example.com/m/g","Elapsed":0,"FailedBuild":"example.com/m/b"}
		{"ImportPath":"example.com/m/h [example.com/m/h.test]","Action":"build-output","Output":"h/h_test.go:3:40: fmt.Printf format %d has arg \"s\" of wrong type string\n"}
		{"ImportPath":"example.com/m/h [example.com/m/h.test]","Action":"build-fail"}
		{"Action":"start","Package":"example.com/m/h"}
		{"Action":"fail","Package":"example.com/m/h","Elapsed":0,"FailedBuild":"example.com/m/h [example.com/m/h.test]"}
	`)
	wantLines(t, said,
		"FAIL  g              [build failed: b]",
		`      b/b.go:3:23: cannot use "x" as int value`,
		"FAIL  h              [build failed: h [example.com/m/h.test]]",
		`      h/h_test.go:3:40: fmt.Printf format %d has arg "s" of wrong type string`,
	)
	if r.failed != 2 {
		t.Errorf("counted %d failed, want 2", r.failed)
	}
}

// A package can fail outside its tests: in TestMain before any runs, or by
// a test binary that exits in the middle of one.
func TestFailuresOutsideTests(t *testing.T) {
	r, out, _ := fakeReport()
	said := feed(t, r, out, `
		{"Action":"start","Package":"example.com/m/integration"}
		{"Action":"output","Package":"example.com/m/integration","Output":"integration: the test fleet needs root\n"}
		{"Action":"output","Package":"example.com/m/integration","Output":"FAIL\texample.com/m/integration\t0.085s\n"}
		{"Action":"fail","Package":"example.com/m/integration","Elapsed":0.085}
		{"Action":"start","Package":"example.com/m/d"}
		{"Action":"run","Package":"example.com/m/d","Test":"TestHang"}
		{"Action":"output","Package":"example.com/m/d","Test":"TestHang","Output":"panic: test timed out after 8s\n"}
		{"Action":"fail","Package":"example.com/m/d","Elapsed":8.1}
		{"Action":"start","Package":"example.com/m/e"}
		{"Action":"run","Package":"example.com/m/e","Test":"TestExit"}
	`)
	wantLines(t, said,
		"      integration    integration: the test fleet needs root",
		"FAIL  integration    failed outside its tests; 0 passed (0.09s)",
		"      integration: the test fleet needs root",
		"FAIL  d              TestHang (0.00s, did not finish)",
		"      panic: test timed out after 8s",
		"FAIL  d              0 passed, 1 failed (8.10s)",
		// Its binary ended with no word at all.
		"FAIL  e              TestExit (0.00s, did not finish)",
		"FAIL  e              0 passed, 1 failed (0.00s)",
	)
	if r.failed != 3 {
		t.Errorf("counted %d failed, want 3", r.failed)
	}
}

func TestStillRunning(t *testing.T) {
	r, out, now := fakeReport()
	p := newProc("go test", r.now())
	step := func(d time.Duration) string {
		*now = now.Add(d)
		r.still([]*proc{p}, 30*time.Second)
		said := out.String()
		out.Reset()
		return said
	}
	if said := step(30 * time.Second); said != "      still running: go test (30s), building or between packages\n" {
		t.Errorf("building: said %q", said)
	}
	r.handle(p, `{"Action":"start","Package":"example.com/m/integration"}`)
	if said := step(30 * time.Second); said != "      still running: integration, before its tests (1m0s)\n" {
		t.Errorf("in TestMain: said %q", said)
	}
	r.handle(p, `{"Action":"run","Package":"example.com/m/integration","Test":"TestSlow"}`)
	if said := step(20 * time.Second); said != "" {
		t.Errorf("a test that started 20s ago: said %q", said)
	}
	if said := step(10 * time.Second); said != "      still running: integration TestSlow (30s)\n" {
		t.Errorf("said %q, want TestSlow (30s)", said)
	}
	for _, want := range []string{"1m0s", "1m30s"} {
		if said := step(30 * time.Second); said != "      still running: integration TestSlow ("+want+")\n" {
			t.Errorf("said %q, want TestSlow (%s)", said, want)
		}
	}
}

func TestSummary(t *testing.T) {
	r, out, _ := fakeReport()
	r.slowest = 2
	feed(t, r, out, `
		{"Action":"start","Package":"example.com/m/a"}
		{"Action":"run","Package":"example.com/m/a","Test":"TestA"}
		{"Action":"pass","Package":"example.com/m/a","Test":"TestA","Elapsed":1.5}
		{"Action":"run","Package":"example.com/m/a","Test":"TestB"}
		{"Action":"fail","Package":"example.com/m/a","Test":"TestB","Elapsed":130}
		{"Action":"run","Package":"example.com/m/a","Test":"TestC"}
		{"Action":"pass","Package":"example.com/m/a","Test":"TestC","Elapsed":12.25}
		{"Action":"fail","Package":"example.com/m/a","Elapsed":144}
	`)
	r.summary()
	want := `
slowest:
     2m10s  a              TestB
     12.2s  a              TestC

failed:
    a TestB

2 passed, 1 failed, 0 skipped
`
	if got := out.String(); got != want {
		t.Errorf("summary:\n%s\nwant:\n%s", got, want)
	}
}

// Commands run as lines of a script: one that ends with & alongside the
// next, "wait" for all; one that exits non-zero with no failure in its JSON
// fails.
func TestCommands(t *testing.T) {
	event := func(pkg, action string) string {
		return fmt.Sprintf(`echo '{"Action":%q,"Package":"example.com/m/%s","Test":"Test%s"}'`, action, pkg, pkg)
	}
	// Each test leaves a mark once it passed; A, in the background, waits
	// for another's mark: the order does not hang on how busy the machine
	// is.
	dir := t.TempDir()
	test := func(pkg string) string {
		return event(pkg, "run") + "; " + event(pkg, "pass") + "; touch " + dir + "/" + pkg
	}
	after := func(pkg string) string {
		return "until [ -e " + dir + "/" + pkg + " ]; do sleep 0.02; done; " + test("A") + " &"
	}
	for _, c := range []struct {
		commands []string
		order    string
	}{
		{[]string{after("C"), test("B"), test("C")}, "BCA"},
		{[]string{after("B"), test("B"), "wait", test("C")}, "BAC"},
		{[]string{"wait", test("B"), after("B"), "wait", "wait", test("C")}, "BAC"},
	} {
		os.Remove(dir + "/A")
		os.Remove(dir + "/B")
		os.Remove(dir + "/C")
		r, out, _ := fakeReport()
		r.now = time.Now
		r.runAll(c.commands, time.Minute)
		var order string
		for _, l := range strings.Split(out.String(), "\n") {
			if strings.HasPrefix(l, "PASS") {
				order += strings.TrimPrefix(strings.Fields(l)[2], "Test")
			}
		}
		if order != c.order {
			t.Errorf("%q ran in the order %s, want %s", c.commands, order, c.order)
		}
	}

	r, out, _ := fakeReport()
	r.runAll([]string{test("A") + "; echo on stderr >&2; exit 3"}, time.Minute)
	wantLines(t, out.String(), "on stderr", "FAIL  "+test("A")+"; echo on stderr >&2; exit 3: exit status 3")
	if r.passed != 1 || r.failed != 1 {
		t.Errorf("counted %d passed, %d failed; want 1 and 1", r.passed, r.failed)
	}
}

func TestDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		5 * time.Millisecond:                  "0.01s",
		1500 * time.Millisecond:               "1.50s",
		12340 * time.Millisecond:              "12.3s",
		61 * time.Second:                      "1m01s",
		10*time.Minute + 500*time.Millisecond: "10m01s",
	} {
		if got := duration(d); got != want {
			t.Errorf("duration(%v) = %q, want %q", d, got, want)
		}
	}
}

// With -cpu, each test's line says the machine's busy CPU during it, and
// the summary names the costliest.
func TestCPUPerTest(t *testing.T) {
	r, out, _ := fakeReport()
	var busy time.Duration
	r.cpu = func() (time.Duration, error) {
		busy += 1500 * time.Millisecond // each reading, 1.5 s more
		return busy, nil
	}
	r.slowest = 1
	said := feed(t, r, out, `
		{"Action":"start","Package":"example.com/m/a"}
		{"Action":"run","Package":"example.com/m/a","Test":"TestOne"}
		{"Action":"pass","Package":"example.com/m/a","Test":"TestOne","Elapsed":2}
		{"Action":"pass","Package":"example.com/m/a","Elapsed":2}
	`)
	r.summary()
	said += out.String()
	wantLines(t, said,
		"PASS  a              TestOne (2.00s, 1.5 CPU-s)",
		"costliest in CPU (2 CPU-s in all):",
		"     1.5 CPU-s  a              TestOne (2.00s)",
	)
}

// busyCPU reads this machine's counters, which only grow.
func TestBusyCPU(t *testing.T) {
	a, err := busyCPU()
	if err != nil {
		t.Skip("no /proc/stat here:", err)
	}
	for i := 0; i < 1e6; i++ {
		_ = fmt.Sprint(i % 7)
	}
	if b, err := busyCPU(); err != nil || b < a || a <= 0 {
		t.Errorf("busyCPU: %v, then %v (%v)", a, b, err)
	}
}
