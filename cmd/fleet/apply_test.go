package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fleetdeploy/fleet/plan"
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

// TestWhereNewInstancesGoDoesNotMakeAPlanStale: placement follows free
// memory, which moves between two reads of the same fleet; a plan is
// stale when what it does to the instances there are changes (a secret's
// new value replaces them), or how many it makes, not where it puts them.
func TestWhereNewInstancesGoDoesNotMakeAPlanStale(t *testing.T) {
	made := func(createOn string, replaceWhy string) *plan.Plan {
		return &plan.Plan{Fingerprints: map[string]string{"h1": "a", "h2": "b"}, Services: []*plan.ServicePlan{{
			Name: "web", Revision: 2, Spec: "s",
			Actions: []*plan.Action{
				{Kind: plan.Replace, Host: "h1", Slot: 1, Reasons: []string{replaceWhy}},
				{Kind: plan.Create, Host: createOn, Slot: 2, Reasons: []string{"scale to 2 (1 run)"}},
			},
		}}}
	}
	if stale := staleHosts(made("h1", "image"), made("h2", "image")); len(stale) > 0 {
		t.Errorf("a new instance placed on another host makes the plan stale: %v", stale)
	}
	if stale := staleHosts(made("h1", "image"), made("h1", "secret TOKEN changed")); len(stale) != 1 {
		t.Errorf("a secret's new value leaves the plan fresh: %v", stale)
	}
	fewer := made("h1", "image")
	fewer.Services[0].Actions = fewer.Services[0].Actions[:1]
	if stale := staleHosts(made("h1", "image"), fewer); len(stale) != 1 {
		t.Errorf("one new instance fewer leaves the plan fresh: %v", stale)
	}
}

// TestAnImageBuiltSinceMakesAPushPlanStale: the same actions, but this
// machine's image under the tag is another one than the plan showed.
func TestAnImageBuiltSinceMakesAPushPlanStale(t *testing.T) {
	made := func(image string) *plan.Plan {
		return &plan.Plan{Fingerprints: map[string]string{"h1": "a"}, Services: []*plan.ServicePlan{{
			Name: "web", Revision: 2, Spec: "s", PushImage: image, Template: plan.Template{Image: "shop/web:latest"},
			Actions: []*plan.Action{{Kind: plan.Replace, Host: "h1", Slot: 1, Reasons: []string{"env MODE changed"}}},
		}}}
	}
	planned, rebuilt := "sha256:"+strings.Repeat("a", 64), "sha256:"+strings.Repeat("b", 64)
	if stale := staleHosts(made(planned), made(planned)); len(stale) > 0 {
		t.Errorf("the same image makes the plan stale: %v", stale)
	}
	stale := staleHosts(made(planned), made(rebuilt))
	if len(stale) != 1 || stale[0] != "service web (image shop/web:latest on this machine is bbbbbbbbbbbb now, not aaaaaaaaaaaa as planned)" {
		t.Errorf("an image built since under the same tag: %v", stale)
	}
}
