package executor

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// listener listens on a loopback port and hands every connection to serve.
func listener(t *testing.T, serve func(net.Conn)) (host string, port int) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go serve(c)
		}
	}()
	a := l.Addr().(*net.TCPAddr)
	return a.IP.String(), a.Port
}

// closedPort is a loopback port nothing listens on.
func closedPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	return port
}

// sshdRefusingKeys is an SSH server that refuses every key, known to the
// returned known_hosts file.
func sshdRefusingKeys(t *testing.T) (host string, port int, knownHosts string) {
	t.Helper()
	signer := edSigner(t)
	cfg := &ssh.ServerConfig{PublicKeyCallback: func(ssh.ConnMetadata, ssh.PublicKey) (*ssh.Permissions, error) {
		return nil, errors.New("no")
	}}
	cfg.AddHostKey(signer)
	host, port = listener(t, func(c net.Conn) {
		defer c.Close()
		ssh.NewServerConn(c, cfg)
	})
	addr := net.JoinHostPort(host, strconv.Itoa(port))
	return host, port, knownHostsFile(t, knownhosts.Line([]string{knownhosts.Normalize(addr)}, signer.PublicKey()))
}

// connectErr connects to t with opts and returns the error, which must be
// a HostError for t.
func connectErr(t *testing.T, target Target, opts Options) error {
	t.Helper()
	opts.AgentSocket = "none"
	e := New(context.Background(), opts)
	defer e.Close()
	_, err := e.Connect(context.Background(), target)
	if err == nil {
		t.Fatalf("connecting to %+v succeeded", target)
	}
	var he *HostError
	if !errors.As(err, &he) || he.Host != target.Name {
		t.Fatalf("error %v names no host %s", err, target.Name)
	}
	return err
}

// TestConnectFaultsOneWordingEach connects, through the executor, to real
// ports that refuse, stay silent or refuse the key, and checks that each
// fault reads as its one wording, with the original error kept.
func TestConnectFaultsOneWordingEach(t *testing.T) {
	dir := t.TempDir()
	key, _ := keyFiles(t, dir, "id_ed25519", "")
	silentHost, silentPort := listener(t, func(c net.Conn) {
		// Accepts, and never says a word: a hung sshd.
		time.Sleep(5 * time.Second)
		c.Close()
	})
	authHost, authPort, authKnown := sshdRefusingKeys(t)
	refused := closedPort(t)

	for _, c := range []struct {
		name   string
		target Target
		opts   Options
		fault  Fault
		want   string
		is     error
	}{
		{"closed port", Target{Name: "h1", Address: "127.0.0.1", Port: refused, User: "root"}, Options{}, FaultRefused,
			fmt.Sprintf("host h1: connecting: connection refused on port %d of 127.0.0.1 (sshd not running?): check that sshd runs on the host, and the port in the inventory", refused),
			syscall.ECONNREFUSED},
		{"connect time-out", Target{Name: "h2", Address: silentHost, Port: silentPort, User: "root"}, Options{ConnectTimeout: time.Nanosecond}, FaultUnreachable,
			fmt.Sprintf("host h2: connecting: no answer from %s:%d (host down, or a firewall drops SSH): check the address, and that port %d is open", silentHost, silentPort, silentPort),
			context.DeadlineExceeded},
		{"silent sshd", Target{Name: "h3", Address: silentHost, Port: silentPort, User: "root"},
			Options{HandshakeTimeout: 100 * time.Millisecond}, FaultSSHDSilent,
			fmt.Sprintf("host h3: connecting: no answer within 100ms from sshd on %s:%d: the port accepts connections but sshd does not respond (host overloaded, or sshd hung)", silentHost, silentPort),
			context.DeadlineExceeded},
		{"keys refused", Target{Name: "h4", Address: authHost, Port: authPort, User: "deploy"},
			Options{}, FaultAuth,
			fmt.Sprintf("host h4: connecting: authentication refused for deploy@%s:%d: none of the offered keys is accepted: check the user, the identity files, and that ssh-agent holds the key", authHost, authPort),
			nil},
		{"unknown host", Target{Name: "h5", Address: "no_such_host!", Port: 22, User: "root"}, Options{}, FaultUnknownHost,
			"host h5: connecting: unknown host no_such_host!: DNS has no address for it: check the address in the inventory, or HostName in ~/.ssh/config",
			nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			c.target.IdentityFiles, c.target.KnownHostsFiles = []string{key}, []string{authKnown}
			err := connectErr(t, c.target, c.opts)
			if err.Error() != c.want {
				t.Errorf("error\n%s\nwant\n%s", err, c.want)
			}
			if got := FaultOf(err); got != c.fault {
				t.Errorf("fault %q, want %q", got, c.fault)
			}
			var ce *ConnectError
			if !errors.As(err, &ce) || ce.Err == nil {
				t.Fatalf("no ConnectError with its cause in %v", err)
			}
			if c.is != nil && !errors.Is(err, c.is) {
				t.Errorf("%v does not match %v", err, c.is)
			}
			if errors.Is(err, ErrEngineDown) {
				t.Error("a connection fault matches ErrEngineDown")
			}
		})
	}
}

