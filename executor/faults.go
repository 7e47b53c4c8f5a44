package executor

import (
	"context"
	"errors"
	"fmt"
	"net"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"
)

// Fault names what kept fleet from a host, in the few kinds that each call
// for their own remedy. One fault reads the same however it surfaced: a
// host that does not answer is "no answer from ADDR" whether the dial timed
// out, a deadline ended it or the kernel gave up on finding the host, so
// a sysadmin reading the output of a whole fleet sees one line per kind of
// trouble, not three spellings of it.
type Fault string

const (
	// FaultUnreachable: nothing answered on the host's address, within the
	// connect time-out or at all: the host is down, off the network, or a
	// firewall drops SSH.
	FaultUnreachable Fault = "unreachable"
	// FaultNoRoute: no network path to the address from where fleet (or
	// the jump host) connects.
	FaultNoRoute Fault = "no route"
	// FaultUnknownHost: DNS has no address for the host's name.
	FaultUnknownHost Fault = "unknown host"
	// FaultDNS: the name could not be looked up at all.
	FaultDNS Fault = "dns failed"
	// FaultRefused: the host answered, but nothing listens on the port.
	FaultRefused Fault = "refused"
	// FaultSSHDSilent: the port accepts connections but sshd says nothing
	// within the handshake time-out.
	FaultSSHDSilent Fault = "sshd silent"
	// FaultAuth: sshd refused every key offered.
	FaultAuth Fault = "auth refused"
	// FaultHostKey: known_hosts does not vouch for the host's key
	// ([HostKeyError]).
	FaultHostKey Fault = "host key"
	// FaultEngineDown: the host answers over SSH, but its Docker engine
	// does not ([ErrEngineDown]).
	FaultEngineDown Fault = "engine down"
	// FaultNoDocker: the host answers over SSH, but has no docker command.
	FaultNoDocker Fault = "no docker"
	// FaultDockerDenied: the engine runs, but the login user may not use
	// its socket.
	FaultDockerDenied Fault = "docker denied"
)

// FaultOf returns the fault behind one host's error, or "" when the error
// is none of the known kinds (then its own text is all there is to say).
func FaultOf(err error) Fault {
	var ce *ConnectError
	var hke *HostKeyError
	var ed *EngineDownError
	switch {
	case err == nil:
		return ""
	case errors.As(err, &ce):
		return ce.Fault
	case errors.As(err, &hke):
		return FaultHostKey
	case errors.As(err, &ed):
		return ed.fault()
	}
	return ""
}

// ConnectError is a host that could not be reached or logged in to: no SSH
// connection came of the attempt. Its text is the fault's one wording, with
// what to check; the error it was made from stays in the chain, for
// errors.Is and for whoever wants the detail.
type ConnectError struct {
	Fault Fault
	// Address and Port are what was dialed; User, who logged in.
	Address string
	Port    int
	User    string
	// Limit is the handshake time-out, for FaultSSHDSilent.
	Limit time.Duration
	Err   error
}

func (e *ConnectError) Error() string {
	addr := net.JoinHostPort(e.Address, strconv.Itoa(e.Port))
	switch e.Fault {
	case FaultUnreachable:
		return fmt.Sprintf("no answer from %s (host down, or a firewall drops SSH): check the address, and that port %d is open", addr, e.Port)
	case FaultNoRoute:
		return fmt.Sprintf("no route to %s (network unreachable): check the network, VPN or routes on the way to the host", addr)
	case FaultUnknownHost:
		return fmt.Sprintf("unknown host %s: DNS has no address for it: check the address in the inventory, or HostName in ~/.ssh/config", e.Address)
	case FaultDNS:
		return fmt.Sprintf("cannot look up %s: no answer from DNS: check the DNS servers of the machine that connects", e.Address)
	case FaultRefused:
		return fmt.Sprintf("connection refused on port %d of %s (sshd not running?): check that sshd runs on the host, and the port in the inventory", e.Port, e.Address)
	case FaultSSHDSilent:
		return fmt.Sprintf("no answer within %s from sshd on %s: the port accepts connections but sshd does not respond (host overloaded, or sshd hung)", e.Limit, addr)
	case FaultAuth:
		return fmt.Sprintf("authentication refused for %s@%s: none of the offered keys is accepted: check the user, the identity files, and that ssh-agent holds the key", e.User, addr)
	}
	return fmt.Sprintf("connecting to %s: %v", addr, e.Err)
}

func (e *ConnectError) Unwrap() error { return e.Err }

// dialFault classifies an error of the TCP connection to t (direct, or
// through a jump host) as one of the faults; an error that fits none is
// returned as it is.
func dialFault(t Target, err error) error {
	f := dialFaultOf(err)
	if f == "" {
		return err
	}
	return &ConnectError{Fault: f, Address: t.Address, Port: t.port(), User: t.User, Err: err}
}

func dialFaultOf(err error) Fault {
	var dns *net.DNSError
	var oce *ssh.OpenChannelError
	var ne net.Error
	switch {
	case errors.As(err, &dns):
		if dns.IsNotFound {
			return FaultUnknownHost
		}
		return FaultDNS
	case errors.Is(err, syscall.ECONNREFUSED):
		return FaultRefused
	case errors.Is(err, syscall.ENETUNREACH):
		return FaultNoRoute
	// The kernel's "no route to host" is a neighbour that never answered
	// (or a router saying so): the same silence as a time-out.
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.EHOSTDOWN), errors.Is(err, syscall.ETIMEDOUT),
		errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return FaultUnreachable
	case errors.As(err, &oce) && oce.Reason == ssh.ConnectionFailed:
		// A jump host's sshd dialed for us and says why it failed, in the
		// words of strerror and getaddrinfo.
		return channelFault(oce.Message)
	}
	return ""
}

