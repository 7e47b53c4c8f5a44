package executor

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

func edKey(t *testing.T) ssh.PublicKey {
	t.Helper()
	return edSigner(t).PublicKey()
}

// edSigner is a new Ed25519 key that signs: a host's, or a CA's.
func edSigner(t *testing.T) ssh.Signer {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return signer
}

func ecKey(t *testing.T) ssh.PublicKey {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	k, err := ssh.NewPublicKey(&priv.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func rsaKey(t *testing.T) ssh.PublicKey {
	t.Helper()
	priv, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	k, err := ssh.NewPublicKey(&priv.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

var anyAddr = &net.TCPAddr{IP: net.IPv4(198, 18, 0, 1), Port: 22}

// knownHostsFile writes lines to a known_hosts file and returns its path.
func knownHostsFile(t *testing.T, lines ...string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "known_hosts")
	if err := os.WriteFile(p, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestHostKeyAlgorithms(t *testing.T) {
	ed, ec, rs, other, ca := edKey(t), ecKey(t), rsaKey(t), edKey(t), edKey(t)
	kh := knownHostsFile(t,
		"# OpenSSH's own order of lines, and every form of host pattern",
		knownhosts.Line([]string{"web1.example.com"}, ed),
		knownhosts.Line([]string{knownhosts.HashHostname("[198.18.0.12]:2222")}, rs),
		knownhosts.Line([]string{knownhosts.HashHostname("[198.18.0.12]:2222")}, ec),
		knownhosts.Line([]string{"198.18.0.13"}, ec),
		knownhosts.Line([]string{"198.18.0.13"}, other),
		"@cert-authority *.internal "+strings.TrimSpace(string(ssh.MarshalAuthorizedKey(ca))),
	)
	hk, err := newHostKeys([]string{kh, filepath.Join(t.TempDir(), "absent")}, Strict, false)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		hostPort string
		want     []string
	}{
		// Only what known_hosts holds, Ed25519 first as OpenSSH asks.
		{"web1.example.com:22", []string{ssh.KeyAlgoED25519}},
		// Hashed, non-standard port; RSA as its SHA-2 signatures.
		{"198.18.0.12:2222", []string{ssh.KeyAlgoECDSA256, ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSA}},
		// Several keys for one host.
		{"198.18.0.13:22", []string{ssh.KeyAlgoED25519, ssh.KeyAlgoECDSA256}},
		// A host signed by a known CA presents a certificate.
		{"db.internal:22", []string{ssh.CertAlgoED25519v01}},
		// Unknown: OpenSSH's preference, so accept-new records what OpenSSH would.
		{"new.example.com:22", preferredHostKeyAlgos},
	} {
		if got := hk.algorithms(tc.hostPort); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("algorithms(%s) = %v, want %v", tc.hostPort, got, tc.want)
		}
	}
	if got := hk.algorithms("198.18.0.12:22"); !reflect.DeepEqual(got, preferredHostKeyAlgos) {
		t.Errorf("the port is part of the name: %v", got)
	}
}

func TestHostKeyCallback(t *testing.T) {
	ed, ec, changed, revoked := edKey(t), ecKey(t), edKey(t), edKey(t)
	kh := knownHostsFile(t,
		knownhosts.Line([]string{"198.18.0.11"}, ed),
		knownhosts.Line([]string{"198.18.0.11"}, ec),
		"@revoked * "+strings.TrimSpace(string(ssh.MarshalAuthorizedKey(revoked))),
	)
	hk, err := newHostKeys([]string{kh}, Strict, false)
	if err != nil {
		t.Fatal(err)
	}
	check := hk.callback("web1")
	if err := check("198.18.0.11:22", anyAddr, ed); err != nil {
		t.Errorf("known ed25519 key: %v", err)
	}
	if err := check("198.18.0.11:22", anyAddr, ec); err != nil {
		t.Errorf("second known key: %v", err)
	}

	err = check("198.18.0.11:22", anyAddr, changed)
	var hke *HostKeyError
	if !errors.As(err, &hke) || !hke.Changed() {
		t.Fatalf("changed key: %v", err)
	}
	msg := err.Error()
	for _, want := range []string{"host web1", "198.18.0.11:22", ssh.FingerprintSHA256(changed), ssh.FingerprintSHA256(ed), kh + ":1", "ssh-keygen -R '198.18.0.11' -f " + kh} {
		if !strings.Contains(msg, want) {
			t.Errorf("changed-key error lacks %q:\n%s", want, msg)
		}
	}

	if err := check("198.18.0.12:22", anyAddr, revoked); !errors.As(err, &hke) || hke.Revoked == nil || !strings.Contains(err.Error(), "@revoked") {
		t.Errorf("revoked key: %v", err)
	}
	if err := check("198.18.0.99:22", anyAddr, ed); !errors.As(err, &hke) || !hke.Unknown || !strings.Contains(err.Error(), "accept-new") {
		t.Errorf("unknown host under strict: %v", err)
	}

	off, _ := newHostKeys([]string{kh}, Off, false)
	if err := off.callback("web1")("198.18.0.11:22", anyAddr, changed); err != nil {
		t.Errorf("policy off: %v", err)
	}
}

func TestAcceptNewRecordsConcurrently(t *testing.T) {
	dir := t.TempDir()
	kh := filepath.Join(dir, "ssh", "known_hosts")
	hk, err := newHostKeys([]string{kh}, AcceptNew, true)
	if err != nil {
		t.Fatal(err)
	}
	const n = 50
	keys := make([]ssh.PublicKey, n)
	for i := range keys {
		keys[i] = edKey(t)
	}
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			addr := fmt.Sprintf("198.18.0.%d:2222", i+1)
			if err := hk.callback(fmt.Sprintf("h%d", i))(addr, anyAddr, keys[i]); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	// Known now, within the run: the same key passes, another is refused.
	if err := hk.callback("h0")("198.18.0.1:2222", anyAddr, keys[0]); err != nil {
		t.Errorf("recorded host, same key: %v", err)
	}
	var hke *HostKeyError
	if err := hk.callback("h0")("198.18.0.1:2222", anyAddr, keys[1]); !errors.As(err, &hke) || !hke.Changed() {
		t.Errorf("recorded host, other key: %v", err)
	}

	b, err := os.ReadFile(kh)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) != n {
		t.Fatalf("%d lines for %d hosts", len(lines), n)
	}
	for _, l := range lines {
		if !strings.HasPrefix(l, "|1|") {
			t.Errorf("not hashed: %q", l)
		}
	}
	// A new run reads them back, hashed names with their ports included.
	again, err := newHostKeys([]string{kh}, Strict, false)
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if err := again.callback("h")(fmt.Sprintf("198.18.0.%d:2222", i+1), anyAddr, keys[i]); err != nil {
			t.Errorf("host %d after recording: %v", i+1, err)
		}
	}
}
