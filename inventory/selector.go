package inventory

import (
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"

	"github.com/fleetdeploy/fleet/internal/diag"
)

// A Selector picks hosts. Its text is terms joined by commas, all of which
// must hold:
//
//	role=web          label role is web
//	zone!=c           label zone is not c (or absent)
//	zone in (a,b)     label zone is a or b
//	zone notin (c)    label zone is neither (or absent)
//	gpu               label gpu is present, or the host is named gpu
//	!canary           neither
//	group=web         the host is in group web (also !=, in, notin)
//
// A selector made only of host names ("web1,web2") picks those hosts.
type Selector struct {
	Text  string
	Terms []Term
	// Names is set for a list of host names given as such (a YAML list).
	Names []string
}

// Op is how a term compares.
type Op int

const (
	Exists Op = iota
	NotExists
	Equal
	NotEqual
	In
	NotIn
)

// Term is one condition of a selector.
type Term struct {
	Key    string
	Op     Op
	Values []string
	Offset int // byte offset of the term in the selector's text
}

// SelectorError is a syntax error at a byte offset of the selector.
type SelectorError struct {
	Offset int
	Msg    string
}

func (e *SelectorError) Error() string { return e.Msg }

// ParseSelector parses a selector's text.
func ParseSelector(text string) (*Selector, error) {
	p := &selParser{s: text}
	sel := &Selector{Text: text}
	p.space()
	if p.i == len(p.s) {
		return nil, &SelectorError{0, "empty selector"}
	}
	for {
		t, err := p.term()
		if err != nil {
			return nil, err
		}
		sel.Terms = append(sel.Terms, t)
		p.space()
		if p.i == len(p.s) {
			return sel, nil
		}
		if p.s[p.i] != ',' {
			return nil, p.errorf("expected ',' between terms, got %q", p.rest())
		}
		p.i++
		p.space()
		if p.i == len(p.s) {
			return nil, p.errorf("a term must follow ','")
		}
	}
}

// NamesSelector selects exactly the named hosts.
func NamesSelector(names []string) *Selector {
	return &Selector{Text: strings.Join(names, ","), Names: names}
}

type selParser struct {
	s string
	i int
}

func (p *selParser) errorf(format string, args ...any) error {
	return &SelectorError{p.i, fmt.Sprintf(format, args...)}
}

func (p *selParser) rest() string {
	r := p.s[p.i:]
	if len(r) > 20 {
		r = r[:20] + "…"
	}
	return r
}

func (p *selParser) space() {
	for p.i < len(p.s) && (p.s[p.i] == ' ' || p.s[p.i] == '\t') {
		p.i++
	}
}

func isWordByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.' || c == '/' || c == ':'
}

func (p *selParser) word(what string) (string, error) {
	start := p.i
	for p.i < len(p.s) && isWordByte(p.s[p.i]) {
		p.i++
	}
	if start == p.i {
		if p.i == len(p.s) {
			return "", p.errorf("expected %s at the end", what)
		}
		return "", p.errorf("expected %s, got %q", what, p.rest())
	}
	return p.s[start:p.i], nil
}

func (p *selParser) term() (Term, error) {
	t := Term{Offset: p.i}
	if p.s[p.i] == '!' && !strings.HasPrefix(p.s[p.i:], "!=") {
		p.i++
		p.space()
		key, err := p.word("a label after '!'")
		if err != nil {
			return t, err
		}
		t.Key, t.Op = key, NotExists
		return t, nil
	}
	key, err := p.word("a label or host name")
	if err != nil {
		return t, err
	}
	t.Key = key
	p.space()
	switch {
	case strings.HasPrefix(p.s[p.i:], "!="):
		p.i += 2
		t.Op = NotEqual
	case strings.HasPrefix(p.s[p.i:], "=="):
		p.i += 2
		t.Op = Equal
	case strings.HasPrefix(p.s[p.i:], "="):
		p.i++
		t.Op = Equal
	case p.keyword("notin"):
		t.Op = NotIn
	case p.keyword("in"):
		t.Op = In
	default:
		t.Op = Exists
		return t, nil
	}
	p.space()
	if t.Op == Equal || t.Op == NotEqual {
		v, err := p.word("a value")
		if err != nil {
			return t, err
		}
		t.Values = []string{v}
		return t, nil
	}
	if p.i == len(p.s) || p.s[p.i] != '(' {
		return t, p.errorf("expected '(' to open the set of values")
	}
	p.i++
	for {
		p.space()
		v, err := p.word("a value")
		if err != nil {
			return t, err
		}
		t.Values = append(t.Values, v)
		p.space()
		if p.i == len(p.s) {
			return t, p.errorf("missing ')' to close the set of values")
		}
		if p.s[p.i] == ')' {
			p.i++
			return t, nil
		}
		if p.s[p.i] != ',' {
			return t, p.errorf("expected ',' or ')' in the set of values, got %q", p.rest())
		}
		p.i++
	}
}

// keyword consumes the operator kw if it stands at the cursor as a word of
// its own, so that a label called "input" is not read as "in".
func (p *selParser) keyword(kw string) bool {
	if !strings.HasPrefix(p.s[p.i:], kw) {
		return false
	}
	if end := p.i + len(kw); end < len(p.s) && isWordByte(p.s[end]) {
		return false
	}
	p.i += len(kw)
	return true
}

