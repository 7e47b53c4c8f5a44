package executor

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
)

// Executor holds the run's connections: one SSH client per host, opened on
// first use and reused for every command, file and tunnel until the run
// ends. It lives as long as the context given to [New]: cancelling that
// context closes every connection, which fails everything still waiting on
// one.
type Executor struct {
	opts Options
	keys *keyring
	// life ends when the run's context does or the executor is closed; it
	// aborts connections still being opened.
	life context.Context
	kill context.CancelFunc

	mu       sync.Mutex
	closed   bool
	conns    map[string]*dialing
	hostKeys map[string]*hostKeys

	logMu sync.Mutex
}

// log hands a line to Options.Log, one at a time.
func (e *Executor) log(line string) {
	if e.opts.Log == nil {
		return
	}
	e.logMu.Lock()
	defer e.logMu.Unlock()
	e.opts.Log(line)
}

type dialing struct {
	done chan struct{}
	conn *Conn
	err  error
}

// ErrClosed is returned for work asked of an executor, or a connection,
// that was closed.
var ErrClosed = errors.New("connection closed")

// ErrConnLost matches the error of work cut short because the connection
// to its host was lost: the host closed it, or stopped answering its
// keepalives. [Conn.Reconnect] opens another.
var ErrConnLost = errors.New("connection lost")

// New returns an executor for one run. Cancelling ctx closes it.
func New(ctx context.Context, opts Options) *Executor {
	e := &Executor{
		opts:     opts.withDefaults(),
		conns:    map[string]*dialing{},
		hostKeys: map[string]*hostKeys{},
	}
	e.keys = newKeyring(e.opts)
	e.life, e.kill = context.WithCancel(ctx)
	context.AfterFunc(e.life, func() { e.Close() })
	return e
}

// Close closes every connection of the run.
func (e *Executor) Close() error {
	e.kill()
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return nil
	}
	e.closed = true
	conns := e.conns
	e.conns = map[string]*dialing{}
	e.mu.Unlock()
	// Connections still being opened are aborted through e.life and close
	// themselves when they find the executor closed.
	for _, d := range conns {
		select {
		case <-d.done:
			if d.conn != nil {
				d.conn.Close()
			}
		default:
		}
	}
	e.keys.close()
	return nil
}

// Connect returns the run's connection to t, opening it (and its jump
// hosts) if this is the first use. ctx bounds the opening only.
func (e *Executor) Connect(ctx context.Context, t Target) (*Conn, error) {
	c, err := e.connect(ctx, t)
	if err != nil {
		return nil, hostErr(t.Name, "connecting", err)
	}
	return c, nil
}

func (e *Executor) connect(ctx context.Context, t Target) (*Conn, error) {
	key := t.key()
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return nil, ErrClosed
	}
	d, ok := e.conns[key]
	if ok {
		e.mu.Unlock()
		select {
		case <-d.done:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		if d.err != nil {
			// Those who waited for a failed attempt share its failure: a
			// dead bastion costs one time-out, not one per host behind it.
			return nil, d.err
		}
		if !d.conn.dead() {
			return d.conn, nil
		}
		// A connection that was lost since is opened afresh.
		e.mu.Lock()
		if e.conns[key] == d {
			delete(e.conns, key)
		}
		e.mu.Unlock()
		return e.connect(ctx, t)
	}
	d = &dialing{done: make(chan struct{})}
	e.conns[key] = d
	e.mu.Unlock()

	dctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(e.life, cancel)
	d.conn, d.err = e.dial(dctx, t)
	stop()
	cancel()
	close(d.done)
	if d.err != nil {
		e.mu.Lock()
		if e.conns[key] == d {
			delete(e.conns, key)
		}
		e.mu.Unlock()
		return nil, d.err
	}
	e.mu.Lock()
	closed := e.closed
	e.mu.Unlock()
	if closed {
		d.conn.Close()
		return nil, ErrClosed
	}
	return d.conn, nil
}

