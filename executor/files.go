package executor

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"io/fs"
	"path"
	"time"
)

// files is how a connection reaches the host's files: the one thing about
// them that varies from host to host. sshd's SFTP subsystem is the way
// where it is offered ([sftpFiles]): it starts no process per operation.
// Hardened hosts disable it, and there every operation is a short POSIX
// shell script in an exec session ([shellFiles]), its paths passed as
// quoted arguments. Both keep the same contract, which one test suite
// checks against both:
//
//   - writeFile replaces a file atomically, its mode set before any byte;
//   - createFile makes a file that must not exist yet, whole or not at all:
//     of two callers only one succeeds, and no reader ever sees it partly
//     written;
//   - touch leaves an empty file, made with the host's default mode where
//     there was none: a marker whose name is all it says;
//   - a missing path is an error that satisfies errors.Is(err,
//     fs.ErrNotExist), and an existing one, where it must not exist,
//     fs.ErrExist;
//   - every operation gives up when its context ends, whatever the host
//     does;
//   - times are the host's, as its file system stamps files, to the second.
type files interface {
	// transport names the way, for -v and for errors.
	transport() string
	writeFile(ctx context.Context, dst string, data []byte, mode fs.FileMode) error
	createFile(ctx context.Context, dst string, data []byte, mode fs.FileMode) error
	touch(ctx context.Context, p string) error
	readFile(ctx context.Context, p string) ([]byte, error)
	stat(ctx context.Context, p string) (FileInfo, error)
	mkdir(ctx context.Context, p string) error
	mkdirAll(ctx context.Context, p string) error
	readDir(ctx context.Context, p string) ([]string, error)
	remove(ctx context.Context, p string) error
	removeAll(ctx context.Context, p string) error
	// hostTime makes and removes a file in dir, and returns the time the
	// host stamped it with.
	hostTime(ctx context.Context, dir string) (time.Time, error)
	figures(ctx context.Context) figuresResult
}

// Transports, as [Conn.FileTransport] names them.
const (
	TransportSFTP = "sftp"
	TransportExec = "exec"
)

// FileInfo describes a file on a host.
type FileInfo struct {
	Size int64
	// ModTime is when the file's content was last written, by the host's
	// clock, to the second.
	ModTime time.Time
	Dir     bool
}

// errNoSFTP is the refusal of a host whose sshd offers no SFTP subsystem.
var errNoSFTP = errors.New("the host's sshd offers no SFTP subsystem")

// files returns the connection's way to the host's files, found on first
// use: SFTP when sshd starts it, exec sessions when it refuses to. The
// answer holds for the life of the connection.
func (c *Conn) files(ctx context.Context) (files, error) {
	select {
	case c.filesSem <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-c.done:
		return nil, c.err()
	}
	defer func() { <-c.filesSem }()
	if c.fsys != nil {
		return c.fsys, nil
	}
	_, err := c.sftpSession(ctx)
	switch {
	case err == nil:
		c.fsys = sftpFiles{c}
		c.logf("files over SFTP")
	case errors.Is(err, errNoSFTP):
		c.fsys = shellFiles{c: c}
		c.logf("files through exec sessions (%v)", err)
	default:
		return nil, err
	}
	return c.fsys, nil
}

// FileTransport says how the host's files are reached: [TransportSFTP],
// or [TransportExec] on a host whose sshd offers no SFTP subsystem.
func (c *Conn) FileTransport(ctx context.Context) (string, error) {
	f, err := c.files(ctx)
	if err != nil {
		return "", c.fail("reaching its files", err)
	}
	return f.transport(), nil
}

// fileOp runs op on the connection's files, and says which host and what
// was being done when it fails.
func fileOp[T any](ctx context.Context, c *Conn, what string, op func(files) (T, error)) (T, error) {
	var zero T
	f, err := c.files(ctx)
	if err != nil {
		return zero, c.fail(what, err)
	}
	v, err := op(f)
	if err != nil {
		if dead := c.err(); dead != nil {
			err = dead
		}
		return zero, c.fail(what, err)
	}
	return v, nil
}

// WriteFile writes the content of r to path on the host, as the login user,
// with the given mode, atomically: other readers see the old file or the
// whole new one, never a part, and a failure leaves no trace. The data
// travels inside the SSH connection (SFTP, or the standard input of an
// exec session), never on a command line, so it is the way for secrets
// and env files. r is read whole before anything is written.
func (c *Conn) WriteFile(ctx context.Context, dst string, r io.Reader, mode fs.FileMode) error {
	_, err := fileOp(ctx, c, "writing "+dst, func(f files) (struct{}, error) {
		data, err := io.ReadAll(r)
		if err != nil {
			return struct{}{}, err
		}
		return struct{}{}, f.writeFile(ctx, dst, data, mode)
	})
	return err
}

