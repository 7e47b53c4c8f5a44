package executor

import (
	"bytes"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
	"golang.org/x/term"
)

// keyring finds the signers offered to hosts: the agent's keys and identity
// files, each file read (and its passphrase asked) once per run however many
// hosts use it.
type keyring struct {
	agentSocket string
	passphrase  func(file string) ([]byte, error)

	agentOnce    sync.Once
	agentSigners []ssh.Signer
	agentConn    net.Conn
	agentErr     error

	mu    sync.Mutex
	files map[string]*keyFile
	// prompt serialises passphrase questions: two at once on one terminal
	// would garble each other.
	prompt sync.Mutex
}

type keyFile struct {
	once   sync.Once
	signer ssh.Signer
	err    error
}

func newKeyring(opts Options) *keyring {
	sock := opts.AgentSocket
	if sock == "" {
		sock = os.Getenv("SSH_AUTH_SOCK")
	}
	if sock == "none" {
		sock = ""
	}
	k := &keyring{agentSocket: sock, passphrase: opts.Passphrase, files: map[string]*keyFile{}}
	if k.passphrase == nil {
		k.passphrase = terminalPassphrase
	}
	return k
}

func (k *keyring) close() {
	if k.agentConn != nil {
		k.agentConn.Close()
	}
}

func (k *keyring) agent() []ssh.Signer {
	k.agentOnce.Do(func() {
		if k.agentSocket == "" {
			return
		}
		conn, err := net.Dial("unix", k.agentSocket)
		if err != nil {
			k.agentErr = fmt.Errorf("ssh-agent at %s: %w", k.agentSocket, err)
			return
		}
		signers, err := agent.NewClient(conn).Signers()
		if err != nil {
			conn.Close()
			k.agentErr = fmt.Errorf("ssh-agent at %s: %w", k.agentSocket, err)
			return
		}
		k.agentConn, k.agentSigners = conn, signers
	})
	return k.agentSigners
}

// signers returns the keys to offer to t, in order. With identity files,
// only those keys are offered (IdentitiesOnly), and an agent's copy of a key
// is used in place of the file, so an encrypted file in the agent is not
// asked for its passphrase. Without identity files, every agent key and the
// default key files that exist are offered.
func (k *keyring) signers(t Target) ([]ssh.Signer, error) {
	agentKeys := k.agent()
	if len(t.IdentityFiles) == 0 {
		signers := append([]ssh.Signer(nil), agentKeys...)
		for _, f := range defaultIdentityFiles() {
			if _, err := os.Stat(f); err != nil || inAgent(agentKeys, f) != nil {
				continue
			}
			s, err := k.file(f)
			if err != nil {
				continue // a default key that cannot be used is skipped, as OpenSSH does
			}
			signers = append(signers, s)
		}
		if len(signers) == 0 {
			msg := "no key to authenticate with: no ssh-agent keys and no default identity file (~/.ssh/id_ed25519, id_ecdsa, id_rsa)"
			if k.agentErr != nil {
				msg += "; " + k.agentErr.Error()
			}
			return nil, errors.New(msg)
		}
		return signers, nil
	}
	var signers []ssh.Signer
	for _, f := range t.IdentityFiles {
		f = expandHome(f)
		if s := inAgent(agentKeys, f); s != nil {
			signers = append(signers, s)
			continue
		}
		s, err := k.file(f)
		if err != nil {
			return nil, err
		}
		signers = append(signers, s)
	}
	return signers, nil
}

// inAgent returns the agent's signer for the key whose public half is
// file.pub, if the agent holds it.
func inAgent(agentKeys []ssh.Signer, file string) ssh.Signer {
	if len(agentKeys) == 0 {
		return nil
	}
	b, err := os.ReadFile(file + ".pub")
	if err != nil {
		return nil
	}
	pub, _, _, _, err := ssh.ParseAuthorizedKey(b)
	if err != nil {
		return nil
	}
	for _, s := range agentKeys {
		if bytes.Equal(s.PublicKey().Marshal(), pub.Marshal()) {
			return s
		}
	}
	return nil
}

// file reads an identity file once, asking for its passphrase if it is
// encrypted.
func (k *keyring) file(path string) (ssh.Signer, error) {
	k.mu.Lock()
	kf, ok := k.files[path]
	if !ok {
		kf = &keyFile{}
		k.files[path] = kf
	}
	k.mu.Unlock()
	kf.once.Do(func() { kf.signer, kf.err = k.load(path) })
	return kf.signer, kf.err
}

func (k *keyring) load(path string) (ssh.Signer, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("identity file: %w", err)
	}
	signer, err := ssh.ParsePrivateKey(pem)
	var missing *ssh.PassphraseMissingError
	if errors.As(err, &missing) {
		k.prompt.Lock()
		pass, perr := k.passphrase(path)
		k.prompt.Unlock()
		if perr != nil {
			return nil, fmt.Errorf("identity file %s is encrypted: %w", path, perr)
		}
		signer, err = ssh.ParsePrivateKeyWithPassphrase(pem, pass)
		if errors.Is(err, x509.IncorrectPasswordError) {
			return nil, fmt.Errorf("identity file %s: wrong passphrase", path)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("identity file %s: %w", path, err)
	}
	if cert, err := os.ReadFile(path + "-cert.pub"); err == nil {
		if pub, _, _, _, err := ssh.ParseAuthorizedKey(cert); err == nil {
			if c, ok := pub.(*ssh.Certificate); ok {
				if cs, err := ssh.NewCertSigner(c, signer); err == nil {
					return cs, nil
				}
			}
		}
	}
	return signer, nil
}

// ErrNoTerminal is returned when an encrypted identity file needs its
// passphrase and there is no terminal to ask it on.
var ErrNoTerminal = errors.New("no terminal to ask its passphrase on; add the key to ssh-agent (ssh-add) and run again")

func terminalPassphrase(file string) ([]byte, error) {
	tty, err := os.OpenFile("/dev/tty", os.O_RDWR, 0)
	if err != nil || !term.IsTerminal(int(tty.Fd())) {
		if tty != nil {
			tty.Close()
		}
		return nil, ErrNoTerminal
	}
	defer tty.Close()
	fmt.Fprintf(tty, "Enter passphrase for key '%s': ", file)
	pass, err := term.ReadPassword(int(tty.Fd()))
	fmt.Fprintln(tty)
	if err != nil {
		return nil, fmt.Errorf("reading passphrase: %w", err)
	}
	return pass, nil
}

func defaultIdentityFiles() []string {
	home, err := os.UserHomeDir()
	if err != nil {
		return nil
	}
	var out []string
	for _, n := range []string{"id_ed25519", "id_ecdsa", "id_rsa"} {
		out = append(out, filepath.Join(home, ".ssh", n))
	}
	return out
}

func expandHome(p string) string {
	if p == "~" || strings.HasPrefix(p, "~/") {
		if home, err := os.UserHomeDir(); err == nil {
			return filepath.Join(home, p[1:])
		}
	}
	return p
}
