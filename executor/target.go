package executor

import (
	"net"
	"strconv"
	"strings"
	"time"
)

// Target is a host to reach, as the inventory resolved it. The executor
// keeps its own description so that it depends on nothing but SSH.
type Target struct {
	// Name is the host's inventory name; every error about the host names it.
	Name string
	// Address is the host name or IP to connect to, and the name its key is
	// looked up by in known_hosts.
	Address string
	// Port defaults to 22.
	Port int
	// User is the login user.
	User string
	// IdentityFiles, when given, are the only keys offered (OpenSSH's
	// IdentitiesOnly): agent keys matching them first, then the files.
	// When empty, every agent key and the default key files are offered.
	IdentityFiles []string
	// KnownHostsFiles replace the default user and global known_hosts files.
	KnownHostsFiles []string
	// Jump lists the hosts to tunnel through, first hop first (ProxyJump).
	// Each hop is verified and authenticated like any host.
	Jump []Target
	// Sudo runs docker through `sudo -n`. A root login never needs it.
	Sudo bool
}

func (t Target) port() int {
	if t.Port == 0 {
		return 22
	}
	return t.Port
}

// hostPort is the address dialed and looked up in known_hosts.
func (t Target) hostPort() string {
	return net.JoinHostPort(t.Address, strconv.Itoa(t.port()))
}

// label says which host an error is about, and how it was reached.
func (t Target) label() string {
	return t.User + "@" + t.hostPort()
}

// key identifies one connection: the same host reached the same way, as
// the same user, shares one client for the whole run.
func (t Target) key() string {
	var b strings.Builder
	for _, j := range t.Jump {
		b.WriteString(j.label())
		b.WriteString(" -> ")
	}
	b.WriteString(t.label())
	return b.String()
}

// sudo reports whether privileged commands need `sudo -n`.
func (t Target) sudo() bool { return t.Sudo && t.User != "root" }

// HostKeyPolicy says what to do with a host key that known_hosts does not
// vouch for, as OpenSSH's StrictHostKeyChecking does.
type HostKeyPolicy string

const (
	// Strict refuses hosts that are not in known_hosts.
	Strict HostKeyPolicy = "strict"
	// AcceptNew records the keys of hosts not yet in known_hosts and refuses
	// changed keys.
	AcceptNew HostKeyPolicy = "accept-new"
	// Off checks nothing. A man in the middle goes unnoticed.
	Off HostKeyPolicy = "off"
)

// Options tune an [Executor]. The zero value is usable: every field has a
// default suited to a few hundred hosts driven from one laptop.
type Options struct {
	// Parallel bounds how many hosts are worked on at once (default 512).
	// Reading a host is nearly all waiting on round trips, and its
	// connection stays open for the run whatever the bound: a low one
	// only makes a large fleet wait in waves (1,000 simulated hosts at
	// 30 ms: 12.8 s at 64, 4.0 s at 512), while its memory and open files
	// stay much the same.
	Parallel int
	// SessionsPerHost bounds the sessions open at once on one connection,
	// long-lived ones included (default 8). sshd refuses more than its
	// MaxSessions, 10 by default.
	SessionsPerHost int
	// HostKeyPolicy defaults to Strict.
	HostKeyPolicy HostKeyPolicy
	// HashKnownHosts hashes the names of hosts recorded under AcceptNew, as
	// OpenSSH does with HashKnownHosts yes (see [UserHashesKnownHosts]).
	HashKnownHosts bool
	// ConnectTimeout bounds the TCP connection to a host or through a hop
	// (default 10s).
	ConnectTimeout time.Duration
	// HandshakeTimeout bounds the whole SSH handshake after connecting: key
	// exchange, host key check and authentication (default 15s).
	HandshakeTimeout time.Duration
	// KeepaliveInterval is how often an idle connection is probed, and
	// KeepaliveCountMax how many intervals may pass without an answer before
	// the connection is closed and everything waiting on it fails (defaults
	// 5s and 3, like ServerAliveInterval and ServerAliveCountMax).
	KeepaliveInterval time.Duration
	KeepaliveCountMax int
	// PullStallTimeout ends a pull whose engine reports no progress for
	// that long: a registry that stopped answering leaves the engine's
	// pull waiting for ever (default 2m).
	PullStallTimeout time.Duration
	// AgentSocket is the ssh-agent to ask for keys; default $SSH_AUTH_SOCK.
	// "none" disables the agent.
	AgentSocket string
	// Passphrase is asked for the passphrase of an encrypted identity file,
	// once per file. The default asks on the terminal, and fails without one.
	Passphrase func(file string) ([]byte, error)
	// KnownHostsFiles are the files read for a target that names none; the
	// first is the one AcceptNew appends to. Default: ~/.ssh/known_hosts,
	// ~/.ssh/known_hosts2, /etc/ssh/ssh_known_hosts, /etc/ssh/ssh_known_hosts2.
	KnownHostsFiles []string
	// Log receives what is worth saying under -v, one line at a time, each
	// beginning with the host's name: how each host's files are reached,
	// for one. Nil says nothing.
	Log func(line string)
}

func (o Options) withDefaults() Options {
	if o.Parallel <= 0 {
		o.Parallel = 512
	}
	if o.SessionsPerHost <= 0 {
		o.SessionsPerHost = 8
	}
	if o.HostKeyPolicy == "" {
		o.HostKeyPolicy = Strict
	}
	if o.ConnectTimeout <= 0 {
		o.ConnectTimeout = 10 * time.Second
	}
	if o.HandshakeTimeout <= 0 {
		o.HandshakeTimeout = 15 * time.Second
	}
	if o.KeepaliveInterval <= 0 {
		o.KeepaliveInterval = 5 * time.Second
	}
	if o.KeepaliveCountMax <= 0 {
		o.KeepaliveCountMax = 3
	}
	if o.PullStallTimeout <= 0 {
		o.PullStallTimeout = 2 * time.Minute
	}
	return o
}
