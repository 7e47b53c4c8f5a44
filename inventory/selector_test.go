package inventory

import (
	"strings"
	"testing"
)

// selInventory is a small inventory for selector tests.
func selInventory(t *testing.T) *Inventory {
	t.Helper()
	inv, err := Parse("inventory.yaml", []byte(`
hosts:
  web1: {labels: {role: web, zone: a}}
  web2: {labels: {role: web, zone: b, canary: "true"}}
  web3: {labels: {role: web, zone: c}}
  db1:  {labels: {role: db, zone: a, gpu: ""}}
  gpu:  {labels: {role: batch}}
groups:
  front: [web1, web2]
  data: [db1]
`), Options{SSHConfig: "none"})
	if err != nil {
		t.Fatal(err)
	}
	return inv
}

func TestSelect(t *testing.T) {
	inv := selInventory(t)
	for _, c := range []struct{ sel, want string }{
		{"role=web", "web1 web2 web3"},
		{"role==web", "web1 web2 web3"},
		{"role = web", "web1 web2 web3"},
		{"zone!=c", "db1 gpu web1 web2"},
		{"zone in (a,b)", "db1 web1 web2"},
		{"zone in ( a , c )", "db1 web1 web3"},
		{"zone notin (c)", "db1 gpu web1 web2"},
		{"role=web,zone!=c", "web1 web2"},
		{"role=web, !canary", "web1 web3"},
		{"canary", "web2"},
		{"gpu", "db1 gpu"}, // labelled gpu, or named gpu
		{"!gpu", "web1 web2 web3"},
		{"group=front", "web1 web2"},
		{"group!=front", "db1 gpu web1 web2 web3"[len("db1 gpu web1 web2 web3"):] + "db1 gpu web3"},
		{"group in (front,data)", "db1 web1 web2"},
		{"group notin (front)", "db1 gpu web3"},
		{"web1,web3", "web1 web3"}, // a list of host names
		{"web1", "web1"},
		{"web1,zone=a", "web1"},
		{"role=nothing", ""},
	} {
		sel, err := ParseSelector(c.sel)
		if err != nil {
			t.Errorf("%q: %v", c.sel, err)
			continue
		}
		var got []string
		for _, h := range inv.Select(sel) {
			got = append(got, h.Name)
		}
		if strings.Join(got, " ") != c.want {
			t.Errorf("%q selects %q, want %q", c.sel, strings.Join(got, " "), c.want)
		}
	}
}

func TestSelectorSyntaxErrors(t *testing.T) {
	for _, c := range []struct {
		sel    string
		offset int
		msg    string
	}{
		{"", 0, "empty selector"},
		{"role=", 5, "expected a value at the end"},
		{"role=web,", 9, "a term must follow ','"},
		{"zone in (a,b", 12, "missing ')'"},
		{"zone in a", 8, "expected '(' to open the set of values"},
		{"zone in (a;b)", 10, "expected ',' or ')'"},
		{"role=web zone=a", 9, "expected ',' between terms"},
		{"!", 1, "expected a label after '!' at the end"},
		{"role=$(reboot)", 5, "expected a value"},
	} {
		_, err := ParseSelector(c.sel)
		se, ok := err.(*SelectorError)
		if !ok {
			t.Errorf("%q: error %v, want a SelectorError", c.sel, err)
			continue
		}
		if se.Offset != c.offset || !strings.Contains(se.Msg, c.msg) {
			t.Errorf("%q: at %d %q, want at %d %q", c.sel, se.Offset, se.Msg, c.offset, c.msg)
		}
	}
}

func TestSelectorKeywordsAsLabels(t *testing.T) {
	// "input" and "notinteresting" are labels, not the in/notin operators.
	sel, err := ParseSelector("input,notinteresting=x")
	if err != nil {
		t.Fatal(err)
	}
	if sel.Terms[0].Key != "input" || sel.Terms[0].Op != Exists || sel.Terms[1].Key != "notinteresting" || sel.Terms[1].Op != Equal {
		t.Errorf("parsed %+v", sel.Terms)
	}
}

func TestSelectorCheck(t *testing.T) {
	inv := selInventory(t)
	for _, c := range []struct{ sel, want string }{
		{"role=wbe", `no host has role=wbe (did you mean "web"?)`},
		{"rol=web", `no host has a label "rol" (did you mean "role"?)`},
		{"group=frnt", `no group "frnt" in the inventory (did you mean "front"?)`},
		{"webb1", `no host is named "webb1" or has a label "webb1" (did you mean "web1"?)`},
		{"zone=q", `no host has zone=q (hosts have zone=a, b, c)`},
		{"zone!=q", ``},
		{"role=web", ``},
	} {
		sel, err := ParseSelector(c.sel)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, p := range inv.Check(sel) {
			s := p.Msg
			if p.Hint != "" {
				s += " (" + p.Hint + ")"
			}
			got = append(got, s)
		}
		if strings.Join(got, "; ") != c.want {
			t.Errorf("%q: %q, want %q", c.sel, strings.Join(got, "; "), c.want)
		}
	}
	if p := inv.Check(NamesSelector([]string{"web1", "wbe2"})); len(p) != 1 || p[0].Index != 1 || !strings.Contains(p[0].Hint, "web2") {
		t.Errorf("names list: %+v", p)
	}
}
