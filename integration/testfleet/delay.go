package testfleet

import (
	"context"
	"errors"
	"io"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Delay makes the host slow to answer, as a host far away or on a
// congested link is: everything it sends waits d more. Zero takes the
// delay away.
//
// Where the kernel has netem, the delay is netem's, on the host's own end
// of its link, for all its traffic. Elsewhere the SSH connections opened
// to it from this machine are sent, by a DNAT rule in this machine's
// OUTPUT chain, through a proxy of the harness that holds back what the
// host sends by d; the connections open already, and other ports, keep
// their speed.
func (h *Host) Delay(ctx context.Context, d time.Duration) error {
	h.Run(ctx, "tc", "qdisc", "del", "dev", "eth0", "root")
	if h.delay != nil {
		h.delay.close(ctx)
		h.delay = nil
	}
	if d <= 0 {
		return nil
	}
	_, err := h.Run(ctx, "tc", "qdisc", "add", "dev", "eth0", "root", "netem", "delay", strconv.FormatInt(d.Milliseconds(), 10)+"ms")
	if err == nil || !strings.Contains(err.Error(), "qdisc kind is unknown") {
		return err
	}
	h.fleet.logf("%s: no netem in this kernel: SSH to %s goes through a proxy that delays it by %s", h.Name, h.Name, d)
	h.delay, err = h.startDelayProxy(ctx, d)
	return err
}

// delayMark marks the proxy's own connections to the host, which its DNAT
// rule leaves alone.
const delayMark = 0x666c74

// delayComment names the DNAT rules of the fleet's delay proxies, for
// purge to find them after a crash.
func delayComment(fleet string) string { return "fleet-testfleet-delay-" + fleet }

type delayProxy struct {
	l    net.Listener
	rule []string // the DNAT rule, as iptables -t nat takes it after -I/-D

	mu    sync.Mutex
	conns map[net.Conn]bool
}

func (h *Host) startDelayProxy(ctx context.Context, d time.Duration) (*delayProxy, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(h.fleet.gateway(), "0"))
	if err != nil {
		return nil, err
	}
	p := &delayProxy{l: l, conns: map[net.Conn]bool{}}
	p.rule = []string{"OUTPUT", "-d", h.Addr, "-p", "tcp", "--dport", "22",
		"-m", "mark", "!", "--mark", strconv.Itoa(delayMark),
		"-m", "comment", "--comment", delayComment(h.fleet.Name),
		"-j", "DNAT", "--to-destination", l.Addr().String()}
	if _, err := run(ctx, "iptables", append([]string{"-w", "-t", "nat", "-I"}, p.rule...)...); err != nil {
		l.Close()
		return nil, err
	}
	target := net.JoinHostPort(h.Addr, "22")
	dialer := net.Dialer{Timeout: 10 * time.Second, Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_MARK, delayMark)
		})
		return errors.Join(err, serr)
	}}
	go func() {
		for {
			in, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				out, err := dialer.Dial("tcp", target)
				if err != nil {
					in.Close()
					return
				}
				if !p.track(in, out) {
					return
				}
				defer p.untrack(in, out)
				done := make(chan struct{})
				go func() {
					io.Copy(out, in)
					out.(*net.TCPConn).CloseWrite()
					close(done)
				}()
				delayed(in, out, d)
				<-done
			}()
		}
	}()
	return p, nil
}

func (p *delayProxy) track(conns ...net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.conns == nil {
		for _, c := range conns {
			c.Close()
		}
		return false
	}
	for _, c := range conns {
		p.conns[c] = true
	}
	return true
}

func (p *delayProxy) untrack(conns ...net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range conns {
		c.Close()
		delete(p.conns, c)
	}
}

func (p *delayProxy) close(ctx context.Context) {
	run(ctx, "iptables", append([]string{"-w", "-t", "nat", "-D"}, p.rule...)...)
	p.l.Close()
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

// delayed copies src to dst, each chunk d after it came, in order, then
// closes dst for writing.
func delayed(dst, src net.Conn, d time.Duration) {
	type chunk struct {
		b  []byte
		at time.Time
	}
	q := make(chan chunk, 4096)
	failed := make(chan struct{})
	go func() {
		defer close(failed)
		for c := range q {
			time.Sleep(time.Until(c.at))
			if _, err := dst.Write(c.b); err != nil {
				return
			}
		}
		dst.(*net.TCPConn).CloseWrite()
	}()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			select {
			case q <- chunk{append([]byte(nil), buf[:n]...), time.Now().Add(d)}:
			case <-failed:
				return
			}
		}
		if err != nil {
			break
		}
	}
	close(q)
	<-failed
}

// removeDelayRules removes the DNAT rules of the fleet's delay proxies
// that a crashed run left behind.
func removeDelayRules(ctx context.Context, fleet string) {
	out, err := run(ctx, "iptables", "-w", "-t", "nat", "-S", "OUTPUT")
	if err != nil {
		return
	}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 || f[0] != "-A" || !strings.Contains(line, " "+delayComment(fleet)+" ") {
			continue
		}
		exec.CommandContext(ctx, "iptables", append([]string{"-w", "-t", "nat", "-D"}, f[1:]...)...).Run()
	}
}
