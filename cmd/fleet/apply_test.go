package main

import (
	"os"
	"path/filepath"
	"testing"
)

// TestInventoryHash: a saved plan notices a change to any file the
// inventory is read from — a directory's files, reached through a
// symbolic link too, and the group_vars/ beside an inventory file — and
// not an editor's swap file, which the inventory does not read.
func TestInventoryHash(t *testing.T) {
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
		h, err := inventoryHash(&globals{Inventory: filepath.Join(dir, name), SSHConfig: "none"})
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	write("real/hosts", "[web]\nweb1\n")
	write("real/group_vars/web.yml", "role: web\n")
	if err := os.Symlink(filepath.Join(dir, "real"), filepath.Join(dir, "inv")); err != nil {
		t.Fatal(err)
	}
	write("hosts.ini", "[web]\nweb1\n")
	d0, f0 := hash("inv"), hash("hosts.ini")

	write("real/.hosts.swp", "editor state")
	if hash("inv") != d0 {
		t.Error("a file the inventory does not read changes its hash")
	}
	write("real/group_vars/web.yml", "role: api\n")
	if hash("inv") == d0 {
		t.Error("a changed group_vars file of an inventory directory leaves its hash as it was")
	}
	write("group_vars/web.yml", "role: web\n")
	if hash("hosts.ini") == f0 {
		t.Error("group_vars/ beside an inventory file is not in its hash")
	}
}