// namesOnly reports whether the selector is a plain list of host names of
// inv: bare words that each name a host, to be read as "any of these".
func (s *Selector) namesOnly(inv *Inventory) []string {
	if s.Names != nil {
		return s.Names
	}
	if len(s.Terms) < 2 {
		return nil
	}
	var names []string
	for _, t := range s.Terms {
		if t.Op != Exists || inv.Host(t.Key) == nil {
			return nil
		}
		names = append(names, t.Key)
	}
	return names
}

// Select returns the hosts that sel picks, sorted by name.
func (inv *Inventory) Select(sel *Selector) []*Host {
	if names := sel.namesOnly(inv); names != nil {
		want := map[string]bool{}
		for _, n := range names {
			want[n] = true
		}
		var out []*Host
		for _, h := range inv.Hosts {
			if want[h.Name] {
				out = append(out, h)
			}
		}
		return out
	}
	var out []*Host
	for _, h := range inv.Hosts {
		if sel.Matches(h) {
			out = append(out, h)
		}
	}
	return out
}

// Matches reports whether every term holds for h.
func (s *Selector) Matches(h *Host) bool {
	if s.Names != nil {
		for _, n := range s.Names {
			if n == h.Name {
				return true
			}
		}
		return false
	}
	for _, t := range s.Terms {
		if !t.matches(h) {
			return false
		}
	}
	return true
}

func (t Term) matches(h *Host) bool {
	if t.Key == "group" && t.Op != Exists && t.Op != NotExists {
		in := func(g string) bool {
			for _, hg := range h.Groups {
				if hg == g {
					return true
				}
			}
			return false
		}
		any := false
		for _, v := range t.Values {
			any = any || in(v)
		}
		if t.Op == NotEqual || t.Op == NotIn {
			return !any
		}
		return any
	}
	v, has := h.Labels[t.Key]
	switch t.Op {
	case Exists:
		return has || h.Name == t.Key
	case NotExists:
		return !has && h.Name != t.Key
	case Equal, In:
		return has && slices.Contains(t.Values, v)
	default: // NotEqual, NotIn
		return !has || !slices.Contains(t.Values, v)
	}
}

// Check explains why a selector cannot be what its author meant: a group
// or host name that does not exist, a label no host carries, a value no
// host has. Each problem comes with the term's byte offset and a hint.
func (inv *Inventory) Check(sel *Selector) []SelectorProblem {
	var problems []SelectorProblem
	if sel.Names != nil {
		for i, n := range sel.Names {
			if inv.Host(n) == nil {
				problems = append(problems, SelectorProblem{Index: i, Msg: fmt.Sprintf("no host %q in the inventory", n), Hint: diag.Suggest(n, inv.Names())})
			}
		}
		return problems
	}
	labels := map[string]map[string]bool{}
	for _, h := range inv.Hosts {
		for k, v := range h.Labels {
			if labels[k] == nil {
				labels[k] = map[string]bool{}
			}
			labels[k][v] = true
		}
	}
	for _, t := range sel.Terms {
		switch {
		case t.Key == "group" && t.Op != Exists && t.Op != NotExists:
			for _, g := range t.Values {
				if _, ok := inv.Groups[g]; !ok {
					problems = append(problems, SelectorProblem{Offset: t.Offset, Msg: fmt.Sprintf("no group %q in the inventory", g), Hint: diag.Suggest(g, slices.Sorted(maps.Keys(inv.Groups)))})
				}
			}
		case t.Op == Exists || t.Op == NotExists:
			if labels[t.Key] == nil && inv.Host(t.Key) == nil {
				hint := diag.Suggest(t.Key, append(slices.Sorted(maps.Keys(labels)), inv.Names()...))
				problems = append(problems, SelectorProblem{Offset: t.Offset, Msg: fmt.Sprintf("no host is named %q or has a label %q", t.Key, t.Key), Hint: hint})
			}
		default:
			if labels[t.Key] == nil {
				problems = append(problems, SelectorProblem{Offset: t.Offset, Msg: fmt.Sprintf("no host has a label %q", t.Key), Hint: diag.Suggest(t.Key, slices.Sorted(maps.Keys(labels)))})
				continue
			}
			if t.Op == NotEqual || t.Op == NotIn {
				continue // excluding a value no host has yet is no mistake
			}
			for _, v := range t.Values {
				if !labels[t.Key][v] {
					values := slices.Sorted(maps.Keys(labels[t.Key]))
					hint := diag.Suggest(v, values)
					if hint == "" {
						hint = fmt.Sprintf("hosts have %s=%s", t.Key, strings.Join(values, ", "))
					}
					problems = append(problems, SelectorProblem{Offset: t.Offset, Msg: fmt.Sprintf("no host has %s=%s", t.Key, v), Hint: hint})
				}
			}
		}
	}
	sort.SliceStable(problems, func(i, j int) bool { return problems[i].Offset < problems[j].Offset })
	return problems
}

// SelectorProblem is one thing wrong with a selector against an
// inventory: at a byte offset of its text, or at list item Index.
type SelectorProblem struct {
	Offset int
	Index  int
	Msg    string
	Hint   string
}