func (e *Executor) hostKeysFor(t Target) (*hostKeys, error) {
	given := t.KnownHostsFiles
	if len(given) == 0 {
		given = e.opts.KnownHostsFiles
	}
	if len(given) == 0 {
		given = defaultKnownHostsFiles()
	}
	files := make([]string, len(given))
	for i, f := range given {
		files[i] = expandHome(f)
	}
	key := strings.Join(files, "\x00")
	e.mu.Lock()
	defer e.mu.Unlock()
	if hk, ok := e.hostKeys[key]; ok {
		return hk, nil
	}
	hk, err := newHostKeys(files, e.opts.HostKeyPolicy, e.opts.HashKnownHosts)
	if err != nil {
		return nil, err
	}
	e.hostKeys[key] = hk
	return hk, nil
}

// dial opens the connection to t: through its last jump host when it has
// any (which is connected first, recursively), directly otherwise.
func (e *Executor) dial(ctx context.Context, t Target) (*Conn, error) {
	if t.Address == "" {
		return nil, errors.New("no address")
	}
	var via *Conn
	if n := len(t.Jump); n > 0 {
		hop := t.Jump[n-1]
		hop.Jump = t.Jump[:n-1]
		var err error
		via, err = e.connect(ctx, hop)
		if err != nil {
			return nil, fmt.Errorf("through jump host %s (%s): %w", hop.Name, hop.label(), err)
		}
	}
	hk, err := e.hostKeysFor(t)
	if err != nil {
		return nil, err
	}
	signers, err := e.keys.signers(t)
	if err != nil {
		return nil, err
	}
	addr := t.hostPort()
	cfg := &ssh.ClientConfig{
		User:              t.User,
		Auth:              []ssh.AuthMethod{ssh.PublicKeys(signers...)},
		HostKeyCallback:   hk.callback(t.Name),
		HostKeyAlgorithms: hk.algorithms(addr),
		Timeout:           e.opts.ConnectTimeout,
		ClientVersion:     "SSH-2.0-fleet",
	}

	dialCtx, cancel := context.WithTimeout(ctx, e.opts.ConnectTimeout)
	var conn net.Conn
	if via != nil {
		conn, err = via.client.DialContext(dialCtx, "tcp", addr)
	} else {
		conn, err = (&net.Dialer{KeepAlive: 15 * time.Second}).DialContext(dialCtx, "tcp", addr)
	}
	cancel()
	if err != nil {
		if errors.Is(ctx.Err(), context.Canceled) {
			return nil, err
		}
		return nil, dialFault(t, err)
	}
	client, err := handshake(ctx, conn, t, cfg, e.opts.HandshakeTimeout)
	if err != nil {
		return nil, err
	}
	tcp, _ := conn.(*net.TCPConn)
	c := &Conn{
		ex:          e,
		target:      t,
		client:      client,
		via:         via,
		tcp:         tcp,
		sessions:    make(chan struct{}, e.opts.SessionsPerHost),
		pullStall:   e.opts.PullStallTimeout,
		done:        make(chan struct{}),
		filesSem:    make(chan struct{}, 1),
		sftpOpening: make(chan struct{}, 1),
		log:         e.log,
	}
	go c.watch(e.opts.KeepaliveInterval, e.opts.KeepaliveCountMax)
	return c, nil
}

// handshake runs the SSH handshake on conn within limit. x/crypto bounds
// only the TCP connect (ClientConfig.Timeout), and deadlines do not work on
// a connection tunnelled through a jump host, so the handshake is bounded by
// closing the connection: on a timer, and when ctx ends.
func handshake(ctx context.Context, conn net.Conn, t Target, cfg *ssh.ClientConfig, limit time.Duration) (*ssh.Client, error) {
	addr := t.hostPort()
	timer := time.AfterFunc(limit, func() { conn.Close() })
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	c, chans, reqs, err := ssh.NewClientConn(conn, addr, cfg)
	timedOut := !timer.Stop()
	cancelled := !stop()
	if timedOut || cancelled {
		if err == nil {
			c.Close()
		}
		conn.Close()
		if cancelled {
			return nil, fmt.Errorf("ssh handshake with %s: %w", addr, ctx.Err())
		}
		return nil, &ConnectError{Fault: FaultSSHDSilent, Address: t.Address, Port: t.port(), User: t.User, Limit: limit,
			Err: fmt.Errorf("ssh handshake with %s: %w", addr, context.DeadlineExceeded)}
	}
	if err != nil {
		conn.Close()
		return nil, explainHandshake(t, err)
	}
	return ssh.NewClient(c, chans, reqs), nil
}

