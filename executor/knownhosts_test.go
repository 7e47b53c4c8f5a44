package executor

import (
	"crypto/rand"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// knownHostsCase is a random set of known_hosts files, with every form a
// line can take, and what the test needs to know of them.
type knownHostsCase struct {
	files []string
	certs map[string]bool // "file:line" of the @cert-authority lines
	wild  bool            // some line has a wildcard in its first name
}

var khNames = []string{"web1.example.com", "web2.example.com", "db.internal", "198.18.0.11", "198.18.0.12", "2001:db8::1", "x"}

// khPattern is one host pattern, in one of the forms known_hosts allows.
func khPattern(r *mrand.Rand) string {
	name := khNames[r.IntN(len(khNames))]
	switch r.IntN(9) {
	case 0:
		return "[" + name + "]:2222"
	case 1:
		return "!" + name
	case 2:
		return "*.example.com"
	case 3:
		return "198.18.0.1?"
	case 4:
		return "*"
	case 5:
		return "[*.internal]:2222"
	case 6:
		return name[:1] + "*" // a '*' that must take at least a byte
	default:
		return name
	}
}

func writeKnownHostsCase(t *testing.T, r *mrand.Rand, keys []ssh.PublicKey) knownHostsCase {
	kc := knownHostsCase{certs: map[string]bool{}}
	dir := t.TempDir()
	for f := range 1 + r.IntN(2) {
		name := filepath.Join(dir, fmt.Sprintf("known_hosts%d", f))
		var lines []string
		for n := range 1 + r.IntN(12) {
			key := keys[r.IntN(len(keys))]
			var names string
			switch r.IntN(6) {
			case 0:
				host := khNames[r.IntN(len(khNames))]
				port := []string{"22", "2222"}[r.IntN(2)]
				names = knownhosts.HashHostname(knownhosts.Normalize(net.JoinHostPort(host, port)))
			case 1:
				names = khPattern(r) + "," + khPattern(r) + "," + khPattern(r)
			default:
				names = khPattern(r)
			}
			line := names + " " + strings.TrimSpace(string(ssh.MarshalAuthorizedKey(key)))
			switch r.IntN(10) {
			case 0:
				line = "@cert-authority " + line
				kc.certs[fmt.Sprintf("%s:%d", name, n+1)] = true
			case 1:
				line = "@revoked " + line
			case 2:
				line = "# " + line
			case 3:
				line = "\t" + line + " a comment"
			}
			first := names
			if i := strings.IndexByte(first, '*'); i >= 0 && !strings.Contains(first[i:], "]:") && !strings.HasPrefix(line, "@revoked") && !strings.HasPrefix(line, "#") {
				kc.wild = true
			}
			lines = append(lines, line)
		}
		if err := os.WriteFile(name, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		kc.files = append(kc.files, name)
	}
	return kc
}

// sameVerdict says whether two host key checks came to the same end: both
// passed, both found the key revoked on the same line, both found the same
// known keys in the same order, or both failed alike otherwise.
func sameVerdict(a, b error) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	var ra, rb *knownhosts.RevokedError
	if errors.As(a, &ra) || errors.As(b, &rb) {
		return errors.As(a, &ra) && errors.As(b, &rb) && ra.Revoked.Filename == rb.Revoked.Filename && ra.Revoked.Line == rb.Revoked.Line
	}
	var ka, kb *knownhosts.KeyError
	if errors.As(a, &ka) || errors.As(b, &kb) {
		if !errors.As(a, &ka) || !errors.As(b, &kb) || len(ka.Want) != len(kb.Want) {
			return false
		}
		for i := range ka.Want {
			if ka.Want[i].Filename != kb.Want[i].Filename || ka.Want[i].Line != kb.Want[i].Line {
				return false
			}
		}
		return true
	}
	return a.Error() == b.Error()
}

// TestKnownHostsAgreesWithXCrypto checks the indexed known_hosts against
// x/crypto's own reading of the same random files: every host at every
// port with every key, certificates among them, comes to the same verdict.
func TestKnownHostsAgreesWithXCrypto(t *testing.T) {
	ca := edSigner(t)
	keys := []ssh.PublicKey{edKey(t), edKey(t), ecKey(t), ca.PublicKey()}
	// Host certificates signed by the CA: one per name, one for all, one
	// whose signer is a plain key that may be @revoked.
	var presented []ssh.PublicKey
	presented = append(presented, keys...)
	for _, principals := range [][]string{{"web1.example.com"}, {"db.internal", "198.18.0.12"}, nil} {
		cert := &ssh.Certificate{Key: edKey(t), CertType: ssh.HostCert, ValidPrincipals: principals, ValidBefore: ssh.CertTimeInfinity}
		if err := cert.SignCert(rand.Reader, ca); err != nil {
			t.Fatal(err)
		}
		presented = append(presented, cert)
	}

	r := mrand.New(mrand.NewPCG(1, 2))
	checks := 0
	for range 300 {
		kc := writeKnownHostsCase(t, r, keys)
		xcheck, xerr := knownhosts.New(kc.files...)
		db, err := newKnownHostsDB(kc.files)
		if (xerr == nil) != (err == nil) {
			t.Fatalf("files %v: x/crypto reads them with %v, the index with %v", kc.files, xerr, err)
		}
		if err != nil {
			continue
		}
		for _, host := range khNames {
			for _, port := range []string{"22", "2222"} {
				address := net.JoinHostPort(host, port)
				for _, key := range presented {
					want := xcheck(address, anyAddr, key)
					if got := db.checkAt(address, anyAddr, key, false); !sameVerdict(got, want) {
						t.Fatalf("%s presenting %s with files\n%s\nindex: %v\nx/crypto: %v", address, key.Type(), dump(kc.files), got, want)
					}
					checks++
				}
				// The algorithms are those of the keys x/crypto knows for
				// the host (a certificate type for a CA), as long as no
				// wildcard stands in for another port.
				if port == "2222" && kc.wild {
					continue
				}
				var ke *knownhosts.KeyError
				var want []string
				if errors.As(xcheck(address, anyAddr, fakeKey{}), &ke) {
					for _, k := range ke.Want {
						typ := k.Key.Type()
						if kc.certs[fmt.Sprintf("%s:%d", k.Filename, k.Line)] {
							typ = certAlgo[typ]
						}
						if typ == ssh.KeyAlgoRSA || typ == ssh.CertAlgoRSAv01 {
							t.Fatal("no RSA keys in this test")
						}
						if !slices.Contains(want, typ) {
							want = append(want, typ)
						}
					}
				}
				got := db.algorithms(address)
				slices.Sort(got)
				slices.Sort(want)
				if !reflect.DeepEqual(got, want) {
					t.Fatalf("algorithms for %s with files\n%s\nindex: %v\nx/crypto's keys: %v", address, dump(kc.files), got, want)
				}
			}
		}
	}
	t.Logf("%d checks agree", checks)
}

func dump(files []string) string {
	var b strings.Builder
	for _, f := range files {
		data, _ := os.ReadFile(f)
		fmt.Fprintf(&b, "== %s\n%s", f, data)
	}
	return b.String()
}

type fakeKey struct{}

func (fakeKey) Type() string                            { return "fake" }
func (fakeKey) Marshal() []byte                         { return []byte("fake") }
func (fakeKey) Verify(_ []byte, _ *ssh.Signature) error { return errors.New("fake") }

// TestKnownHostsWildcardAtOtherPorts: a wildcard name without a port also
// stands for its hosts at other ports (as skeema/knownhosts reads it, which
// fleet used before), but a plain name at port 22 does not vouch for the
// same name at another port.
func TestKnownHostsWildcardAtOtherPorts(t *testing.T) {
	wild, plain, other := edKey(t), edKey(t), edKey(t)
	kh := knownHostsFile(t,
		knownhosts.Line([]string{"*.corp.example"}, wild),
		knownhosts.Line([]string{"db.example.com"}, plain),
	)
	db, err := newKnownHostsDB([]string{kh})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.check("web.corp.example:2222", anyAddr, wild); err != nil {
		t.Errorf("wildcard line at port 2222: %v", err)
	}
	var ke *knownhosts.KeyError
	if err := db.check("web.corp.example:2222", anyAddr, other); !errors.As(err, &ke) || len(ke.Want) != 1 || ke.Want[0].Line != 1 {
		t.Errorf("another key at port 2222 under a wildcard line: %v, want a changed key of line 1", err)
	}
	if err := db.check("db.example.com:2222", anyAddr, plain); !errors.As(err, &ke) || len(ke.Want) != 0 {
		t.Errorf("a plain name at port 22 is not the host at port 2222: %v, want unknown", err)
	}
	if got := db.algorithms("web.corp.example:2222"); !reflect.DeepEqual(got, []string{ssh.KeyAlgoED25519}) {
		t.Errorf("algorithms under a wildcard line at port 2222: %v", got)
	}
	if got := db.algorithms("db.example.com:2222"); len(got) != 0 {
		t.Errorf("algorithms of an unknown port: %v", got)
	}
}

// TestKnownHostsLookupIsIndexed: the lines of a thousand hosts are found
// without trying each one on each host; only wildcard and hashed lines are.
func TestKnownHostsLookupIsIndexed(t *testing.T) {
	var lines []string
	keys := map[string]ssh.PublicKey{}
	for i := range 1000 {
		host := fmt.Sprintf("[10.1.%d.%d]:22%02d", i/250, i%250, i%100)
		keys[host] = edKey(t)
		lines = append(lines, knownhosts.Line([]string{host}, keys[host]))
	}
	lines = append(lines, knownhosts.Line([]string{"*.example.com"}, edKey(t)), knownhosts.Line([]string{knownhosts.HashHostname("h.example.com")}, edKey(t)))
	db, err := newKnownHostsDB([]string{knownHostsFile(t, lines...)})
	if err != nil {
		t.Fatal(err)
	}
	if len(db.tried) != 2 {
		t.Errorf("%d lines are tried on every host, want the 2 with a wildcard or a hashed name", len(db.tried))
	}
	for host, key := range keys {
		if err := db.check(host, anyAddr, key); err != nil {
			t.Fatalf("%s: %v", host, err)
		}
	}
}
