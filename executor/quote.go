package executor

import (
	"errors"
	"strings"
)

// ErrNUL is returned for a value that holds a NUL byte: no shell word, argv
// entry or environment variable can carry one, so such a value is refused
// rather than silently cut short.
var ErrNUL = errors.New("value contains a NUL byte, which no command argument can carry")

// Quote returns s as one word of a POSIX shell command line: the shell that
// reads it hands the program exactly s, whatever bytes s holds. This is the
// only function that turns a value into shell text; every remote command is
// built with it.
//
// Words made only of characters that no shell treats specially are left as
// they are, for readable commands in errors and logs; everything else is
// wrapped in single quotes, inside which a POSIX shell interprets nothing,
// and every single quote in s becomes '\” (close, escaped quote, reopen).
func Quote(s string) (string, error) {
	if strings.IndexByte(s, 0) >= 0 {
		return "", ErrNUL
	}
	if s == "" {
		return "''", nil
	}
	if isPlainWord(s) {
		return s, nil
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'", nil
}

// isPlainWord reports whether every byte of s is one that POSIX shells never
// interpret anywhere in a word. '=' and '~' are left out: a leading
// "NAME=value" is an assignment and a leading '~' expands.
func isPlainWord(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case c == '-' || c == '_' || c == '.' || c == '/' || c == ',' || c == ':' || c == '@' || c == '+' || c == '%':
		default:
			return false
		}
	}
	return true
}

// ShellJoin quotes every element of argv and joins them with spaces into a
// command line that a POSIX shell runs as exactly argv.
func ShellJoin(argv []string) (string, error) {
	if len(argv) == 0 {
		return "", errors.New("empty command")
	}
	words := make([]string, len(argv))
	for i, a := range argv {
		q, err := Quote(a)
		if err != nil {
			return "", err
		}
		words[i] = q
	}
	return strings.Join(words, " "), nil
}
