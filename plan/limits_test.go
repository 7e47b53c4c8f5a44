package plan

import (
	"strings"
	"testing"
	"time"
)

// TestBombsAreRefusedPromptly reads fleet.yaml files whose anchors would
// expand to billions of nodes (their errors are in the golden files beside
// them). It measures nothing, but fails on a hang instead of waiting for
// go test's own timeout.
func TestBombsAreRefusedPromptly(t *testing.T) {
	inv := testInventory(t)
	for _, name := range []string{"merge-bomb", "alias-bomb", "anchor-loop"} {
		t.Run(name, func(t *testing.T) {
			done := make(chan error, 1)
			go func() {
				_, err := LoadProject("testdata/desired/invalid/"+name+".yaml", inv)
				done <- err
			}()
			select {
			case err := <-done:
				if err == nil || !strings.Contains(err.Error(), "expand") {
					t.Errorf("LoadProject: %v", err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("still reading after 5s: the expansion is not bounded")
			}
		})
	}
}
