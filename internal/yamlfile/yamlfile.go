// Package yamlfile reads fleet's YAML files strictly, with positions.
//
// yaml.v3 can reject unknown struct fields, but only at the top level of a
// decode (a custom UnmarshalYAML that calls node.Decode loses the check),
// and it stops at the first wrong type. fleet instead walks the parsed node
// tree by hand: every key is checked against the keys allowed at that depth,
// every value against its expected type, and every problem is recorded with
// its file:line:column in a diag.List, so the user sees all of them at once.
package yamlfile

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/fleetdeploy/fleet/internal/diag"
)

// Doc is one file being read. Errors go to Errs.
type Doc struct {
	File string
	Errs *diag.List
}

var lineRE = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// Parse parses data and returns the root node of its single document, or
// nil after recording why there is none. Data larger than MaxFileSize, and
// a document whose aliases and merge keys expand too far, are refused.
func (d *Doc) Parse(data []byte) *yaml.Node {
	if !CheckSize(d.File, int64(len(data)), d.Errs) {
		return nil
	}
	var root yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&root); err != nil {
		if errors.Is(err, io.EOF) {
			d.Errs.Add(diag.Pos{File: d.File, Line: 1, Col: 1}, "the file is empty")
			return nil
		}
		msg := err.Error()
		pos := diag.Pos{File: d.File}
		if m := lineRE.FindStringSubmatch(msg); m != nil {
			pos.Line, _ = strconv.Atoi(m[1])
			msg = m[2]
		} else {
			msg = strings.TrimPrefix(msg, "yaml: ")
		}
		d.Errs.Add(pos, "not valid YAML: %s", msg).Hint = "check the indentation and quoting around this line"
		return nil
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		d.Errs.Add(d.Pos(&extra), "a second YAML document (after ---): fleet reads one document per file")
	}
	if len(root.Content) == 0 {
		d.Errs.Add(diag.Pos{File: d.File, Line: 1, Col: 1}, "the file is empty")
		return nil
	}
	if !d.bounded(root.Content[0]) {
		return nil
	}
	return root.Content[0]
}

// Pos returns the position of n in this file.
func (d *Doc) Pos(n *yaml.Node) diag.Pos {
	return diag.Pos{File: d.File, Line: n.Line, Col: n.Column}
}

// Errorf records an error at n.
func (d *Doc) Errorf(n *yaml.Node, format string, args ...any) *diag.Error {
	return d.Errs.Add(d.Pos(n), format, args...)
}

// resolve follows aliases (*anchor) to the node they stand for.
func resolve(n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	return n
}

// IsNull reports whether n is absent or an explicit null ("~", "null" or
// nothing after the colon).
func IsNull(n *yaml.Node) bool {
	n = resolve(n)
	return n == nil || (n.Kind == yaml.ScalarNode && n.Tag == "!!null")
}

// Pair is one key and its value in a mapping.
type Pair struct {
	Key   string
	KeyN  *yaml.Node
	Value *yaml.Node
}

// Pairs returns the entries of a mapping in file order, with merge keys
// ("<<: *defaults") folded in beneath the mapping's own keys, and records
// duplicate keys. It returns false, after recording an error, if n is not
// a mapping; what names the value in that error ("service web").
func (d *Doc) Pairs(n *yaml.Node, what string) ([]Pair, bool) {
	n = resolve(n)
	if IsNull(n) {
		return nil, true
	}
	if n.Kind != yaml.MappingNode {
		d.Errorf(n, "%s: want a mapping of keys to values, got %s", what, describe(n))
		return nil, false
	}
	var own, merged []Pair
	seen := map[string]*yaml.Node{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := resolve(n.Content[i]), n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			d.Errorf(k, "%s: a key must be a plain word, got %s", what, describe(k))
			continue
		}
		if k.Tag == "!!merge" || (k.Value == "<<" && k.Style == 0) {
			merged = append(merged, d.mergeSources(v, what)...)
			continue
		}
		if prev, dup := seen[k.Value]; dup {
			d.Errorf(k, "%s: key %q is given twice (first at line %d)", what, k.Value, prev.Line).Hint = "remove one of them"
			continue
		}
		seen[k.Value] = k
		own = append(own, Pair{Key: k.Value, KeyN: k, Value: v})
	}
	for _, p := range merged {
		if _, ok := seen[p.Key]; !ok {
			seen[p.Key] = p.KeyN
			own = append(own, p)
		}
	}
	return own, true
}

