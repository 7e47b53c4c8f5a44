package executor

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"
)

// shellFiles reaches a host's files through commands in exec sessions, for
// hosts whose sshd offers no SFTP subsystem. Each operation is one short
// POSIX shell script, a constant: every path reaches it as a quoted
// argument ("$1"), never as shell text, and file content travels on its
// standard input. Scripts say "missing" and "exists" by their exit status.
//
// With privileged set, each script runs through `sudo -n` when the target
// logs in as another user with sudo (see [Conn.AsRoot]).
type shellFiles struct {
	c          *Conn
	privileged bool
}

func (shellFiles) transport() string { return TransportExec }

// The exit statuses of the scripts that mean ENOENT and EEXIST.
const (
	exitNotExist = 66
	exitExist    = 17
)

// script runs one of the scripts below with args, and turns its exit
// status into fs.ErrNotExist or fs.ErrExist.
func (s shellFiles) script(ctx context.Context, name, script string, stdin []byte, args ...string) ([]byte, error) {
	var out bytes.Buffer
	cmd := Cmd{Args: append([]string{"sh", "-c", script, name}, args...), Stdout: &out, Privileged: s.privileged}
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	err := s.c.Run(ctx, cmd)
	var exit *ExitError
	if errors.As(err, &exit) {
		switch exit.Status {
		case exitNotExist:
			return nil, fmt.Errorf("%w", fs.ErrNotExist)
		case exitExist:
			return nil, fmt.Errorf("%w", fs.ErrExist)
		}
		if saysDiskFull(exit.Stderr) {
			return nil, &DiskFullError{Detail: exit.Stderr, Err: exit}
		}
		return nil, fmt.Errorf("%s: %w", name, exit)
	}
	if err != nil {
		var he *HostError
		if errors.As(err, &he) {
			// Conn's own operations say which host; the caller says what.
			err = he.Err
		}
		return nil, err
	}
	return out.Bytes(), nil
}

// arg makes a path safe to hand a command as an operand: one that begins
// with "-" would be read as an option.
func arg(p string) string {
	if strings.HasPrefix(p, "-") {
		return "./" + p
	}
	return p
}

// newFile is the start of the scripts that write a file: $1 is created
// exclusively, private, made mode $3, and filled from standard input,
// which must bring exactly $4 bytes. A shorter file (a transfer cut
// short) is removed, as is the file on any failure.
const newFile = `umask 077
set -C
if ! true > "$1"; then exit 1; fi
set +C
if ! { chmod "$3" "$1" && cat >> "$1" && n=$(wc -c < "$1") && [ "$n" -eq "$4" ]; }; then
	rm -f "$1"
	exit 1
fi
`

// writeScript renames the new file $1 over $2.
const writeScript = newFile + `if ! mv -f "$1" "$2"; then
	rm -f "$1"
	exit 1
fi`

// createScript links the new file $1 to $2, which link(2) does only where
// nothing is.
const createScript = newFile + `if [ -e "$2" ] || [ -L "$2" ]; then
	rm -f "$1"
	exit 17
fi
if err=$(ln "$1" "$2" 2>&1); then
	rm -f "$1"
	exit 0
fi
rm -f "$1"
if [ -e "$2" ] || [ -L "$2" ]; then exit 17; fi
printf '%s\n' "$err" >&2
exit 1`

// newFile runs script, one that begins with newFile, to make dst.
func (s shellFiles) newFile(ctx context.Context, name, script, dst string, data []byte, mode fs.FileMode) error {
	tmp := arg(tempName(dst))
	_, err := s.script(ctx, name, script, data, tmp, arg(dst), strconv.FormatUint(uint64(mode.Perm()), 8), strconv.Itoa(len(data)))
	if ctx.Err() != nil {
		// The script was killed, maybe before it could remove its file.
		go func() {
			ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
			defer cancel()
			s.c.Run(ctx, Cmd{Args: []string{"rm", "-f", tmp}, Privileged: s.privileged})
		}()
	}
	return err
}

func (s shellFiles) writeFile(ctx context.Context, dst string, data []byte, mode fs.FileMode) error {
	return s.newFile(ctx, "fleet-write", writeScript, dst, data, mode)
}

func (s shellFiles) createFile(ctx context.Context, dst string, data []byte, mode fs.FileMode) error {
	return s.newFile(ctx, "fleet-create", createScript, dst, data, mode)
}

