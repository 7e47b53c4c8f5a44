package plan

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fleetdeploy/fleet/internal/golden"
	"github.com/fleetdeploy/fleet/inventory"
)

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
			golden.Check(t, strings.TrimSuffix(f, ".yaml")+".golden", string(b)+"\n")
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
			golden.Check(t, strings.TrimSuffix(f, ".yaml")+".golden", err.Error()+"\n")
		})
	}
}
