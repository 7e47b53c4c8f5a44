package plan

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzProject feeds arbitrary fleet.yaml files to the decoder and the
// checks against an inventory: errors or a project, never a panic.
func FuzzProject(f *testing.F) {
	files, _ := filepath.Glob("testdata/desired/*/*.yaml")
	for _, file := range files {
		if data, err := os.ReadFile(file); err == nil {
			f.Add(data)
		}
	}
	inv := testInventory(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := ParseProject("fuzz/fleet.yaml", data, inv)
		if err != nil {
			return
		}
		if p.Name == "" || len(p.Services) == 0 {
			t.Fatalf("accepted a project without name or services: %+v", p)
		}
		for _, s := range p.Services {
			if s.Image == "" || s.MaxPerHost < 1 || len(s.Update.Parallelism.Waves) == 0 {
				t.Fatalf("accepted service %+v", s)
			}
		}
	})
}
