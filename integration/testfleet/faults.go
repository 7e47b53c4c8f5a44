package testfleet

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// isolateChain is the iptables chain, inside a host's own network
// namespace, that Isolate fills and Unisolate removes.
const isolateChain = "FLEET-ISOLATE"

// Isolate makes the host reachable only from the given hosts: packets from
// the laptop side and from every other host are dropped (connections hang,
// as behind a firewall), while connections the host opens itself still
// work. It is how a host behind a bastion looks.
func (h *Host) Isolate(ctx context.Context, from ...*Host) error {
	h.Unisolate(ctx)
	subnet := fmt.Sprintf("198.18.%d.0/24", h.fleet.Subnet)
	rules := [][]string{
		{"-N", isolateChain},
		{"-A", isolateChain, "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "RETURN"},
	}
	for _, f := range from {
		rules = append(rules, []string{"-A", isolateChain, "-s", f.Addr, "-j", "RETURN"})
	}
	rules = append(rules,
		[]string{"-A", isolateChain, "-s", subnet, "-j", "DROP"},
		[]string{"-I", "INPUT", "-j", isolateChain},
	)
	for _, r := range rules {
		if _, err := h.Run(ctx, append([]string{"iptables", "-w"}, r...)...); err != nil {
			return err
		}
	}
	return nil
}

// Unisolate undoes Isolate; on a host that is not isolated it does nothing.
func (h *Host) Unisolate(ctx context.Context) error {
	if _, err := h.Run(ctx, "iptables", "-w", "-n", "-L", isolateChain); err != nil {
		return nil
	}
	for _, r := range [][]string{{"-D", "INPUT", "-j", isolateChain}, {"-F", isolateChain}, {"-X", isolateChain}} {
		if _, err := h.Run(ctx, append([]string{"iptables", "-w"}, r...)...); err != nil {
			return err
		}
	}
	return nil
}

// Blackhole makes the host drop every packet it receives or sends, as a
// host that froze or a firewall gone wrong does, while its address still
// answers ARP: peers on its network get no error, their connections hang
// until they time out. (A host cut off with CutOff stops answering ARP
// too, and after about ten seconds its peers' connections fail at once
// with "no route to host".)
func (h *Host) Blackhole(ctx context.Context) error {
	for _, chain := range []string{"INPUT", "OUTPUT"} {
		if _, err := h.Run(ctx, "iptables", "-w", "-I", chain, "1", "-j", "DROP"); err != nil {
			return err
		}
	}
	return nil
}

// Unblackhole undoes Blackhole; on a host that is not blackholed it does
// nothing.
func (h *Host) Unblackhole(ctx context.Context) error {
	for _, chain := range []string{"INPUT", "OUTPUT"} {
		for {
			if _, err := h.Run(ctx, "iptables", "-w", "-D", chain, "-j", "DROP"); err != nil {
				break
			}
		}
	}
	return nil
}

// DropSSHConnections ends every SSH connection to the host at once, as a
// broken NAT entry or an sshd killed by the OOM killer does: each
// connection's own sshd process is killed, and the kernel closes its
// socket. The listening sshd stays, so new connections are taken. It
// returns how many connections it ended.
func (h *Host) DropSSHConnections() (int, error) {
	b, err := os.ReadFile(filepath.Join(h.Dir, "run", "sshd.pid"))
	if err != nil {
		return 0, fmt.Errorf("sshd of %s: not running? %w", h.Name, err)
	}
	listener, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0, err
	}
	n := 0
	for _, pid := range cgroupPids(filepath.Join(cgroupRoot(), h.cgroup(), "daemons")) {
		comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		if err != nil || pid == listener || strings.TrimSpace(string(comm)) != "sshd" {
			continue
		}
		if err := syscall.Kill(pid, syscall.SIGKILL); err == nil {
			n++
		}
	}
	return n, nil
}

// ReceivedBytes is how many bytes the host was sent over its network link
// since it came up, as its link counts them: frames, headers included.
func (h *Host) ReceivedBytes() (int64, error) {
	// The machine's end of the link sends what the host receives.
	b, err := os.ReadFile("/sys/class/net/" + h.link() + "/statistics/tx_bytes")
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
}

// FreezeSSHD stops the host's listening sshd with SIGSTOP: the kernel still
// accepts TCP connections on port 22, but nothing ever answers on them, as
// with a host that hangs or an overloaded sshd.
func (h *Host) FreezeSSHD(ctx context.Context) error { return h.signalSSHD(syscall.SIGSTOP) }

// ThawSSHD lets a frozen sshd go on.
func (h *Host) ThawSSHD(ctx context.Context) error { return h.signalSSHD(syscall.SIGCONT) }

