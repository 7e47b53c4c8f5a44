package executor

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"sort"

	"github.com/pkg/sftp"
)

// sftpClient returns the connection's SFTP client, opened on first use and
// then shared. It holds one session slot for as long as it is open.
func (c *Conn) sftpClient(ctx context.Context) (*sftp.Client, error) {
	c.sftpMu.Lock()
	defer c.sftpMu.Unlock()
	if c.sftp != nil {
		return c.sftp, nil
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
		return nil, fmt.Errorf("starting sftp: %w", r.err)
	}
	c.sftp = r.cl
	go func() {
		r.cl.Wait()
		c.sftpMu.Lock()
		if c.sftp == r.cl {
			c.sftp = nil
		}
		c.sftpMu.Unlock()
		c.release()
	}()
	return r.cl, nil
}

// newSFTP starts the sftp subsystem on a session of its own (opened, like
// every session, with newSession's patience for sshd's session count).
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
	if err := s.RequestSubsystem("sftp"); err != nil {
		s.Close()
		return nil, err
	}
	cl, err := sftp.NewClientPipe(r, w, sftp.UseConcurrentWrites(true))
	if err != nil {
		s.Close()
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

// WriteFile writes the content of r to path on the host, as the login user,
// with the given mode, atomically: other readers see the old file or the
// whole new one, never a part, and a failure leaves no trace. The data
// travels inside the SSH connection (SFTP), never on a command line, so it
// is the way for secrets and env files.
//
// The temporary file is created with O_EXCL next to path, made mode before
// any byte is written, then renamed over path (posix-rename@openssh.com,
// which replaces an existing file), and removed on any error.
func (c *Conn) WriteFile(ctx context.Context, dst string, r io.Reader, mode fs.FileMode) error {
	op := "writing " + dst
	if err := c.writeFile(ctx, dst, r, mode); err != nil {
		if dead := c.err(); dead != nil {
			err = dead
		}
		return c.fail(op, err)
	}
	return nil
}

func (c *Conn) writeFile(ctx context.Context, dst string, r io.Reader, mode fs.FileMode) (err error) {
	cl, err := c.sftpClient(ctx)
	if err != nil {
		return err
	}
	var rnd [8]byte
	rand.Read(rnd[:])
	tmp := path.Join(path.Dir(dst), "."+path.Base(dst)+".fleet-tmp-"+hex.EncodeToString(rnd[:]))
	f, err := cl.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL)
	if err != nil {
		return err
	}
	// Closing the file (and so failing the copy) is how ctx cancels a
	// transfer in progress.
	stop := context.AfterFunc(ctx, func() { f.Close() })
	defer func() {
		stop()
		if err != nil {
			f.Close()
			cl.Remove(tmp)
			if ctx.Err() != nil {
				err = ctx.Err()
			}
		}
	}()
	if err := f.Chmod(mode); err != nil {
		return err
	}
	if _, err := f.ReadFrom(r); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if _, ok := cl.HasExtension("posix-rename@openssh.com"); ok {
		return cl.PosixRename(tmp, dst)
	}
	return cl.Rename(tmp, dst)
}

// ReadFile returns the content of path on the host, read as the login user.
// A missing file is an error that satisfies errors.Is(err, fs.ErrNotExist).
func (c *Conn) ReadFile(ctx context.Context, p string) ([]byte, error) {
	cl, err := c.sftpClient(ctx)
	if err != nil {
		return nil, c.fail("reading "+p, err)
	}
	f, err := cl.Open(p)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			err = fmt.Errorf("%w", fs.ErrNotExist)
		}
		return nil, c.fail("reading "+p, err)
	}
	defer f.Close()
	stop := context.AfterFunc(ctx, func() { f.Close() })
	defer stop()
	b, err := io.ReadAll(f)
	if err != nil {
		return nil, c.fail("reading "+p, err)
	}
	return b, nil
}

// Mkdir makes one directory on the host, as mkdir(2) does: atomically, so
// of two callers only one succeeds. An existing path is an error that
// satisfies errors.Is(err, fs.ErrExist), which makes a directory a lock.
func (c *Conn) Mkdir(ctx context.Context, p string) error {
	cl, err := c.sftpClient(ctx)
	if err != nil {
		return c.fail("making "+p, err)
	}
	if err := cl.Mkdir(p); err != nil {
		// sftp-server answers a plain failure for an existing path.
		if _, serr := cl.Lstat(p); serr == nil {
			err = fmt.Errorf("%w", fs.ErrExist)
		}
		return c.fail("making "+p, err)
	}
	return nil
}

// MkdirAll makes a directory and the parents it lacks, as mkdir -p does.
func (c *Conn) MkdirAll(ctx context.Context, p string) error {
	cl, err := c.sftpClient(ctx)
	if err != nil {
		return c.fail("making "+p, err)
	}
	if err := cl.MkdirAll(p); err != nil {
		return c.fail("making "+p, err)
	}
	return nil
}

// ReadDir lists the names in a directory on the host, sorted. A missing
// directory is an error that satisfies errors.Is(err, fs.ErrNotExist).
func (c *Conn) ReadDir(ctx context.Context, p string) ([]string, error) {
	cl, err := c.sftpClient(ctx)
	if err != nil {
		return nil, c.fail("listing "+p, err)
	}
	infos, err := cl.ReadDir(p)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			err = fmt.Errorf("%w", fs.ErrNotExist)
		}
		return nil, c.fail("listing "+p, err)
	}
	names := make([]string, len(infos))
	for i, fi := range infos {
		names[i] = fi.Name()
	}
	sort.Strings(names)
	return names, nil
}

// RemoveAll removes a path and everything under it, as rm -rf does; a
// missing path is no error.
func (c *Conn) RemoveAll(ctx context.Context, p string) error {
	cl, err := c.sftpClient(ctx)
	if err != nil {
		return c.fail("removing "+p, err)
	}
	if err := cl.RemoveAll(p); err != nil && !errors.Is(err, os.ErrNotExist) {
		return c.fail("removing "+p, err)
	}
	return nil
}
