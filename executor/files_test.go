package executor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fleetdeploy/fleet/internal/sshtest"
)

// transports are the ways to a host's files, each with the server that
// makes a connection take it, and the transport it must end up with.
var transports = []struct {
	subsystem string
	want      string
	// suite runs every case; otherwise only the choice is checked.
	suite bool
}{
	{sshtest.WithSFTP, TransportSFTP, true},
	{sshtest.NoSFTP, TransportExec, true},
	{sshtest.BrokenSFTP, TransportExec, false},
}

// sshdTarget is how the inventory would describe s.
func sshdTarget(s *sshtest.Server, name string) Target {
	return Target{Name: name, Address: s.Host, Port: s.Port, User: "deploy",
		IdentityFiles: []string{s.KeyFile}, KnownHostsFiles: []string{s.KnownHosts}}
}

// connectTo opens a connection to s, whose -v lines go to lines.
func connectTo(t *testing.T, s *sshtest.Server, lines *[]string) *Conn {
	t.Helper()
	var mu sync.Mutex
	e := New(context.Background(), Options{AgentSocket: "none", Log: func(line string) {
		mu.Lock()
		defer mu.Unlock()
		if lines != nil {
			*lines = append(*lines, line)
		}
	}})
	t.Cleanup(func() { e.Close() })
	c, err := e.Connect(context.Background(), sshdTarget(s, "h1"))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// awkward are file names that a shell would read as something else.
var awkward = []string{"plain", "with space", "it's", `"quoted"`, "$(touch pwned)", "`touch pwned`", "-n", "new\nline", ".hidden", "..dots", "*", "a;b|c&d>e"}

// TestFilesOverEveryTransport runs one suite against every way to a host's
// files: the same calls must give the same results over SFTP, and through
// exec sessions on a host whose sshd refuses the subsystem or whose SFTP
// server is missing.
func TestFilesOverEveryTransport(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr.subsystem, func(t *testing.T) {
			s := sshtest.New(t, tr.subsystem)
			var lines []string
			c := connectTo(t, s, &lines)
			ctx := context.Background()
			got, err := c.FileTransport(ctx)
			if err != nil || got != tr.want {
				t.Fatalf("transport %q, %v; want %q", got, err, tr.want)
			}
			if tr.suite {
				t.Run("write and read", func(t *testing.T) { testWriteRead(t, c, s.Home) })
				t.Run("create exclusively", func(t *testing.T) { testCreate(t, c, s.Home) })
				t.Run("touch", func(t *testing.T) { testTouch(t, c, s.Home) })
				t.Run("directories", func(t *testing.T) { testDirs(t, c, s.Home) })
				t.Run("stat and clock", func(t *testing.T) { testStatClock(t, c, s.Home) })
			}
			t.Run("figures", func(t *testing.T) {
				f := c.figures(ctx)
				if f.err != nil || f.cpus < 1 || f.memTotal <= 0 || f.memAvailable <= 0 || f.diskFree <= 0 {
					t.Errorf("figures %+v", f)
				}
			})
			if _, err := os.Stat(filepath.Join(s.Home, "pwned")); err == nil {
				t.Error("a shell ran part of a file name")
			}
			// Once per connection, and said once.
			var said []string
			for _, l := range lines {
				if strings.Contains(l, "files ") {
					said = append(said, l)
				}
			}
			if len(said) != 1 || !strings.HasPrefix(said[0], "h1: files ") {
				t.Errorf("-v said %q, want one line naming the host and its transport", said)
			}
			if tr.want == TransportExec && !strings.Contains(said[0], "exec sessions") {
				t.Errorf("-v said %q", said[0])
			}
		})
	}
}

