package inventory

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/fleetdeploy/fleet/internal/diag"
	"github.com/fleetdeploy/fleet/internal/yamlfile"
)

// Host is one machine of the inventory with everything needed to reach it,
// resolved: the inventory's explicit values first, then ~/.ssh/config as
// OpenSSH reads it, then OpenSSH's defaults.
type Host struct {
	Name    string
	Address string
	Port    int
	User    string
	// IdentityFile is the key the inventory names, if any; IdentityFiles
	// is every key to offer, in order (that one alone when it is set, as
	// with OpenSSH's IdentitiesOnly, else what ssh_config gives).
	IdentityFile   string
	IdentityFiles  []string
	IdentitiesOnly bool
	// KnownHosts are the user known_hosts files, GlobalKnownHosts the
	// system ones; HashKnownHosts says whether new entries are hashed.
	KnownHosts       []string
	GlobalKnownHosts []string
	HashKnownHosts   bool
	// JumpSpec is the jump chain as written; Jump is it resolved, first hop
	// first, with each inventory jump host's own chain in front of it.
	JumpSpec []string
	Jump     []*Host
	Sudo     bool
	// LB marks a load balancer, whose upstreams fleet keeps current.
	LB     bool
	Labels map[string]string
	Groups []string
	Pos    diag.Pos // where the host is defined
}

// Inventory is the resolved set of hosts.
type Inventory struct {
	File   string // as given: a file, or an Ansible inventory directory
	Format string // "fleet", "ansible-ini", "ansible-yaml" or "ansible-dir"
	// Files is every file the inventory was read from: its own, in the
	// order read, then the group_vars/ and host_vars/ files, sorted.
	Files []string
	Hosts []*Host
	// Groups maps each group to its hosts' names, sorted.
	Groups   map[string][]string
	GroupPos map[string]diag.Pos
	// Warnings are things in the file that fleet does not use, such as
	// Ansible variables with no SSH meaning.
	Warnings []*diag.Error

	byName map[string]*Host
}

// Host returns the host called name, or nil.
func (inv *Inventory) Host(name string) *Host { return inv.byName[name] }

// Names returns every host name, sorted.
func (inv *Inventory) Names() []string {
	names := make([]string, len(inv.Hosts))
	for i, h := range inv.Hosts {
		names[i] = h.Name
	}
	return names
}

// Options change how an inventory is resolved.
type Options struct {
	// SSHConfig is the ssh_config file to read, as "ssh -F"; "" reads the
	// user's and the system's as OpenSSH does; "none" reads none.
	SSHConfig string
}

// Load reads and resolves the inventory in path, whichever of fleet's own
// format or Ansible's (INI or YAML) it is in; the content decides. A
// directory is read as Ansible reads one: every inventory file in it, with
// its group_vars/ and host_vars/ (see loadDir). All problems come back
// together as a *diag.List.
func Load(path string, opts Options) (*Inventory, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("inventory: %w", err)
	}
	if fi.IsDir() {
		return loadDir(path, opts)
	}
	data, err := yamlfile.ReadFile(path)
	var tooLarge *diag.List
	switch {
	case errors.As(err, &tooLarge):
		return nil, tooLarge
	case err != nil:
		return nil, fmt.Errorf("inventory: %w", err)
	}
	if errs := (&diag.List{}); !static(path, fi, data, errs) {
		return nil, errs.Err()
	}
	return Parse(path, data, opts)
}

// Parse is Load for content already read; path names it in errors and
// locates Ansible's host_vars and group_vars directories.
func Parse(path string, data []byte, opts Options) (*Inventory, error) {
	errs := &diag.List{}
	if !yamlfile.CheckSize(path, int64(len(data)), errs) {
		return nil, errs
	}
	var raw *rawInventory
	switch detect(data) {
	case "ansible-ini":
		raw = parseAnsibleINI(path, data, errs)
	case "ansible-yaml":
		raw = parseAnsibleYAML(path, data, errs)
	default:
		raw = parseNative(path, data, errs)
	}
	if raw == nil || errs.Len() > 0 {
		return nil, errs.Err()
	}
	inv := raw.resolve(opts, errs)
	if err := errs.Err(); err != nil {
		return nil, err
	}
	return inv, nil
}

// detect tells the inventory's format from its content: YAML whose top
// level has fleet's keys is fleet's; other YAML mappings are Ansible's YAML
// inventories (groups at the top, usually "all"); anything else is taken
// for Ansible's INI format.
func detect(data []byte) string {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil || len(root.Content) == 0 {
		if looksINI(data) {
			return "ansible-ini"
		}
		return "fleet" // let the strict reader explain what is wrong
	}
	top := root.Content[0]
	if top.Kind != yaml.MappingNode {
		if looksINI(data) {
			return "ansible-ini"
		}
		return "fleet"
	}
	fleet := false
	for i := 0; i < len(top.Content); i += 2 {
		switch top.Content[i].Value {
		case "defaults", "hosts", "groups":
			fleet = true
		case "plugin":
			// An Ansible inventory plugin's configuration, which has
			// keys such as groups: the Ansible reader explains.
			if v := yamlfile.Resolve(top.Content[i+1]); v.Kind == yaml.ScalarNode && v.Tag != "!!null" {
				return "ansible-yaml"
			}
		}
	}
	if fleet {
		return "fleet"
	}
	return "ansible-yaml"
}

