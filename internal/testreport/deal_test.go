package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// deal puts the longest tests in different groups and balances the rest
// by time; a test never timed counts as the mean; groups keep the order
// the tests came in.
func TestDeal(t *testing.T) {
	times := map[string]time.Duration{
		"p TestA": 60 * time.Second, "p TestB": 50 * time.Second, "p TestC": 10 * time.Second,
		"p TestD": 40 * time.Second, "other TestE": time.Hour,
	}
	var out bytes.Buffer
	if err := deal(strings.NewReader("TestA\nTestB\nTestC\nTestD\nTestE\nok  \tp\t0.1s\n"), &out, "p", 2, times); err != nil {
		t.Fatal(err)
	}
	// A 60, B 50, D 40, E 40 (the mean of A to D), C 10: A and B apart,
	// D to B's group (50 < 60), E to A's (60 < 90), C to B's (90 < 100).
	want := "^(TestA|TestE)$\n^(TestB|TestC|TestD)$\n"
	if out.String() != want {
		t.Errorf("dealt:\n%swant:\n%s", out.String(), want)
	}

	out.Reset()
	deal(strings.NewReader("TestA\n"), &out, "p", 2, nil)
	if want := "^(TestA)$\n^(NoTestInThisGroup)$\n"; out.String() != want {
		t.Errorf("one test in two groups:\n%swant:\n%s", out.String(), want)
	}
}

// The times file keeps the tests that passed, beside the lines of tests
// that did not run this time; a damaged line is left out.
func TestTimesFile(t *testing.T) {
	file := filepath.Join(t.TempDir(), "cache", "times")
	os.MkdirAll(filepath.Dir(file), 0o755)
	os.WriteFile(file, []byte("p TestOld 3.50\np TestA 1.00\ndamaged line\n"), 0o644)
	r, _, _ := fakeReport()
	r.done = []*test{
		{pkg: "p", name: "TestA", elapsed: 2 * time.Second, passed: true},
		{pkg: "p", name: "TestFailed", elapsed: time.Second},
	}
	if err := r.writeTimes(file); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(file)
	if want := "p TestA 2.00\np TestOld 3.50\n"; string(b) != want {
		t.Errorf("times file:\n%swant:\n%s", b, want)
	}
	if got := readTimes(file); got["p TestA"] != 2*time.Second || got["p TestOld"] != 3500*time.Millisecond || len(got) != 2 {
		t.Errorf("read back %v", got)
	}
}
