package executor

import (
	"context"
	"io"
	"io/fs"
	"net"
)

// Root reaches what on the host is root's: the files and the Unix socket
// of the proxy, in its volume. A target that logs in as root, or as a user
// without sudo, reaches them as the login user; one that logs in as
// another user with sudo set reaches them through `sudo -n`, files by the
// exec-session scripts (see [shellFiles]) and a Unix socket through
// `docker system dial-stdio`, which relays its standard input and output
// to the socket that DOCKER_HOST names, whatever speaks there: every
// host that fleet deploys to has the docker CLI.
type Root struct{ c *Conn }

// AsRoot returns the connection's way to what is root's on the host.
func (c *Conn) AsRoot() Root { return Root{c} }

func (r Root) viaSudo() bool { return r.c.target.sudo() }

// DialContext is [Conn.DialContext], with a Unix socket reached as root.
func (r Root) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	if network != "unix" || !r.viaSudo() {
		return r.c.DialContext(ctx, network, addr)
	}
	st, err := r.c.openStream(ctx, Cmd{Args: []string{"env", "DOCKER_HOST=unix://" + addr, "docker", "system", "dial-stdio"}, Privileged: true})
	if err != nil {
		if dead := r.c.err(); dead != nil {
			err = dead
		}
		return nil, r.c.fail("dialing "+addr+" through sudo", err)
	}
	return st, nil
}

// ReadFile is [Conn.ReadFile], as root.
func (r Root) ReadFile(ctx context.Context, p string) ([]byte, error) {
	if !r.viaSudo() {
		return r.c.ReadFile(ctx, p)
	}
	return r.op(ctx, "reading "+p, func(f shellFiles) ([]byte, error) { return f.readFile(ctx, p) })
}

// WriteFile is [Conn.WriteFile], as root.
func (r Root) WriteFile(ctx context.Context, p string, rd io.Reader, mode fs.FileMode) error {
	if !r.viaSudo() {
		return r.c.WriteFile(ctx, p, rd, mode)
	}
	data, err := io.ReadAll(rd)
	if err != nil {
		return err
	}
	_, err = r.op(ctx, "writing "+p, func(f shellFiles) ([]byte, error) { return nil, f.writeFile(ctx, p, data, mode) })
	return err
}

// MkdirAll is [Conn.MkdirAll], as root.
func (r Root) MkdirAll(ctx context.Context, p string) error {
	if !r.viaSudo() {
		return r.c.MkdirAll(ctx, p)
	}
	_, err := r.op(ctx, "making "+p, func(f shellFiles) ([]byte, error) { return nil, f.mkdirAll(ctx, p) })
	return err
}

// op runs a privileged file operation and says which host and what was
// being done when it fails.
func (r Root) op(ctx context.Context, what string, fn func(shellFiles) ([]byte, error)) ([]byte, error) {
	out, err := fn(shellFiles{c: r.c, privileged: true})
	if err != nil {
		if dead := r.c.err(); dead != nil {
			err = dead
		}
		return nil, r.c.fail(what, err)
	}
	return out, nil
}
