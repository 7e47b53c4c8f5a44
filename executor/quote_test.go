package executor

import (
	"bytes"
	"errors"
	"os/exec"
	"testing"
)

func TestQuote(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", "''"},
		{"docker", "docker"},
		{"fleet.project=shop", "'fleet.project=shop'"},
		{"/var/lib/fleet/shop", "/var/lib/fleet/shop"},
		{"a b", "'a b'"},
		{"it's", `'it'\''s'`},
		{"'", `''\'''`},
		{"$(touch /tmp/pwned)", "'$(touch /tmp/pwned)'"},
		{"~root", "'~root'"},
		{"a\nb", "'a\nb'"},
		{`\`, `'\'`},
	} {
		got, err := Quote(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("Quote(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
	if _, err := Quote("a\x00b"); !errors.Is(err, ErrNUL) {
		t.Errorf("Quote of a NUL byte: %v, want ErrNUL", err)
	}
	if _, err := ShellJoin([]string{"echo", "a\x00"}); !errors.Is(err, ErrNUL) {
		t.Errorf("ShellJoin with a NUL byte: %v, want ErrNUL", err)
	}
}

// roundTrip has a real POSIX shell print the quoted word back.
func roundTrip(t testing.TB, s string) string {
	q, err := Quote(s)
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("sh", "-c", "printf %s "+q).Output()
	if err != nil {
		t.Fatalf("sh -c printf %%s %s: %v", q, err)
	}
	return string(out)
}

func TestQuoteThroughShell(t *testing.T) {
	nasty := "$(touch /tmp/pwned); '\"\\` *?[a] ~ # & | ; < > ( ) { } ! \t\n\r\x01\xff é"
	if got := roundTrip(t, nasty); got != nasty {
		t.Errorf("through sh: %q, want %q", got, nasty)
	}
	argv := []string{"printf", "%s|", "a b", "'", "", "$HOME", "-n"}
	line, err := ShellJoin(argv)
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("sh", "-c", line).Output()
	if err != nil {
		t.Fatal(err)
	}
	if want := "a b|'||$HOME|-n|"; string(out) != want {
		t.Errorf("sh -c %s printed %q, want %q", line, out, want)
	}
}

// FuzzQuote checks that any byte string but those with NUL comes back from
// a real sh unchanged, and that NUL is refused.
func FuzzQuote(f *testing.F) {
	for _, s := range []string{"", "plain", "it's", `$(id) "x" \n`, "\n\t", "~", "a=b", "\xff\xfe", "-e"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if bytes.IndexByte([]byte(s), 0) >= 0 {
			if _, err := Quote(s); !errors.Is(err, ErrNUL) {
				t.Fatalf("Quote(%q) = %v, want ErrNUL", s, err)
			}
			return
		}
		if got := roundTrip(t, s); got != s {
			t.Fatalf("through sh: %q, want %q", got, s)
		}
	})
}
