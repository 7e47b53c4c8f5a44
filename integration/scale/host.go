package main

import (
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
)

// host is one simulated machine: an sshd on a loopback port, with its own
// host key, that forwards the engine's socket to an in-memory engine and
// serves SFTP from an in-memory file system holding the few host files
// fleet reads. It starts no shell: an exec request is refused, loudly, and
// counted, so that a new exec in fleet shows up in the report.
type host struct {
	name  string
	ln    net.Listener
	port  int
	key   ssh.Signer
	eng   *engine
	files sftp.Handlers
	sim   *sim

	mu    sync.Mutex
	conns map[net.Conn]bool
}

// sim is the whole simulated fleet.
type sim struct {
	hosts  []*host
	client ssh.PublicKey // the one key fleet logs in with
	rtt    time.Duration // delay of every packet a host sends (see delayed)
	pq     bool          // offer OpenSSH 9.9's post-quantum key exchange
	trace  func(host, what string)
	times  Times
	stats  Stats
}

// openSSH92Kex are OpenSSH 9.2's default key exchanges less
// sntrup761x25519-sha512, which x/crypto does not have.
var openSSH92Kex = []string{ssh.KeyExchangeCurve25519, "curve25519-sha256@libssh.org",
	ssh.KeyExchangeECDHP256, ssh.KeyExchangeECDHP384, ssh.KeyExchangeECDHP521,
	ssh.KeyExchangeDHGEXSHA256, ssh.KeyExchangeDH16SHA512, "diffie-hellman-group14-sha256"}

func (s *sim) startHost(name string) (*host, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	key, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	h := &host{name: name, ln: ln, port: ln.Addr().(*net.TCPAddr).Port, key: key, eng: newEngine(&s.times, &s.stats),
		files: hostFiles(), sim: s, conns: map[net.Conn]bool{}}
	if s.trace != nil {
		h.eng.trace = func(what string) { h.tracef("%s", what) }
	}
	go h.accept()
	return h, nil
}

func (h *host) close() {
	h.ln.Close()
	h.mu.Lock()
	defer h.mu.Unlock()
	for c := range h.conns {
		c.Close()
	}
}

func (h *host) accept() {
	cfg := &ssh.ServerConfig{
		PublicKeyCallback: func(meta ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
			if string(key.Marshal()) == string(h.sim.client.Marshal()) {
				return &ssh.Permissions{}, nil
			}
			return nil, fmt.Errorf("unknown key for %s", meta.User())
		},
		ServerVersion: "SSH-2.0-OpenSSH_9.2p1 fleet-scale-sim",
	}
	// The key exchanges of the sshd the banner names (Debian 12's, the
	// test fleet's), those x/crypto has: with them fleet agrees on
	// curve25519-sha256, as with the test fleet. OpenSSH 9.9 and newer
	// offer mlkem768x25519-sha256 first, and x/crypto's client takes it.
	cfg.KeyExchanges = openSSH92Kex
	if h.sim.pq {
		cfg.ServerVersion = "SSH-2.0-OpenSSH_9.9p1 fleet-scale-sim"
		cfg.KeyExchanges = append([]string{ssh.KeyExchangeMLKEM768X25519}, openSSH92Kex...)
	}
	cfg.AddHostKey(h.key)
	for {
		nc, err := h.ln.Accept()
		if err != nil {
			return
		}
		if h.sim.rtt > 0 {
			nc = newDelayed(nc, h.sim.rtt)
		}
		h.mu.Lock()
		h.conns[nc] = true
		h.mu.Unlock()
		go func() {
			defer func() {
				nc.Close()
				h.mu.Lock()
				delete(h.conns, nc)
				h.mu.Unlock()
			}()
			h.serveConn(nc, cfg)
		}()
	}
}

