package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The tests run the real binary, built as the image builds it, because what
// matters is how the process behaves: exit codes, signals, ports.

var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "hello-test-")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "hello")
	build := exec.Command("go", "build", "-ldflags", "-X main.version=7", "-o", binary, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building hello: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return fmt.Sprint(ln.Addr().(*net.TCPAddr).Port)
}

// start runs hello with the given mode and waits until it listens.
func start(t *testing.T, env ...string) (*exec.Cmd, string) {
	t.Helper()
	port := freePort(t)
	cmd := exec.Command(binary)
	cmd.Env = append(os.Environ(), append(env, "HELLO_PORT="+port)...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	base := "http://127.0.0.1:" + port
	for i := 0; i < 100; i++ {
		if resp, err := http.Get(base + "/version"); err == nil {
			resp.Body.Close()
			return cmd, base
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("hello never listened")
	return nil, ""
}

func status(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func TestServesVersionAndHealth(t *testing.T) {
	_, base := start(t)
	if code, body := status(t, base+"/version"); code != 200 || body != "7\n" {
		t.Errorf("/version: %d %q", code, body)
	}
	if code, body := status(t, base+"/"); code != 200 || !strings.Contains(body, "version 7") {
		t.Errorf("/: %d %q", code, body)
	}
	if code, _ := status(t, base+"/up"); code != 200 {
		t.Errorf("/up: %d", code)
	}
	check := exec.Command(binary, "check")
	check.Env = append(os.Environ(), "HELLO_PORT="+strings.TrimPrefix(base, "http://127.0.0.1:"))
	if err := check.Run(); err != nil {
		t.Errorf("hello check on a healthy server: %v", err)
	}
}

func TestCrashMode(t *testing.T) {
	cmd := exec.Command(binary)
	cmd.Env = append(os.Environ(), "HELLO_MODE=crash", "HELLO_PORT="+freePort(t))
	out, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
		t.Fatalf("crash mode: %v, want exit 1", err)
	}
	if !strings.Contains(string(out), "HELLO_MODE=crash") {
		t.Errorf("crash mode says %q", out)
	}
}

func TestUnhealthyMode(t *testing.T) {
	_, base := start(t, "HELLO_MODE=unhealthy")
	if code, _ := status(t, base+"/up"); code != 503 {
		t.Errorf("/up: %d, want 503", code)
	}
	check := exec.Command(binary, "check")
	check.Env = append(os.Environ(), "HELLO_PORT="+strings.TrimPrefix(base, "http://127.0.0.1:"))
	if err := check.Run(); err == nil {
		t.Error("hello check passed on an unhealthy server")
	}
}

func TestSlowMode(t *testing.T) {
	_, base := start(t, "HELLO_MODE=slow", "HELLO_HEALTHY_AFTER=1s")
	if code, _ := status(t, base+"/up"); code != 503 {
		t.Errorf("/up at start: %d, want 503", code)
	}
	time.Sleep(1200 * time.Millisecond)
	if code, _ := status(t, base+"/up"); code != 200 {
		t.Errorf("/up after the delay: %d, want 200", code)
	}
}

func TestBadModeIsAnError(t *testing.T) {
	cmd := exec.Command(binary)
	cmd.Env = append(os.Environ(), "HELLO_MODE=sideways", "HELLO_PORT="+freePort(t))
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), `HELLO_MODE="sideways"`) {
		t.Errorf("bad mode: %v %q", err, out)
	}
}

// TestGracefulShutdown sends SIGTERM while a request is in flight: the
// request completes, new connections are refused, the process exits 0.
func TestGracefulShutdown(t *testing.T) {
	cmd, base := start(t)
	type result struct {
		code int
		body string
		err  error
	}
	done := make(chan result, 1)
	go func() {
		resp, err := http.Get(base + "/?delay=1s")
		if err != nil {
			done <- result{err: err}
			return
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		done <- result{resp.StatusCode, string(body), err}
	}()
	time.Sleep(300 * time.Millisecond)
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	r := <-done
	if r.err != nil || r.code != 200 || !strings.Contains(r.body, "version 7") {
		t.Errorf("in-flight request: %d %q %v", r.code, r.body, r.err)
	}
	if err := cmd.Wait(); err != nil {
		t.Errorf("exit after SIGTERM: %v, want 0", err)
	}
}
