package testfleet

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
)

// diskDir is where a host with a DiskSize has its disk mounted.
func (h *Host) diskDir() string { return filepath.Join(h.Dir, "disk") }

// mountDisk gives the host a filesystem of DiskSize bytes that holds its
// /var/lib/docker and /var/lib/fleet: a tmpfs mounted in this machine's
// mount namespace, so that the harness sees the same files as the host,
// with the host's docker and fleet directories linked into it. purge
// unmounts it with the rest of the fleet.
func (h *Host) mountDisk(ctx context.Context) error {
	dir := h.diskDir()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if _, err := run(ctx, "mount", "-t", "tmpfs", "-o", "size="+strconv.FormatInt(h.DiskSize, 10)+",mode=0755", "fleet-disk-"+h.Name, dir); err != nil {
		return fmt.Errorf("disk of %s: %w", h.Name, err)
	}
	for _, d := range []string{"docker", "fleet"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			return err
		}
		if err := os.Symlink(filepath.Join("disk", d), filepath.Join(h.Dir, d)); err != nil {
			return err
		}
	}
	return nil
}

// FillDisk fills the host's disk (see Options.DiskSize) until only leave
// bytes are free, and returns what frees it again. With leave 0 every
// write to /var/lib/docker or /var/lib/fleet fails with "no space left on
// device", as on a host whose disk is full.
func (h *Host) FillDisk(leave int64) (free func() error, err error) {
	if h.DiskSize == 0 {
		return nil, fmt.Errorf("host %s has no disk of its own to fill: give it one with Options.DiskSize", h.Name)
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs(h.diskDir(), &st); err != nil {
		return nil, err
	}
	size := int64(st.Bavail)*st.Bsize - leave
	if size <= 0 {
		return nil, fmt.Errorf("disk of %s has only %d bytes free, fewer than the %d to leave", h.Name, int64(st.Bavail)*st.Bsize, leave)
	}
	path := filepath.Join(h.diskDir(), "filler")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return nil, err
	}
	free = func() error { return os.Remove(path) }
	err = syscall.Fallocate(int(f.Fd()), 0, 0, size)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		free()
		return nil, fmt.Errorf("filling the disk of %s: %w", h.Name, err)
	}
	return free, nil
}