// touchScript empties or makes $1; a missing directory is exit 66. Not
// ":", whose failed redirection would end the shell there.
const touchScript = `true > "$1" && exit 0
case $1 in */*) [ -d "${1%/*}" ] || exit 66 ;; esac
exit 1`

func (s shellFiles) touch(ctx context.Context, p string) error {
	_, err := s.script(ctx, "fleet-touch", touchScript, nil, arg(p))
	return err
}

const readScript = `cat "$1" && exit 0
[ -e "$1" ] || exit 66
exit 1`

func (s shellFiles) readFile(ctx context.Context, p string) ([]byte, error) {
	return s.script(ctx, "fleet-read", readScript, nil, arg(p))
}

// statScript prints size, modification time (seconds) and raw mode (hex).
const statScript = `stat -L -c '%s %Y %f' "$1" && exit 0
[ -e "$1" ] || exit 66
exit 1`

func (s shellFiles) stat(ctx context.Context, p string) (FileInfo, error) {
	out, err := s.script(ctx, "fleet-stat", statScript, nil, arg(p))
	if err != nil {
		return FileInfo{}, err
	}
	return parseStat(out)
}

// parseStat reads the line of `stat -c '%s %Y %f'`.
func parseStat(out []byte) (FileInfo, error) {
	f := strings.Fields(string(out))
	if len(f) != 3 {
		return FileInfo{}, fmt.Errorf("stat said %q", out)
	}
	size, err1 := strconv.ParseInt(f[0], 10, 64)
	mtime, err2 := strconv.ParseInt(f[1], 10, 64)
	mode, err3 := strconv.ParseUint(f[2], 16, 32)
	if err := errors.Join(err1, err2, err3); err != nil {
		return FileInfo{}, fmt.Errorf("stat said %q: %w", out, err)
	}
	const sIFMT, sIFDIR = 0o170000, 0o040000
	return FileInfo{Size: size, ModTime: time.Unix(mtime, 0), Dir: mode&sIFMT == sIFDIR}, nil
}

const mkdirScript = `mkdir "$1" && exit 0
if [ -e "$1" ] || [ -L "$1" ]; then exit 17; fi
exit 1`

func (s shellFiles) mkdir(ctx context.Context, p string) error {
	_, err := s.script(ctx, "fleet-mkdir", mkdirScript, nil, arg(p))
	return err
}

func (s shellFiles) mkdirAll(ctx context.Context, p string) error {
	_, err := s.script(ctx, "fleet-mkdir", `mkdir -p "$1"`, nil, arg(p))
	return err
}

// readDirScript prints every name in $1, hidden ones too, each ended by a
// NUL byte: no name can hold one.
const readDirScript = `unset CDPATH
if ! cd "$1"; then
	[ -e "$1" ] || exit 66
	exit 1
fi
for f in .[!.]* ..?* *; do
	if [ -e "$f" ] || [ -L "$f" ]; then printf '%s\0' "$f"; fi
done`

func (s shellFiles) readDir(ctx context.Context, p string) ([]string, error) {
	out, err := s.script(ctx, "fleet-list", readDirScript, nil, arg(p))
	if err != nil {
		return nil, err
	}
	var names []string
	for _, name := range strings.Split(string(out), "\x00") {
		if name != "" {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	return names, nil
}

const removeScript = `rm "$1" && exit 0
[ -e "$1" ] || [ -L "$1" ] || exit 66
exit 1`

func (s shellFiles) remove(ctx context.Context, p string) error {
	_, err := s.script(ctx, "fleet-remove", removeScript, nil, arg(p))
	return err
}

func (s shellFiles) removeAll(ctx context.Context, p string) error {
	_, err := s.script(ctx, "fleet-remove", `rm -rf "$1"`, nil, arg(p))
	return err
}

// clockScript creates the empty file $1 and prints when it was written.
const clockScript = `umask 077
set -C
if ! true > "$1"; then
	[ -e "$(dirname "$1")" ] || exit 66
	exit 1
fi
stat -c %Y "$1"
status=$?
rm -f "$1"
exit $status`

func (s shellFiles) hostTime(ctx context.Context, dir string) (time.Time, error) {
	out, err := s.script(ctx, "fleet-clock", clockScript, nil, arg(tempName(path.Join(dir, "clock"))))
	if err != nil {
		return time.Time{}, err
	}
	sec, err := strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("stat said %q", out)
	}
	return time.Unix(sec, 0), nil
}
