package executor

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
)

// sftpSession is one SFTP session of a connection and the operations in
// flight on it.
type sftpSession struct {
	cl *sftp.Client

	mu      sync.Mutex
	busy    int
	retired bool
	closed  bool
}

// abandonGrace is how long a retired session's operations still in flight
// may take before it is closed under them.
const abandonGrace = 5 * time.Second

func (s *sftpSession) begin() {
	s.mu.Lock()
	s.busy++
	s.mu.Unlock()
}

func (s *sftpSession) end() {
	s.mu.Lock()
	s.busy--
	closeNow := s.retired && s.busy == 0
	s.mu.Unlock()
	if closeNow {
		s.close()
	}
}

// retire closes the session once its operations are done, and at the
// latest after abandonGrace.
func (s *sftpSession) retire() {
	s.mu.Lock()
	if s.retired {
		s.mu.Unlock()
		return
	}
	s.retired = true
	idle := s.busy == 0
	s.mu.Unlock()
	if idle {
		s.close()
		return
	}
	time.AfterFunc(abandonGrace, s.close)
}

func (s *sftpSession) close() {
	s.mu.Lock()
	closed := s.closed
	s.closed = true
	s.mu.Unlock()
	if !closed {
		s.cl.Close()
	}
}

// sftpSession returns the connection's SFTP session, opened on first use
// and then shared. It holds one session slot for as long as it is open.
// A host whose sshd refuses the subsystem gets errNoSFTP. Waiting for
// another caller that is opening it ends with ctx.
func (c *Conn) sftpSession(ctx context.Context) (*sftpSession, error) {
	select {
	case c.sftpOpening <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-c.done:
		return nil, c.err()
	}
	defer func() { <-c.sftpOpening }()
	c.sftpMu.Lock()
	s := c.sftp
	c.sftpMu.Unlock()
	if s != nil {
		return s, nil
	}
	if err := c.acquire(ctx); err != nil {
		return nil, err
	}
	type result struct {
		cl  *sftp.Client
		err error
	}
	ch := make(chan result, 1)
	go func() {
		cl, err := c.newSFTP(ctx)
		ch <- result{cl, err}
	}()
	var r result
	select {
	case r = <-ch:
	case <-ctx.Done():
		go func() {
			if r := <-ch; r.cl != nil {
				r.cl.Close()
			}
			c.release()
		}()
		return nil, ctx.Err()
	case <-c.done:
		c.release()
		return nil, c.err()
	}
	if r.err != nil {
		c.release()
		if errors.Is(r.err, errNoSFTP) {
			return nil, r.err
		}
		return nil, fmt.Errorf("starting sftp: %w", r.err)
	}
	s = &sftpSession{cl: r.cl}
	c.sftpMu.Lock()
	c.sftp = s
	c.sftpMu.Unlock()
	go func() {
		r.cl.Wait()
		c.dropSFTP(s)
		c.release()
	}()
	return s, nil
}

// dropSFTP forgets s, so that the next operation opens a fresh session.
func (c *Conn) dropSFTP(s *sftpSession) {
	c.sftpMu.Lock()
	if c.sftp == s {
		c.sftp = nil
	}
	c.sftpMu.Unlock()
}

// newSFTP starts the sftp subsystem on a session of its own (opened, like
// every session, with newSession's patience for sshd's session count).
// A refused subsystem request, or a subsystem that ends before it speaks
// (configured, but its program missing), is errNoSFTP.
func (c *Conn) newSFTP(ctx context.Context) (*sftp.Client, error) {
	s, err := c.newSession(ctx)
	if err != nil {
		return nil, err
	}
	w, err := s.StdinPipe()
	if err != nil {
		s.Close()
		return nil, err
	}
	r, err := s.StdoutPipe()
	if err != nil {
		s.Close()
		return nil, err
	}
	ok, err := s.SendRequest("subsystem", true, ssh.Marshal(struct{ Name string }{"sftp"}))
	if err != nil {
		s.Close()
		return nil, err
	}
	if !ok {
		s.Close()
		return nil, errNoSFTP
	}
	cl, err := sftp.NewClientPipe(r, w, sftp.UseConcurrentWrites(true))
	if err != nil {
		s.Close()
		if ctx.Err() == nil && !c.dead() && (errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)) {
			return nil, fmt.Errorf("%w (its SFTP server ended at once: %v)", errNoSFTP, err)
		}
		return nil, err
	}
	// The client's end closes the session's pipes; the session itself goes
	// with them.
	go func() {
		cl.Wait()
		s.Close()
	}()
	return cl, nil
}

