package inventory

import (
	"strings"
	"testing"
	"time"
)

// TestBombsAreRefusedPromptly reads inventories whose anchors would expand
// to billions of nodes: fleet's own format, an Ansible YAML inventory and
// an Ansible group_vars file (their errors are in the golden files beside
// them). It measures nothing, but fails on a hang instead of waiting for
// go test's own timeout.
func TestBombsAreRefusedPromptly(t *testing.T) {
	for _, name := range []string{"merge-bomb.yaml", "alias-bomb.yml", "group-vars-bomb"} {
		t.Run(name, func(t *testing.T) {
			opts := testOptions(t)
			done := make(chan error, 1)
			go func() {
				_, err := Load("testdata/invalid/"+name, opts)
				done <- err
			}()
			select {
			case err := <-done:
				if err == nil || !strings.Contains(err.Error(), "too many aliases and merges expand here") {
					t.Errorf("Load: %v", err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("still reading after 5s: the expansion is not bounded")
			}
		})
	}
}

// TestHostRangesAreBounded: each range of a host pattern makes at most
// 10000 hosts, and so do all of a pattern's ranges together.
func TestHostRangesAreBounded(t *testing.T) {
	if names, _, err := expandHostPattern("h[1:100]-[1:100]"); err != nil || len(names) != 10000 {
		t.Errorf("h[1:100]-[1:100]: %d names, %v", len(names), err)
	}
	done := make(chan error, 1)
	go func() {
		_, _, err := expandHostPattern("h[0:9999][0:9999][0:9999]")
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil || err.Error() != "its ranges make more than 10000 hosts" {
			t.Errorf("h[0:9999][0:9999][0:9999]: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("still expanding after 5s: the ranges are not bounded")
	}
}
