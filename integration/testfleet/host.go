package testfleet

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Host is one machine of the fleet.
type Host struct {
	Name   string
	Addr   string
	Labels map[string]string
	Dir    string // the host's files: keys, configs, logs, and what it binds over /run, /tmp and /var/lib
	Anchor int    // pid of the process that holds the host's mount and UTS namespaces
	NoSFTP bool   // its sshd offers no SFTP subsystem
	// DiskSize, when not 0, is the size of the filesystem that holds the
	// host's /var/lib/docker and /var/lib/fleet: Dir/disk.
	DiskSize int64

	fleet *Fleet
	delay *delayProxy // while Delay works through a proxy
}

// ready is how long a daemon may take to answer after it starts.
const ready = 60 * time.Second

// Netns is the name of the host's network namespace, for `ip netns`.
func (h *Host) Netns() string { return "fleet-" + h.fleet.Name + "-" + h.Name }

// link is the root-namespace end of the host's veth pair; taking it down
// cuts the host off without touching anything inside the host.
func (h *Host) link() string { return "flt-" + h.fleet.Name + "-" + h.Name }

func (h *Host) cgroup() string { return h.fleet.cgroup() + "/" + h.Name }

func (h *Host) hostKey(typ string) string {
	return filepath.Join(h.Dir, "etc", "ssh_host_"+typ+"_key")
}

func (h *Host) up(ctx context.Context) error {
	if h.DiskSize > 0 {
		if err := h.mountDisk(ctx); err != nil {
			return err
		}
	}
	for _, d := range []string{"run", "tmp", "docker", "fleet", "etc", "log", "root"} {
		if err := os.MkdirAll(filepath.Join(h.Dir, d), 0o755); err != nil {
			return err
		}
	}
	if err := os.Chmod(filepath.Join(h.Dir, "root"), 0o700); err != nil {
		return err
	}
	if err := os.Chmod(filepath.Join(h.Dir, "tmp"), 0o1777); err != nil {
		return err
	}
	for _, t := range []string{"ed25519", "ecdsa", "rsa"} {
		args := []string{"-q", "-t", t, "-N", "", "-C", h.Name, "-f", h.hostKey(t)}
		if t == "rsa" {
			args = append(args, "-b", "2048") // enough for a test host, and quick to make
		}
		if _, err := run(ctx, "ssh-keygen", args...); err != nil {
			return err
		}
	}
	pub, err := os.ReadFile(h.fleet.IdentityFile + ".pub")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(h.Dir, "etc", "authorized_keys"), pub, 0o600); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(h.Dir, "etc", "sshd_config"), []byte(h.sshdConfig()), 0o600); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(h.Dir, "etc", "daemon.json"), h.fleet.daemonJSON(), 0o644); err != nil {
		return err
	}
	for _, s := range [][]string{
		{"ip", "netns", "add", h.Netns()},
		{"ip", "link", "add", h.link(), "type", "veth", "peer", "name", "eth0", "netns", h.Netns()},
		{"ip", "link", "set", h.link(), "master", h.fleet.bridge(), "up"},
		{"ip", "-n", h.Netns(), "addr", "add", h.Addr + "/24", "dev", "eth0"},
		{"ip", "-n", h.Netns(), "link", "set", "lo", "up"},
		{"ip", "-n", h.Netns(), "link", "set", "eth0", "up"},
		{"ip", "-n", h.Netns(), "route", "add", "default", "via", h.fleet.gateway()},
	} {
		if _, err := run(ctx, s[0], s[1:]...); err != nil {
			return err
		}
	}
	for _, cg := range []string{h.cgroup() + "/daemons", h.cgroup() + "/containers"} {
		if err := cgroupCreate(cg); err != nil {
			return err
		}
	}
	if err := h.startAnchor(ctx); err != nil {
		return err
	}
	errs := make(chan error, 2)
	go func() { errs <- h.StartDocker(ctx) }()
	go func() { errs <- h.StartSSHD(ctx) }()
	return errors.Join(<-errs, <-errs)
}

func (h *Host) sshdConfig() string {
	etc := filepath.Join(h.Dir, "etc")
	subsystem := "Subsystem sftp /usr/lib/openssh/sftp-server"
	if h.NoSFTP {
		subsystem = "# No Subsystem sftp: as on hardened hosts."
	}
	return fmt.Sprintf(`# sshd of test host %s
ListenAddress %s:22
HostKey %s/ssh_host_ed25519_key
HostKey %s/ssh_host_ecdsa_key
HostKey %s/ssh_host_rsa_key
PidFile /run/sshd.pid
AuthorizedKeysFile %s/authorized_keys
# The harness's files live outside any home directory.
StrictModes no
UsePAM no
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
MaxStartups 200
MaxSessions 10
AllowTcpForwarding yes
AllowStreamLocalForwarding yes
%s
# Users that Fleet.AddUser adds keep their key at home, which sshd reads as
# that user.
Match User *,!root
	AuthorizedKeysFile .ssh/authorized_keys
`, h.Name, h.Addr, etc, etc, etc, etc, subsystem)
}