func testWriteRead(t *testing.T, c *Conn, home string) {
	ctx := context.Background()
	dir := filepath.Join(home, "w")
	if err := c.MkdirAll(ctx, dir); err != nil {
		t.Fatal(err)
	}
	content := "DATABASE_URL=postgres://u:p@db/x?sslmode=require'\"$(id)\n\x00binary\xff"
	for _, name := range awkward {
		p := filepath.Join(dir, name)
		for i := range 2 { // the second write replaces the first
			if err := c.WriteFile(ctx, p, strings.NewReader(content+fmt.Sprint(i)), 0o600); err != nil {
				t.Fatalf("%q: %v", name, err)
			}
		}
		got, err := c.ReadFile(ctx, p)
		if err != nil || string(got) != content+"1" {
			t.Errorf("%q: read back %q, %v", name, got, err)
		}
		if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%q: %v, %v", name, fi, err)
		}
	}
	// A failed write leaves the old file and no temporary one.
	p := filepath.Join(dir, "plain")
	if err := c.WriteFile(ctx, p, io.MultiReader(strings.NewReader("partial"), errReader{}), 0o600); err == nil {
		t.Error("a write whose source fails succeeded")
	}
	if got, _ := c.ReadFile(ctx, p); string(got) != content+"1" {
		t.Errorf("after a failed write: %q", got)
	}
	// Relative paths are the login's home's, as with SFTP.
	if err := c.WriteFile(ctx, "w/relative", strings.NewReader("r"), 0o644); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "relative")); err != nil || string(b) != "r" {
		t.Errorf("relative write: %q, %v", b, err)
	}
	// A file larger than a read asks for at first comes back whole.
	big := strings.Repeat("0123456789abcdef", 2<<10) + "end"
	if err := c.WriteFile(ctx, filepath.Join(dir, "big"), strings.NewReader(big), 0o600); err != nil {
		t.Fatal(err)
	}
	if got, err := c.ReadFile(ctx, filepath.Join(dir, "big")); err != nil || string(got) != big {
		t.Errorf("a file of %d bytes read back as %d bytes, %v", len(big), len(got), err)
	}
	// A mode the host would not give new files by itself (umask 022)
	// is set, whether before the data (private files) or beside it.
	for _, mode := range []fs.FileMode{0o666, 0o604} {
		p := filepath.Join(dir, "mode-"+mode.String())
		if err := c.WriteFile(ctx, p, strings.NewReader(content), mode); err != nil {
			t.Fatal(err)
		}
		if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != mode {
			t.Errorf("written with mode %v: %v, %v", mode, fi, err)
		}
		if got, _ := os.ReadFile(p); string(got) != content {
			t.Errorf("written with mode %v: read back %q", mode, got)
		}
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.Contains(e.Name(), "fleet-tmp") {
			t.Errorf("left behind: %q", e.Name())
		}
	}
	if _, err := c.ReadFile(ctx, filepath.Join(dir, "absent")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("reading a missing file: %v", err)
	}
	var he *HostError
	if _, err := c.ReadFile(ctx, filepath.Join(dir, "absent")); !errors.As(err, &he) || he.Host != c.Host() {
		t.Errorf("error %v names no host", err)
	}
}