var iniSectionRE = regexp.MustCompile(`(?m)^\s*\[[^\]]+\]\s*$`)

func looksINI(data []byte) bool {
	if iniSectionRE.Match(data) {
		return true
	}
	for _, line := range strings.Split(string(data), "\n") {
		if t := strings.TrimSpace(line); t != "" && !strings.HasPrefix(t, "#") && !strings.HasPrefix(t, ";") {
			return !strings.Contains(t, ": ") && !strings.HasSuffix(t, ":")
		}
	}
	return false
}

// rawHost is a host as a file states it, before ssh_config and defaults.
// Pointers distinguish "not set" from a zero value.
type rawHost struct {
	name         string
	pos          diag.Pos
	address      *string
	port         *int
	user         *string
	identityFile *string
	knownHosts   []string
	jump         []string
	jumpSet      bool
	jumpInherit  bool // from defaults or a group, not the host's own
	jumpPos      diag.Pos
	sudo         *bool
	lb           *bool
	labels       map[string]string
}

type rawInventory struct {
	file     string
	format   string
	files    []string
	hosts    []*rawHost
	groups   map[string][]string
	groupPos map[string]diag.Pos
	warnings []*diag.Error
}

var (
	hostNameRE = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]*$`)
	userRE     = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]*\$?$`)
	labelKeyRE = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9_.\-/]*[A-Za-z0-9])?$`)
)

// checkHostName returns what is wrong with a host or group name, or "".
func checkHostName(name string) string {
	if !hostNameRE.MatchString(name) || len(name) > 253 {
		return "is not a valid name: use letters, digits, '.', '-' and '_', not starting with '-' or '.'"
	}
	return ""
}

// checkAddress returns what is wrong with an address, or "". Addresses
// reach ssh_config lookups and the network, never a shell, but an address
// that looks like an option is refused all the same.
func checkAddress(addr string) string {
	switch {
	case addr == "":
		return "is empty"
	case strings.HasPrefix(addr, "-"):
		return "starts with '-'"
	case strings.ContainsAny(addr, " \t\r\n'\"`$;&|<>\\"):
		return "contains spaces or shell characters"
	}
	return ""
}

func checkLabelKey(k string) string {
	if !labelKeyRE.MatchString(k) {
		return "is not a valid label: use letters, digits, '.', '-', '_' and '/'"
	}
	return ""
}

func expandHome(p string) string {
	if p == "~" || strings.HasPrefix(p, "~/") {
		if home, err := os.UserHomeDir(); err == nil {
			return filepath.Join(home, p[1:])
		}
	}
	return p
}

// hostFields reads the host fields shared by "defaults" and each host of the
// native format into h.
func hostFields(d *yamlfile.Doc, h *rawHost, what string, withAddress bool) map[string]func(*yaml.Node) {
	fields := map[string]func(*yaml.Node){
		"user": func(v *yaml.Node) {
			if s, ok := d.Scalar(v, what+".user"); ok {
				if !userRE.MatchString(s) {
					d.Errorf(v, "%s.user: %q is not a valid user name", what, s)
					return
				}
				h.user = &s
			}
		},
		"port": func(v *yaml.Node) {
			if p, ok := d.Int(v, what+".port", 1, 65535); ok {
				h.port = &p
			}
		},
		"identity_file": func(v *yaml.Node) {
			if s, ok := d.String(v, what+".identity_file"); ok {
				if s == "" {
					d.Errorf(v, "%s.identity_file: is empty", what).Hint = "remove the key to use ssh-agent and ~/.ssh/config"
					return
				}
				h.identityFile = &s
			}
		},
		"known_hosts": func(v *yaml.Node) {
			n := yamlfile.Resolve(v)
			var files []string
			if n.Kind == yaml.SequenceNode {
				files, _ = d.Strings(v, what+".known_hosts")
			} else if s, ok := d.String(v, what+".known_hosts"); ok {
				files = []string{s}
			}
			for _, f := range files {
				if f == "" {
					d.Errorf(v, "%s.known_hosts: empty file name", what)
					return
				}
			}
			h.knownHosts = files
		},
		"jump": func(v *yaml.Node) {
			n := yamlfile.Resolve(v)
			h.jumpSet, h.jumpPos = true, d.Pos(v)
			if n.Kind == yaml.ScalarNode && n.Tag == "!!str" {
				h.jump = []string{n.Value} // a single hop needs no list
				return
			}
			h.jump, _ = d.Strings(v, what+".jump")
		},
		"sudo": func(v *yaml.Node) {
			if b, ok := d.Bool(v, what+".sudo"); ok {
				h.sudo = &b
			}
		},
		"lb": func(v *yaml.Node) {
			if b, ok := d.Bool(v, what+".lb"); ok {
				h.lb = &b
			}
		},
		"labels": func(v *yaml.Node) {
			h.labels, _ = d.StringMap(v, what+".labels", checkLabelKey)
		},
	}
	if withAddress {
		fields["address"] = func(v *yaml.Node) {
			if s, ok := d.String(v, what+".address"); ok {
				if problem := checkAddress(s); problem != "" {
					d.Errorf(v, "%s.address: %q %s", what, s, problem)
					return
				}
				h.address = &s
			}
		}
	}
	return fields
}

