package main

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// reconcileLock is held by a fleet reconcile for its whole run, on the
// machine it runs on, before it contacts any host: a second reconcile of
// the project on the same inventory started there meanwhile (two timers, a timer and someone
// trying it by hand) exits 4 at once, naming the first, instead of after
// reading every host. The deploy lock on the hosts stays what excludes
// runs across machines, and applies.
//
// It is an flock(2) on a file in the user's runtime directory (or the
// temporary one): the kernel lets go of it when the process ends, however
// it ends.
func reconcileLock(project, inventory string) (release func(), err error) {
	dir := os.Getenv("XDG_RUNTIME_DIR")
	if dir == "" {
		dir = os.TempDir()
	}
	if abs, err := filepath.Abs(inventory); err == nil {
		inventory = abs
	}
	sum := sha256.Sum256([]byte(project + "\x00" + inventory))
	path := filepath.Join(dir, fmt.Sprintf("fleet-reconcile-%d-%s.lock", os.Getuid(), hex.EncodeToString(sum[:8])))
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return nil, fmt.Errorf("the reconcile lock %s: %w", path, err)
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil || int(st.Uid) != os.Getuid() {
		f.Close()
		return nil, fmt.Errorf("the reconcile lock %s belongs to another user: remove it", path)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		defer f.Close()
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("the reconcile lock %s: %w", path, err)
		}
		holder := "another fleet reconcile"
		if b, err := os.ReadFile(path); err == nil {
			if pid, since, ok := strings.Cut(strings.TrimSpace(string(b)), " "); ok {
				if _, err := strconv.Atoi(pid); err == nil {
					holder += fmt.Sprintf(" (pid %s, since %s)", pid, since)
				}
			}
		}
		return nil, silentError{4, fmt.Sprintf("the deploy lock of %s is held by %s on this machine: this run changed nothing", project, holder)}
	}
	// Who holds it, for the next one to say.
	if err := f.Truncate(0); err == nil {
		fmt.Fprintf(f, "%d %s\n", os.Getpid(), time.Now().Format("15:04:05"))
	}
	return func() { f.Close() }, nil
}
