// Package sshtest runs an SSH server on a loopback port for tests that
// need one without root: exec requests run with the real sh, and the sftp
// subsystem runs OpenSSH's own sftp-server, as on a host, in a home
// directory of the test's. A server can refuse the subsystem, as hardened
// hosts do, and can stall, as a host whose disk or sshd hangs does.
package sshtest

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// SFTPServer is OpenSSH's own SFTP server, what hosts run; pkg/sftp's
// stands in where it is not installed.
const SFTPServer = "/usr/lib/openssh/sftp-server"

// What a server does with a request for the sftp subsystem.
const (
	// WithSFTP starts an SFTP server.
	WithSFTP = "sftp"
	// NoSFTP refuses, as sshd does without a Subsystem sftp line.
	NoSFTP = "none"
	// BrokenSFTP accepts and ends at once, as sshd does when the
	// subsystem's program is missing.
	BrokenSFTP = "broken"
)

// Server is a running SSH server, closed at the end of the test.
type Server struct {
	// Home is the login's home directory, where commands run.
	Home string
	// Host and Port are where it listens.
	Host string
	Port int
	// KeyFile is the private key it accepts; KnownHosts, a known_hosts
	// file that holds its host key.
	KeyFile, KnownHosts string

	subsystem string

	gate    sync.RWMutex // held for writing while stalled
	mu      sync.Mutex
	stalled bool
	sftps   map[*os.Process]bool // running SFTP servers
	// commands counts the commands of exec requests not yet ended: a
	// stalled one runs once the host answers again, maybe after its
	// client gave up, and must end before the home directory goes.
	commands sync.WaitGroup
}

// New starts a server whose sftp subsystem is one of WithSFTP, NoSFTP or
// BrokenSFTP.
func New(t testing.TB, subsystem string) *Server {
	t.Helper()
	s := &Server{Home: t.TempDir(), subsystem: subsystem, sftps: map[*os.Process]bool{}}
	t.Cleanup(s.commands.Wait) // before the home directory is removed
	_, hostPriv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	hostKey, err := ssh.NewSignerFromKey(hostPriv)
	if err != nil {
		t.Fatal(err)
	}
	clientPub, clientPriv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	accepted, err := ssh.NewPublicKey(clientPub)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(clientPriv, "sshtest")
	if err != nil {
		t.Fatal(err)
	}
	keys := t.TempDir()
	s.KeyFile = filepath.Join(keys, "id_ed25519")
	if err := os.WriteFile(s.KeyFile, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := &ssh.ServerConfig{PublicKeyCallback: func(_ ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
		if string(key.Marshal()) == string(accepted.Marshal()) {
			return nil, nil
		}
		return nil, errors.New("unknown key")
	}}
	cfg.AddHostKey(hostKey)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go s.serve(c, cfg)
		}
	}()
	a := l.Addr().(*net.TCPAddr)
	s.Host, s.Port = a.IP.String(), a.Port
	s.KnownHosts = filepath.Join(keys, "known_hosts")
	line := knownhosts.Line([]string{knownhosts.Normalize(net.JoinHostPort(s.Host, strconv.Itoa(s.Port)))}, hostKey.PublicKey())
	if err := os.WriteFile(s.KnownHosts, []byte(line+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return s
}

// Stall makes the host stop answering file operations: its SFTP servers,
// running and new, are stopped, and exec requests wait. The returned
// function lets it go on.
func (s *Server) Stall() (resume func()) {
	s.gate.Lock()
	s.setStalled(true)
	var once sync.Once
	return func() {
		once.Do(func() {
			s.setStalled(false)
			s.gate.Unlock()
		})
	}
}

func (s *Server) setStalled(stalled bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stalled = stalled
	for p := range s.sftps {
		if stalled {
			p.Signal(syscall.SIGSTOP)
		} else {
			p.Signal(syscall.SIGCONT)
		}
	}
}

func (s *Server) serve(c net.Conn, cfg *ssh.ServerConfig) {
	defer c.Close()
	conn, chans, reqs, err := ssh.NewServerConn(c, cfg)
	if err != nil {
		return
	}
	defer conn.Close()
	go ssh.DiscardRequests(reqs)
	for nc := range chans {
		if nc.ChannelType() != "session" {
			nc.Reject(ssh.UnknownChannelType, "sessions only")
			continue
		}
		ch, creqs, err := nc.Accept()
		if err != nil {
			return
		}
		go s.session(ch, creqs)
	}
}

func (s *Server) session(ch ssh.Channel, reqs <-chan *ssh.Request) {
	var mu sync.Mutex
	var pid int // of the command's process group, once started
	for req := range reqs {
		switch req.Type {
		case "exec":
			var p struct{ Command string }
			ssh.Unmarshal(req.Payload, &p)
			req.Reply(true, nil)
			s.commands.Add(1)
			go func() {
				defer s.commands.Done()
				s.gate.RLock()
				s.gate.RUnlock()
				c := exec.Command("sh", "-c", p.Command)
				c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
				s.run(ch, c, func(p *os.Process) {
					mu.Lock()
					pid = p.Pid
					mu.Unlock()
				})
			}()
		case "subsystem":
			var p struct{ Name string }
			ssh.Unmarshal(req.Payload, &p)
			switch {
			case p.Name != "sftp" || s.subsystem == NoSFTP:
				req.Reply(false, nil)
			case s.subsystem == BrokenSFTP:
				req.Reply(true, nil)
				exit(ch, 127)
			default:
				req.Reply(true, nil)
				if _, err := os.Stat(SFTPServer); err != nil {
					go func() {
						if srv, err := sftp.NewServer(ch, sftp.WithServerWorkingDirectory(s.Home)); err == nil {
							srv.Serve()
						}
						ch.Close()
					}()
					continue
				}
				go s.run(ch, exec.Command(SFTPServer), s.sftpStarted)
			}
		case "signal":
			req.Reply(true, nil)
			mu.Lock()
			if pid > 0 {
				syscall.Kill(-pid, syscall.SIGKILL)
			}
			mu.Unlock()
		default:
			if req.WantReply {
				req.Reply(false, nil)
			}
		}
	}
}

// run runs cmd in the home directory on the channel's streams and sends
// its exit status; started is told of its process.
func (s *Server) run(ch ssh.Channel, cmd *exec.Cmd, started func(*os.Process)) {
	cmd.Dir = s.Home
	cmd.Stdin, cmd.Stdout, cmd.Stderr = ch, ch, ch.Stderr()
	cmd.WaitDelay = time.Second
	if err := cmd.Start(); err != nil {
		exit(ch, 127)
		return
	}
	started(cmd.Process)
	status := 0
	err := cmd.Wait()
	s.mu.Lock()
	delete(s.sftps, cmd.Process)
	s.mu.Unlock()
	if err != nil {
		status = 255
		var ee *exec.ExitError
		if errors.As(err, &ee) && ee.ExitCode() >= 0 {
			status = ee.ExitCode()
		}
	}
	exit(ch, status)
}

// sftpStarted keeps an SFTP server to stop while the host stalls.
func (s *Server) sftpStarted(p *os.Process) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sftps[p] = true
	if s.stalled {
		p.Signal(syscall.SIGSTOP)
	}
}

func exit(ch ssh.Channel, status int) {
	ch.CloseWrite()
	ch.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{uint32(status)}))
	ch.Close()
}
