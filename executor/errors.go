package executor

import (
	"errors"
	"fmt"
	"sort"
	"strings"
)

// HostError is the failure of one operation on one host.
type HostError struct {
	Host string // inventory name
	Op   string // what was being done, e.g. "connecting", "reading state"
	Err  error
}

func (e *HostError) Error() string {
	if e.Op == "" {
		return "host " + e.Host + ": " + e.Err.Error()
	}
	return "host " + e.Host + ": " + e.Op + ": " + e.Err.Error()
}

func (e *HostError) Unwrap() error { return e.Err }

// Errors holds the failures of a multi-host operation, one per failed host,
// sorted by host name.
type Errors []*HostError

func (es Errors) Error() string {
	switch len(es) {
	case 0:
		return "no errors"
	case 1:
		return es[0].Error()
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%d hosts failed:", len(es))
	for _, e := range es {
		b.WriteString("\n  ")
		b.WriteString(strings.ReplaceAll(e.Error(), "\n", "\n    "))
	}
	return b.String()
}

func (es Errors) Unwrap() []error {
	out := make([]error, len(es))
	for i, e := range es {
		out[i] = e
	}
	return out
}

// Hosts returns the names of the failed hosts, sorted.
func (es Errors) Hosts() []string {
	out := make([]string, len(es))
	for i, e := range es {
		out[i] = e.Host
	}
	return out
}

// collect sorts host errors by host and returns nil when there are none,
// never a typed nil.
func collect(es []*HostError) error {
	var out Errors
	for _, e := range es {
		if e != nil {
			out = append(out, e)
		}
	}
	if len(out) == 0 {
		return nil
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Host < out[j].Host })
	return out
}

// hostErr wraps err as a HostError for host and op, keeping an existing
// HostError for the same host as it is.
func hostErr(host, op string, err error) *HostError {
	var he *HostError
	if errors.As(err, &he) && he.Host == host {
		return he
	}
	return &HostError{Host: host, Op: op, Err: err}
}
