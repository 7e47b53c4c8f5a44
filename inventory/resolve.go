package inventory

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/fleetdeploy/fleet/internal/diag"
)

// sshSettings is what ssh_config says about one host alias.
type sshSettings struct {
	hostname         string
	user             string
	port             int
	identityFiles    []string
	identitiesOnly   bool
	proxyJump        []string
	knownHosts       []string
	globalKnownHosts []string
	hashKnownHosts   bool
}

// defaultSSH is what OpenSSH uses when no ssh_config says otherwise.
func defaultSSH(alias string) sshSettings {
	name := os.Getenv("USER")
	if u, err := user.Current(); err == nil {
		name = u.Username
	}
	return sshSettings{
		hostname: alias, user: name, port: 22,
		identityFiles:    []string{"~/.ssh/id_rsa", "~/.ssh/id_ecdsa", "~/.ssh/id_ed25519"},
		knownHosts:       []string{"~/.ssh/known_hosts", "~/.ssh/known_hosts2"},
		globalKnownHosts: []string{"/etc/ssh/ssh_known_hosts", "/etc/ssh/ssh_known_hosts2"},
	}
}

// sshConfig answers ssh_config questions by asking OpenSSH itself ("ssh
// -G"), which applies Include, Match, wildcard Host blocks, tokens and
// defaults exactly as ssh would. Answers are cached per alias.
type sshConfig struct {
	file string // "" for the user's own, "none" to skip
	mu   sync.Mutex
	memo map[string]sshSettings
	errs map[string]error
}

func (c *sshConfig) lookup(alias string) (sshSettings, error) {
	c.mu.Lock()
	if s, ok := c.memo[alias]; ok {
		c.mu.Unlock()
		return s, c.errs[alias]
	}
	c.mu.Unlock()
	s, err := c.ask(alias)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.memo == nil {
		c.memo, c.errs = map[string]sshSettings{}, map[string]error{}
	}
	c.memo[alias], c.errs[alias] = s, err
	return s, err
}

func (c *sshConfig) ask(alias string) (sshSettings, error) {
	s := defaultSSH(alias)
	if c.file == "none" {
		return s, nil
	}
	if _, err := exec.LookPath("ssh"); err != nil {
		// Without OpenSSH's client there is no ssh_config to honour
		// either, in all likelihood; its defaults are what ssh would use.
		return s, nil
	}
	args := []string{"-G"}
	if c.file != "" {
		args = append(args, "-F", c.file)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ssh", append(args, "--", alias)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return s, fmt.Errorf("ssh -G %s: %v: %s", alias, err, strings.TrimSpace(stderr.String()))
	}
	s.identityFiles = nil
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		key, value, _ := strings.Cut(sc.Text(), " ")
		switch key {
		case "hostname":
			s.hostname = value
		case "user":
			s.user = value
		case "port":
			if p, err := strconv.Atoi(value); err == nil {
				s.port = p
			}
		case "identityfile":
			s.identityFiles = append(s.identityFiles, value)
		case "identitiesonly":
			s.identitiesOnly = value == "yes"
		case "proxyjump":
			if value != "none" {
				s.proxyJump = strings.Split(value, ",")
			}
		case "userknownhostsfile":
			s.knownHosts = strings.Fields(value)
		case "globalknownhostsfile":
			s.globalKnownHosts = strings.Fields(value)
		case "hashknownhosts":
			s.hashKnownHosts = value == "yes"
		}
	}
	return s, nil
}

