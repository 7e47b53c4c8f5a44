package executor

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"sync"

	"github.com/pkg/sftp"
)

// defaultDockerRoot is where the engine keeps its data unless configured
// otherwise; the free space reported is that of its filesystem, or of /
// on a host without it.
const defaultDockerRoot = "/var/lib/docker"

// The host's figures come from its own files rather than from the engine's
// /info, which makes the engine run runc and docker-init on every call.
const (
	meminfoFile = "/proc/meminfo"
	cpusFile    = "/sys/devices/system/cpu/online"
)

type figuresResult struct {
	cpus                   int
	memTotal, memAvailable int64
	diskFree               int64
	err                    error
}

// figures reads the host's CPUs, memory and free disk space from its own
// files, over whichever way the connection reaches them.
func (c *Conn) figures(ctx context.Context) figuresResult {
	f, err := c.files(ctx)
	if err != nil {
		if ctx.Err() != nil || c.dead() {
			return figuresResult{err: err}
		}
		// SFTP failed to start for some other reason: a shell still can.
		return shellFiles{c: c}.figures(ctx)
	}
	return f.figures(ctx)
}

// DiskFree is the space free for the engine on the host: on the filesystem
// of /var/lib/docker (of / on a host without it), in bytes.
func (c *Conn) DiskFree(ctx context.Context) (int64, error) {
	r := c.figures(ctx)
	if r.err != nil {
		return 0, c.fail("reading its free disk space", r.err)
	}
	return r.diskFree, nil
}

// figures over SFTP starts no process on the host: two file reads and a
// statvfs@openssh.com request.
func (s sftpFiles) figures(ctx context.Context) figuresResult {
	read := func(name string) ([]byte, error) {
		b, err := s.readFile(ctx, name)
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", name, err)
		}
		return b, nil
	}
	// The three at once: each is a few requests that wait on one another,
	// and the state of the host waits for the longest.
	var r figuresResult
	var memErr, cpuErr, diskErr error
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		meminfo, err := read(meminfoFile)
		if err == nil {
			r.memTotal, r.memAvailable, err = parseMeminfo(meminfo)
		}
		memErr = err
	}()
	go func() {
		defer wg.Done()
		online, err := read(cpusFile)
		if err == nil {
			r.cpus, err = countCPUs(string(online))
		}
		cpuErr = err
	}()
	if r.diskFree, diskErr = s.diskFree(ctx, defaultDockerRoot); diskErr != nil {
		r.diskFree, diskErr = s.diskFree(ctx, "/")
	}
	wg.Wait()
	if err := firstErr(memErr, cpuErr, diskErr); err != nil {
		return figuresResult{err: err}
	}
	return r
}

// firstErr is the first of errs that is not nil.
func firstErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// diskFree is the space available to unprivileged writers on the
// filesystem of path.
func (s sftpFiles) diskFree(ctx context.Context, path string) (int64, error) {
	var free int64
	err := s.do(ctx, func(cl *sftp.Client) error {
		if _, ok := cl.HasExtension("statvfs@openssh.com"); !ok {
			return fmt.Errorf("the host's SFTP server cannot tell free disk space (no statvfs@openssh.com)")
		}
		vfs, err := cl.StatVFS(path)
		if err != nil {
			return fmt.Errorf("free space of %s: %w", path, err)
		}
		free = int64(vfs.Bavail * vfs.Frsize)
		return nil
	})
	return free, err
}

// figuresPreamble prints the host's memory (kB), online CPUs and the
// available blocks and block size of the engine's filesystem as one line
// of JSON, then becomes the command given as its arguments. It carries no
// value from outside, and runs no program but stat.
const figuresPreamble = `total=0 avail=0 cpus=
while read -r k v _; do
  case $k in MemTotal:) total=$v ;; MemAvailable:) avail=$v ;; esac
done < ` + meminfoFile + `
read -r cpus < ` + cpusFile + `
disk=$(stat -f -c '%a,%S' ` + defaultDockerRoot + ` 2>/dev/null || stat -f -c '%a,%S' /)
printf '{"mem_total_kb":%s,"mem_available_kb":%s,"cpus":"%s","disk":[%s]}\n' "$total" "$avail" "$cpus" "$disk"
exec "$@"`

// parseFigures reads the line figuresPreamble printed.
func parseFigures(line []byte) figuresResult {
	var p struct {
		MemTotalKB     int64   `json:"mem_total_kb"`
		MemAvailableKB int64   `json:"mem_available_kb"`
		CPUs           string  `json:"cpus"`
		Disk           []int64 `json:"disk"`
	}
	if err := json.Unmarshal(line, &p); err != nil || len(p.Disk) != 2 {
		return figuresResult{err: fmt.Errorf("reading the host's memory and disk figures from %q: %v", line, err)}
	}
	cpus, err := countCPUs(p.CPUs)
	if err != nil {
		return figuresResult{err: err}
	}
	return figuresResult{cpus: cpus, memTotal: p.MemTotalKB * 1024, memAvailable: p.MemAvailableKB * 1024, diskFree: p.Disk[0] * p.Disk[1]}
}

// figures through the shell start one process, which prints them all.
func (s shellFiles) figures(ctx context.Context) figuresResult {
	out, err := s.c.Output(ctx, "sh", "-c", figuresPreamble, "fleet-figures", "true")
	if err != nil {
		return figuresResult{err: err}
	}
	return parseFigures(out)
}

// parseMeminfo finds MemTotal and MemAvailable in /proc/meminfo's
// "Key: value kB" lines.
func parseMeminfo(meminfo []byte) (total, available int64, err error) {
	found := 0
	sc := bufio.NewScanner(bytes.NewReader(meminfo))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 || (f[0] != "MemTotal:" && f[0] != "MemAvailable:") {
			continue
		}
		kb, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("%s %q in %s: %w", f[0], f[1], meminfoFile, err)
		}
		if f[0] == "MemTotal:" {
			total = kb * 1024
		} else {
			available = kb * 1024
		}
		found++
	}
	if found != 2 {
		return 0, 0, fmt.Errorf("no MemTotal and MemAvailable in %s", meminfoFile)
	}
	return total, available, nil
}

// countCPUs counts the CPUs of a kernel CPU list such as "0-3,8,10-11".
func countCPUs(list string) (int, error) {
	n := 0
	for _, part := range strings.Split(strings.TrimSpace(list), ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.Atoi(lo)
		b := a
		if err == nil && isRange {
			b, err = strconv.Atoi(hi)
		}
		if err != nil || b < a {
			return 0, fmt.Errorf("the host's CPU list %q in %s makes no sense", list, cpusFile)
		}
		n += b - a + 1
	}
	return n, nil
}
