package executor

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// preferredHostKeyAlgos is OpenSSH's order, used to choose among the
// algorithms known_hosts holds for a host and, for a host it does not know
// yet, to negotiate (and record) the key OpenSSH would record.
var preferredHostKeyAlgos = []string{
	ssh.CertAlgoED25519v01,
	ssh.CertAlgoECDSA256v01, ssh.CertAlgoECDSA384v01, ssh.CertAlgoECDSA521v01,
	ssh.CertAlgoRSASHA512v01, ssh.CertAlgoRSASHA256v01,
	ssh.KeyAlgoED25519,
	ssh.KeyAlgoECDSA256, ssh.KeyAlgoECDSA384, ssh.KeyAlgoECDSA521,
	ssh.KeyAlgoSKED25519, ssh.KeyAlgoSKECDSA256,
	ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256,
}

// orderHostKeyAlgos puts the algorithms known_hosts allows for a host in
// OpenSSH's order of preference. Any of them verifies; the order only
// decides which one the server is asked for. Algorithms outside the
// preference list (ssh-rsa with SHA-1, ssh-dss) keep their place at the end.
func orderHostKeyAlgos(known []string) []string {
	if len(known) == 0 {
		return preferredHostKeyAlgos
	}
	have := map[string]bool{}
	for _, a := range known {
		have[a] = true
	}
	var out []string
	for _, a := range preferredHostKeyAlgos {
		if have[a] {
			out = append(out, a)
			delete(have, a)
		}
	}
	for _, a := range known {
		if have[a] {
			out = append(out, a)
			delete(have, a)
		}
	}
	return out
}

// hostKeys checks host keys against one set of known_hosts files under one
// policy, and records new hosts when the policy accepts them.
type hostKeys struct {
	policy   HostKeyPolicy
	hash     bool
	files    []string // existing files, read
	appendTo string   // where new hosts are recorded
	db       *knownHostsDB

	mu       sync.Mutex
	accepted map[string]ssh.PublicKey // hosts recorded during this run, by normalized address
}

func newHostKeys(files []string, policy HostKeyPolicy, hash bool) (*hostKeys, error) {
	hk := &hostKeys{policy: policy, hash: hash, accepted: map[string]ssh.PublicKey{}}
	if len(files) > 0 {
		hk.appendTo = files[0]
	}
	for _, f := range files {
		if _, err := os.Stat(f); err == nil {
			hk.files = append(hk.files, f)
		} else if !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("known_hosts %s: %w", f, err)
		}
	}
	if len(hk.files) > 0 {
		db, err := newKnownHostsDB(hk.files)
		if err != nil {
			return nil, fmt.Errorf("reading known_hosts: %w", err)
		}
		hk.db = db
	}
	return hk, nil
}

// algorithms are the host key algorithms to offer when connecting to
// hostPort: only those whose keys known_hosts holds for it, so that the
// server shows a key that can be checked. x/crypto's own default order
// asks for ECDSA before Ed25519, and a known_hosts that holds only the
// Ed25519 key (OpenSSH's choice) then reads as a changed key.
func (hk *hostKeys) algorithms(hostPort string) []string {
	if hk.policy == Off || hk.db == nil {
		return preferredHostKeyAlgos
	}
	hk.mu.Lock()
	k, ok := hk.accepted[knownhosts.Normalize(hostPort)]
	hk.mu.Unlock()
	if ok {
		return orderHostKeyAlgos(algosForKey(k.Type()))
	}
	return orderHostKeyAlgos(hk.db.algorithms(hostPort))
}

func algosForKey(typ string) []string {
	if typ == ssh.KeyAlgoRSA {
		return []string{ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSA}
	}
	return []string{typ}
}

// callback verifies the key of the host called name (for errors) at
// hostPort.
func (hk *hostKeys) callback(name string) ssh.HostKeyCallback {
	return func(hostPort string, remote net.Addr, key ssh.PublicKey) error {
		if hk.policy == Off {
			return nil
		}
		var err error
		if hk.db != nil {
			err = hk.db.check(hostPort, remote, key)
		} else {
			err = &knownhosts.KeyError{}
		}
		if err == nil {
			return nil
		}
		var revoked *knownhosts.RevokedError
		if errors.As(err, &revoked) {
			return &HostKeyError{Host: name, Address: hostPort, Presented: key, Revoked: &revoked.Revoked}
		}
		var ke *knownhosts.KeyError
		if !errors.As(err, &ke) {
			return err
		}
		if len(ke.Want) > 0 {
			return &HostKeyError{Host: name, Address: hostPort, Presented: key, Known: ke.Want}
		}
		// Unknown so far: a host recorded earlier in this run is known now.
		norm := knownhosts.Normalize(hostPort)
		hk.mu.Lock()
		defer hk.mu.Unlock()
		if k, ok := hk.accepted[norm]; ok {
			if bytes.Equal(k.Marshal(), key.Marshal()) {
				return nil
			}
			return &HostKeyError{Host: name, Address: hostPort, Presented: key,
				Known: []knownhosts.KnownKey{{Key: k, Filename: hk.appendTo}}}
		}
		if hk.policy != AcceptNew {
			return &HostKeyError{Host: name, Address: hostPort, Presented: key, Unknown: true, Files: hk.files}
		}
		if err := hk.record(norm, key); err != nil {
			return fmt.Errorf("recording the key of new host %s in %s: %w", hostPort, hk.appendTo, err)
		}
		hk.accepted[norm] = key
		return nil
	}
}