// parseNative reads fleet's own inventory format.
func parseNative(file string, data []byte, errs *diag.List) *rawInventory {
	d := &yamlfile.Doc{File: file, Errs: errs}
	root := d.Parse(data)
	if root == nil {
		return nil
	}
	raw := &rawInventory{file: file, format: "fleet", files: []string{file}, groups: map[string][]string{}, groupPos: map[string]diag.Pos{}}
	defaults := &rawHost{}
	var hostsNode *yaml.Node
	ok := d.Fields(root, "inventory", map[string]func(*yaml.Node){
		"defaults": func(v *yaml.Node) { d.Fields(v, "defaults", hostFields(d, defaults, "defaults", false)) },
		"hosts":    func(v *yaml.Node) { hostsNode = v },
		"groups": func(v *yaml.Node) {
			pairs, _ := d.Pairs(v, "groups")
			for _, p := range pairs {
				if problem := checkHostName(p.Key); problem != "" {
					d.Errorf(p.KeyN, "group %q %s", p.Key, problem)
					continue
				}
				members, _ := d.Strings(p.Value, "groups."+p.Key)
				raw.groups[p.Key] = members
				raw.groupPos[p.Key] = d.Pos(p.KeyN)
			}
		},
	})
	if !ok {
		return nil
	}
	if hostsNode == nil || yamlfile.IsNull(hostsNode) {
		pos := diag.Pos{File: file, Line: 1, Col: 1}
		if hostsNode != nil {
			pos = d.Pos(hostsNode)
		}
		errs.Add(pos, "inventory: no hosts").Hint = "list them under hosts:, e.g. hosts: {web1: {address: 203.0.113.10}}"
		return raw
	}
	pairs, _ := d.Pairs(hostsNode, "hosts")
	for _, p := range pairs {
		if problem := checkHostName(p.Key); problem != "" {
			d.Errorf(p.KeyN, "host %q %s", p.Key, problem)
			continue
		}
		h := &rawHost{name: p.Key, pos: d.Pos(p.KeyN)}
		d.Fields(p.Value, "host "+p.Key, hostFields(d, h, "host "+p.Key, true))
		raw.hosts = append(raw.hosts, h.over(defaults))
	}
	for g, members := range raw.groups {
		if _, clash := findHost(raw.hosts, g); clash {
			errs.Add(raw.groupPos[g], "group %q has the name of a host", g).Hint = "rename the group, so that selectors can tell them apart"
		}
		for _, m := range members {
			if _, found := findHost(raw.hosts, m); !found {
				e := errs.Add(raw.groupPos[g], "group %s: no host %q in the inventory", g, m)
				e.Hint = diag.Suggest(m, hostNames(raw.hosts))
			}
		}
	}
	return raw
}

// over fills what h leaves unset from defaults; labels merge, h's winning.
func (h *rawHost) over(defaults *rawHost) *rawHost {
	if h.address == nil {
		h.address = defaults.address
	}
	if h.port == nil {
		h.port = defaults.port
	}
	if h.user == nil {
		h.user = defaults.user
	}
	if h.identityFile == nil {
		h.identityFile = defaults.identityFile
	}
	if h.knownHosts == nil {
		h.knownHosts = defaults.knownHosts
	}
	if !h.jumpSet && defaults.jumpSet {
		h.jump, h.jumpSet, h.jumpPos, h.jumpInherit = defaults.jump, true, defaults.jumpPos, true
	}
	if h.sudo == nil {
		h.sudo = defaults.sudo
	}
	if h.lb == nil {
		h.lb = defaults.lb
	}
	if len(defaults.labels) > 0 {
		merged := map[string]string{}
		for k, v := range defaults.labels {
			merged[k] = v
		}
		for k, v := range h.labels {
			merged[k] = v
		}
		h.labels = merged
	}
	return h
}

func findHost(hosts []*rawHost, name string) (*rawHost, bool) {
	for _, h := range hosts {
		if h.name == name {
			return h, true
		}
	}
	return nil, false
}

func hostNames(hosts []*rawHost) []string {
	names := make([]string, len(hosts))
	for i, h := range hosts {
		names[i] = h.name
	}
	return names
}