func testTouch(t *testing.T, c *Conn, home string) {
	ctx := context.Background()
	dir := filepath.Join(home, "t")
	if err := c.Touch(ctx, filepath.Join(dir, "x")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("touching in a missing directory: %v", err)
	}
	if err := c.MkdirAll(ctx, dir); err != nil {
		t.Fatal(err)
	}
	for _, name := range awkward {
		p := filepath.Join(dir, name)
		if err := c.Touch(ctx, p); err != nil {
			t.Fatalf("%q: %v", name, err)
		}
		if fi, err := os.Stat(p); err != nil || fi.Size() != 0 || !fi.Mode().IsRegular() {
			t.Errorf("%q: made %v, %v", name, fi, err)
		}
		// Touched again, a file that has content is left empty, its mode
		// as it was.
		if err := os.WriteFile(p, []byte("content"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := c.Touch(ctx, p); err != nil {
			t.Fatalf("%q again: %v", name, err)
		}
		if fi, err := os.Stat(p); err != nil || fi.Size() != 0 || fi.Mode().Perm() != 0o600 {
			t.Errorf("%q touched again: %v, %v", name, fi, err)
		}
	}
}

func testCreate(t *testing.T, c *Conn, home string) {
	ctx := context.Background()
	dir := filepath.Join(home, "c")
	if err := c.MkdirAll(ctx, dir); err != nil {
		t.Fatal(err)
	}
	for _, name := range awkward {
		p := filepath.Join(dir, name)
		if err := c.CreateFile(ctx, p, strings.NewReader("first "+name), 0o644); err != nil {
			t.Fatalf("%q: %v", name, err)
		}
		if err := c.CreateFile(ctx, p, strings.NewReader("second"), 0o644); !errors.Is(err, fs.ErrExist) {
			t.Errorf("%q: creating an existing file: %v", name, err)
		}
		if b, err := os.ReadFile(p); err != nil || string(b) != "first "+name {
			t.Errorf("%q: %q, %v", name, b, err)
		}
		if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != 0o644 {
			t.Errorf("%q: %v, %v", name, fi, err)
		}
	}
	// Eight at once: exactly one makes it, and the file is wholly its.
	p := filepath.Join(dir, "race")
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = c.CreateFile(ctx, p, strings.NewReader(strings.Repeat(fmt.Sprint(i), 4096)), 0o644)
		}()
	}
	wg.Wait()
	winner := -1
	for i, err := range errs {
		switch {
		case err == nil && winner >= 0:
			t.Errorf("both %d and %d created the file", winner, i)
		case err == nil:
			winner = i
		case !errors.Is(err, fs.ErrExist):
			t.Errorf("%d: %v", i, err)
		}
	}
	if b, _ := os.ReadFile(p); winner < 0 || string(b) != strings.Repeat(fmt.Sprint(winner), 4096) {
		t.Errorf("the winner was %d, the file holds %.20q…", winner, b)
	}
	// Onto a directory, or in a missing one.
	if err := c.CreateFile(ctx, dir, strings.NewReader("x"), 0o644); !errors.Is(err, fs.ErrExist) {
		t.Errorf("creating over a directory: %v", err)
	}
	if err := c.CreateFile(ctx, filepath.Join(dir, "absent", "x"), strings.NewReader("x"), 0o644); err == nil || errors.Is(err, fs.ErrExist) {
		t.Errorf("creating in a missing directory: %v", err)
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.Contains(e.Name(), "fleet-tmp") {
			t.Errorf("left behind: %q", e.Name())
		}
	}
}