// SetSFTP gives the host's sshd the SFTP subsystem, or takes it away, for
// the connections opened from now on: sshd reads its configuration again
// on SIGHUP, and the sessions already open go on as they were.
func (h *Host) SetSFTP(ctx context.Context, on bool) error {
	h.NoSFTP = !on
	if err := os.WriteFile(filepath.Join(h.Dir, "etc", "sshd_config"), []byte(h.sshdConfig()), 0o600); err != nil {
		return err
	}
	if err := h.signalSSHD(syscall.SIGHUP); err != nil {
		return err
	}
	// sshd closes its listener while it starts itself again.
	time.Sleep(100 * time.Millisecond)
	if err := waitFor(ctx, "sshd of "+h.Name, func() error { return sshBanner(ctx, h.Addr+":22") }); err != nil {
		return err
	}
	return h.fleet.save()
}

// startAnchor starts the process that owns the host's namespaces: a private
// mount namespace where the host's own directories cover /run, /tmp,
// /var/lib/docker, /var/lib/fleet and /root, and a UTS namespace with the
// host's name. Daemons are started later by entering it. A home of its own
// keeps root's dotfiles on this machine out of the hosts: a login shell
// there reads no .bashrc of the machine, as on a real host.
func (h *Host) startAnchor(ctx context.Context) error {
	for _, d := range []string{"/var/lib/docker", "/var/lib/fleet"} {
		if err := os.MkdirAll(d, 0o711); err != nil {
			return err
		}
	}
	script := `set -e
echo $$ > "$1"
mount --bind "$2/run" /run
mount --bind "$2/tmp" /tmp
mount --bind "$2/docker" /var/lib/docker
mount --bind "$2/fleet" /var/lib/fleet
mount --bind "$2/root" /root
hostname "$3"
mkdir -p -m 0755 /run/sshd
: > /run/anchor.ready
exec sleep infinity`
	cmd := exec.Command("unshare", "--mount", "--uts", "--propagation", "private",
		"nsenter", "--net=/run/netns/"+h.Netns(), "--",
		"sh", "-c", script, "anchor", cgroupProcs(h.cgroup()+"/daemons"), h.Dir, h.Name)
	if err := h.fleet.spawn(cmd, filepath.Join(h.Dir, "log", "anchor.log")); err != nil {
		return err
	}
	h.Anchor = cmd.Process.Pid
	return waitFor(ctx, "namespaces of "+h.Name, func() error {
		_, err := os.Stat(filepath.Join(h.Dir, "run", "anchor.ready"))
		return err
	})
}

// enter returns a command that runs argv inside the host, in its cgroup.
func (h *Host) enter(argv ...string) *exec.Cmd {
	args := append([]string{"-t", strconv.Itoa(h.Anchor), "--mount", "--uts", "--net", "--",
		"sh", "-c", `echo $$ > "$0" && exec "$@"`, cgroupProcs(h.cgroup() + "/daemons")}, argv...)
	return exec.Command("nsenter", args...)
}

// Run runs argv inside the host's namespaces directly, without SSH: the way
// to look at or change a host whatever state its network and sshd are in.
func (h *Host) Run(ctx context.Context, argv ...string) ([]byte, error) {
	args := append([]string{"-t", strconv.Itoa(h.Anchor), "--mount", "--uts", "--net", "--"}, argv...)
	out, err := run(ctx, "nsenter", args...)
	if err != nil {
		return out, fmt.Errorf("host %s: %w", h.Name, err)
	}
	return out, nil
}

// SSHArgs are the OpenSSH client arguments that reach the host as root with
// strict host key checking against the fleet's known_hosts.
func (h *Host) SSHArgs() []string {
	f := h.fleet
	return []string{"-F", "/dev/null", "-i", f.IdentityFile,
		"-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
		"-o", "StrictHostKeyChecking=yes", "-o", "UserKnownHostsFile=" + f.KnownHosts,
		"-o", "GlobalKnownHostsFile=/dev/null",
		"-o", "ConnectTimeout=5", "-o", "ServerAliveInterval=2", "-o", "ServerAliveCountMax=2",
		"-o", "LogLevel=ERROR", "root@" + h.Addr}
}

// SSH runs a command line on the host through OpenSSH's own client, the
// independent witness the tests compare fleet against. The remote shell
// interprets command: pass only the harness's own strings.
func (h *Host) SSH(ctx context.Context, command string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, "ssh", append(h.SSHArgs(), "--", command)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.Bytes(), fmt.Errorf("host %s: ssh root@%s %q: %w: %s", h.Name, h.Addr, command, err, strings.TrimSpace(stderr.String()))
	}
	return stdout.Bytes(), nil
}

