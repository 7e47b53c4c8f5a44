package main

import (
	"bufio"
	"cmp"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// The times file keeps how long each test took when it last ran, a line
// "package test seconds" each, so that the next run can deal a package's
// tests out to several go tests evenly. It is a cache: a missing or
// damaged one only makes the deal less even.

// readTimes reads a times file; what it cannot read, it leaves out.
func readTimes(file string) map[string]time.Duration {
	times := map[string]time.Duration{}
	f, err := os.Open(file)
	if err != nil {
		return times
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) != 3 {
			continue
		}
		if s, err := strconv.ParseFloat(fields[2], 64); err == nil && s >= 0 {
			times[fields[0]+" "+fields[1]] = seconds(s)
		}
	}
	return times
}

// writeTimes adds the times of the tests that passed in this run to the
// times file, whose other lines it keeps.
func (r *report) writeTimes(file string) error {
	times := readTimes(file)
	for _, t := range r.done {
		if t.passed {
			times[t.pkg+" "+t.name] = t.elapsed
		}
	}
	keys := slices.Sorted(func(yield func(string) bool) {
		for k := range times {
			if !yield(k) {
				return
			}
		}
	})
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "%s %.2f\n", k, times[k].Seconds())
	}
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		return err
	}
	tmp := file + ".new"
	if err := os.WriteFile(tmp, []byte(b.String()), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, file)
}

// deal splits the tests of pkg named on in (one a line) into n groups that
// should take about as long as each other, by the times of the last run:
// the longest first, each to the group with the least so far. A test
// never timed counts as the mean of those that were. It writes each group
// as a -run pattern on a line of its own, in the order the tests came.
func deal(in io.Reader, out io.Writer, pkg string, n int, times map[string]time.Duration) error {
	var names []string
	sc := bufio.NewScanner(in)
	for sc.Scan() {
		if name := strings.TrimSpace(sc.Text()); strings.HasPrefix(name, "Test") {
			names = append(names, name)
		}
	}
	if err := sc.Err(); err != nil {
		return err
	}
	took := map[string]time.Duration{}
	var known time.Duration
	timed := 0
	for _, name := range names {
		if d, ok := times[pkg+" "+name]; ok {
			took[name] = d
			known += d
			timed++
		}
	}
	guess := time.Second
	if timed > 0 {
		guess = known / time.Duration(timed)
	}
	for _, name := range names {
		if _, ok := took[name]; !ok {
			took[name] = guess
		}
	}
	byTime := slices.Clone(names)
	slices.SortStableFunc(byTime, func(a, b string) int { return cmp.Compare(took[b], took[a]) })
	group := map[string]int{}
	sums := make([]time.Duration, n)
	for _, name := range byTime {
		least := slices.Index(sums, slices.Min(sums))
		group[name] = least
		sums[least] += took[name]
	}
	for g := range n {
		var in []string
		for _, name := range names {
			if group[name] == g {
				in = append(in, name)
			}
		}
		if len(in) == 0 {
			in = []string{"NoTestInThisGroup"} // -run "" would run them all
		}
		fmt.Fprintf(out, "^(%s)$\n", strings.Join(in, "|"))
	}
	return nil
}