func (d *Doc) mergeSources(v *yaml.Node, what string) []Pair {
	v = resolve(v)
	var sources []*yaml.Node
	if v.Kind == yaml.SequenceNode {
		sources = v.Content
	} else {
		sources = []*yaml.Node{v}
	}
	var pairs []Pair
	for _, s := range sources {
		p, _ := d.Pairs(s, what+" (merged with <<)")
		pairs = append(pairs, p...)
	}
	return pairs
}

// Fields walks a mapping whose keys are fixed: each known key's value goes
// to its handler; an unknown key is an error with the nearest known key as
// a hint. It returns false if n is not a mapping.
func (d *Doc) Fields(n *yaml.Node, what string, fields map[string]func(v *yaml.Node)) bool {
	pairs, ok := d.Pairs(n, what)
	if !ok {
		return false
	}
	for _, p := range pairs {
		fn, known := fields[p.Key]
		if !known {
			e := d.Errorf(p.KeyN, "%s: unknown key %q", what, p.Key)
			e.Hint = diag.Suggest(p.Key, keys(fields))
			if e.Hint == "" {
				e.Hint = "known keys: " + strings.Join(keys(fields), ", ")
			}
			continue
		}
		fn(p.Value)
	}
	return true
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// describe names what a node is, for "want X, got Y" errors.
func describe(n *yaml.Node) string {
	n = resolve(n)
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		switch n.Tag {
		case "!!null":
			return "nothing"
		case "!!str":
			return fmt.Sprintf("the text %q", n.Value)
		case "!!int":
			return "the number " + n.Value
		case "!!float":
			return "the number " + n.Value
		case "!!bool":
			return n.Value + " (a boolean)"
		}
		return fmt.Sprintf("%q", n.Value)
	}
	return "something else"
}

// String reads a text value. Numbers and booleans are refused, so that
// "version: 1.10" does not silently become "1.1".
func (d *Doc) String(n *yaml.Node, what string) (string, bool) {
	n = resolve(n)
	if n.Kind == yaml.ScalarNode && n.Tag == "!!str" {
		if !d.noNUL(n, what) {
			return "", false
		}
		return n.Value, true
	}
	e := d.Errorf(n, "%s: want text, got %s", what, describe(n))
	if n.Kind == yaml.ScalarNode && n.Tag != "!!null" {
		e.Hint = fmt.Sprintf("quote it: %q", n.Value)
	}
	return "", false
}

// noNUL refuses a text value holding a NUL byte ("\0" in a quoted
// string): no name, path, argument or environment variable can carry one,
// so it would fail on the host, or be cut short there. The value is not
// shown: it may be a secret's.
func (d *Doc) noNUL(n *yaml.Node, what string) bool {
	if strings.IndexByte(n.Value, 0) < 0 {
		return true
	}
	d.Errorf(n, "%s: holds a NUL byte (\\0), which no name, path, argument or environment variable can carry", what).Hint = "remove it"
	return false
}

// Scalar reads any scalar as text: for env values and labels, where
// "PORT: 8080" and "gpu: true" are meant as the text they show.
func (d *Doc) Scalar(n *yaml.Node, what string) (string, bool) {
	n = resolve(n)
	if n.Kind == yaml.ScalarNode && n.Tag != "!!null" {
		if !d.noNUL(n, what) {
			return "", false
		}
		return n.Value, true
	}
	e := d.Errorf(n, "%s: want a value, got %s", what, describe(n))
	if IsNull(n) {
		e.Hint = `write "" for an empty value`
	}
	return "", false
}

// Int reads a whole number within [lo, hi].
func (d *Doc) Int(n *yaml.Node, what string, lo, hi int) (int, bool) {
	n = resolve(n)
	if n.Kind != yaml.ScalarNode || n.Tag != "!!int" {
		e := d.Errorf(n, "%s: want a whole number, got %s", what, describe(n))
		if _, err := strconv.Atoi(n.Value); err == nil && n.Tag == "!!str" {
			e.Hint = "remove the quotes: " + n.Value
		}
		return 0, false
	}
	v, err := strconv.ParseInt(strings.ReplaceAll(n.Value, "_", ""), 0, 64)
	if err != nil || v < int64(lo) || v > int64(hi) {
		d.Errorf(n, "%s: %s is out of range: want %d to %d", what, n.Value, lo, hi)
		return 0, false
	}
	return int(v), true
}

// Float reads a number within [lo, hi].
func (d *Doc) Float(n *yaml.Node, what string, lo, hi float64) (float64, bool) {
	n = resolve(n)
	if n.Kind != yaml.ScalarNode || (n.Tag != "!!int" && n.Tag != "!!float") {
		d.Errorf(n, "%s: want a number, got %s", what, describe(n))
		return 0, false
	}
	v, err := strconv.ParseFloat(strings.ReplaceAll(n.Value, "_", ""), 64)
	if err != nil || math.IsNaN(v) || v < lo || v > hi {
		d.Errorf(n, "%s: %s is out of range: want %g to %g", what, n.Value, lo, hi)
		return 0, false
	}
	return v, true
}