// resolve turns the raw hosts into Hosts: ssh_config under the file's
// explicit values, jump chains expanded and checked, groups collected.
func (raw *rawInventory) resolve(opts Options, errs *diag.List) *Inventory {
	inv := &Inventory{
		File: raw.file, Format: raw.format, Files: raw.files,
		Groups: map[string][]string{}, GroupPos: raw.groupPos,
		Warnings: raw.warnings,
		byName:   map[string]*Host{},
	}
	cfg := &sshConfig{file: opts.SSHConfig}

	// ssh -G costs a process per host: ask for all hosts at once, bounded.
	hosts := make([]*Host, len(raw.hosts))
	sem := make(chan struct{}, 16)
	var wg sync.WaitGroup
	var mu sync.Mutex
	for i, r := range raw.hosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			h, err := r.host(cfg)
			if err != nil {
				mu.Lock()
				errs.Add(r.pos, "host %s: reading ssh_config: %v", r.name, err)
				mu.Unlock()
			}
			hosts[i] = h
		}()
	}
	wg.Wait()
	for _, h := range hosts {
		if _, dup := inv.byName[h.Name]; dup {
			errs.Add(h.Pos, "host %q is defined twice", h.Name)
			continue
		}
		inv.byName[h.Name] = h
		inv.Hosts = append(inv.Hosts, h)
	}
	sort.Slice(inv.Hosts, func(i, j int) bool { return inv.Hosts[i].Name < inv.Hosts[j].Name })

	for g, members := range raw.groups {
		seen := map[string]bool{}
		for _, m := range members {
			if h := inv.byName[m]; h != nil && !seen[m] {
				seen[m] = true
				inv.Groups[g] = append(inv.Groups[g], m)
				h.Groups = append(h.Groups, g)
			}
		}
		if _, ok := inv.Groups[g]; !ok {
			inv.Groups[g] = nil // an empty group still exists
		}
		sort.Strings(inv.Groups[g])
	}
	for _, h := range inv.Hosts {
		sort.Strings(h.Groups)
	}

	rawByName := map[string]*rawHost{}
	for _, r := range raw.hosts {
		rawByName[r.name] = r
	}
	for _, h := range inv.Hosts {
		chain, err := inv.jumpChain(h, cfg, rawByName, nil)
		if err != nil {
			pos := rawByName[h.Name].jumpPos
			if pos.File == "" { // the chain came from ssh_config
				pos = h.Pos
			}
			errs.Add(pos, "host %s: %v", h.Name, err)
			continue
		}
		h.Jump = chain
	}
	return inv
}

// host resolves one raw host.
func (r *rawHost) host(cfg *sshConfig) (*Host, error) {
	s, err := cfg.lookup(r.name)
	h := &Host{
		Name: r.name, Pos: r.pos,
		Address: s.hostname, Port: s.port, User: s.user,
		IdentitiesOnly:   s.identitiesOnly,
		KnownHosts:       expandAll(s.knownHosts),
		GlobalKnownHosts: expandAll(s.globalKnownHosts),
		HashKnownHosts:   s.hashKnownHosts,
		JumpSpec:         s.proxyJump,
		Labels:           r.labels,
	}
	if h.Labels == nil {
		h.Labels = map[string]string{}
	}
	if r.address != nil {
		h.Address = *r.address
	}
	if r.port != nil {
		h.Port = *r.port
	}
	if r.user != nil {
		h.User = *r.user
	}
	if r.identityFile != nil {
		h.IdentityFile = expandHome(*r.identityFile)
		h.IdentityFiles = []string{h.IdentityFile}
		h.IdentitiesOnly = true
	} else {
		for _, f := range s.identityFiles {
			h.IdentityFiles = append(h.IdentityFiles, expandHome(f))
		}
	}
	if r.knownHosts != nil {
		h.KnownHosts = expandAll(r.knownHosts)
	}
	if r.jumpSet {
		h.JumpSpec = r.jump
		if r.jumpInherit {
			// A jump host that shares the defaults does not jump through
			// itself: it uses the hops before it in the chain.
			for i, j := range r.jump {
				if j == r.name {
					h.JumpSpec = r.jump[:i]
					break
				}
			}
		}
	}
	if r.sudo != nil {
		h.Sudo = *r.sudo
	}
	if r.lb != nil {
		h.LB = *r.lb
	}
	return h, err
}