func (h *Host) signalSSHD(sig syscall.Signal) error {
	pidfile := filepath.Join(h.Dir, "run", "sshd.pid")
	b, err := os.ReadFile(pidfile)
	if err != nil {
		return fmt.Errorf("sshd of %s: not running? %w", h.Name, err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return fmt.Errorf("sshd of %s: pidfile %s: %w", h.Name, pidfile, err)
	}
	if err := syscall.Kill(pid, sig); err != nil {
		return fmt.Errorf("sshd of %s: %w", h.Name, err)
	}
	return nil
}

// AddUser adds a login user to every host of the fleet, who logs in with
// the fleet's key like root. With sudo, the user may run anything through
// sudo without a password; without, sudo asks for a password the user does
// not have. The user is not in the docker group, so docker needs sudo.
//
// The machine's /etc is shared by every host and by the machine itself, so
// it is left alone: each host gets its own copies of passwd, group, shadow,
// hosts and sudoers.d, bound over the originals inside the host's mount
// namespace, where they vanish with the host; so does the host's /home.
func (f *Fleet) AddUser(ctx context.Context, name string, sudo bool) error {
	if !userRE.MatchString(name) {
		return fmt.Errorf("testfleet: user name %q: want a lower-case letter then up to 15 of a-z, 0-9", name)
	}
	if err := checkTools(ctx, f.log); err != nil {
		return err
	}
	return parallel(f.Hosts, func(h *Host) error { return h.addUser(ctx, name, sudo) })
}

func (h *Host) addUser(ctx context.Context, name string, sudo bool) error {
	etc := filepath.Join(h.Dir, "etc", "users")
	sudoers := filepath.Join(etc, "sudoers.d")
	if _, err := os.Stat(etc); os.IsNotExist(err) {
		if err := os.MkdirAll(sudoers, 0o755); err != nil {
			return err
		}
		// hosts too: sudo looks up the host's own name, and without an entry
		// waits for DNS servers that this machine may not reach.
		for _, file := range []string{"passwd", "group", "shadow", "hosts"} {
			b, err := os.ReadFile("/etc/" + file)
			if err != nil {
				return err
			}
			if file == "hosts" {
				b = append(b, "\n127.0.1.1\t"+h.Name+"\n"...)
			}
			if err := os.WriteFile(filepath.Join(etc, file), b, 0o644); err != nil {
				return err
			}
			if _, err := h.Run(ctx, "mount", "--bind", filepath.Join(etc, file), "/etc/"+file); err != nil {
				return err
			}
		}
		if err := os.Chmod(filepath.Join(etc, "shadow"), 0o640); err != nil {
			return err
		}
		if _, err := h.Run(ctx, "mount", "--bind", sudoers, "/etc/sudoers.d"); err != nil {
			return err
		}
		if err := os.MkdirAll(filepath.Join(h.Dir, "home"), 0o755); err != nil {
			return err
		}
		if _, err := h.Run(ctx, "mount", "--bind", filepath.Join(h.Dir, "home"), "/home"); err != nil {
			return err
		}
	}
	passwd, err := os.ReadFile(filepath.Join(etc, "passwd"))
	if err != nil {
		return err
	}
	rule := name + " ALL=(ALL) ALL\n"
	if sudo {
		rule = name + " ALL=(ALL) NOPASSWD: ALL\n"
	}
	if err := os.WriteFile(filepath.Join(sudoers, name), []byte(rule), 0o440); err != nil {
		return err
	}
	if strings.Contains("\n"+string(passwd), "\n"+name+":") {
		return nil // added before; its sudo rule is updated
	}
	uid := 2000 + strings.Count(string(passwd), ":fleet test user:")
	// The host sees its own directory as /home; sshd reads the key there as
	// the user, who could not enter the harness's directories.
	home := filepath.Join(h.Dir, "home", name)
	if err := os.MkdirAll(filepath.Join(home, ".ssh"), 0o700); err != nil {
		return err
	}
	pub, err := os.ReadFile(h.fleet.IdentityFile + ".pub")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(home, ".ssh", "authorized_keys"), pub, 0o600); err != nil {
		return err
	}
	for _, p := range []string{home, filepath.Join(home, ".ssh"), filepath.Join(home, ".ssh", "authorized_keys")} {
		if err := os.Chown(p, uid, uid); err != nil {
			return err
		}
	}
	lines := map[string]string{
		"passwd": fmt.Sprintf("%s:x:%d:%d:fleet test user:/home/%s:/bin/sh\n", name, uid, uid, name),
		"group":  fmt.Sprintf("%s:x:%d:\n", name, uid),
		"shadow": name + ":*:19000:0:99999:7:::\n",
	}
	for file, line := range lines {
		// Appending keeps the inode the bind mount shows.
		fh, err := os.OpenFile(filepath.Join(etc, file), os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			return err
		}
		_, err = fh.WriteString(line)
		if cerr := fh.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// Signal sends sig to every process of the host whose command is name
// (sftp-server, say), the daemons' children included, and returns how
// many there were. SIGSTOP on the SFTP servers stalls every file operation
// of the connections that use them, and nothing else.
func (h *Host) Signal(name string, sig syscall.Signal) (int, error) {
	n := 0
	for _, pid := range cgroupPids(filepath.Join(cgroupRoot(), h.cgroup(), "daemons")) {
		comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		if err != nil || strings.TrimSpace(string(comm)) != name {
			continue
		}
		if err := syscall.Kill(pid, sig); err != nil {
			return n, fmt.Errorf("host %s: %s (pid %d): %w", h.Name, name, pid, err)
		}
		n++
	}
	return n, nil
}
