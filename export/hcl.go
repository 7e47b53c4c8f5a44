package export

import (
	"fmt"
	"regexp"
	"strings"
)

// A Nomad job is written through a small HCL builder: blocks of
// attributes and blocks, each item with the comments above it. Values are
// rendered when added, strings through hclString.

type hclBlock struct {
	typ    string
	labels []string
	items  []hclItem
}

type hclItem struct {
	comments []string
	name     string // an attribute's name
	value    string // an attribute's rendered value
	block    *hclBlock
}

func newBlock(typ string, labels ...string) *hclBlock {
	return &hclBlock{typ: typ, labels: labels}
}

func (b *hclBlock) attr(name, value string, comments ...string) {
	b.items = append(b.items, hclItem{comments: comments, name: name, value: value})
}

func (b *hclBlock) add(c *hclBlock, comments ...string) *hclBlock {
	b.items = append(b.items, hclItem{comments: comments, block: c})
	return c
}

func (b *hclBlock) child(typ string, labels ...string) *hclBlock {
	return b.add(newBlock(typ, labels...))
}

// comment adds comment lines at this point of the block.
func (b *hclBlock) comment(lines ...string) {
	if len(lines) > 0 {
		b.items = append(b.items, hclItem{comments: lines})
	}
}

func (b *hclBlock) write(sb *strings.Builder, indent string) {
	sb.WriteString(indent + b.typ)
	for _, l := range b.labels {
		sb.WriteString(" " + hclString(l))
	}
	sb.WriteString(" {\n")
	width := 0
	for _, it := range b.items {
		if it.block == nil && len(it.name) > width {
			width = len(it.name)
		}
	}
	for _, it := range b.items {
		for _, c := range it.comments {
			for _, line := range strings.Split(c, "\n") {
				sb.WriteString(strings.TrimRight(indent+"  # "+line, " ") + "\n")
			}
		}
		switch {
		case it.block != nil:
			it.block.write(sb, indent+"  ")
		case it.name != "":
			fmt.Fprintf(sb, "%s  %-*s = %s\n", indent, width, it.name, it.value)
		}
	}
	sb.WriteString(indent + "}\n")
}

// hclString quotes s as an HCL string literal: quotes, backslashes and
// control characters escaped, and the template sequences "${" and "%{"
// doubled so that HCL reads them as text.
func hclString(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for i, r := range s {
		switch {
		case r == '"':
			b.WriteString(`\"`)
		case r == '\\':
			b.WriteString(`\\`)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, `\u%04x`, r)
		case (r == '$' || r == '%') && strings.HasPrefix(s[i+1:], "{"):
			b.WriteRune(r)
			b.WriteRune(r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// hclInterpolation is a string Nomad interpolates itself, such as
// "${meta.zone}": written as it is.
func hclInterpolation(s string) string { return `"` + s + `"` }

func hclList(list []string) string {
	q := make([]string, len(list))
	for i, s := range list {
		q[i] = hclString(s)
	}
	return "[" + strings.Join(q, ", ") + "]"
}

func hclMap(m map[string]string) string {
	if len(m) == 0 {
		return "{}"
	}
	var parts []string
	for _, k := range sortedKeys(m) {
		parts = append(parts, hclString(k)+" = "+hclString(m[k]))
	}
	return "{ " + strings.Join(parts, ", ") + " }"
}

var identifierRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_-]*$`)
