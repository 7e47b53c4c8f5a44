package executor

import (
	"bufio"
	"bytes"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strings"
	"sync"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// knownHostsDB is what known_hosts files say, looked up by host.
//
// It answers as x/crypto's knownhosts does (with skeema/knownhosts'
// reading of wildcard lines at other ports), but finds a host's lines in
// an index instead of matching every line against every host: for a fleet
// of a thousand hosts with a line each, those libraries make two million
// matches per run, twice per connection. Only lines with wildcards or
// hashed names are tried on every host, once per address.
type knownHostsDB struct {
	lines   []knownLine
	revoked map[string]*knownhosts.KnownKey // by the key's wire form
	exact   map[hostAddr][]int              // lines naming the address outright
	tried   []int                           // lines with a wildcard or a hashed name
	// wildcards is set when any line has a wildcard in its first name,
	// which then also stands for the host at ports other than 22.
	wildcards bool

	mu      sync.Mutex
	matches map[hostAddr][]int // cache of lookup
}

// hostAddr is a host and port as known_hosts names them.
type hostAddr struct{ host, port string }

type knownLine struct {
	known knownhosts.KnownKey
	cert  bool // @cert-authority
	// wildcard: the first name has a '*' not followed by "]:", which
	// skeema/knownhosts lets match at any port.
	wildcard bool
	patterns []hostPattern // empty for a hashed name
	hashed   *hashedName
}

type hostPattern struct {
	negate bool
	addr   hostAddr
}

type hashedName struct{ salt, sum []byte }

func newKnownHostsDB(files []string) (*knownHostsDB, error) {
	db := &knownHostsDB{revoked: map[string]*knownhosts.KnownKey{}, exact: map[hostAddr][]int{}, matches: map[hostAddr][]int{}}
	for _, name := range files {
		if err := db.readFile(name); err != nil {
			return nil, err
		}
	}
	return db, nil
}

func (db *knownHostsDB) readFile(name string) error {
	f, err := os.Open(name)
	if err != nil {
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	n := 0
	for sc.Scan() {
		n++
		line := bytes.Trim(sc.Bytes(), " \t")
		if len(line) == 0 || line[0] == '#' {
			continue
		}
		if err := db.add(line, name, n); err != nil {
			return fmt.Errorf("knownhosts: %s:%d: %v", name, n, err)
		}
	}
	return sc.Err()
}

// add parses one line: [marker] names keytype base64-key [comment].
func (db *knownHostsDB) add(line []byte, file string, n int) error {
	marker, rest := knownHostsWord(line)
	if marker != "@cert-authority" && marker != "@revoked" {
		marker, rest = "", line
	}
	names, rest := knownHostsWord(rest)
	if strings.HasPrefix(names, "@") {
		return fmt.Errorf("unexpected marker %q", names)
	}
	if len(rest) == 0 {
		return errors.New("missing key type after the host names")
	}
	typ, rest := knownHostsWord(rest)
	if len(rest) == 0 {
		return errors.New("missing key after its type")
	}
	blob, _ := knownHostsWord(rest)
	raw, err := base64.StdEncoding.DecodeString(blob)
	if err != nil {
		return err
	}
	key, err := ssh.ParsePublicKey(raw)
	if err != nil {
		return err
	}
	if key.Type() != typ {
		return fmt.Errorf("the key is %s, not the %s the line says", key.Type(), typ)
	}
	known := knownhosts.KnownKey{Key: key, Filename: file, Line: n}
	if marker == "@revoked" {
		db.revoked[string(key.Marshal())] = &known
		return nil
	}
	l := knownLine{known: known, cert: marker == "@cert-authority"}
	if i := strings.IndexByte(names, '*'); i >= 0 && !strings.Contains(names[i:], "]:") {
		l.wildcard = true
		db.wildcards = true
	}
	if names[0] == '|' {
		if l.hashed, err = parseHashedName(names); err != nil {
			return err
		}
	} else if l.patterns, err = parseHostPatterns(names); err != nil {
		return err
	}

	i := len(db.lines)
	db.lines = append(db.lines, l)
	if l.hashed != nil {
		db.tried = append(db.tried, i)
		return nil
	}
	var plain []hostAddr
	for _, p := range l.patterns {
		switch {
		case p.negate:
		case strings.ContainsAny(p.addr.host, "*?"):
			db.tried = append(db.tried, i)
			return nil
		case !slices.Contains(plain, p.addr):
			plain = append(plain, p.addr)
		}
	}
	for _, a := range plain {
		db.exact[a] = append(db.exact[a], i)
	}
	return nil
}

// knownHostsWord splits off the first word of line, and the blanks after it.
func knownHostsWord(line []byte) (string, []byte) {
	i := bytes.IndexAny(line, " \t")
	if i < 0 {
		return string(line), nil
	}
	return string(line[:i]), bytes.Trim(line[i:], " \t")
}

// parseHostPatterns reads comma-separated names, each optionally negated
// with '!' and bracketed with a port; a name without one is at port 22.
func parseHostPatterns(names string) ([]hostPattern, error) {
	var ps []hostPattern
	for _, p := range strings.Split(names, ",") {
		if p == "" {
			continue
		}
		var hp hostPattern
		if p[0] == '!' {
			hp.negate, p = true, p[1:]
			if p == "" {
				return nil, errors.New("'!' without a name after it")
			}
		}
		host, port, err := net.SplitHostPort(p)
		if err != nil {
			if p[0] == '[' {
				return nil, err
			}
			host, port = p, "22"
		}
		hp.addr = hostAddr{host, port}
		ps = append(ps, hp)
	}
	return ps, nil
}

// parseHashedName reads |1|salt|hash, OpenSSH's HashKnownHosts form.
func parseHashedName(s string) (*hashedName, error) {
	parts := strings.Split(s, "|")
	if len(parts) != 4 {
		return nil, fmt.Errorf("a hashed name has 3 parts, not %d", len(parts)-1)
	}
	if parts[1] != "1" {
		return nil, fmt.Errorf("hash type %s: only 1 (HMAC-SHA1) exists", parts[1])
	}
	salt, err := base64.StdEncoding.DecodeString(parts[2])
	if err != nil {
		return nil, err
	}
	sum, err := base64.StdEncoding.DecodeString(parts[3])
	if err != nil {
		return nil, err
	}
	return &hashedName{salt: salt, sum: sum}, nil
}

func (l *knownLine) matches(a hostAddr) bool {
	if l.hashed != nil {
		name := a.host
		if strings.Contains(name, ":") {
			name = "[" + name + "]"
		}
		mac := hmac.New(sha1.New, l.hashed.salt)
		mac.Write([]byte(knownhosts.Normalize(name + ":" + a.port)))
		return hmac.Equal(mac.Sum(nil), l.hashed.sum)
	}
	// A negated name that matches rules the line out, whatever else does.
	matched := false
	for _, p := range l.patterns {
		if p.addr.port != a.port || !globMatch(p.addr.host, a.host) {
			continue
		}
		if p.negate {
			return false
		}
		matched = true
	}
	return matched
}

// globMatch matches s against a pattern where '*' stands for any run of
// bytes and '?' for any one byte, as x/crypto's knownhosts does: a '*'
// that ends the pattern wants at least one byte.
func globMatch(pattern, s string) bool {
	for {
		if pattern == "" {
			return s == ""
		}
		if s == "" {
			return false
		}
		switch pattern[0] {
		case '*':
			if len(pattern) == 1 {
				return true
			}
			for j := range len(s) {
				if globMatch(pattern[1:], s[j:]) {
					return true
				}
			}
			return false
		case '?':
		default:
			if pattern[0] != s[0] {
				return false
			}
		}
		pattern, s = pattern[1:], s[1:]
	}
}

// lookup is the lines that match a, in file order.
func (db *knownHostsDB) lookup(a hostAddr) []int {
	db.mu.Lock()
	found, ok := db.matches[a]
	db.mu.Unlock()
	if ok {
		return found
	}
	candidates := append(slices.Clone(db.exact[a]), db.tried...)
	slices.Sort(candidates)
	candidates = slices.Compact(candidates)
	found = nil
	for _, i := range candidates {
		if db.lines[i].matches(a) {
			found = append(found, i)
		}
	}
	db.mu.Lock()
	db.matches[a] = found
	db.mu.Unlock()
	return found
}

// lookupOrWildcard is lookup, and at a port other than 22 where no line
// names the host, the wildcard lines that match it at port 22 (as
// skeema/knownhosts reads them).
func (db *knownHostsDB) lookupOrWildcard(a hostAddr) (lines []int, wildcardOnly bool) {
	lines = db.lookup(a)
	if len(lines) > 0 || !db.wildcards || a.port == "22" || a.port == "" {
		return lines, false
	}
	// A slice of its own: what lookup returns is shared.
	var wild []int
	for _, i := range db.lookup(hostAddr{a.host, "22"}) {
		if db.lines[i].wildcard {
			wild = append(wild, i)
		}
	}
	return wild, true
}

// check verifies key for the host at address (host:port): certificates
// against the @cert-authority lines, plain keys against the host's lines.
// It fails with *knownhosts.RevokedError for a revoked key, and with
// *knownhosts.KeyError otherwise, whose Want is empty for an unknown host.
func (db *knownHostsDB) check(address string, remote net.Addr, key ssh.PublicKey) error {
	err := db.checkAt(address, remote, key, false)
	var ke *knownhosts.KeyError
	if err == nil || !db.wildcards || (errors.As(err, &ke) && len(ke.Want) > 0) {
		return err
	}
	host, port, splitErr := net.SplitHostPort(address)
	if splitErr != nil || port == "22" || port == "" {
		return err
	}
	return db.checkAt(net.JoinHostPort(host, "22"), remote, key, true)
}

// checkAt is check at one address; wildcardOnly counts only wildcard lines.
func (db *knownHostsDB) checkAt(address string, remote net.Addr, key ssh.PublicKey, wildcardOnly bool) error {
	lines := func(a hostAddr) []int {
		found := db.lookup(a)
		if !wildcardOnly {
			return found
		}
		var w []int
		for _, i := range found {
			if db.lines[i].wildcard {
				w = append(w, i)
			}
		}
		return w
	}
	cc := ssh.CertChecker{
		IsHostAuthority: func(auth ssh.PublicKey, address string) bool {
			host, port, err := net.SplitHostPort(address)
			if err != nil {
				return false
			}
			for _, i := range lines(hostAddr{host, port}) {
				if l := db.lines[i]; l.cert && sameKey(l.known.Key, auth) {
					return true
				}
			}
			return false
		},
		IsRevoked: func(cert *ssh.Certificate) bool {
			return db.revoked[string(cert.Marshal())] != nil || db.revoked[string(cert.SignatureKey.Marshal())] != nil
		},
		HostKeyFallback: func(address string, remote net.Addr, key ssh.PublicKey) error {
			if r := db.revoked[string(key.Marshal())]; r != nil {
				return &knownhosts.RevokedError{Revoked: *r}
			}
			if address == "" {
				address = remote.String()
			}
			host, port, err := net.SplitHostPort(address)
			if err != nil {
				return fmt.Errorf("knownhosts: %s: %v", address, err)
			}
			ke := &knownhosts.KeyError{}
			for _, i := range lines(hostAddr{host, port}) {
				ke.Want = append(ke.Want, db.lines[i].known)
				if sameKey(db.lines[i].known.Key, key) {
					return nil
				}
			}
			return ke
		},
	}
	return cc.CheckHostKey(address, remote, key)
}

// algorithms are the types of the keys known for hostPort, a certificate
// type for each matching @cert-authority line, RSA as its SHA-2 forms
// before ssh-rsa.
func (db *knownHostsDB) algorithms(hostPort string) []string {
	host, port, err := net.SplitHostPort(hostPort)
	if err != nil {
		return nil
	}
	lines, _ := db.lookupOrWildcard(hostAddr{host, port})
	var algos []string
	add := func(typ string, cert bool) {
		if cert {
			typ = certAlgo[typ]
		}
		if typ != "" && !slices.Contains(algos, typ) {
			algos = append(algos, typ)
		}
	}
	for _, i := range lines {
		l := db.lines[i]
		typ := l.known.Key.Type()
		if typ == ssh.KeyAlgoRSA {
			add(ssh.KeyAlgoRSASHA512, l.cert)
			add(ssh.KeyAlgoRSASHA256, l.cert)
		}
		add(typ, l.cert)
	}
	return algos
}

// certAlgo is the certificate algorithm of each key algorithm.
var certAlgo = map[string]string{
	ssh.KeyAlgoRSA:        ssh.CertAlgoRSAv01,
	ssh.KeyAlgoRSASHA256:  ssh.CertAlgoRSASHA256v01,
	ssh.KeyAlgoRSASHA512:  ssh.CertAlgoRSASHA512v01,
	ssh.KeyAlgoDSA:        ssh.CertAlgoDSAv01,
	ssh.KeyAlgoECDSA256:   ssh.CertAlgoECDSA256v01,
	ssh.KeyAlgoECDSA384:   ssh.CertAlgoECDSA384v01,
	ssh.KeyAlgoECDSA521:   ssh.CertAlgoECDSA521v01,
	ssh.KeyAlgoSKECDSA256: ssh.CertAlgoSKECDSA256v01,
	ssh.KeyAlgoED25519:    ssh.CertAlgoED25519v01,
	ssh.KeyAlgoSKED25519:  ssh.CertAlgoSKED25519v01,
}

func sameKey(a, b ssh.PublicKey) bool { return bytes.Equal(a.Marshal(), b.Marshal()) }