// sftpFiles reaches a host's files through its SFTP session.
type sftpFiles struct{ c *Conn }

func (sftpFiles) transport() string { return TransportSFTP }

// do runs op on the SFTP session and gives up when ctx ends. pkg/sftp
// takes no context: an operation left waiting on a host that stalls goes
// on in the background, and its session is retired, so that what comes
// next runs on a fresh one. op gets ctx to stop between its requests.
func (s sftpFiles) do(ctx context.Context, op func(*sftp.Client) error) error {
	c := s.c
	ss, err := c.sftpSession(ctx)
	if err != nil {
		return err
	}
	ss.begin()
	done := make(chan error, 1)
	go func() {
		err := op(ss.cl)
		ss.end()
		done <- err
	}()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		c.dropSFTP(ss)
		ss.retire()
		return ctx.Err()
	case <-c.done:
		return c.err()
	}
}

// notExist turns pkg/sftp's missing file into a plain fs.ErrNotExist.
func notExist(err error) error {
	if err != nil && errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("%w", fs.ErrNotExist)
	}
	return err
}

// diskFull turns a failed write in dir into a [DiskFullError] when dir's
// file system has (almost) no room left. SFTP has no status for a full
// disk: sftp-server answers ENOSPC with a plain "Failure", so the free
// space is asked (statvfs@openssh.com) once a write failed that way.
func diskFull(cl *sftp.Client, dir string, err error) error {
	var se *sftp.StatusError
	if !errors.As(err, &se) || se.FxCode() != sftp.ErrSSHFxFailure {
		return err
	}
	st, serr := cl.StatVFS(dir)
	if serr != nil {
		return err
	}
	switch free := st.Frsize * st.Bavail; {
	case st.Favail == 0:
		return &DiskFullError{Detail: "no inode left on the file system of " + dir, Err: err}
	case free < 1<<20:
		return &DiskFullError{Detail: fmt.Sprintf("%d bytes left on the file system of %s", free, dir), Err: err}
	}
	return err
}

// writeTemp writes data to a new file next to dst, created with O_EXCL
// and made mode before any byte is written, and returns its name. On
// error nothing is left.
func writeTemp(ctx context.Context, cl *sftp.Client, dst string, data []byte, mode fs.FileMode) (tmp string, err error) {
	tmp = tempName(dst)
	f, err := cl.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL)
	if err != nil {
		return "", diskFull(cl, path.Dir(dst), err)
	}
	defer func() {
		if err != nil {
			f.Close()
			cl.Remove(tmp)
			err = diskFull(cl, path.Dir(dst), err)
		}
	}()
	if mode.Perm()&0o044 == 0o044 {
		// Readable by all once made, the file has nothing to hide while
		// its mode is set: the mode goes beside the data, one round trip
		// instead of two. A private file gets its mode before any data.
		chmod := make(chan error, 1)
		go func() { chmod <- f.Chmod(mode) }()
		_, err := f.WriteAt(data, 0)
		if cerr := <-chmod; err == nil {
			err = cerr
		}
		if err != nil {
			return "", err
		}
	} else {
		if err := f.Chmod(mode); err != nil {
			return "", err
		}
		if _, err := f.ReadFrom(bytes.NewReader(data)); err != nil {
			return "", err
		}
	}
	if err := f.Close(); err != nil {
		return "", err
	}
	if err := ctx.Err(); err != nil {
		return "", err
	}
	return tmp, nil
}

// writeFile writes a temporary file, then renames it over dst
// (posix-rename@openssh.com, which replaces an existing file).
func (s sftpFiles) writeFile(ctx context.Context, dst string, data []byte, mode fs.FileMode) error {
	return s.do(ctx, func(cl *sftp.Client) error {
		tmp, err := writeTemp(ctx, cl, dst, data, mode)
		if err != nil {
			return err
		}
		if _, ok := cl.HasExtension("posix-rename@openssh.com"); ok {
			err = cl.PosixRename(tmp, dst)
		} else {
			err = cl.Rename(tmp, dst)
		}
		if err != nil {
			cl.Remove(tmp)
		}
		return err
	})
}

