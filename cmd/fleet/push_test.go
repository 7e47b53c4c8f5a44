package main

import (
	"slices"
	"testing"
	"time"
)

// TestPushProgressLines: the block shows the whole push, then each host
// with its bytes, those under way first, and no more lines than it has
// room for.
func TestPushProgressLines(t *testing.T) {
	p := startPushProgress(nil, []string{"h1", "h2", "h3"})
	p.sending("h1")(2000)
	p.sending("h2")(10)
	p.hostDone("h2")
	want := []string{"pushing: 1 of 3 hosts done, 2.01kB sent (2s)", "  h1: 2kB sent", "  h3: 0B sent", "  h2: 10B sent, done"}
	if got := p.lines(2*time.Second, 10); !slices.Equal(got, want) {
		t.Errorf("lines:\n%q\nwant\n%q", got, want)
	}
	want = []string{"pushing: 1 of 3 hosts done, 2.01kB sent (2s)", "  h1: 2kB sent", "  and 2 more"}
	if got := p.lines(2*time.Second, 3); !slices.Equal(got, want) {
		t.Errorf("lines in 3 rows:\n%q\nwant\n%q", got, want)
	}
	p.stop()
}