// record appends a known_hosts line for a new host. Called with hk.mu
// held, so lines from many goroutines never interleave.
func (hk *hostKeys) record(normalized string, key ssh.PublicKey) error {
	if hk.appendTo == "" {
		return errors.New("no known_hosts file to record it in")
	}
	if err := os.MkdirAll(filepath.Dir(hk.appendTo), 0o700); err != nil {
		return err
	}
	name := normalized
	if hk.hash {
		name = knownhosts.HashHostname(normalized)
	}
	f, err := os.OpenFile(hk.appendTo, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	line := knownhosts.Line([]string{name}, key) + "\n"
	if _, err := f.WriteString(line); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// HostKeyError is a host key that known_hosts does not vouch for: changed,
// revoked, or (under [Strict]) unknown.
type HostKeyError struct {
	Host      string // inventory name
	Address   string // host:port looked up
	Presented ssh.PublicKey
	// Known are the keys known_hosts holds for the host when they differ
	// from the presented one; empty when the host is unknown.
	Known   []knownhosts.KnownKey
	Revoked *knownhosts.KnownKey
	Unknown bool
	Files   []string // the files searched, for an unknown host
}

// Changed reports whether the host presented a key other than the one
// known_hosts holds for it: a reinstalled host, or a man in the middle.
func (e *HostKeyError) Changed() bool { return len(e.Known) > 0 }

func (e *HostKeyError) Error() string {
	presented := e.Presented.Type() + " " + ssh.FingerprintSHA256(e.Presented)
	host := knownhosts.Normalize(e.Address)
	switch {
	case e.Revoked != nil:
		return fmt.Sprintf("host %s (%s) presented key %s, which %s:%d marks @revoked; refusing to connect",
			e.Host, e.Address, presented, e.Revoked.Filename, e.Revoked.Line)
	case len(e.Known) > 0:
		var b strings.Builder
		fmt.Fprintf(&b, "HOST KEY CHANGED for host %s (%s): it presented %s, but known_hosts holds", e.Host, e.Address, presented)
		for i, k := range e.Known {
			if i > 0 {
				b.WriteString(",")
			}
			fmt.Fprintf(&b, " %s %s (%s)", k.Key.Type(), ssh.FingerprintSHA256(k.Key), position(k))
		}
		fmt.Fprintf(&b, ". Someone may be intercepting the connection, or the host was reinstalled. "+
			"If the new key is right, remove the old one with `ssh-keygen -R '%s' -f %s` and connect again", host, e.Known[0].Filename)
		return b.String()
	default:
		files := "no known_hosts file"
		if len(e.Files) > 0 {
			files = strings.Join(e.Files, ", ")
		}
		return fmt.Sprintf("host %s (%s) is not in known_hosts (%s); it presented %s. "+
			"Check that fingerprint with the host's administrator and add it (ssh-keyscan %s), or connect with --host-key-policy accept-new",
			e.Host, e.Address, files, presented, host)
	}
}

func position(k knownhosts.KnownKey) string {
	if k.Line == 0 {
		return k.Filename + ", recorded during this run"
	}
	return fmt.Sprintf("%s:%d", k.Filename, k.Line)
}

// UserHashesKnownHosts asks the local OpenSSH client whether the user's
// configuration hashes the names it records (HashKnownHosts), for
// [Options.HashKnownHosts]. Without an ssh client it answers false.
func UserHashesKnownHosts(ctx context.Context) bool {
	out, err := exec.CommandContext(ctx, "ssh", "-G", "fleet-host-key-probe.invalid").Output()
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) == 2 && f[0] == "hashknownhosts" {
			return f[1] == "yes"
		}
	}
	return false
}

func defaultKnownHostsFiles() []string {
	var files []string
	if home, err := os.UserHomeDir(); err == nil {
		files = append(files, filepath.Join(home, ".ssh", "known_hosts"), filepath.Join(home, ".ssh", "known_hosts2"))
	}
	return append(files, "/etc/ssh/ssh_known_hosts", "/etc/ssh/ssh_known_hosts2")
}
