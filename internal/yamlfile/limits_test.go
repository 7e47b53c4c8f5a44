package yamlfile

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fleetdeploy/fleet/internal/diag"
)

// promptly runs f and fails the test if it has not returned after five
// seconds. It measures nothing: a bomb that is not refused runs for
// minutes, and the test must fail then rather than wait for go test's own
// timeout.
func promptly(t *testing.T, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("still running after 5s: the expansion is not bounded")
	}
}

// levels is nine levels of anchors l1 to l9, each using the one before
// nine times as use says (in a merge key or a list).
func levels(first string, use func(prev string) string) string {
	var b strings.Builder
	b.WriteString("l0: &l0 " + first + "\n")
	for i := 1; i <= 9; i++ {
		fmt.Fprintf(&b, "l%d: &l%d %s\n", i, i, use(fmt.Sprintf("*l%d", i-1)))
	}
	return b.String()
}

func nine(s string) string { return strings.TrimSuffix(strings.Repeat(s+", ", 9), ", ") }

func TestBombsAreRefused(t *testing.T) {
	mergeBomb := levels("{a: 1, b: 2}", func(prev string) string { return "{<<: [" + nine(prev) + "]}" }) + "top: {<<: *l9}\n"
	aliasBomb := levels(`["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]`, func(prev string) string { return "[" + nine(prev) + "]" }) + "top: *l9\n"
	// Flat, not nested: a thousand aliases of a thousand-item list.
	wide := "big: &big [" + strings.TrimSuffix(strings.Repeat("x, ", 1000), ", ") + "]\ntop: [" +
		strings.TrimSuffix(strings.Repeat("*big, ", 1000), ", ") + "]\n"
	for _, c := range []struct {
		name, data, want string
	}{
		{"merge keys", mergeBomb, "f.yaml:7:25: too many aliases and merges expand here (over 1000000 nodes)"},
		{"aliases", aliasBomb, "f.yaml:7:10: too many aliases and merges expand here (over 1000000 nodes)"},
		{"many aliases", wide, "f.yaml:2:"},
		{"a mapping merging itself", "web: &w\n  image: x\n  <<: *w\n", "f.yaml:3:7: *w refers to the value of its own anchor from inside it"},
		{"a list holding itself", "a: &a [1, *a]\n", "f.yaml:1:11: *a refers to the value of its own anchor from inside it"},
	} {
		t.Run(c.name, func(t *testing.T) {
			errs := &diag.List{}
			d := &Doc{File: "f.yaml", Errs: errs}
			promptly(t, func() {
				if root := d.Parse([]byte(c.data)); root != nil {
					// What a reader would do next: walk every mapping.
					d.Pairs(root, "top")
					t.Error("Parse accepted it")
				}
			})
			if errs.Len() != 1 || !strings.HasPrefix(errs.Error(), c.want) {
				t.Errorf("errors:\n%s\nwant one starting %q", errs.Error(), c.want)
			}
		})
	}
}

func TestSharedDefaultsAreRead(t *testing.T) {
	data := `defaults: &defaults {image: nginx:1.27, env: &env {A: "1", B: "2"}, labels: {team: shop}}
web: {<<: *defaults, env: {<<: *env, C: "3"}}
api: {<<: [*defaults], labels: {team: api}}
worker: *defaults
`
	errs := &diag.List{}
	d := &Doc{File: "f.yaml", Errs: errs}
	root := d.Parse([]byte(data))
	if root == nil {
		t.Fatalf("refused: %v", errs)
	}
	pairs, _ := d.Pairs(root, "top")
	web, _ := d.Pairs(pairs[1].Value, "web")
	env, _ := d.StringMap(web[0].Value, "web.env", nil)
	if len(pairs) != 4 || len(web) != 3 || env["A"] != "1" || env["C"] != "3" || errs.Len() != 0 {
		t.Errorf("pairs %d, web %d, env %v, errors %v", len(pairs), len(web), env, errs)
	}
}

func TestReadFileRefusesLargeFiles(t *testing.T) {
	dir := t.TempDir()
	atLimit, over := filepath.Join(dir, "at-limit.yaml"), filepath.Join(dir, "over.yaml")
	for name, size := range map[string]int64{atLimit: MaxFileSize, over: 12 << 20} {
		if err := os.WriteFile(name, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(name, size); err != nil {
			t.Fatal(err)
		}
	}
	if data, err := ReadFile(atLimit); err != nil || len(data) != MaxFileSize {
		t.Errorf("a file of exactly %d bytes: %d bytes read, %v", MaxFileSize, len(data), err)
	}
	var list *diag.List
	if _, err := ReadFile(over); !errors.As(err, &list) || err.Error() != over+": the file is 12 MiB: too large, fleet reads files of up to 4 MiB\n"+
		"    hint: check that this is the file you meant: fleet.yaml and inventories are written by hand and stay far smaller" {
		t.Errorf("a file of 12 MiB: %v", err)
	}
	if _, err := ReadFile(filepath.Join(dir, "missing.yaml")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a missing file: %v", err)
	}
	// A device that never ends is read no further than the limit.
	if _, err := os.Stat("/dev/zero"); err == nil {
		promptly(t, func() {
			if _, err := ReadFile("/dev/zero"); err == nil || !strings.Contains(err.Error(), "/dev/zero: the file goes on past 4 MiB: too large") {
				t.Errorf("/dev/zero: %v", err)
			}
		})
	}
}

func TestParseRefusesLargeContent(t *testing.T) {
	errs := &diag.List{}
	d := &Doc{File: "f.yaml", Errs: errs}
	if d.Parse(make([]byte, MaxFileSize+1)) != nil || !strings.HasPrefix(errs.Error(), "f.yaml: the file is 4194305 bytes: too large") {
		t.Errorf("errors: %v", errs)
	}
}

func TestSizeText(t *testing.T) {
	for n, want := range map[int64]string{
		900: "900 bytes", 1024: "1 KiB", 4 << 20: "4 MiB", 12<<20 + 512<<10: "12.5 MiB", 3 << 30: "3 GiB",
	} {
		if got := sizeText(n); got != want {
			t.Errorf("sizeText(%d) = %q, want %q", n, got, want)
		}
	}
}