func testDirs(t *testing.T, c *Conn, home string) {
	ctx := context.Background()
	dir := filepath.Join(home, "d")
	if err := c.MkdirAll(ctx, filepath.Join(dir, "a", "b")); err != nil {
		t.Fatal(err)
	}
	if err := c.MkdirAll(ctx, filepath.Join(dir, "a", "b")); err != nil {
		t.Errorf("MkdirAll of an existing directory: %v", err)
	}
	if err := c.Mkdir(ctx, filepath.Join(dir, "a")); !errors.Is(err, fs.ErrExist) {
		t.Errorf("Mkdir of an existing directory: %v", err)
	}
	if err := c.Mkdir(ctx, filepath.Join(dir, "-d")); err != nil {
		t.Error(err)
	}
	for _, name := range awkward {
		if err := os.WriteFile(filepath.Join(dir, name), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	names, err := c.ReadDir(ctx, dir)
	want := append(slices.Clone(awkward), "-d", "a")
	slices.Sort(want)
	if err != nil || !slices.Equal(names, want) {
		t.Errorf("ReadDir: %q, %v\nwant %q", names, err, want)
	}
	if names, err := c.ReadDir(ctx, filepath.Join(dir, "a", "b")); err != nil || len(names) != 0 {
		t.Errorf("ReadDir of an empty directory: %q, %v", names, err)
	}
	if _, err := c.ReadDir(ctx, filepath.Join(dir, "absent")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("ReadDir of a missing directory: %v", err)
	}
	if err := c.Remove(ctx, filepath.Join(dir, "it's")); err != nil {
		t.Error(err)
	}
	if err := c.Remove(ctx, filepath.Join(dir, "it's")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("removing a missing file: %v", err)
	}
	if err := c.RemoveAll(ctx, filepath.Join(dir, "a")); err != nil {
		t.Error(err)
	}
	if err := c.RemoveAll(ctx, filepath.Join(dir, "a")); err != nil {
		t.Errorf("RemoveAll of a missing path: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "a")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("after RemoveAll: %v", err)
	}
}

func testStatClock(t *testing.T, c *Conn, home string) {
	ctx := context.Background()
	p := filepath.Join(home, "s", "it's")
	os.MkdirAll(filepath.Dir(p), 0o755)
	before := time.Now().Truncate(time.Second)
	if err := os.WriteFile(p, []byte("12345"), 0o644); err != nil {
		t.Fatal(err)
	}
	fi, err := c.Stat(ctx, p)
	if err != nil || fi.Size != 5 || fi.Dir || fi.ModTime.Before(before) || fi.ModTime.After(time.Now()) {
		t.Errorf("Stat: %+v, %v (written at %s)", fi, err, before)
	}
	if fi, err := c.Stat(ctx, filepath.Dir(p)); err != nil || !fi.Dir {
		t.Errorf("Stat of a directory: %+v, %v", fi, err)
	}
	if _, err := c.Stat(ctx, p+"-absent"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Stat of a missing file: %v", err)
	}
	now, err := c.HostTime(ctx, filepath.Dir(p))
	if err != nil || now.Before(before) || now.After(time.Now()) {
		t.Errorf("HostTime %s, %v; want between %s and now", now, err, before)
	}
	if entries, _ := os.ReadDir(filepath.Dir(p)); len(entries) != 1 {
		t.Errorf("HostTime left %d files", len(entries)-1)
	}
	if _, err := c.HostTime(ctx, filepath.Join(home, "absent")); err == nil {
		t.Error("HostTime in a missing directory succeeded")
	}
}

// TestFilesHonourContextOnStalledHost stalls a host's file operations: an
// operation gives up when its context ends, and once the host answers
// again the next one works.
func TestFilesHonourContextOnStalledHost(t *testing.T) {
	if _, err := os.Stat(sshtest.SFTPServer); err != nil {
		t.Skip("OpenSSH's sftp-server is needed to stall SFTP")
	}
	for _, tr := range transports[:2] {
		t.Run(tr.subsystem, func(t *testing.T) {
			s := sshtest.New(t, tr.subsystem)
			c := connectTo(t, s, nil)
			ctx := context.Background()
			p := filepath.Join(s.Home, "f")
			if err := c.WriteFile(ctx, p, strings.NewReader("x"), 0o644); err != nil {
				t.Fatal(err)
			}
			resume := s.Stall()
			defer resume()
			for _, op := range []struct {
				name string
				fn   func(context.Context) error
			}{
				{"read", func(ctx context.Context) error { _, err := c.ReadFile(ctx, p); return err }},
				{"create", func(ctx context.Context) error { return c.CreateFile(ctx, p+"2", strings.NewReader("y"), 0o644) }},
				{"stat", func(ctx context.Context) error { _, err := c.Stat(ctx, p); return err }},
			} {
				tctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
				start := time.Now()
				err := op.fn(tctx)
				cancel()
				if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 2*time.Second {
					t.Errorf("%s on a stalled host: %v after %s", op.name, err, time.Since(start))
				}
			}
			resume()
			if b, err := c.ReadFile(ctx, p); err != nil || string(b) != "x" {
				t.Errorf("once the host answers: %q, %v", b, err)
			}
		})
	}
}

// errReader is a source that fails.
type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errors.New("source failed") }
