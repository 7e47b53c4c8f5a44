package executor

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/ssh"
)

// stream is a command's standard input and output on the host, used as one
// byte stream: the way to speak a protocol with a program on the host, as
// `docker system dial-stdio` speaks the Engine API. It holds a session slot
// until closed. A stream can also be a Unix socket on the host, forwarded
// by sshd itself (see [Conn.openSocket]); it then has no command, no
// standard error and no session slot.
type stream struct {
	c      *Conn
	s      *ssh.Session // nil for a socket
	r      io.Reader
	w      io.WriteCloser
	stderr *limitedBuffer
	once   sync.Once
	closed atomic.Bool
}

func (c *Conn) openStream(ctx context.Context, cmd Cmd) (*stream, error) {
	line, err := c.line(cmd)
	if err != nil {
		return nil, err
	}
	if err := c.acquire(ctx); err != nil {
		return nil, err
	}
	s, err := c.newSession(ctx)
	if err != nil {
		c.release()
		return nil, err
	}
	st := &stream{c: c, s: s, stderr: &limitedBuffer{buf: new(bytes.Buffer), max: 16 << 10}}
	s.Stderr = st.stderr
	if st.w, err = s.StdinPipe(); err == nil {
		st.r, err = s.StdoutPipe()
	}
	if err == nil {
		err = s.Start(line)
	}
	if err != nil {
		s.Close()
		c.release()
		return nil, err
	}
	return st, nil
}

// openSocket connects to a Unix socket on the host through a
// direct-streamlocal channel: sshd connects to it as the login user, and no
// process starts on the host. It fails when sshd forbids it
// (AllowStreamLocalForwarding no) or the user may not use the socket.
func (c *Conn) openSocket(ctx context.Context, path string) (*stream, error) {
	sock, err := c.client.DialContext(ctx, "unix", path)
	if err != nil {
		if dead := c.err(); dead != nil {
			err = dead
		}
		return nil, err
	}
	return &stream{c: c, r: sock, w: sock.(io.WriteCloser), stderr: &limitedBuffer{buf: new(bytes.Buffer), max: 1}}, nil
}

// wait waits for the command to end; a socket has none.
func (st *stream) wait() {
	if st.s != nil {
		st.s.Wait()
	}
}

func (st *stream) Read(p []byte) (int, error) {
	n, err := st.r.Read(p)
	if err != nil && n == 0 {
		if dead := st.c.err(); dead != nil {
			return 0, dead
		}
	}
	return n, err
}

func (st *stream) Write(p []byte) (int, error) { return st.w.Write(p) }

// CloseWrite ends the command's standard input, or a socket's sending side.
func (st *stream) CloseWrite() error {
	if cw, ok := st.w.(interface{ CloseWrite() error }); ok && st.s == nil {
		return cw.CloseWrite()
	}
	return st.w.Close()
}

func (st *stream) Close() error {
	st.once.Do(func() {
		st.closed.Store(true)
		st.w.Close()
		if st.s != nil {
			st.s.Close()
			st.c.release()
		}
	})
	return nil
}

// Stderr returns what the command wrote to standard error so far.
func (st *stream) Stderr() string { return st.stderr.buf.String() }

// The rest makes a stream a net.Conn for code that wants one. Deadlines
// are not supported on SSH channels; contexts close the stream instead.
func (st *stream) LocalAddr() net.Addr                { return streamAddr{} }
func (st *stream) RemoteAddr() net.Addr               { return streamAddr{} }
func (st *stream) SetDeadline(t time.Time) error      { return errDeadline }
func (st *stream) SetReadDeadline(t time.Time) error  { return errDeadline }
func (st *stream) SetWriteDeadline(t time.Time) error { return errDeadline }

var errDeadline = errors.New("deadlines are not supported on an SSH stream")

type streamAddr struct{}

func (streamAddr) Network() string { return "ssh-stream" }
func (streamAddr) String() string  { return "ssh-stream" }
