package export

import (
	"bytes"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// A YAML document is built as yaml.v3 nodes, so that comments can be
// attached where a setting was dropped, and so that every value is quoted
// by the encoder as YAML needs rather than by hand.

func mapping() *yaml.Node { return &yaml.Node{Kind: yaml.MappingNode} }

func str(s string) *yaml.Node {
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: s}
}

func num[N int | int64 | float64](n N) *yaml.Node {
	switch v := any(n).(type) {
	case float64:
		f := strconv.FormatFloat(v, 'f', -1, 64)
		if !strings.Contains(f, ".") {
			f += ".0"
		}
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!float", Value: f}
	}
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!int", Value: fmt.Sprint(n)}
}

func boolean(b bool) *yaml.Node {
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!bool", Value: strconv.FormatBool(b)}
}

func seq(items ...*yaml.Node) *yaml.Node {
	return &yaml.Node{Kind: yaml.SequenceNode, Content: items}
}

func strs(list []string, escape func(string) string) *yaml.Node {
	n := seq()
	for _, s := range list {
		n.Content = append(n.Content, str(escape(s)))
	}
	return n
}

func strMap(m map[string]string, escape func(string) string) *yaml.Node {
	n := mapping()
	for _, k := range sortedKeys(m) {
		set(n, k, str(escape(m[k])))
	}
	return n
}

// set adds key: value to a mapping and returns the key's node, on which a
// comment may be hung.
func set(m *yaml.Node, key string, value *yaml.Node) *yaml.Node {
	k := str(key)
	m.Content = append(m.Content, k, value)
	return k
}

// child returns the mapping under key, adding it when missing.
func child(m *yaml.Node, key string) *yaml.Node {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i+1]
		}
	}
	c := mapping()
	set(m, key, c)
	return c
}

// note adds comment lines above a node, each a sentence saying what was
// dropped and why.
func note(n *yaml.Node, lines ...string) {
	for _, l := range lines {
		l = "# " + strings.ReplaceAll(l, "\n", "\n# ")
		if n.HeadComment == "" {
			n.HeadComment = l
		} else {
			n.HeadComment += "\n" + l
		}
	}
}

// sortKeys orders every mapping's keys, moving their comments with them.
func sortKeys(n *yaml.Node) {
	for _, c := range n.Content {
		sortKeys(c)
	}
	if n.Kind != yaml.MappingNode {
		return
	}
	type pair struct{ k, v *yaml.Node }
	pairs := make([]pair, 0, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		pairs = append(pairs, pair{n.Content[i], n.Content[i+1]})
	}
	sort.SliceStable(pairs, func(i, j int) bool { return pairs[i].k.Value < pairs[j].k.Value })
	n.Content = n.Content[:0]
	for _, p := range pairs {
		n.Content = append(n.Content, p.k, p.v)
	}
}

// encode writes documents separated by "---", each with sorted keys.
func encode(header string, docs ...*yaml.Node) ([]byte, error) {
	var buf bytes.Buffer
	buf.WriteString(header)
	for i, d := range docs {
		sortKeys(d)
		if i > 0 {
			buf.WriteString("---\n")
		}
		var one bytes.Buffer
		enc := yaml.NewEncoder(&one)
		enc.SetIndent(2)
		if err := enc.Encode(d); err != nil {
			return nil, err
		}
		if err := enc.Close(); err != nil {
			return nil, err
		}
		buf.Write(one.Bytes())
	}
	return buf.Bytes(), nil
}

// commentBlock is a header of comment lines.
func commentBlock(lines ...string) string {
	var b strings.Builder
	for _, l := range lines {
		for _, part := range strings.Split(l, "\n") {
			b.WriteString(strings.TrimRight("# "+part, " ") + "\n")
		}
	}
	return b.String()
}
