package executor

import (
	"context"
	"errors"
	"testing"
)

func TestErrorsSortedAndNamed(t *testing.T) {
	err := collect([]*HostError{
		{Host: "web2", Op: "reading state", Err: errors.New("docker engine: Cannot connect\nsecond line")},
		nil,
		{Host: "db1", Op: "connecting", Err: context.DeadlineExceeded},
	})
	want := "2 hosts failed:\n" +
		"  host db1: connecting: context deadline exceeded\n" +
		"  host web2: reading state: docker engine: Cannot connect\n    second line"
	if err == nil || err.Error() != want {
		t.Fatalf("error:\n%v\nwant:\n%s", err, want)
	}
	var es Errors
	if !errors.As(err, &es) || es.Hosts()[0] != "db1" || es.Hosts()[1] != "web2" {
		t.Errorf("hosts %v", es.Hosts())
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Error("the error tree hides a host's cause")
	}
	if collect([]*HostError{nil, nil}) != nil {
		t.Error("no failures gave a non-nil error")
	}
	one := collect([]*HostError{{Host: "h1", Op: "x", Err: errors.New("boom")}})
	if one.Error() != "host h1: x: boom" {
		t.Errorf("one failure: %q", one)
	}
}

func TestHostErrKeepsInnerHost(t *testing.T) {
	inner := &HostError{Host: "h1", Op: "running true", Err: errors.New("exit status 1")}
	if got := hostErr("h1", "outer op", inner); got != inner {
		t.Errorf("wrapped twice: %v", got)
	}
	if got := hostErr("h2", "through h1", inner); got.Host != "h2" || got.Err != inner {
		t.Errorf("another host's error: %v", got)
	}
}
