package main

import (
	"os"
	"path/filepath"
	"testing"
)

// TestFileHash: a saved plan notices a change to any file it was made
// from: an inventory directory's files, and the group_vars/ beside an
// inventory file.
func TestFileHash(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	hash := func(name string) string {
		t.Helper()
		h, err := fileHash(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	write("inv/hosts", "[web]\nweb1\n")
	write("inv/group_vars/web.yml", "role: web\n")
	write("hosts.ini", "[web]\nweb1\n")
	d0, f0 := hash("inv"), hash("hosts.ini")

	write("inv/group_vars/web.yml", "role: api\n")
	if hash("inv") == d0 {
		t.Error("a changed file in an inventory directory leaves its hash as it was")
	}
	write("group_vars/web.yml", "role: web\n")
	if hash("hosts.ini") == f0 {
		t.Error("group_vars/ beside an inventory file is not in its hash")
	}
	if _, err := fileHash(filepath.Join(dir, "missing.yaml")); err == nil {
		t.Error("a missing file has a hash")
	}
}
