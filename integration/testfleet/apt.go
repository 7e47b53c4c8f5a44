package testfleet

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
)

// aptInstall installs the Debian packages that missing names, if any.
// scripts/test brings up two test fleets at once, and apt-get refuses to
// run beside another apt-get ("Could not get lock"), so installs take
// turns under a lock file; missing is asked again once the lock is held,
// since the other fleet may have installed the package meanwhile.
func aptInstall(ctx context.Context, log io.Writer, missing func() []string) error {
	if len(missing()) == 0 {
		return nil
	}
	if _, err := exec.LookPath("apt-get"); err != nil {
		return nil // the caller names what is still missing
	}
	lock, err := os.OpenFile(filepath.Join(os.TempDir(), "fleet-testfleet-apt.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return err
	}
	defer lock.Close()
	// flock has no deadline of its own; an install that hangs is ended by
	// ctx in the other process, which drops the lock with its file.
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return fmt.Errorf("waiting for the other test fleet's apt-get: %w", err)
	}
	pkgs := missing()
	if len(pkgs) == 0 {
		return nil
	}
	fmt.Fprintf(log, "testfleet: installing %s\n", strings.Join(pkgs, " "))
	if _, err := run(ctx, "apt-get", "update", "-qq"); err != nil {
		return err
	}
	out, err := run(ctx, "env", append([]string{"DEBIAN_FRONTEND=noninteractive", "apt-get", "install", "-y", "-qq", "--no-install-recommends"}, pkgs...)...)
	if err != nil {
		return fmt.Errorf("apt-get install %s: %w: %s", strings.Join(pkgs, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}