// TestDialFaultsOneWordingWhateverTheCause gives dialFault the errors one
// fault surfaces as, and wants one wording for each fault.
func TestDialFaultsOneWordingWhateverTheCause(t *testing.T) {
	refusedPort := closedPort(t)
	_, refused := net.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(refusedPort)))
	_, timedOut := (&net.Dialer{Timeout: time.Nanosecond}).Dial("tcp", "127.0.0.1:1")
	ctx, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	_, deadline := (&net.Dialer{}).DialContext(ctx, "tcp", "127.0.0.1:1")
	cancel()
	_, notFound := net.Dial("tcp", "no_such_host!:22")
	noDNS := &net.Resolver{PreferGo: true, Dial: func(context.Context, string, string) (net.Conn, error) {
		return nil, errors.New("no DNS server")
	}}
	_, dnsDown := (&net.Dialer{Resolver: noDNS}).Dial("tcp", "web1.example.net:22")
	// What net returns when the kernel answers EHOSTUNREACH or
	// ENETUNREACH to connect(2), which only a real network partition gives.
	sysErr := func(errno syscall.Errno) error {
		return &net.OpError{Op: "dial", Net: "tcp", Addr: &net.TCPAddr{IP: net.IPv4(198, 18, 0, 11), Port: 22}, Err: os.NewSyscallError("connect", errno)}
	}
	// What a jump host's sshd answers when it cannot connect for us.
	viaJump := func(msg string) error {
		return &ssh.OpenChannelError{Reason: ssh.ConnectionFailed, Message: msg}
	}
	for _, e := range []error{refused, timedOut, deadline, notFound, dnsDown} {
		if e == nil {
			t.Fatal("a dial that must fail succeeded")
		}
	}

	const (
		unreachable = "no answer from 198.18.0.11:22 (host down, or a firewall drops SSH): check the address, and that port 22 is open"
		refusedText = "connection refused on port 22 of 198.18.0.11 (sshd not running?): check that sshd runs on the host, and the port in the inventory"
		noRoute     = "no route to 198.18.0.11:22 (network unreachable): check the network, VPN or routes on the way to the host"
		unknown     = "unknown host 198.18.0.11: DNS has no address for it: check the address in the inventory, or HostName in ~/.ssh/config"
		dnsFailed   = "cannot look up 198.18.0.11: no answer from DNS: check the DNS servers of the machine that connects"
	)
	target := Target{Name: "h1", Address: "198.18.0.11", User: "root"}
	for _, c := range []struct {
		name  string
		err   error
		fault Fault
		want  string
	}{
		{"i/o timeout", timedOut, FaultUnreachable, unreachable},
		{"context deadline", deadline, FaultUnreachable, unreachable},
		{"deadline through a jump host", context.DeadlineExceeded, FaultUnreachable, unreachable},
		{"no route to host", sysErr(syscall.EHOSTUNREACH), FaultUnreachable, unreachable},
		{"no route to host, from a jump host", viaJump("No route to host"), FaultUnreachable, unreachable},
		{"timed out, from a jump host", viaJump("Connection timed out"), FaultUnreachable, unreachable},
		{"refused", refused, FaultRefused, refusedText},
		{"refused, from a jump host", viaJump("Connection refused"), FaultRefused, refusedText},
		{"network unreachable", sysErr(syscall.ENETUNREACH), FaultNoRoute, noRoute},
		{"no such host", notFound, FaultUnknownHost, unknown},
		{"no such host, from a jump host", viaJump("Name or service not known"), FaultUnknownHost, unknown},
		{"no DNS", dnsDown, FaultDNS, dnsFailed},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := dialFault(target, c.err)
			if err.Error() != c.want {
				t.Errorf("%v:\n%s\nwant\n%s", c.err, err, c.want)
			}
			if FaultOf(err) != c.fault {
				t.Errorf("fault %q, want %q", FaultOf(err), c.fault)
			}
			if !errors.Is(err, c.err) {
				t.Errorf("the original error %v is lost", c.err)
			}
		})
	}
	other := errors.New("ssh: something else")
	if err := dialFault(target, other); err != other || FaultOf(err) != "" {
		t.Errorf("an error of no known kind became %v (%q)", err, FaultOf(err))
	}
}

