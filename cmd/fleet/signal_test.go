package main

import (
	"bytes"
	"crypto/ed25519"
	"encoding/pem"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/alecthomas/kong"
	"golang.org/x/crypto/ssh"
)

// TestCommandsThatChangeNothing: which command lines end at once on the
// first interrupt, as run marks them.
func TestCommandsThatChangeNothing(t *testing.T) {
	for _, c := range []struct {
		args string
		want bool
	}{
		{"validate", true}, {"plan -o x.plan", true}, {"status web", true}, {"history web", true},
		{"hosts", true}, {"inventory --json", true}, {"lock", true}, {"lock status", true}, {"version", true},
		{"apply --yes", false}, {"apply x.plan", false}, {"rollback web --to 3", false},
		{"lock release --force", false}, {"init", false},
	} {
		var cl cli
		parser, err := kong.New(&cl, kong.Exit(func(int) { t.Fatalf("%s: kong exits", c.args) }))
		if err != nil {
			t.Fatal(err)
		}
		kctx, err := parser.Parse(strings.Fields(c.args))
		if err != nil {
			t.Fatalf("%s: %v", c.args, err)
		}
		if got := changesNothing[commandName(kctx)]; got != c.want {
			t.Errorf("%s (%q): changes nothing %v, want %v", c.args, commandName(kctx), got, c.want)
		}
	}
	// run marks the command it parsed.
	dir := t.TempDir()
	missing := []string{"-f", filepath.Join(dir, "fleet.yaml"), "-i", filepath.Join(dir, "inventory.yaml")}
	for _, c := range []struct {
		args []string
		want bool
	}{{append(missing, "apply", "--yes"), false}, {append(missing, "validate"), true}} {
		fleet(t, c.args...)
		if readOnly.Load() != c.want {
			t.Errorf("after run %v: readOnly %v, want %v", c.args, readOnly.Load(), c.want)
		}
	}
}

// TestSIGTERMEndsACommandThatChangesNothing runs the fleet binary, sends
// SIGTERM once while a read-only command waits on something that never
// comes, and wants it gone with exit 143. It measures nothing: the test
// only fails if the process is still there long after the signal.
func TestSIGTERMEndsACommandThatChangesNothing(t *testing.T) {
	bin := buildFleet(t)
	dir := t.TempDir()

	// A host that accepts connections and never says a word: plan waits
	// for its SSH banner.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 16)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	defer func() {
		for len(accepted) > 0 {
			(<-accepted).Close()
		}
	}()
	port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	_, key, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(key, "")
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(dir, "id_ed25519")
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(dir, "inventory.yaml"), "hosts:\n  silent: {address: 127.0.0.1, port: "+port+", identity_file: "+keyFile+"}\n")
	write(t, filepath.Join(dir, "fleet.yaml"), "project: shop\nservices:\n  web: {image: nginx:1.27}\n")

	// A fleet.yaml that is a FIFO no one writes to: validate waits to read it.
	fifo := filepath.Join(dir, "fifo.yaml")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}

	for _, c := range []struct {
		name    string
		args    []string
		waiting func() bool // the command is stuck waiting
	}{
		{"plan on a silent host", []string{"plan"}, func() bool { return len(accepted) > 0 }},
		{"validate of a file that never ends", []string{"-f", fifo, "validate"}, func() bool {
			// A writer can open a FIFO without waiting only once a reader
			// has it open, or is opening it. Held open, the reader's read
			// waits for data that never comes.
			w, err := os.OpenFile(fifo, os.O_WRONLY|syscall.O_NONBLOCK, 0)
			if err != nil {
				return false
			}
			t.Cleanup(func() { w.Close() })
			return true
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			cmd := exec.Command(bin, append([]string{"--ssh-config", "none"}, c.args...)...)
			cmd.Dir = dir
			cmd.Env = append(os.Environ(), "HOME="+dir, "SSH_AUTH_SOCK=")
			var out bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &out
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			exited := make(chan error, 1)
			go func() { exited <- cmd.Wait() }()
			defer cmd.Process.Kill()

			until := time.After(60 * time.Second)
			for !c.waiting() {
				select {
				case err := <-exited:
					t.Fatalf("fleet ended before the signal: %v\n%s", err, out.String())
				case <-until:
					t.Fatalf("fleet never got to waiting:\n%s", out.String())
				case <-time.After(20 * time.Millisecond):
				}
			}
			if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			select {
			case err := <-exited:
				var ee *exec.ExitError
				if !errors.As(err, &ee) || ee.ExitCode() != 143 {
					t.Errorf("after SIGTERM: %v, want exit 143\n%s", err, out.String())
				}
				if !strings.Contains(out.String(), "fleet: interrupted\n") {
					t.Errorf("fleet does not say it was interrupted:\n%s", out.String())
				}
			case <-time.After(30 * time.Second):
				t.Fatalf("still running 30s after SIGTERM:\n%s", out.String())
			}
		})
	}
}

// buildFleet builds this tree's fleet command into a temporary directory.
func buildFleet(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "fleet")
	build := exec.Command("go", "build", "-o", bin, ".")
	if msg, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, msg)
	}
	return bin
}

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}
