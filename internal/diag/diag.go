// Package diag holds the errors fleet reports about its input files: each
// names file:line:column, says what is wrong and, when it can, what to do.
// A List collects them so that a user sees every mistake at once, sorted by
// position, rather than one per run.
package diag

import (
	"fmt"
	"sort"
	"strings"
)

// Pos is a place in an input file; Line and Col count from 1, and 0 means
// unknown (the error concerns the whole file).
type Pos struct {
	File string
	Line int
	Col  int
}

func (p Pos) String() string {
	switch {
	case p.Line == 0:
		return p.File
	case p.Col == 0:
		return fmt.Sprintf("%s:%d", p.File, p.Line)
	default:
		return fmt.Sprintf("%s:%d:%d", p.File, p.Line, p.Col)
	}
}

// Error is one problem in an input file.
type Error struct {
	Pos  Pos
	Msg  string
	Hint string // what to do about it; may be empty
}

func (e *Error) Error() string {
	if e.Hint == "" {
		return e.Pos.String() + ": " + e.Msg
	}
	return e.Pos.String() + ": " + e.Msg + " (" + e.Hint + ")"
}

// List collects errors. The zero value is ready to use.
type List struct {
	errs []*Error
}

// Add records an error at pos and returns it, so a hint can be set.
func (l *List) Add(pos Pos, format string, args ...any) *Error {
	e := &Error{Pos: pos, Msg: fmt.Sprintf(format, args...)}
	l.errs = append(l.errs, e)
	return e
}

// Merge adds every error of other.
func (l *List) Merge(other *List) {
	if other != nil {
		l.errs = append(l.errs, other.errs...)
	}
}

// Len is the number of errors so far.
func (l *List) Len() int { return len(l.errs) }

// Errors returns the errors sorted by file, line and column.
func (l *List) Errors() []*Error {
	sort.SliceStable(l.errs, func(i, j int) bool {
		a, b := l.errs[i].Pos, l.errs[j].Pos
		if a.File != b.File {
			return a.File < b.File
		}
		if a.Line != b.Line {
			return a.Line < b.Line
		}
		return a.Col < b.Col
	})
	return l.errs
}

// Err returns the list as an error, or nil when it is empty.
func (l *List) Err() error {
	if len(l.errs) == 0 {
		return nil
	}
	return l
}

// Error renders one error a line, sorted, as "file:line:col: message"; a
// hint follows on its own indented line.
func (l *List) Error() string {
	var b strings.Builder
	for i, e := range l.Errors() {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(e.Pos.String() + ": " + e.Msg)
		if e.Hint != "" {
			b.WriteString("\n    hint: " + e.Hint)
		}
	}
	return b.String()
}

// Suggest returns a hint naming the candidate closest to word, if one is
// close enough to be a likely typo, or "".
func Suggest(word string, candidates []string) string {
	// One typo per three letters, at most three: a one-letter word has no
	// likely neighbour.
	best, bestDist := "", min((len(word)+1)/3, 3)
	for _, c := range candidates {
		d := distance(strings.ToLower(word), strings.ToLower(c))
		if d <= bestDist && (best == "" || d < distance(strings.ToLower(word), strings.ToLower(best))) {
			best = c
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf("did you mean %q?", best)
}

// distance is the Damerau-Levenshtein distance (with adjacent
// transpositions), which counts a swapped pair of letters as one typo.
func distance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	d := make([][]int, len(ra)+1)
	for i := range d {
		d[i] = make([]int, len(rb)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(ra); i++ {
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && ra[i-1] == rb[j-2] && ra[i-2] == rb[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(ra)][len(rb)]
}