// CreateFile makes a file at path on the host that must not exist yet,
// with the content of r and the given mode: of two callers only one
// succeeds, the other gets an error that satisfies errors.Is(err,
// fs.ErrExist). Readers see no file or the whole of it, never a part. It
// is written under a temporary name, then linked to path, which link(2)
// does only where nothing is.
func (c *Conn) CreateFile(ctx context.Context, dst string, r io.Reader, mode fs.FileMode) error {
	_, err := fileOp(ctx, c, "creating "+dst, func(f files) (struct{}, error) {
		data, err := io.ReadAll(r)
		if err != nil {
			return struct{}{}, err
		}
		return struct{}{}, f.createFile(ctx, dst, data, mode)
	})
	return err
}

// Touch leaves an empty file at path on the host: made where there was
// none (with the mode the host gives new files), emptied where there was.
// It costs two requests where WriteFile costs five, for a file whose name
// is all it says. A missing directory is an error that satisfies
// errors.Is(err, fs.ErrNotExist).
func (c *Conn) Touch(ctx context.Context, p string) error {
	_, err := fileOp(ctx, c, "making "+p, func(f files) (struct{}, error) { return struct{}{}, f.touch(ctx, p) })
	return err
}

// ReadFile returns the content of path on the host, read as the login user.
// A missing file is an error that satisfies errors.Is(err, fs.ErrNotExist).
func (c *Conn) ReadFile(ctx context.Context, p string) ([]byte, error) {
	return fileOp(ctx, c, "reading "+p, func(f files) ([]byte, error) { return f.readFile(ctx, p) })
}

// Stat describes path on the host, following symbolic links. A missing
// path is an error that satisfies errors.Is(err, fs.ErrNotExist).
func (c *Conn) Stat(ctx context.Context, p string) (FileInfo, error) {
	return fileOp(ctx, c, "looking at "+p, func(f files) (FileInfo, error) { return f.stat(ctx, p) })
}

// Mkdir makes one directory on the host, as mkdir(2) does: atomically, so
// of two callers only one succeeds. An existing path is an error that
// satisfies errors.Is(err, fs.ErrExist).
func (c *Conn) Mkdir(ctx context.Context, p string) error {
	_, err := fileOp(ctx, c, "making "+p, func(f files) (struct{}, error) { return struct{}{}, f.mkdir(ctx, p) })
	return err
}

// MkdirAll makes a directory and the parents it lacks, as mkdir -p does.
func (c *Conn) MkdirAll(ctx context.Context, p string) error {
	_, err := fileOp(ctx, c, "making "+p, func(f files) (struct{}, error) { return struct{}{}, f.mkdirAll(ctx, p) })
	return err
}

// ReadDir lists the names in a directory on the host, sorted. A missing
// directory is an error that satisfies errors.Is(err, fs.ErrNotExist).
func (c *Conn) ReadDir(ctx context.Context, p string) ([]string, error) {
	return fileOp(ctx, c, "listing "+p, func(f files) ([]string, error) { return f.readDir(ctx, p) })
}

// Remove removes one file. A missing file is an error that satisfies
// errors.Is(err, fs.ErrNotExist).
func (c *Conn) Remove(ctx context.Context, p string) error {
	_, err := fileOp(ctx, c, "removing "+p, func(f files) (struct{}, error) { return struct{}{}, f.remove(ctx, p) })
	return err
}

// RemoveAll removes a path and everything under it, as rm -rf does; a
// missing path is no error.
func (c *Conn) RemoveAll(ctx context.Context, p string) error {
	_, err := fileOp(ctx, c, "removing "+p, func(f files) (struct{}, error) { return struct{}{}, f.removeAll(ctx, p) })
	return err
}

// HostTime returns the host's current time as its file system stamps the
// files in dir, to the second: the clock to compare the [FileInfo.ModTime]
// of those files with, whatever this machine's clock says. It writes and
// removes a file in dir.
func (c *Conn) HostTime(ctx context.Context, dir string) (time.Time, error) {
	return fileOp(ctx, c, "reading the clock of "+dir, func(f files) (time.Time, error) { return f.hostTime(ctx, dir) })
}

// tempName is a fresh name next to p for a file being written.
func tempName(p string) string {
	var rnd [8]byte
	rand.Read(rnd[:])
	return path.Join(path.Dir(p), "."+path.Base(p)+".fleet-tmp-"+hex.EncodeToString(rnd[:]))
}
