package inventory

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzParse feeds arbitrary files to the inventory reader, in all three
// formats: whatever the bytes, it returns an inventory or errors, never
// panics. Seeds: every test inventory, and testdata/fuzz/FuzzParse.
func FuzzParse(f *testing.F) {
	for _, pattern := range []string{"testdata/valid/*", "testdata/invalid/*", "testdata/ansible/*.ini"} {
		files, _ := filepath.Glob(pattern)
		for _, file := range files {
			if data, err := os.ReadFile(file); err == nil {
				f.Add(data)
			}
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		inv, err := Parse("fuzz/inventory", data, Options{SSHConfig: "none"})
		if err == nil {
			for _, h := range inv.Hosts {
				if h.Name == "" || h.Port < 1 || h.Port > 65535 {
					t.Fatalf("accepted host %+v", h)
				}
			}
			inv.Listing()
		}
	})
}

// FuzzSelector parses arbitrary selectors and, when one parses, runs it
// and its checks against an inventory.
func FuzzSelector(f *testing.F) {
	for _, s := range []string{"role=web", "zone in (a,b),!canary", "group notin (x)", "web1,web2", "a!=b", "in(", "!"} {
		f.Add(s)
	}
	inv, err := Parse("inventory.yaml", []byte("hosts:\n  web1: {labels: {role: web}}\n  db1: {}\ngroups:\n  g: [db1]\n"), Options{SSHConfig: "none"})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, text string) {
		sel, err := ParseSelector(text)
		if err != nil {
			se, ok := err.(*SelectorError)
			if !ok || se.Offset < 0 || se.Offset > len(text) {
				t.Fatalf("error %#v for %q", err, text)
			}
			return
		}
		if len(sel.Terms) == 0 {
			t.Fatalf("%q parsed to no terms", text)
		}
		inv.Select(sel)
		for _, p := range inv.Check(sel) {
			if p.Offset < 0 || p.Offset > len(text) {
				t.Fatalf("problem offset %d outside %q", p.Offset, text)
			}
		}
	})
}