// CutOff takes the host off the network, as a pulled cable would: packets
// are dropped silently, connections hang rather than fail.
func (h *Host) CutOff(ctx context.Context) error {
	_, err := run(ctx, "ip", "link", "set", h.link(), "down")
	return err
}

// Heal puts a cut-off host back on the network, and waits until its sshd
// answers from here: the link takes a moment to carry packets again, and
// a test that goes on "once the host is back" must not race it.
func (h *Host) Heal(ctx context.Context) error {
	if _, err := run(ctx, "ip", "link", "set", h.link(), "up"); err != nil {
		return err
	}
	return waitFor(ctx, "sshd of "+h.Name+" after its link came back", func() error { return sshBanner(ctx, h.Addr+":22") })
}

// StartDocker starts the host's dockerd and waits until it answers.
func (h *Host) StartDocker(ctx context.Context) error {
	args := []string{
		"--config-file", filepath.Join(h.Dir, "etc", "daemon.json"),
		"--host", "unix:///run/docker.sock",
		"--data-root", "/var/lib/docker",
		"--exec-root", "/run/docker",
		"--pidfile", "/run/docker.pid",
		// Containers and user networks stay in the benchmarking range too.
		"--bip", "198.19.0.1/24",
		"--default-address-pool", "base=198.19.128.0/17,size=24",
		"--cgroup-parent", "/" + h.cgroup() + "/containers",
	}
	if h.fleet.natPortsOnly {
		args = append(args, "--userland-proxy=false")
	}
	cmd := h.enter(append([]string{"dockerd"}, args...)...)
	if err := h.fleet.spawn(cmd, filepath.Join(h.Dir, "log", "dockerd.log")); err != nil {
		return err
	}
	return waitFor(ctx, "dockerd of "+h.Name, func() error {
		return pingDocker(ctx, filepath.Join(h.Dir, "run", "docker.sock"))
	})
}

// StopDocker stops the host's dockerd as an administrator would, which stops
// its containers too.
func (h *Host) StopDocker(ctx context.Context) error {
	return stopPidfile(ctx, filepath.Join(h.Dir, "run", "docker.pid"), "dockerd of "+h.Name)
}

// StartSSHD starts the host's sshd and waits until it greets.
func (h *Host) StartSSHD(ctx context.Context) error {
	cmd := h.enter("/usr/sbin/sshd", "-D", "-e", "-f", filepath.Join(h.Dir, "etc", "sshd_config"))
	if err := h.fleet.spawn(cmd, filepath.Join(h.Dir, "log", "sshd.log")); err != nil {
		return err
	}
	return waitFor(ctx, "sshd of "+h.Name, func() error { return sshBanner(ctx, h.Addr+":22") })
}

// StopSSHD stops the host's listening sshd; sessions already open go on, as
// they do when an administrator stops sshd.
func (h *Host) StopSSHD(ctx context.Context) error {
	return stopPidfile(ctx, filepath.Join(h.Dir, "run", "sshd.pid"), "sshd of "+h.Name)
}

// spawn starts cmd as a daemon of its own session, its output appended to
// logPath, and reaps it when it exits.
func (f *Fleet) spawn(cmd *exec.Cmd, logPath string) error {
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting %s: %w", cmd.Path, err)
	}
	go cmd.Wait() //nolint:errcheck // a daemon's exit is seen by whoever waits for it
	return nil
}

func stopPidfile(ctx context.Context, pidfile, what string) error {
	b, err := os.ReadFile(pidfile)
	if err != nil {
		return fmt.Errorf("%s: not running? %w", what, err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return fmt.Errorf("%s: pidfile %s: %w", what, pidfile, err)
	}
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return waitFor(ctx, what+" to stop", func() error {
		if syscall.Kill(pid, 0) == nil && !isZombie(pid) {
			return errors.New("still running")
		}
		return nil
	})
}

func isZombie(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	// The state follows the command name in parentheses.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] == 'Z'
}

// waitFor polls check until it succeeds, ready runs out or ctx ends.
func waitFor(ctx context.Context, what string, check func() error) error {
	ctx, cancel := context.WithTimeout(ctx, ready)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		err := check()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w (last: %v)", what, ctx.Err(), err)
		case <-tick.C:
		}
	}
}

func pingDocker(ctx context.Context, socket string) error {
	c := dockerClient(socket)
	c.Timeout = 2 * time.Second
	defer c.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://docker/_ping", nil)
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("ping: %s", resp.Status)
	}
	return nil
}

func sshBanner(ctx context.Context, addr string) error {
	conn, err := (&net.Dialer{Timeout: time.Second}).DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(2 * time.Second))
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, "SSH-2.0-") {
		return fmt.Errorf("unexpected greeting %q", line)
	}
	return nil
}
