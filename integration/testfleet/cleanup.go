package testfleet

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// cgroupRoot is where the harness tracks processes: the unified hierarchy
// on a cgroup v2 machine, the pids controller's on a v1 or hybrid one.
// Every process of a host, containers included, lives below it, so one walk
// finds all of them, whoever their parent was.
func cgroupRoot() string {
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		return "/sys/fs/cgroup"
	}
	return "/sys/fs/cgroup/pids"
}

func cgroupProcs(cg string) string { return filepath.Join(cgroupRoot(), cg, "cgroup.procs") }

func cgroupCreate(cg string) error {
	if err := os.MkdirAll(filepath.Join(cgroupRoot(), cg), 0o755); err != nil {
		return fmt.Errorf("cgroup for the fleet's processes: %w", err)
	}
	return nil
}

// cgroupPids lists every process in the cgroup tree below dir.
func cgroupPids(dir string) []int {
	var pids []int
	filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || d.Name() != "cgroup.procs" {
			return nil
		}
		b, _ := os.ReadFile(path)
		for _, f := range strings.Fields(string(b)) {
			if pid, err := strconv.Atoi(f); err == nil {
				pids = append(pids, pid)
			}
		}
		return nil
	})
	return pids
}

// purge removes every trace of the fleet called name, whether it was taken
// down cleanly, crashed half-way up, or is still running: processes,
// network namespaces, links, the iptables rule, cgroups and files. It relies
// on names alone, never on the state file, which a crash may not have
// written.
func purge(ctx context.Context, stateDir, name string, log io.Writer) error {
	dir := filepath.Join(stateDir, name)
	netnsPrefix := "fleet-" + name + "-"
	linkPrefix := "flt-" + name

	var netns []string
	if out, err := run(ctx, "ip", "netns", "list"); err == nil {
		for _, line := range strings.Split(string(out), "\n") {
			if f := strings.Fields(line); len(f) > 0 && strings.HasPrefix(f[0], netnsPrefix) {
				netns = append(netns, f[0])
			}
		}
	}
	cgDir := filepath.Join(cgroupRoot(), "fleet-testfleet", name)
	_, statErr := os.Stat(dir)
	if len(netns) == 0 && statErr != nil && !exists(cgDir) && !linkExists(ctx, linkPrefix) {
		return nil // nothing to do
	}
	fmt.Fprintf(log, "testfleet: removing fleet %s\n", name)

	// Processes first: once none is left, the hosts' private mounts are gone
	// with their mount namespaces.
	victims := func() []int {
		pids := cgroupPids(cgDir)
		for _, ns := range netns {
			if out, err := run(ctx, "ip", "netns", "pids", ns); err == nil {
				for _, f := range strings.Fields(string(out)) {
					if pid, err := strconv.Atoi(f); err == nil {
						pids = append(pids, pid)
					}
				}
			}
		}
		return pids
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		pids := victims()
		if len(pids) == 0 {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("processes %v of fleet %s survive SIGKILL", pids, name)
		}
		for _, pid := range pids {
			syscall.Kill(pid, syscall.SIGKILL)
		}
		time.Sleep(20 * time.Millisecond)
	}

	var errs []error
	for _, ns := range netns {
		if _, err := run(ctx, "ip", "netns", "del", ns); err != nil {
			errs = append(errs, err)
		}
	}
	if out, err := run(ctx, "ip", "-o", "link", "show"); err == nil {
		var links []string
		for _, line := range strings.Split(string(out), "\n") {
			// "12: flt-itest-h1@if3: <BROADCAST…" — the name ends at '@' or ':'.
			f := strings.Fields(line)
			if len(f) < 2 {
				continue
			}
			l := strings.TrimSuffix(f[1], ":")
			if i := strings.IndexByte(l, '@'); i >= 0 {
				l = l[:i]
			}
			if l == linkPrefix || strings.HasPrefix(l, linkPrefix+"-") {
				links = append(links, l)
			}
		}
		// Host links before the bridge they are enslaved to.
		sort.Sort(sort.Reverse(sort.StringSlice(links)))
		for _, l := range links {
			if _, err := run(ctx, "ip", "link", "del", l); err != nil && linkExists(ctx, l) {
				errs = append(errs, err)
			}
		}
	}
	for i := 0; i < 10; i++ {
		if _, err := run(ctx, "iptables", forwardRule("-D", linkPrefix)...); err != nil {
			break
		}
	}
	removeDelayRules(ctx, name)
	// Docker made the containers' cgroups in every v1 hierarchy; remove the
	// fleet's subtree wherever it is.
	roots, _ := filepath.Glob("/sys/fs/cgroup/*/fleet-testfleet/" + name)
	if exists(filepath.Join("/sys/fs/cgroup/fleet-testfleet", name)) {
		roots = append(roots, filepath.Join("/sys/fs/cgroup/fleet-testfleet", name))
	}
	for _, r := range roots {
		if err := removeCgroupTree(r); err != nil {
			errs = append(errs, err)
		}
	}
	// The parents are shared with other fleets: remove them only once empty.
	for _, r := range roots {
		syscall.Rmdir(filepath.Dir(r))
	}
	if err := unmountUnder(dir); err != nil {
		errs = append(errs, err)
	}
	if err := os.RemoveAll(dir); err != nil {
		errs = append(errs, err)
	}
	syscall.Rmdir(stateDir)
	return errors.Join(errs...)
}

// removeCgroupTree removes a cgroup directory and its children, deepest
// first: cgroup directories can only be removed empty, with rmdir.
func removeCgroupTree(root string) error {
	var dirs []string
	filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			dirs = append(dirs, path)
		}
		return nil
	})
	var last error
	for i := len(dirs) - 1; i >= 0; i-- {
		if err := syscall.Rmdir(dirs[i]); err != nil && !errors.Is(err, syscall.ENOENT) {
			last = fmt.Errorf("removing cgroup %s: %w", dirs[i], err)
		}
	}
	return last
}

// unmountUnder detaches any mount left below dir in this mount namespace:
// the disks of hosts that have one (Options.DiskSize). Hosts mount
// everything else inside their own namespaces.
func unmountUnder(dir string) error {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return err
	}
	var points []string
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 4 && (f[4] == dir || strings.HasPrefix(f[4], dir+"/")) {
			points = append(points, f[4])
		}
	}
	sort.Sort(sort.Reverse(sort.StringSlice(points)))
	var last error
	for _, p := range points {
		if err := syscall.Unmount(p, syscall.MNT_DETACH); err != nil {
			last = fmt.Errorf("unmounting %s: %w", p, err)
		}
	}
	return last
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

func linkExists(ctx context.Context, name string) bool {
	_, err := run(ctx, "ip", "link", "show", name)
	return err == nil
}