func channelFault(msg string) Fault {
	m := strings.ToLower(msg)
	switch {
	case strings.Contains(m, "connection refused"):
		return FaultRefused
	case strings.Contains(m, "network is unreachable"):
		return FaultNoRoute
	case strings.Contains(m, "no route to host"), strings.Contains(m, "timed out"), strings.Contains(m, "host is down"):
		return FaultUnreachable
	case strings.Contains(m, "name or service not known"), strings.Contains(m, "no address associated"), strings.Contains(m, "nodename nor servname"):
		return FaultUnknownHost
	case strings.Contains(m, "temporary failure in name resolution"):
		return FaultDNS
	}
	return ""
}

// ErrEngineDown matches the error of a host whose sshd answers but whose
// Docker engine does not: stopped, crashed, or not installed. Such a host
// is not unreachable, and is not fixed by looking at the network.
var ErrEngineDown = errors.New("docker engine not running")

// EngineDownError is a host reached over SSH whose Docker engine could not
// be used. It names no host: the [HostError] around it does.
type EngineDownError struct {
	Host   string // inventory name
	Socket string // the engine's socket, e.g. /var/run/docker.sock
	// Detail is why the socket could not be used, as the host said it:
	// "no such file or directory" (the engine is stopped), "connection
	// refused" (it died), "permission denied" (the user may not use it).
	Detail string
	// NotInstalled is set when the host has no docker command at all;
	// Detail then holds the shell's complaint.
	NotInstalled bool
}

func (e *EngineDownError) Error() string {
	switch {
	case e.NotInstalled:
		return fmt.Sprintf("docker is not installed (%s): install Docker on the host", e.Detail)
	case e.denied():
		return fmt.Sprintf("the login user may not use the docker engine (connect to %s: %s): add the user to the docker group, or set sudo: true in the inventory", e.Socket, e.Detail)
	}
	return fmt.Sprintf("docker engine not running (connect to %s: %s): check with `systemctl status docker` on the host", e.Socket, e.Detail)
}

// Is matches [ErrEngineDown] for an engine that is stopped or missing; one
// that runs but refuses the user does not match.
func (e *EngineDownError) Is(target error) bool { return target == ErrEngineDown && !e.denied() }

func (e *EngineDownError) denied() bool {
	return !e.NotInstalled && strings.Contains(strings.ToLower(e.Detail), "permission denied")
}

func (e *EngineDownError) fault() Fault {
	switch {
	case e.NotInstalled:
		return FaultNoDocker
	case e.denied():
		return FaultDockerDenied
	}
	return FaultEngineDown
}

var (
	// What the docker client on the host says when the engine's socket
	// cannot be used: `docker system dial-stdio` ("failed to open the raw
	// stream connection: dial unix /var/run/docker.sock: connect: no such
	// file or directory"), and the other commands.
	dialUnixRE    = regexp.MustCompile(`dial unix (\S+): connect: ([^\n]+)`)
	cannotRE      = regexp.MustCompile(`Cannot connect to the Docker daemon at unix://(\S+?)\.? Is the docker daemon running\?`)
	notInstallRE  = regexp.MustCompile(`(?m)^.*docker: (?:command )?not found\s*$`)
	permissionsRE = regexp.MustCompile(`permission denied while trying to connect to the Docker daemon socket at unix://(\S+?):? `)
)

// engineDown reads what the docker client on host wrote to standard error,
// and returns an [*EngineDownError] when it says that the engine could not
// be used, nil otherwise.
func engineDown(host, stderr string) *EngineDownError {
	if m := notInstallRE.FindString(stderr); m != "" {
		return &EngineDownError{Host: host, NotInstalled: true, Detail: strings.TrimSpace(m)}
	}
	if m := dialUnixRE.FindStringSubmatch(stderr); m != nil {
		return &EngineDownError{Host: host, Socket: m[1], Detail: strings.TrimSpace(m[2])}
	}
	if m := permissionsRE.FindStringSubmatch(stderr); m != nil {
		return &EngineDownError{Host: host, Socket: m[1], Detail: "permission denied"}
	}
	if m := cannotRE.FindStringSubmatch(stderr); m != nil {
		return &EngineDownError{Host: host, Socket: m[1], Detail: "no answer"}
	}
	return nil
}

// ErrDiskFull matches a write that failed because the host's file system
// has no room left: a file of fleet's own (the lock, the history), a
// container the engine creates, an image it pulls.
var ErrDiskFull = errors.New("disk full")

// diskFullHint is what to do about a full disk, said with every one.
const diskFullHint = "free space on the host (`fleet prune` removes the images fleet pulled that no kept revision needs), then run fleet again"

// DiskFullError is a write that the host's full disk refused. It names no
// host: the [HostError] around it does.
type DiskFullError struct {
	// Detail is what failed, as the host or its engine said it.
	Detail string
	Err    error
}

func (e *DiskFullError) Error() string {
	return "the disk is full (" + e.Detail + "): " + diskFullHint
}

func (e *DiskFullError) Unwrap() error { return e.Err }

func (e *DiskFullError) Is(target error) bool { return target == ErrDiskFull }

// saysDiskFull reports whether a message of the host (its kernel's
// ENOSPC, in the engine's words or a shell's) says the disk is full.
func saysDiskFull(msg string) bool {
	return strings.Contains(strings.ToLower(msg), "no space left on device")
}
