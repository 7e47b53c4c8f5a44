package main

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"unicode/utf8"

	"golang.org/x/crypto/ssh"

	"github.com/fleetdeploy/fleet/executor"
)

// TestHostsNamesTheFault reads a host whose port refuses connections: its
// line says "refused" and the one wording of that fault, without the
// dial's own text or what fleet was doing.
func TestHostsNamesTheFault(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	inv := fmt.Sprintf("hosts:\n  h1: {address: 127.0.0.1, port: %d, identity_file: id}\n", port)
	out, errOut, code := inDir(t, map[string]string{"inventory.yaml": inv, "id": testKey(t)}, "hosts")
	want := fmt.Sprintf("h1    refused  connection refused on port %d of 127.0.0.1 (sshd not running?): check that sshd runs on the host, and the port in the inventory\n", port)
	if code != 1 || !strings.HasSuffix(out, want) || errOut != "fleet: error: 1 of 1 hosts unreachable\n" {
		t.Errorf("exit %d:\n%s%s\nwant the line\n%s", code, out, errOut, want)
	}
	if strings.Contains(out, "dial tcp") || strings.Contains(out, "connecting") {
		t.Errorf("the reason is not the fault's wording:\n%s", out)
	}
	out, _, _ = inDir(t, map[string]string{"inventory.yaml": inv, "id": testKey(t)}, "hosts", "-v")
	if !strings.Contains(out, fmt.Sprintf("[dial tcp 127.0.0.1:%d: connect: connection refused]", port)) {
		t.Errorf("-v does not show what the fault was read from:\n%s", out)
	}
}

// testKey is an unencrypted OpenSSH private key, so that connecting gets
// as far as dialing.
func testKey(t *testing.T) string {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(block))
}

func TestHostsTableCutsReasonsOnATerminalOnly(t *testing.T) {
	reports := []hostReport{
		{Host: "web1", Reachable: true, State: "ok", RTTms: 0.4, Docker: "20.10.24", CPUs: 2, MemFree: 1 << 30, DiskFree: 10 << 30, Instances: 1},
		{Host: "web2", State: "unreachable", reason: "no answer from 203.0.113.11:22 (host down, or a firewall drops SSH): check the address, and that port 22 is open",
			cause: "dial tcp 203.0.113.11:22: connect: no route to host"},
		{Host: "db1", Reachable: true, State: "engine down", reason: "docker engine not running (connect to /var/run/docker.sock: no such file or directory): check with `systemctl status docker` on the host"},
	}
	var whole bytes.Buffer
	if cut := writeHostsTable(&whole, reports, true, false, 0); cut {
		t.Error("cut without a terminal")
	}
	want := "HOST  STATE        RTT    DOCKER    CPUS  MEM FREE  DISK FREE  INSTANCES\n" +
		"web1  ok           400µs  20.10.24  2     1.0G      10.0G      1\n" +
		"web2  unreachable  no answer from 203.0.113.11:22 (host down, or a firewall drops SSH): check the address, and that port 22 is open\n" +
		"db1   engine down  docker engine not running (connect to /var/run/docker.sock: no such file or directory): check with `systemctl status docker` on the host\n"
	if whole.String() != want {
		t.Errorf("without a terminal:\n%s\nwant\n%s", whole.String(), want)
	}

	var cut bytes.Buffer
	if !writeHostsTable(&cut, reports, true, false, 72) {
		t.Error("nothing cut on a terminal 72 wide")
	}
	lines := strings.Split(strings.TrimSuffix(cut.String(), "\n"), "\n")
	wantLines := strings.Split(strings.TrimSuffix(want, "\n"), "\n")
	for i, line := range lines {
		if n := utf8.RuneCountInString(line); n > 72 {
			t.Errorf("line %d is %d wide: %s", i, n, line)
		}
		if i >= 2 && (!strings.HasSuffix(line, "…") || !strings.HasPrefix(wantLines[i], strings.TrimSuffix(line, "…"))) {
			t.Errorf("line %d is not its reason cut: %q", i, line)
		}
	}
	if lines[0] != wantLines[0] || lines[1] != wantLines[1] {
		t.Errorf("lines without a reason changed:\n%s", cut.String())
	}

	var verbose bytes.Buffer
	writeHostsTable(&verbose, reports, true, true, 0)
	if !strings.Contains(verbose.String(), "port 22 is open [dial tcp 203.0.113.11:22: connect: no route to host]\n") {
		t.Errorf("-v:\n%s", verbose.String())
	}
}

func TestHostsSummary(t *testing.T) {
	ok := hostReport{State: "ok", Reachable: true}
	down := hostReport{State: "unreachable"}
	engine := hostReport{State: "engine down", Reachable: true}
	failed := hostReport{State: "error", Reachable: true}
	for _, c := range []struct {
		reports []hostReport
		want    string
	}{
		{[]hostReport{ok, ok}, ""},
		{[]hostReport{ok, down}, "1 of 2 hosts unreachable"},
		{[]hostReport{ok, engine}, "1 of 2 hosts with their docker engine down"},
		{[]hostReport{failed, ok}, "1 of 2 hosts failed"},
		{[]hostReport{down, engine, down, ok}, "3 of 4 hosts not ready: 2 unreachable, 1 engine down"},
	} {
		err := hostsSummary(c.reports)
		got := ""
		if err != nil {
			got = err.Error()
		}
		if got != c.want {
			t.Errorf("summary %q, want %q", got, c.want)
		}
	}
}

func TestFailedReportDropsTheOperation(t *testing.T) {
	down := &executor.EngineDownError{Host: "db1", Socket: "/var/run/docker.sock", Detail: "no such file or directory"}
	rep := failedReport("db1", true, &executor.HostError{Host: "db1", Op: "reading facts", Err: down})
	if rep.State != "engine down" || !rep.Reachable || rep.reason != down.Error() {
		t.Errorf("%+v", rep)
	}
	rep = failedReport("db1", true, &executor.HostError{Host: "db1", Op: "reading facts", Err: errors.New("sudo -n: a password is required")})
	if rep.State != "error" || rep.reason != "reading facts: sudo -n: a password is required" {
		t.Errorf("%+v", rep)
	}
}