// TestEngineDown reads what the docker client on a host says when it
// cannot use the engine (Docker 20.10's words).
func TestEngineDown(t *testing.T) {
	for _, c := range []struct {
		stderr string
		fault  Fault
		down   bool
		want   string
	}{
		{"failed to open the raw stream connection: dial unix /var/run/docker.sock: connect: no such file or directory", FaultEngineDown, true,
			"host h3: reading state: docker engine not running (connect to /var/run/docker.sock: no such file or directory): check with `systemctl status docker` on the host"},
		{"failed to open the raw stream connection: dial unix /var/run/docker.sock: connect: connection refused", FaultEngineDown, true,
			"host h3: reading state: docker engine not running (connect to /var/run/docker.sock: connection refused): check with `systemctl status docker` on the host"},
		{"Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?", FaultEngineDown, true,
			"host h3: reading state: docker engine not running (connect to /var/run/docker.sock: no answer): check with `systemctl status docker` on the host"},
		{"fleet-figures: 7: exec: docker: not found", FaultNoDocker, true,
			"host h3: reading state: docker is not installed (fleet-figures: 7: exec: docker: not found): install Docker on the host"},
		{"failed to open the raw stream connection: dial unix /var/run/docker.sock: connect: permission denied", FaultDockerDenied, false,
			"host h3: reading state: the login user may not use the docker engine (connect to /var/run/docker.sock: permission denied): add the user to the docker group, or set sudo: true in the inventory"},
	} {
		down := engineDown("h3", c.stderr)
		if down == nil {
			t.Errorf("%q: not seen as an engine that cannot be used", c.stderr)
			continue
		}
		err := error(&HostError{Host: "h3", Op: "reading state", Err: down})
		if err.Error() != c.want {
			t.Errorf("%q:\n%s\nwant\n%s", c.stderr, err, c.want)
		}
		if FaultOf(err) != c.fault || errors.Is(err, ErrEngineDown) != c.down {
			t.Errorf("%q: fault %q, ErrEngineDown %v", c.stderr, FaultOf(err), errors.Is(err, ErrEngineDown))
		}
		if strings.Count(err.Error(), "h3") != 1 {
			t.Errorf("the host is not named once: %s", err)
		}
	}
	if down := engineDown("h3", "Error response from daemon: No such container: x"); down != nil {
		t.Errorf("an engine that answers is down: %v", down)
	}
}

func TestImageRegistry(t *testing.T) {
	for ref, want := range map[string]string{
		"web:9":                     "docker.io",
		"acme/web:1":                "docker.io",
		"ghcr.io/acme/web:1.4.2":    "ghcr.io",
		"127.0.0.1:5000/hello:2":    "127.0.0.1:5000",
		"localhost/web":             "localhost",
		"registry:5000/web@sha256:": "registry:5000",
	} {
		if got := ImageRegistry(ref); got != want {
			t.Errorf("ImageRegistry(%q) = %q, want %q", ref, got, want)
		}
	}
}