func (h *host) serveConn(nc net.Conn, cfg *ssh.ServerConfig) {
	conn, chans, reqs, err := ssh.NewServerConn(nc, cfg)
	if err != nil {
		return
	}
	defer conn.Close()
	h.sim.stats.Handshakes.Add(1)
	h.tracef("handshake done")
	go func() {
		// keepalive@openssh.com and anything else global: OpenSSH
		// answers failure to what it does not know, and keepalives are
		// among those.
		for r := range reqs {
			if r.WantReply {
				r.Reply(false, nil)
			}
		}
	}()
	for nch := range chans {
		h.sim.stats.Channels.Add(1)
		h.tracef("channel %s", nch.ChannelType())
		switch nch.ChannelType() {
		case "direct-streamlocal@openssh.com":
			var p struct {
				SocketPath string
				Host       string
				Port       uint32
			}
			if err := ssh.Unmarshal(nch.ExtraData(), &p); err != nil || p.SocketPath != "/var/run/docker.sock" {
				nch.Reject(ssh.ConnectionFailed, "open failed")
				continue
			}
			ch, creqs, err := nch.Accept()
			if err != nil {
				continue
			}
			h.sim.stats.Sockets.Add(1)
			go ssh.DiscardRequests(creqs)
			go func() {
				defer ch.Close()
				h.eng.serve(ch)
			}()
		case "session":
			ch, creqs, err := nch.Accept()
			if err != nil {
				continue
			}
			go h.session(ch, creqs)
		default:
			nch.Reject(ssh.Prohibited, "the simulator serves no "+nch.ChannelType())
		}
	}
}

// session serves the SFTP subsystem and refuses everything else.
func (h *host) session(ch ssh.Channel, reqs <-chan *ssh.Request) {
	defer ch.Close()
	for r := range reqs {
		h.tracef("session request %s", r.Type)
		switch r.Type {
		case "subsystem":
			var p struct{ Name string }
			if ssh.Unmarshal(r.Payload, &p) != nil || p.Name != "sftp" {
				r.Reply(false, nil)
				continue
			}
			r.Reply(true, nil)
			h.sim.stats.SFTP.Add(1)
			go ssh.DiscardRequests(reqs)
			files := h.files
			if h.sim.trace != nil {
				files = tracedFiles(files, func(what string) { h.tracef("sftp %s", what) })
			}
			srv := sftp.NewRequestServer(ch, files)
			srv.Serve()
			srv.Close()
			ch.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{0}))
			return
		case "exec":
			var p struct{ Command string }
			ssh.Unmarshal(r.Payload, &p)
			r.Reply(true, nil)
			h.sim.stats.Execs.Add(1)
			h.sim.stats.unknown("exec " + p.Command)
			fmt.Fprintf(ch.Stderr(), "fleet scale simulator: host %s runs no commands; refused: %s\n", h.name, p.Command)
			ch.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{127}))
			return
		default:
			if r.WantReply {
				r.Reply(false, nil)
			}
		}
	}
}

func (h *host) tracef(format string, args ...any) {
	if h.sim.trace != nil {
		h.sim.trace(h.name, fmt.Sprintf(format, args...))
	}
}

// tracedFiles tells of every SFTP request.
func tracedFiles(f sftp.Handlers, trace func(string)) sftp.Handlers {
	return sftp.Handlers{
		FileGet:  tracedGet{f.FileGet, trace},
		FilePut:  tracedPut{f.FilePut, trace},
		FileCmd:  tracedCmd{f.FileCmd.(fileCmds), trace},
		FileList: tracedList{f.FileList, trace},
	}
}

type tracedGet struct {
	sftp.FileReader
	trace func(string)
}

func (t tracedGet) Fileread(r *sftp.Request) (io.ReaderAt, error) {
	t.trace("open for reading " + r.Filepath)
	return t.FileReader.Fileread(r)
}

type tracedPut struct {
	sftp.FileWriter
	trace func(string)
}

func (t tracedPut) Filewrite(r *sftp.Request) (io.WriterAt, error) {
	t.trace("open for writing " + r.Filepath)
	return t.FileWriter.Filewrite(r)
}

type tracedCmd struct {
	fileCmds
	trace func(string)
}

func (t tracedCmd) Filecmd(r *sftp.Request) error {
	t.trace(r.Method + " " + r.Filepath)
	return t.fileCmds.Filecmd(r)
}

type tracedList struct {
	sftp.FileLister
	trace func(string)
}

func (t tracedList) Filelist(r *sftp.Request) (sftp.ListerAt, error) {
	t.trace(r.Method + " " + r.Filepath)
	return t.FileLister.Filelist(r)
}