func expandAll(paths []string) []string {
	out := make([]string, len(paths))
	for i, p := range paths {
		out[i] = expandHome(p)
	}
	return out
}

// jumpChain returns every hop on the way to h, first hop first: for each
// hop of h's own chain, that hop's own chain and then the hop itself.
func (inv *Inventory) jumpChain(h *Host, cfg *sshConfig, raw map[string]*rawHost, visiting []string) ([]*Host, error) {
	for _, v := range visiting {
		if v == h.Name {
			return nil, fmt.Errorf("jump hosts form a loop: %s", strings.Join(append(visiting, h.Name), " → "))
		}
	}
	if len(visiting) > 8 {
		return nil, fmt.Errorf("jump chain longer than 8 hops: %s", strings.Join(visiting, " → "))
	}
	var chain []*Host
	for _, spec := range h.JumpSpec {
		hop := inv.byName[spec]
		if hop == nil && !strings.ContainsAny(spec, "@:.[") {
			// A bare word is an inventory host or an ssh_config alias;
			// if it is neither, it is most likely a typo.
			if s, _ := cfg.lookup(spec); s.hostname == spec {
				msg := fmt.Sprintf("jump host %q is neither an inventory host nor an alias in ssh_config", spec)
				if hint := diag.Suggest(spec, inv.Names()); hint != "" {
					msg += "; " + hint
				} else {
					msg += "; for a host outside the inventory, write its full name or user@host"
				}
				return nil, fmt.Errorf("%s", msg)
			}
		}
		if hop == nil {
			var err error
			if hop, err = externalHop(spec, cfg); err != nil {
				return nil, err
			}
		}
		sub, err := inv.jumpChain(hop, cfg, raw, append(visiting, h.Name))
		if err != nil {
			return nil, err
		}
		chain = append(chain, sub...)
		chain = append(chain, hop)
	}
	return chain, nil
}

// externalHop resolves a jump host that is not in the inventory, written
// as OpenSSH's -J takes it: [user@]host[:port].
func externalHop(spec string, cfg *sshConfig) (*Host, error) {
	userPart, hostPort, hasUser := strings.Cut(spec, "@")
	if !hasUser {
		hostPort, userPart = userPart, ""
	}
	host, portStr := hostPort, ""
	if strings.HasPrefix(hostPort, "[") {
		if end := strings.Index(hostPort, "]"); end > 0 {
			host = hostPort[1:end]
			portStr = strings.TrimPrefix(hostPort[end+1:], ":")
		}
	} else if i := strings.LastIndexByte(hostPort, ':'); i >= 0 && strings.Count(hostPort, ":") == 1 {
		host, portStr = hostPort[:i], hostPort[i+1:]
	}
	if problem := checkAddress(host); problem != "" {
		return nil, fmt.Errorf("jump host %q is not an inventory host, and its address %s", spec, problem)
	}
	if hasUser && !userRE.MatchString(userPart) {
		return nil, fmt.Errorf("jump host %q: %q is not a valid user name", spec, userPart)
	}
	s, err := cfg.lookup(host)
	if err != nil {
		return nil, err
	}
	hop := &Host{
		Name: spec, Address: s.hostname, Port: s.port, User: s.user,
		IdentityFiles: expandAll(s.identityFiles), IdentitiesOnly: s.identitiesOnly,
		KnownHosts: expandAll(s.knownHosts), GlobalKnownHosts: expandAll(s.globalKnownHosts),
		HashKnownHosts: s.hashKnownHosts, JumpSpec: s.proxyJump, Labels: map[string]string{},
	}
	if hasUser {
		hop.User = userPart
	}
	if portStr != "" {
		p, err := strconv.Atoi(portStr)
		if err != nil || p < 1 || p > 65535 {
			return nil, fmt.Errorf("jump host %q: port %q: want 1 to 65535", spec, portStr)
		}
		hop.Port = p
	}
	return hop, nil
}