// TestPullErrors reads the cause of a failed pull from the engine's answer
// (its words, as Docker 20.10 and the registries give them) and names the
// image, the registry and the host once each.
func TestPullErrors(t *testing.T) {
	for _, c := range []struct {
		ref    string
		creds  bool
		status int
		engine string
		cause  PullCause
		want   string
	}{
		{"127.0.0.1:5000/hello:9", true, 404, "manifest for 127.0.0.1:5000/hello:9 not found: manifest unknown: manifest unknown", PullNotFound,
			"image 127.0.0.1:5000/hello:9 not found on registry 127.0.0.1:5000: check the name and the tag (engine: manifest unknown)"},
		{"web:9", false, 404, "pull access denied for web, repository does not exist or may require 'docker login': denied: requested access to the resource is denied", PullDenied,
			"image web:9 not found on registry docker.io, or private: check the name and the tag, or the credentials for docker.io under `registries:` in fleet.yaml (engine: denied: requested access to the resource is denied)"},
		{"ghcr.io/acme/web:1", true, 500, "unauthorized: authentication required", PullUnauthorized,
			"registry ghcr.io refused the credentials for image ghcr.io/acme/web:1: check `registries:` in fleet.yaml (engine: unauthorized: authentication required)"},
		{"127.0.0.1:5000/hello:2", false, 500, `Head "http://127.0.0.1:5000/v2/hello/manifests/2": no basic auth credentials`, PullUnauthorized,
			"registry 127.0.0.1:5000 wants credentials for image 127.0.0.1:5000/hello:2: give them under `registries:` in fleet.yaml (engine: no basic auth credentials)"},
		{"127.0.0.1:5001/hello:2", false, 500, `Get "http://127.0.0.1:5001/v2/": dial tcp 127.0.0.1:5001: connect: connection refused`, PullUnreachable,
			`registry 127.0.0.1:5001 not reachable from the host, pulling 127.0.0.1:5001/hello:2: check the registry's name and port, and the host's DNS and outbound network (engine: Get "http://127.0.0.1:5001/v2/": dial tcp 127.0.0.1:5001: connect: connection refused)`},
		{"acme/web:1", false, 500, `Get "https://registry-1.docker.io/v2/": dial tcp: lookup registry-1.docker.io on 192.0.2.53:53: read udp 198.18.0.13:45469->192.0.2.53:53: i/o timeout`, PullUnreachable,
			`registry docker.io not reachable from the host, pulling acme/web:1: check the registry's name and port, and the host's DNS and outbound network (engine: Get "https://registry-1.docker.io/v2/": dial tcp: lookup registry-1.docker.io on 192.0.2.53:53: read udp 198.18.0.13:45469->192.0.2.53:53: i/o timeout)`},
		{"registry.example:5000/web:1", false, 500, `Get "https://registry.example:5000/v2/": http: server gave HTTP response to HTTPS client`, PullPlainHTTP,
			`registry registry.example:5000 answers in plain HTTP, pulling registry.example:5000/web:1: serve it over TLS, or list it in insecure-registries in the host engine's daemon.json (engine: Get "https://registry.example:5000/v2/": http: server gave HTTP response to HTTPS client)`},
		{"web:1", false, 0, "toomanyrequests: You have reached your pull rate limit.", PullRateLimited,
			"registry docker.io refuses more pulls for now (rate limit), pulling web:1: wait, or give credentials under `registries:` in fleet.yaml (engine: toomanyrequests: You have reached your pull rate limit.)"},
		{"web:1", false, 0, "write /var/lib/docker/tmp/GetImageBlob1: no space left on device", PullDiskFull,
			"the disk is full, pulling web:1: free space on the host (`fleet prune` removes the images fleet pulled that no kept revision needs), then run fleet again (engine: write /var/lib/docker/tmp/GetImageBlob1: no space left on device)"},
		{"web:1", false, 500, "received unexpected HTTP status: 500 Internal Server Error", PullOther,
			"pulling web:1 from registry docker.io failed: engine: received unexpected HTTP status: 500 Internal Server Error"},
	} {
		ee := &EngineError{Status: c.status, Message: c.engine}
		pe := newPullError(c.ref, c.creds, ee)
		if pe.Cause != c.cause {
			t.Errorf("%q: cause %q, want %q", c.engine, pe.Cause, c.cause)
		}
		err := error(&HostError{Host: "h3", Err: pe})
		if want := "host h3: " + c.want; err.Error() != want {
			t.Errorf("%q:\n%s\nwant\n%s", c.engine, err, want)
		}
		if !errors.Is(err, ee) {
			t.Errorf("%q: the engine's answer is lost", c.engine)
		}
		if c.status == 404 && !errors.Is(err, ErrNotFound) {
			t.Errorf("%q: an engine 404 no longer matches ErrNotFound", c.engine)
		}
	}
}