// Bool reads true or false.
func (d *Doc) Bool(n *yaml.Node, what string) (bool, bool) {
	n = resolve(n)
	if n.Kind == yaml.ScalarNode && n.Tag == "!!bool" {
		v, err := strconv.ParseBool(strings.ToLower(n.Value))
		if err == nil {
			return v, true
		}
	}
	e := d.Errorf(n, "%s: want true or false, got %s", what, describe(n))
	switch strings.ToLower(n.Value) {
	case "yes", "on", "y":
		e.Hint = "YAML 1.2 reads " + n.Value + " as text: write true"
	case "no", "off", "n":
		e.Hint = "YAML 1.2 reads " + n.Value + " as text: write false"
	}
	return false, false
}

// Duration reads a Go-style duration ("30s", "1m30s", "500ms"); a bare
// number is refused, since its unit would be a guess.
func (d *Doc) Duration(n *yaml.Node, what string) (time.Duration, bool) {
	n = resolve(n)
	if n.Kind == yaml.ScalarNode && n.Tag == "!!str" {
		v, err := time.ParseDuration(n.Value)
		if err == nil && v >= 0 {
			return v, true
		}
	}
	e := d.Errorf(n, "%s: want a duration such as 30s, 2m or 500ms, got %s", what, describe(n))
	if n.Kind == yaml.ScalarNode && n.Tag == "!!int" {
		e.Hint = fmt.Sprintf("add a unit: %ss", n.Value)
	}
	return 0, false
}

// Enum reads one of the allowed words.
func (d *Doc) Enum(n *yaml.Node, what string, allowed ...string) (string, bool) {
	s, ok := d.String(n, what)
	if !ok {
		return "", false
	}
	for _, a := range allowed {
		if s == a {
			return s, true
		}
	}
	e := d.Errorf(n, "%s: %q is not one of %s", what, s, strings.Join(allowed, ", "))
	e.Hint = diag.Suggest(s, allowed)
	return "", false
}

// Strings reads a list of text values.
func (d *Doc) Strings(n *yaml.Node, what string) ([]string, bool) {
	n = resolve(n)
	if IsNull(n) {
		return nil, true
	}
	if n.Kind != yaml.SequenceNode {
		e := d.Errorf(n, "%s: want a list, got %s", what, describe(n))
		if n.Kind == yaml.ScalarNode {
			e.Hint = fmt.Sprintf("write it as a list: [%s]", n.Value)
		}
		return nil, false
	}
	out := make([]string, 0, len(n.Content))
	ok := true
	for i, item := range n.Content {
		s, good := d.String(item, fmt.Sprintf("%s[%d]", what, i))
		ok = ok && good
		out = append(out, s)
	}
	return out, ok
}

// Items returns the elements of a list, or records why n is not one.
func (d *Doc) Items(n *yaml.Node, what string) ([]*yaml.Node, bool) {
	n = resolve(n)
	if IsNull(n) {
		return nil, true
	}
	if n.Kind != yaml.SequenceNode {
		d.Errorf(n, "%s: want a list, got %s", what, describe(n))
		return nil, false
	}
	out := make([]*yaml.Node, len(n.Content))
	for i, item := range n.Content {
		out[i] = resolve(item)
	}
	return out, true
}

// StringMap reads a mapping of keys to scalar values, checking each key
// with validKey when it is given.
func (d *Doc) StringMap(n *yaml.Node, what string, validKey func(string) string) (map[string]string, bool) {
	pairs, ok := d.Pairs(n, what)
	if !ok {
		return nil, false
	}
	out := make(map[string]string, len(pairs))
	for _, p := range pairs {
		if validKey != nil {
			if problem := validKey(p.Key); problem != "" {
				d.Errorf(p.KeyN, "%s: key %q %s", what, p.Key, problem)
				ok = false
				continue
			}
		}
		v, good := d.Scalar(p.Value, what+"."+p.Key)
		if good {
			out[p.Key] = v
		}
		ok = ok && good
	}
	return out, ok
}

// Resolve follows aliases; exported for callers that inspect node kinds.
func Resolve(n *yaml.Node) *yaml.Node { return resolve(n) }

// Describe names what a node is, for callers' own "want X, got Y" errors.
func Describe(n *yaml.Node) string { return describe(n) }
