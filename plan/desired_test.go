package plan

import (
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fleetdeploy/fleet/inventory"
)

var update = flag.Bool("update", false, "rewrite the golden files")

func golden(t *testing.T, path, got string) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if string(want) != got {
		t.Errorf("%s differs:\n--- want\n%s\n--- got\n%s", path, want, got)
	}
}

func testInventory(t testing.TB) *inventory.Inventory {
	inv, err := inventory.Load("testdata/desired/inventory.yaml", inventory.Options{SSHConfig: "none"})
	if err != nil {
		t.Fatal(err)
	}
	return inv
}

func TestValidProjects(t *testing.T) {
	inv := testInventory(t)
	files, _ := filepath.Glob("testdata/desired/valid/*.yaml")
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			p, err := LoadProject(f, inv)
			if err != nil {
				t.Fatalf("LoadProject: %v", err)
			}
			b, err := json.MarshalIndent(p, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			golden(t, strings.TrimSuffix(f, ".yaml")+".golden", string(b)+"\n")
		})
	}
}

func TestInvalidProjects(t *testing.T) {
	inv := testInventory(t)
	files, _ := filepath.Glob("testdata/desired/invalid/*.yaml")
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			_, err := LoadProject(f, inv)
			if err == nil {
				t.Fatal("LoadProject succeeded")
			}
			golden(t, strings.TrimSuffix(f, ".yaml")+".golden", err.Error()+"\n")
		})
	}
}