// explainHandshake turns x/crypto's handshake errors into ones that say
// what to do, keeping the original in the chain.
func explainHandshake(t Target, err error) error {
	var hke *HostKeyError
	if errors.As(err, &hke) {
		return hke
	}
	addr := t.hostPort()
	msg := err.Error()
	switch {
	case strings.Contains(msg, "unable to authenticate"):
		return &ConnectError{Fault: FaultAuth, Address: t.Address, Port: t.port(), User: t.User, Err: err}
	case strings.Contains(msg, "no common algorithm for host key"):
		return fmt.Errorf("ssh %s: the host offers none of the key types known_hosts holds for it: %w", addr, err)
	}
	return fmt.Errorf("ssh %s: %w", addr, err)
}

// Conn is the run's connection to one host.
type Conn struct {
	ex     *Executor // that opened it, and opens it again
	target Target
	client *ssh.Client
	via    *Conn
	// tcp is the connection's own TCP connection; nil through a jump
	// host (see abort).
	tcp      *net.TCPConn
	sessions chan struct{} // one slot per open session

	done      chan struct{} // closed once the client is gone
	closeOnce sync.Once
	reasonMu  sync.Mutex
	reason    error // why the connection ended

	sftpOpening chan struct{} // held while the SFTP session is opened
	sftpMu      sync.Mutex
	sftp        *sftpSession

	// filesSem guards fsys, the way to the host's files once it is known.
	filesSem chan struct{}
	fsys     files

	log func(string)

	pullStall time.Duration // see Options.PullStallTimeout

	engineOnce sync.Once
	engine     *Engine
}

// logf says what -v shows about the connection.
func (c *Conn) logf(format string, args ...any) {
	if c.log != nil {
		c.log(c.target.Name + ": " + fmt.Sprintf(format, args...))
	}
}

// Host returns the inventory name of the connection's host.
func (c *Conn) Host() string { return c.target.Name }

// Target returns the target the connection reaches.
func (c *Conn) Target() Target { return c.target }

// Close closes the connection. Its jump hosts stay open for the others
// that share them; the executor closes them at the end of the run.
func (c *Conn) Close() error {
	c.end(ErrClosed)
	return nil
}

// abort ends a connection given up for lost without delivering what it
// had not delivered yet: a TCP connection closed the usual way goes on
// sending its unacknowledged data, and a host that comes back on the
// network would then carry out a request that this run counted as failed
// (a container created after the run moved on, say). Closed with no
// linger, the kernel drops that data and resets the connection. Through a
// jump host, the jump host's own connection decides.
func (c *Conn) abort(reason error) {
	if c.tcp != nil {
		c.tcp.SetLinger(0)
	}
	c.end(reason)
}

func (c *Conn) end(reason error) {
	c.closeOnce.Do(func() {
		c.reasonMu.Lock()
		c.reason = reason
		c.reasonMu.Unlock()
		c.client.Close()
	})
}

func (c *Conn) dead() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// err says why the connection ended; nil while it is up.
func (c *Conn) err() error {
	if !c.dead() {
		return nil
	}
	c.reasonMu.Lock()
	defer c.reasonMu.Unlock()
	if c.reason != nil {
		return c.reason
	}
	return ErrConnLost
}

// Lost says why the connection was lost, or nil while it is up (or when it
// was closed on purpose).
func (c *Conn) Lost() error {
	if err := c.err(); errors.Is(err, ErrConnLost) {
		return err
	}
	return nil
}

// Reconnect returns the connection to the same host: c itself while it is
// up, or a new one once c was lost, connected as the first was (and shared
// with other callers, as [Executor.Connect] shares connections). It is
// how a run finishes or undoes its work on a host whose connection
// dropped: the work in flight failed with c, the next goes over the new one.
func (c *Conn) Reconnect(ctx context.Context) (*Conn, error) {
	if c.Lost() == nil {
		return c, nil
	}
	return c.ex.Connect(ctx, c.target)
}

