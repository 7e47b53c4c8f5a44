package yamlfile

import (
	"fmt"
	"io"
	"os"

	"gopkg.in/yaml.v3"

	"github.com/fleetdeploy/fleet/internal/diag"
)

// Bad input must fail fast, not after minutes or with the machine out of
// memory: a file is refused before it is parsed when it is larger than
// MaxFileSize, and once parsed when its aliases expand too far.
//
// MaxFileSize is 4 MiB. The files fleet reads are written by hand: a
// fleet.yaml of a hundred services is some 50 KiB, and an Ansible inventory
// of ten thousand hosts with a few variables each some 1-2 MiB, so the
// limit leaves room for the largest real ones. Above it, a file is most
// likely the wrong one (a log, an image, /dev/zero), and reading it costs
// more than any use of it could: yaml.v3 spends about a microsecond and
// 200 bytes on each node, so 4 MiB of typical YAML (50,000 env entries)
// takes it about a second and 50 MiB, and 4 MiB of the densest (a list of
// two million one-letter items) several seconds and 400 MiB, the most an
// accepted file can cost.
const MaxFileSize = 4 << 20

// MaxAliased bounds the nodes that aliases (*name) and merge keys
// (<<: *name) add to a document. yaml.v3 keeps an alias as a pointer to
// its anchor, but whoever walks the tree, as Doc's readers do, visits the
// anchor's nodes again at every alias: nine levels of anchors that each
// merge the one before nine times are a few hundred bytes and 9^9 nodes,
// a walk of minutes ("billion laughs"). Real files share a block of
// defaults among their services or hosts, which adds thousands of nodes,
// perhaps a hundred thousand; a million leaves room for those and keeps
// the walk of any accepted file well under a second.
const MaxAliased = 1_000_000

// ReadFile reads a file that fleet is about to parse, refusing without
// reading it one larger than MaxFileSize. That refusal is a *diag.List,
// as the file's other problems are, so that it is reported with them;
// any other error is the file system's.
func ReadFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	errs := &diag.List{}
	if fi, err := f.Stat(); err == nil && fi.Mode().IsRegular() && !CheckSize(path, fi.Size(), errs) {
		return nil, errs
	}
	// Not a regular file (a pipe, a device), or one that grows while it is
	// read: never read more than one byte past the limit.
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, err
	}
	if len(data) > MaxFileSize {
		tooLarge(path, "goes on past "+sizeText(MaxFileSize), errs)
		return nil, errs
	}
	return data, nil
}

// CheckSize records an error in errs, naming the file, its size and the
// limit, when size is more than MaxFileSize.
func CheckSize(file string, size int64, errs *diag.List) bool {
	if size <= MaxFileSize {
		return true
	}
	text := sizeText(size)
	if size-MaxFileSize < 1<<20/10 {
		text = fmt.Sprintf("%d bytes", size) // not "4.0 MiB", which reads as the limit
	}
	tooLarge(file, "is "+text, errs)
	return false
}

func tooLarge(file, size string, errs *diag.List) {
	e := errs.Add(diag.Pos{File: file}, "the file %s: too large, fleet reads files of up to %s", size, sizeText(MaxFileSize))
	e.Hint = "check that this is the file you meant: fleet.yaml and inventories are written by hand and stay far smaller"
}

// sizeText is a size as a person reads it: 900 bytes, 12.5 MiB, 4 MiB.
func sizeText(n int64) string {
	units := []string{"bytes", "KiB", "MiB", "GiB", "TiB"}
	f, u := float64(n), 0
	for f >= 1024 && u < len(units)-1 {
		f /= 1024
		u++
	}
	switch {
	case u == 0:
		return fmt.Sprintf("%d bytes", n)
	case f == float64(int64(f)):
		return fmt.Sprintf("%d %s", int64(f), units[u])
	}
	return fmt.Sprintf("%.1f %s", f, units[u])
}

// bounded reports whether root's aliases add no more than MaxAliased
// nodes and none refers to its own anchor from inside it, after recording
// why not. It counts in one pass over the tree as written, remembering
// each anchor's expanded size, so a bomb costs no more to measure than a
// plain file of its length.
func (d *Doc) bounded(root *yaml.Node) bool {
	x := &expansion{d: d, sizes: map[*yaml.Node]int{}, open: map[*yaml.Node]bool{}}
	return x.walk(root)
}

type expansion struct {
	d     *Doc
	sizes map[*yaml.Node]int  // how many nodes each node stands for, its aliases expanded
	open  map[*yaml.Node]bool // the anchored nodes around the one being walked
	added int                 // the nodes added by the aliases walked so far
}

// walk goes through n as written, in file order, adding up what each
// alias expands to; it stops at the first alias that goes too far.
func (x *expansion) walk(n *yaml.Node) bool {
	if n.Kind == yaml.AliasNode {
		if n.Alias == nil {
			return true
		}
		if x.open[n.Alias] {
			// yaml.v3 lets "web: &w {<<: *w}" through: it would expand forever.
			e := x.d.Errorf(n, "*%s refers to the value of its own anchor from inside it, which would expand forever", n.Value)
			e.Hint = "an alias can only repeat a value that ends before it"
			return false
		}
		x.added += x.size(n.Alias)
		if x.added > MaxAliased {
			e := x.d.Errorf(n, "too many aliases and merges expand here (over %d nodes): YAML anchors and merge keys may not blow the file up", MaxAliased)
			e.Hint = "an anchor repeated inside another anchor multiplies at every level: share values one level deep, or write them out"
			return false
		}
		return true
	}
	if n.Anchor != "" { // only an anchored node can be aliased
		x.open[n] = true
		defer delete(x.open, n)
	}
	for _, c := range n.Content {
		if !x.walk(c) {
			return false
		}
	}
	return true
}

// size is the number of nodes n stands for once every alias in it is
// expanded, counted up to just past MaxAliased.
func (x *expansion) size(n *yaml.Node) int {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	if s, ok := x.sizes[n]; ok {
		return s
	}
	// An anchor's value that reaches itself: walk has refused the alias
	// already, before its size is asked for; the guard stops a loop.
	x.sizes[n] = MaxAliased + 1
	s := 1
	for _, c := range n.Content {
		s = min(s+x.size(c), MaxAliased+1)
	}
	x.sizes[n] = s
	return s
}