// createFile writes a temporary file, then links it to dst
// (hardlink@openssh.com, link(2) on the host, which fails where dst
// exists). An SFTP server without that extension has no way to create a
// whole file exclusively: the shell does it there.
func (s sftpFiles) createFile(ctx context.Context, dst string, data []byte, mode fs.FileMode) error {
	var noLink bool
	err := s.do(ctx, func(cl *sftp.Client) error {
		if _, ok := cl.HasExtension("hardlink@openssh.com"); !ok {
			noLink = true
			return nil
		}
		tmp, err := writeTemp(ctx, cl, dst, data, mode)
		if err != nil {
			return err
		}
		defer cl.Remove(tmp)
		if err := cl.Link(tmp, dst); err != nil {
			// sftp-server answers a plain failure for an existing path.
			if _, serr := cl.Lstat(dst); serr == nil {
				return fmt.Errorf("%w", fs.ErrExist)
			}
			return err
		}
		return nil
	})
	if noLink {
		return shellFiles{c: s.c}.createFile(ctx, dst, data, mode)
	}
	return err
}

func (s sftpFiles) touch(ctx context.Context, p string) error {
	return s.do(ctx, func(cl *sftp.Client) error {
		f, err := cl.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_TRUNC)
		if err != nil {
			return notExist(diskFull(cl, path.Dir(p), err))
		}
		return f.Close()
	})
}

func (s sftpFiles) readFile(ctx context.Context, p string) ([]byte, error) {
	var b []byte
	err := s.do(ctx, func(cl *sftp.Client) error {
		f, err := cl.Open(p)
		if err != nil {
			return notExist(err)
		}
		defer f.Close()
		// /proc and /sys files report a size of 0: read until EOF, never by
		// size. Each read asks for all the room left, 8 KiB at first: a
		// small file (a record, a lock) comes in one answer, then the end
		// of file, where bytes.Buffer's reads of 512 bytes, then 1 KiB,
		// took three.
		buf := make([]byte, 0, 8<<10)
		for {
			if len(buf) == cap(buf) {
				buf = slices.Grow(buf, cap(buf))
			}
			n, err := f.Read(buf[len(buf):cap(buf)])
			buf = buf[:len(buf)+n]
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return err
			}
		}
		b = buf
		return nil
	})
	return b, err
}

func (s sftpFiles) stat(ctx context.Context, p string) (FileInfo, error) {
	var fi FileInfo
	err := s.do(ctx, func(cl *sftp.Client) error {
		info, err := cl.Stat(p)
		if err != nil {
			return notExist(err)
		}
		fi = FileInfo{Size: info.Size(), ModTime: info.ModTime(), Dir: info.IsDir()}
		return nil
	})
	return fi, err
}

func (s sftpFiles) mkdir(ctx context.Context, p string) error {
	return s.do(ctx, func(cl *sftp.Client) error {
		if err := cl.Mkdir(p); err != nil {
			// sftp-server answers a plain failure for an existing path.
			if _, serr := cl.Lstat(p); serr == nil {
				return fmt.Errorf("%w", fs.ErrExist)
			}
			return err
		}
		return nil
	})
}

func (s sftpFiles) mkdirAll(ctx context.Context, p string) error {
	return s.do(ctx, func(cl *sftp.Client) error { return cl.MkdirAll(p) })
}

func (s sftpFiles) readDir(ctx context.Context, p string) ([]string, error) {
	var names []string
	err := s.do(ctx, func(cl *sftp.Client) error {
		infos, err := cl.ReadDir(p)
		if err != nil {
			return notExist(err)
		}
		for _, fi := range infos {
			names = append(names, fi.Name())
		}
		sort.Strings(names)
		return nil
	})
	return names, err
}

func (s sftpFiles) remove(ctx context.Context, p string) error {
	return s.do(ctx, func(cl *sftp.Client) error { return notExist(cl.Remove(p)) })
}

func (s sftpFiles) removeAll(ctx context.Context, p string) error {
	return s.do(ctx, func(cl *sftp.Client) error {
		if err := cl.RemoveAll(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		return nil
	})
}

// hostTime creates an empty file and asks the host when it was written.
func (s sftpFiles) hostTime(ctx context.Context, dir string) (time.Time, error) {
	var t time.Time
	err := s.do(ctx, func(cl *sftp.Client) error {
		tmp := tempName(path.Join(dir, "clock"))
		f, err := cl.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL)
		if err != nil {
			return notExist(err)
		}
		defer cl.Remove(tmp)
		info, err := f.Stat()
		f.Close()
		if err != nil {
			return err
		}
		t = info.ModTime()
		return nil
	})
	return t, err
}