// watch probes the peer with keepalive@openssh.com and closes the client
// when no answer came for interval×countMax, which fails every session,
// channel open and request still waiting on a dead peer. It returns once
// the client is gone.
func (c *Conn) watch(interval time.Duration, countMax int) {
	gone := make(chan struct{})
	go func() {
		err := c.client.Wait()
		c.reasonMu.Lock()
		if c.reason == nil {
			if err == nil || errors.Is(err, io.EOF) {
				err = errors.New("connection closed by the host")
			}
			c.reason = fmt.Errorf("%w: %w", ErrConnLost, err)
		}
		c.reasonMu.Unlock()
		close(gone)
	}()
	defer close(c.done)
	tick := time.NewTicker(interval)
	defer tick.Stop()
	replies := make(chan error, 1)
	pending := false
	last := time.Now()
	for {
		select {
		case <-gone:
			return
		case err := <-replies:
			pending = false
			if err == nil {
				last = time.Now()
			}
		case <-tick.C:
			if silent := time.Since(last); silent >= interval*time.Duration(countMax) {
				c.abort(fmt.Errorf("%w: no answer to keepalives for %s: host unreachable, connection closed", ErrConnLost, silent.Round(time.Second)))
				<-gone
				return
			}
			if !pending {
				pending = true
				go func() {
					// Any reply, even OpenSSH's "request failed", shows the peer is alive.
					_, _, err := c.client.SendRequest("keepalive@openssh.com", true, nil)
					replies <- err
				}()
			}
		}
	}
}

// acquire takes one of the connection's session slots.
func (c *Conn) acquire(ctx context.Context) error {
	select {
	case c.sessions <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-c.done:
		return c.err()
	}
}

func (c *Conn) release() { <-c.sessions }

// newSession opens a session, giving up when ctx ends or the connection
// dies. A slot must be held.
func (c *Conn) newSession(ctx context.Context) (*ssh.Session, error) {
	// sshd counts a session until its command has exited, which can come a
	// moment after this side closed it and let go of its slot: a refusal
	// for too many sessions ("open failed", or "prohibited" from servers
	// that say so) is waited out, briefly.
	for wait := 10 * time.Millisecond; ; wait *= 2 {
		s, err := c.openSession(ctx)
		var oce *ssh.OpenChannelError
		if !errors.As(err, &oce) || (oce.Reason != ssh.Prohibited && oce.Reason != ssh.ConnectionFailed) || wait > time.Second {
			return s, err
		}
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-c.done:
			return nil, c.err()
		}
	}
}

func (c *Conn) openSession(ctx context.Context) (*ssh.Session, error) {
	type result struct {
		s   *ssh.Session
		err error
	}
	ch := make(chan result, 1)
	go func() {
		s, err := c.client.NewSession()
		ch <- result{s, err}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			if err := c.err(); err != nil {
				return nil, err
			}
		}
		return r.s, r.err
	case <-ctx.Done():
		go func() {
			if r := <-ch; r.s != nil {
				r.s.Close()
			}
		}()
		return nil, ctx.Err()
	case <-c.done:
		return nil, c.err()
	}
}

// Cmd is a command to run on a host. Its arguments never meet a shell
// unquoted: each is quoted with [Quote].
type Cmd struct {
	Args []string
	// Privileged runs the command through `sudo -n` when the target logs in
	// as a user other than root with Sudo set.
	Privileged bool
	Stdin      io.Reader
	Stdout     io.Writer
	// Stderr, when nil, is kept for the error of a failed command.
	Stderr io.Writer
}

// line is the command line sent to the host.
func (c *Conn) line(cmd Cmd) (string, error) {
	args := cmd.Args
	if cmd.Privileged && c.target.sudo() {
		args = append([]string{"sudo", "-n", "--"}, args...)
	}
	return ShellJoin(args)
}

