// Command hello is the example service that fleet deploys in its demo and
// integration tests: a small static web server whose answers carry its
// version, with a health endpoint and graceful shutdown.
//
// One binary covers every failure a rollout must handle, chosen by the
// HELLO_MODE environment variable, so tests exercise real containers rather
// than stand-ins:
//
//	(unset)    serve normally; /up answers 200 at once
//	crash      exit 1 right after start, as a broken release would
//	unhealthy  serve, but /up answers 503 forever
//	slow       /up answers 503 until HELLO_HEALTHY_AFTER (default 5s) has passed
//
// Endpoints: / (a line naming version and container), /version (the version
// alone), /up (health). GET /?delay=2s holds the answer, so a test can check
// that a request in flight when SIGTERM arrives still completes.
//
// HELLO_TICK=100ms writes "tick N" on stdout at that pace (N from 1), and
// "tock N" on stderr after every fifth: numbered lines that a test of
// fleet logs can count.
//
// "hello ask" asks for a line on a terminal (see ask).
//
// "hello echo ARG..." prints each argument on a line of its own, and
// "hello fail" exits with HELLO_FAIL (default 1): commands for tests of
// fleet exec, in an image that has no shell.
//
// "hello check" is the image's HEALTHCHECK: a FROM scratch image has no curl,
// so the binary probes its own /up and exits 0 or 1.
package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unsafe"
)

// version is stamped at build time: -ldflags "-X main.version=2".
var version = "dev"

func main() {
	log.SetFlags(0)
	log.SetPrefix("hello: ")
	port := envOr("HELLO_PORT", "8080")
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case "check":
			os.Exit(check(port))
		case "echo":
			for _, a := range os.Args[2:] {
				fmt.Println(a)
			}
			return
		case "ask":
			os.Exit(ask())
		case "fail":
			code, _ := strconv.Atoi(envOr("HELLO_FAIL", "1"))
			fmt.Fprintf(os.Stderr, "failing with %d\n", code)
			os.Exit(code)
		}
	}
	if err := serve(port, os.Getenv("HELLO_MODE")); err != nil {
		log.Fatal(err)
	}
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

func serve(port, mode string) error {
	healthyAt := time.Now()
	switch mode {
	case "":
	case "crash":
		return fmt.Errorf("version %s: HELLO_MODE=crash, exiting at start", version)
	case "unhealthy":
		healthyAt = time.Now().Add(100 * 365 * 24 * time.Hour)
	case "slow":
		after, err := time.ParseDuration(envOr("HELLO_HEALTHY_AFTER", "5s"))
		if err != nil {
			return fmt.Errorf("HELLO_HEALTHY_AFTER: %w", err)
		}
		healthyAt = time.Now().Add(after)
	default:
		return fmt.Errorf("HELLO_MODE=%q: want crash, unhealthy or slow", mode)
	}
	host, _ := os.Hostname()

	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if d := r.URL.Query().Get("delay"); d != "" {
			delay, err := time.ParseDuration(d)
			if err != nil {
				http.Error(w, "delay: "+err.Error(), http.StatusBadRequest)
				return
			}
			time.Sleep(delay)
		}
		fmt.Fprintf(w, "hello from %s, version %s\n", host, version)
	})
	mux.HandleFunc("/version", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, version)
	})
	mux.HandleFunc("/up", func(w http.ResponseWriter, r *http.Request) {
		if time.Now().Before(healthyAt) {
			http.Error(w, "not healthy", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})

	srv := &http.Server{Addr: ":" + port, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	ln, err := net.Listen("tcp", srv.Addr)
	if err != nil {
		return err
	}
	log.Printf("version %s listening on :%s (mode %q)", version, port, mode)
	if v := os.Getenv("HELLO_TICK"); v != "" {
		pace, err := time.ParseDuration(v)
		if err != nil || pace <= 0 {
			return fmt.Errorf("HELLO_TICK=%q: want a duration above 0", v)
		}
		go tick(pace)
	}

	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	select {
	case err := <-done:
		return err
	case sig := <-stop:
		// Finish what is in flight; docker stop's grace period bounds us anyway.
		log.Printf("%s: draining", sig)
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			return err
		}
		if err := <-done; !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		log.Print("stopped")
		return nil
	}
}

// ask says whether its input is a terminal, and of what size, asks for a
// line and exits with the line's length: what a test of fleet exec -t
// drives through a terminal.
func ask() int {
	var ws struct{ rows, cols, x, y uint16 }
	_, _, errno := syscall.Syscall(syscall.SYS_IOCTL, 0, syscall.TIOCGWINSZ, uintptr(unsafe.Pointer(&ws)))
	fmt.Printf("terminal: %v, %dx%d\nyour name? ", errno == 0, ws.cols, ws.rows)
	line, _ := bufio.NewReader(os.Stdin).ReadString('\n')
	line = strings.TrimRight(line, "\r\n")
	fmt.Printf("hello, %s\n", line)
	return len(line)
}

// tick writes numbered lines at pace, for ever.
func tick(pace time.Duration) {
	t := time.NewTicker(pace)
	defer t.Stop()
	for n := 1; ; n++ {
		<-t.C
		fmt.Printf("tick %d\n", n)
		if n%5 == 0 {
			fmt.Fprintf(os.Stderr, "tock %d\n", n)
		}
	}
}

// check probes the local /up endpoint and returns the exit code for docker.
func check(port string) int {
	if _, err := strconv.Atoi(port); err != nil {
		return 1
	}
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get("http://127.0.0.1:" + port + "/up")
	if err != nil {
		return 1
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 1
	}
	return 0
}
