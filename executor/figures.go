package executor

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// defaultDockerRoot is where the engine keeps its data unless configured
// otherwise; its filesystem's free space is read alongside the engine's
// facts, before the engine has said where its root is.
const defaultDockerRoot = "/var/lib/docker"

type figuresResult struct {
	memAvailable, diskFree int64
	err                    error
}

// figures reads the host's available memory and the free space of the
// engine's filesystem over SFTP, which starts no process on the host: a
// read of /proc/meminfo and a statvfs@openssh.com request. Without SFTP it
// asks a shell.
func (c *Conn) figures(ctx context.Context) figuresResult {
	cl, err := c.sftpClient(ctx)
	if err != nil {
		return c.figuresByShell(ctx)
	}
	f, err := cl.Open("/proc/meminfo")
	if err != nil {
		return figuresResult{err: fmt.Errorf("reading /proc/meminfo: %w", err)}
	}
	// /proc files report a size of 0: read until EOF, never by size.
	var buf bytes.Buffer
	_, err = io.Copy(&buf, struct{ io.Reader }{f})
	f.Close()
	if err != nil {
		return figuresResult{err: fmt.Errorf("reading /proc/meminfo: %w", err)}
	}
	mem, err := memAvailable(buf.Bytes())
	if err != nil {
		return figuresResult{err: err}
	}
	disk, err := c.diskFree(ctx, defaultDockerRoot)
	return figuresResult{memAvailable: mem, diskFree: disk, err: err}
}

// diskFree is the space available to unprivileged writers on the
// filesystem of path.
func (c *Conn) diskFree(ctx context.Context, path string) (int64, error) {
	cl, err := c.sftpClient(ctx)
	if err != nil {
		return 0, err
	}
	if _, ok := cl.HasExtension("statvfs@openssh.com"); !ok {
		return 0, fmt.Errorf("the host's SFTP server cannot tell free disk space (no statvfs@openssh.com)")
	}
	vfs, err := cl.StatVFS(path)
	if err != nil {
		return 0, fmt.Errorf("free space of %s: %w", path, err)
	}
	return int64(vfs.Bavail * vfs.Frsize), nil
}

// parseFigures reads the line figuresPreamble printed.
func parseFigures(line []byte) figuresResult {
	var p struct {
		MemAvailableKB int64   `json:"mem_available_kb"`
		Disk           []int64 `json:"disk"`
	}
	if err := json.Unmarshal(line, &p); err != nil || len(p.Disk) != 2 {
		return figuresResult{err: fmt.Errorf("reading the host's memory and disk figures from %q: %v", line, err)}
	}
	return figuresResult{memAvailable: p.MemAvailableKB * 1024, diskFree: p.Disk[0] * p.Disk[1]}
}

// figuresByShell is figures for a host without SFTP.
func (c *Conn) figuresByShell(ctx context.Context) figuresResult {
	out, err := c.Output(ctx, "sh", "-c", figuresPreamble, "fleet-figures", "true")
	if err != nil {
		return figuresResult{err: err}
	}
	return parseFigures(out)
}

// memAvailable finds MemAvailable in /proc/meminfo's "Key: value kB" lines.
func memAvailable(meminfo []byte) (int64, error) {
	sc := bufio.NewScanner(bytes.NewReader(meminfo))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) >= 2 && f[0] == "MemAvailable:" {
			kb, err := strconv.ParseInt(f[1], 10, 64)
			if err != nil {
				return 0, fmt.Errorf("MemAvailable %q: %w", f[1], err)
			}
			return kb * 1024, nil
		}
	}
	return 0, fmt.Errorf("no MemAvailable in /proc/meminfo")
}