// Run runs cmd on the host and waits for it. The error of a command that
// ran and failed is an [*ExitError].
func (c *Conn) Run(ctx context.Context, cmd Cmd) error {
	line, err := c.line(cmd)
	if err != nil {
		return c.fail("running "+strings.Join(cmd.Args, " "), err)
	}
	op := "running " + line
	if err := c.acquire(ctx); err != nil {
		return c.fail(op, err)
	}
	defer c.release()
	s, err := c.newSession(ctx)
	if err != nil {
		return c.fail(op, err)
	}
	defer s.Close()
	var stderr bytes.Buffer
	s.Stdin, s.Stdout, s.Stderr = cmd.Stdin, cmd.Stdout, cmd.Stderr
	if s.Stderr == nil {
		s.Stderr = &limitedBuffer{buf: &stderr, max: 64 << 10}
	}
	if err := s.Start(line); err != nil {
		return c.fail(op, err)
	}
	waited := make(chan error, 1)
	go func() { waited <- s.Wait() }()
	select {
	case err = <-waited:
	case <-ctx.Done():
		s.Signal(ssh.SIGKILL)
		s.Close()
		return c.fail(op, ctx.Err())
	case <-c.done:
		s.Close()
		return c.fail(op, c.err())
	}
	if err == nil {
		return nil
	}
	var exit *ssh.ExitError
	if errors.As(err, &exit) {
		ee := &ExitError{Command: line, Status: exit.ExitStatus(), Stderr: strings.TrimSpace(stderr.String())}
		if cmd.Privileged && c.target.sudo() && sudoWantsPassword(ee.Stderr) {
			return c.fail(op, fmt.Errorf("%w: %s", ErrSudoPassword, ee.Stderr))
		}
		return c.fail(op, ee)
	}
	return c.fail(op, c.cutShort(err))
}

// cutShort says why a session ended without an exit status. That is most
// often its connection ending, whose reason (keepalives unanswered, say)
// is known a moment after the session sees its end: it is waited for
// briefly.
func (c *Conn) cutShort(err error) error {
	select {
	case <-c.done:
		return c.err()
	case <-time.After(time.Second):
		return err
	}
}

// Output runs argv on the host and returns its standard output.
func (c *Conn) Output(ctx context.Context, argv ...string) ([]byte, error) {
	var out bytes.Buffer
	err := c.Run(ctx, Cmd{Args: argv, Stdout: &out})
	return out.Bytes(), err
}

func (c *Conn) fail(op string, err error) error {
	// Work that the connection's loss cut short says so, whatever its
	// transport made of it (EOF, a closed channel), so that its caller
	// can tell it from an answer of the host and connect again. An
	// answer that came before is kept, and so is an interruption.
	var ee *EngineError
	if !errors.As(err, &ee) && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
		if brokenPipe(err) {
			// The call in flight sees its channel end a moment before
			// the connection is found gone.
			select {
			case <-c.done:
			case <-time.After(250 * time.Millisecond):
			}
		}
		if lost := c.Lost(); lost != nil {
			err = lost
		}
	}
	return &HostError{Host: c.target.Name, Op: op, Err: err}
}

// brokenPipe reports whether err is what a call gets when its channel or
// stream ends under it, as when the connection is lost.
func brokenPipe(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed)
}

// ExitError is a command that ran on the host and exited non-zero.
type ExitError struct {
	Command string
	Status  int
	Stderr  string
}

func (e *ExitError) Error() string {
	if e.Stderr == "" {
		return fmt.Sprintf("exit status %d", e.Status)
	}
	return fmt.Sprintf("exit status %d: %s", e.Status, e.Stderr)
}

// ErrSudoPassword is returned when sudo wants a password: fleet never
// types one, so the login user needs passwordless sudo for docker.
var ErrSudoPassword = errors.New("sudo -n: the user needs a password for sudo here; allow it passwordless sudo (NOPASSWD) for docker, or log in as root or as a member of the docker group")

func sudoWantsPassword(stderr string) bool {
	return strings.Contains(stderr, "a password is required") || strings.Contains(stderr, "a terminal is required")
}

type limitedBuffer struct {
	buf *bytes.Buffer
	max int
}

func (l *limitedBuffer) Write(p []byte) (int, error) {
	if room := l.max - l.buf.Len(); room > 0 {
		if len(p) > room {
			l.buf.Write(p[:room])
		} else {
			l.buf.Write(p)
		}
	}
	return len(p), nil
}

// DialContext opens a TCP connection from the host to addr, carried by the
// SSH connection (what `ssh -W` does): a health check reaches a container
// at its bridge address with no port published.
func (c *Conn) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	conn, err := c.client.DialContext(ctx, network, addr)
	if err != nil {
		if dead := c.err(); dead != nil {
			err = dead
		}
		return nil, c.fail("dialing "+addr+" through the host", err)
	}
	return conn, nil
}
