package executor

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
)

// keyFiles writes an ed25519 key pair as OpenSSH does (file and file.pub),
// encrypted when passphrase is not empty.
func keyFiles(t *testing.T, dir, name, passphrase string) (string, ed25519.PrivateKey) {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	var block *pem.Block
	if passphrase == "" {
		block, err = ssh.MarshalPrivateKey(priv, name)
	} else {
		block, err = ssh.MarshalPrivateKeyWithPassphrase(priv, name, []byte(passphrase))
	}
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	pub, _ := ssh.NewPublicKey(priv.Public())
	if err := os.WriteFile(path+".pub", ssh.MarshalAuthorizedKey(pub), 0o644); err != nil {
		t.Fatal(err)
	}
	return path, priv
}

// testAgent serves an ssh-agent holding keys on a unix socket.
func testAgent(t *testing.T, keys ...ed25519.PrivateKey) string {
	t.Helper()
	ring := agent.NewKeyring()
	for _, k := range keys {
		if err := ring.Add(agent.AddedKey{PrivateKey: k}); err != nil {
			t.Fatal(err)
		}
	}
	sock := filepath.Join(t.TempDir(), "agent.sock")
	l, err := net.Listen("unix", sock)
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
			go func() { agent.ServeAgent(ring, c); c.Close() }()
		}
	}()
	return sock
}

func samePublic(a ssh.Signer, b ed25519.PrivateKey) bool {
	pub, _ := ssh.NewPublicKey(b.Public())
	return bytes.Equal(a.PublicKey().Marshal(), pub.Marshal())
}

func TestIdentitiesOnly(t *testing.T) {
	dir := t.TempDir()
	inAgentFile, inAgentKey := keyFiles(t, dir, "id_in_agent", "")
	fileOnly, fileOnlyKey := keyFiles(t, dir, "id_file_only", "")
	// An agent with many keys: offering them all would use up sshd's
	// MaxAuthTries before the right one.
	var many []ed25519.PrivateKey
	for range 8 {
		_, k, _ := ed25519.GenerateKey(rand.Reader)
		many = append(many, k)
	}
	sock := testAgent(t, append(many, inAgentKey)...)
	k := newKeyring(Options{AgentSocket: sock})
	defer k.close()

	signers, err := k.signers(Target{IdentityFiles: []string{fileOnly, inAgentFile}})
	if err != nil {
		t.Fatal(err)
	}
	if len(signers) != 2 || !samePublic(signers[0], fileOnlyKey) || !samePublic(signers[1], inAgentKey) {
		t.Fatalf("offered %d keys, want exactly the two identity files in order", len(signers))
	}
	// The key the agent holds is signed by the agent, not read from disk.
	if _, err := signers[1].Sign(rand.Reader, []byte("x")); err != nil {
		t.Fatal(err)
	}

	// Without identity files every agent key is offered.
	all, err := k.signers(Target{})
	if err != nil || len(all) < 9 {
		t.Errorf("without identity files: %d keys, %v", len(all), err)
	}
	if _, err := k.signers(Target{IdentityFiles: []string{filepath.Join(dir, "absent")}}); err == nil {
		t.Error("a missing identity file was not an error")
	}
}

func TestEncryptedKeyAsksOnce(t *testing.T) {
	dir := t.TempDir()
	file, key := keyFiles(t, dir, "id_encrypted", "correct horse")
	var asked atomic.Int32
	k := newKeyring(Options{AgentSocket: "none", Passphrase: func(f string) ([]byte, error) {
		asked.Add(1)
		if f != file {
			t.Errorf("asked for %s", f)
		}
		return []byte("correct horse"), nil
	}})
	var wg sync.WaitGroup
	for range 20 { // twenty hosts share the key
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := k.signers(Target{IdentityFiles: []string{file}})
			if err != nil || len(s) != 1 || !samePublic(s[0], key) {
				t.Errorf("signers: %v", err)
			}
		}()
	}
	wg.Wait()
	if n := asked.Load(); n != 1 {
		t.Errorf("asked for the passphrase %d times, want once", n)
	}

	wrong := newKeyring(Options{AgentSocket: "none", Passphrase: func(string) ([]byte, error) { return []byte("wrong"), nil }})
	if _, err := wrong.signers(Target{IdentityFiles: []string{file}}); err == nil || !strings.Contains(err.Error(), "wrong passphrase") {
		t.Errorf("wrong passphrase: %v", err)
	}

	noTTY := newKeyring(Options{AgentSocket: "none", Passphrase: func(string) ([]byte, error) { return nil, ErrNoTerminal }})
	_, err := noTTY.signers(Target{IdentityFiles: []string{file}})
	if !errors.Is(err, ErrNoTerminal) || !strings.Contains(err.Error(), file) || !strings.Contains(err.Error(), "ssh-add") {
		t.Errorf("no terminal: %v", err)
	}

	// In the agent, the encrypted file is never opened.
	sock := testAgent(t, key)
	agentFirst := newKeyring(Options{AgentSocket: sock, Passphrase: func(string) ([]byte, error) {
		t.Error("asked for a passphrase of a key the agent holds")
		return nil, ErrNoTerminal
	}})
	defer agentFirst.close()
	if s, err := agentFirst.signers(Target{IdentityFiles: []string{file}}); err != nil || len(s) != 1 {
		t.Errorf("encrypted key held by the agent: %v", err)
	}
}