// hostFiles is a host's file system as fleet sees it over SFTP: empty but
// for the figures it reads (memory, CPUs), and what fleet writes (locks,
// revision history), kept in memory for the life of the simulation.
func hostFiles() sftp.Handlers {
	mem := sftp.InMemHandler()
	fixed := map[string]string{
		"/proc/meminfo":                  "MemTotal:        8000000 kB\nMemFree:         4000000 kB\nMemAvailable:    6000000 kB\n",
		"/sys/devices/system/cpu/online": "0-3\n",
	}
	return sftp.Handlers{
		FileGet:  fixedFiles{mem.FileGet, fixed},
		FilePut:  mem.FilePut,
		FileCmd:  fileCmds{mem.FileCmd},
		FileList: mem.FileList,
	}
}

type fixedFiles struct {
	sftp.FileReader
	fixed map[string]string
}

func (f fixedFiles) Fileread(r *sftp.Request) (io.ReaderAt, error) {
	if s, ok := f.fixed[r.Filepath]; ok {
		return strings.NewReader(s), nil
	}
	return f.FileReader.Fileread(r)
}

// fileCmds adds what OpenSSH's sftp-server offers and the in-memory
// handler's commands need to be asked for by name: posix-rename and a
// statvfs of a roomy disk.
type fileCmds struct{ sftp.FileCmder }

func (f fileCmds) PosixRename(r *sftp.Request) error {
	return f.FileCmder.(sftp.PosixRenameFileCmder).PosixRename(r)
}

func (f fileCmds) StatVFS(r *sftp.Request) (*sftp.StatVFS, error) {
	return &sftp.StatVFS{Bsize: 4096, Frsize: 4096, Blocks: 25 << 20, Bfree: 20 << 20, Bavail: 20 << 20,
		Files: 1 << 24, Ffree: 1 << 23, Favail: 1 << 23, Namemax: 255}, nil
}

// delayed delays every byte a host sends by the whole round trip, keeping
// order and never stalling the writer, and hands it what fleet sends at
// once. Every exchange here is one that fleet starts (sshd's banner, sent
// at the connection's start, is the only other word), so fleet waits the
// round trip for each answer as it would across a link with half of it
// each way; and the simulation wakes one goroutine and one timer per
// packet rather than two of each, CPU that would otherwise be taken from
// fleet, on the cores they share, by what stands for the network.
type delayed struct {
	net.Conn
	d   time.Duration
	out chan packet

	closeOnce sync.Once
	done      chan struct{}
}

type packet struct {
	data []byte
	at   time.Time
}

func newDelayed(c net.Conn, rtt time.Duration) *delayed {
	dc := &delayed{Conn: c, d: rtt, out: make(chan packet, 1024), done: make(chan struct{})}
	go dc.send()
	return dc
}

func (dc *delayed) send() {
	var buf []byte
	var next *packet // taken from out, not yet due
	for {
		var p packet
		if next != nil {
			p, next = *next, nil
		} else {
			select {
			case p = <-dc.out:
			case <-dc.done:
				return
			}
		}
		time.Sleep(time.Until(p.at))
		// What else is due within a millisecond goes in the same write, as
		// a network delivers what arrives together: a write per packet
		// spends the CPU that fleet shares with the simulation on system
		// calls that real hosts make on their own machines.
		buf = append(buf[:0], p.data...)
	gather:
		for len(buf) < 64<<10 {
			select {
			case q := <-dc.out:
				if time.Until(q.at) > time.Millisecond {
					next = &q
					break gather
				}
				buf = append(buf, q.data...)
			default:
				break gather
			}
		}
		if _, err := dc.Conn.Write(buf); err != nil {
			dc.Close()
			return
		}
	}
}

func (dc *delayed) Write(b []byte) (int, error) {
	p := packet{data: append([]byte(nil), b...), at: time.Now().Add(dc.d)}
	select {
	case dc.out <- p:
		return len(b), nil
	case <-dc.done:
		return 0, net.ErrClosed
	}
}

func (dc *delayed) Close() error {
	dc.closeOnce.Do(func() { close(dc.done) })
	return dc.Conn.Close()
}
