package plan

import (
	"errors"
	"fmt"
	"math"
	"net"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/fleetdeploy/fleet/internal/diag"
	"github.com/fleetdeploy/fleet/internal/yamlfile"
	"github.com/fleetdeploy/fleet/inventory"
)

// LoadProject reads fleet.yaml and checks it against the inventory. All
// problems of both come back together as a *diag.List.
func LoadProject(file string, inv *inventory.Inventory) (*Project, error) {
	data, err := yamlfile.ReadFile(file)
	var tooLarge *diag.List
	switch {
	case errors.As(err, &tooLarge):
		return nil, tooLarge
	case err != nil:
		return nil, fmt.Errorf("desired state: %w", err)
	}
	return ParseProject(file, data, inv)
}

// ParseProject is LoadProject for content already read. With a nil
// inventory, only the file itself is checked.
func ParseProject(file string, data []byte, inv *inventory.Inventory) (*Project, error) {
	errs := &diag.List{}
	p := decodeProject(&yamlfile.Doc{File: file, Errs: errs}, data)
	if p != nil && inv != nil {
		p.check(inv, errs)
	}
	if err := errs.Err(); err != nil {
		return nil, err
	}
	return p, nil
}

var (
	projectRE  = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)
	nameRE     = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)
	envNameRE  = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_.-]*$`)
	labelKeyRE = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9_.\-/]*[A-Za-z0-9])?$`)
	hostnameRE = regexp.MustCompile(`^(\*\.)?[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$`)
	userRE     = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]*(:[A-Za-z0-9_][A-Za-z0-9_.-]*)?$`)
	// An image reference as Docker's distribution grammar has it, simplified:
	// [registry[:port]/]path[:tag][@sha256:digest].
	imageRE = regexp.MustCompile(`^(?:[a-zA-Z0-9](?:[a-zA-Z0-9.-]*[a-zA-Z0-9])?(?::[0-9]+)?/)?` +
		`[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*` +
		`(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@sha256:[a-f0-9]{64})?$`)
)

func checkName(s string) string {
	if !nameRE.MatchString(s) {
		return "use lower-case letters, digits, '-' and '_', starting with a letter or digit, at most 63"
	}
	return ""
}

func decodeProject(d *yamlfile.Doc, data []byte) *Project {
	root := d.Parse(data)
	if root == nil {
		return nil
	}
	p := &Project{File: d.File, Registries: map[string]Registry{}}
	var servicesNode, projectNode *yaml.Node
	ok := d.Fields(root, "fleet.yaml", map[string]func(*yaml.Node){
		"project":  func(v *yaml.Node) { projectNode = v },
		"services": func(v *yaml.Node) { servicesNode = v },
		"registries": func(v *yaml.Node) {
			pairs, _ := d.Pairs(v, "registries")
			for _, pr := range pairs {
				p.Registries[pr.Key] = decodeRegistry(d, pr.Key, pr.Value)
			}
		},
		"networks": func(v *yaml.Node) { p.Networks = decodeDeclared(d, v, "networks") },
		"volumes":  func(v *yaml.Node) { p.Volumes = decodeDeclared(d, v, "volumes") },
		"hooks":    func(v *yaml.Node) { p.Hooks = decodeHooks(d, v) },
		"proxy_image": func(v *yaml.Node) {
			if img, ok := d.String(v, "proxy_image"); ok {
				if !imageRE.MatchString(img) {
					d.Errorf(v, "proxy_image: %q is not an image reference", img).Hint = "e.g. caddy:2 (Caddy 2.11.2 or newer)"
				}
				p.ProxyImage = img
			}
		},
	})
	if !ok {
		return nil
	}
	if p.ProxyImage == "" {
		p.ProxyImage = DefaultProxyImage
	}
	top := diag.Pos{File: d.File, Line: root.Line, Col: root.Column}
	if projectNode == nil {
		d.Errs.Add(top, "fleet.yaml: no project").Hint = "add project: NAME; it namespaces the containers, locks and history on the hosts"
	} else if s, ok := d.String(projectNode, "project"); ok {
		if problem := checkName(s); problem != "" {
			d.Errorf(projectNode, "project %q: %s", s, problem)
		}
		p.Name = s
	}
	if servicesNode == nil || yamlfile.IsNull(servicesNode) {
		d.Errs.Add(top, "fleet.yaml: no services").Hint = "add services: with at least one service, e.g. services: {web: {image: nginx:1.27}}"
		return p
	}
	pairs, _ := d.Pairs(servicesNode, "services")
	for _, pr := range pairs {
		if problem := checkName(pr.Key); problem != "" {
			d.Errorf(pr.KeyN, "service %q: %s", pr.Key, problem)
			continue
		}
		p.Services = append(p.Services, decodeService(d, p, pr.Key, pr.KeyN, pr.Value))
	}
	p.checkDependencies(d.Errs)
	return p
}

// notYet refuses a key of the specification that this version of fleet
// does not carry out: accepting it would silently do nothing.
// decodeHooks reads the hooks: each a command that can be run as it is
// written, from fleet.yaml's directory.
func decodeHooks(d *yamlfile.Doc, v *yaml.Node) Hooks {
	var h Hooks
	hook := func(to *[]string, key string) func(*yaml.Node) {
		return func(n *yaml.Node) {
			what := "hooks." + key
			argv, ok := d.Strings(n, what)
			switch {
			case !ok:
				return
			case len(argv) == 0 || argv[0] == "":
				d.Errorf(n, "%s: no command", what).Hint = "an argument vector: [./notify, --channel, deploys]"
				return
			}
			if problem := runnable(filepath.Dir(d.File), argv[0]); problem != "" {
				d.Errorf(n, "%s: %s %s", what, argv[0], problem).Hint = "a hook runs without a shell, from fleet.yaml's directory: name a program there (./notify) or on PATH, executable (chmod +x)"
			}
			*to = argv
		}
	}
	d.Fields(v, "hooks", map[string]func(*yaml.Node){
		"pre_apply":  hook(&h.PreApply, "pre_apply"),
		"post_apply": hook(&h.PostApply, "post_apply"),
		"on_failure": hook(&h.OnFailure, "on_failure"),
	})
	return h
}

// runnable says what keeps the program name from being run from dir, ""
// when nothing does: a name with a slash is a path (from dir when it is
// relative), one without is looked for on PATH.
func runnable(dir, name string) string {
	if !strings.Contains(name, "/") {
		if _, err := exec.LookPath(name); err != nil {
			return "is not found on PATH"
		}
		return ""
	}
	if !filepath.IsAbs(name) {
		name = filepath.Join(dir, name)
	}
	fi, err := os.Stat(name)
	switch {
	case err != nil:
		return "does not exist"
	case fi.IsDir():
		return "is a directory"
	case fi.Mode().Perm()&0o111 == 0:
		return "is not executable"
	}
	return ""
}

func decodeDeclared(d *yamlfile.Doc, v *yaml.Node, what string) []string {
	pairs, _ := d.Pairs(v, what)
	var names []string
	for _, pr := range pairs {
		if problem := checkName(pr.Key); problem != "" {
			d.Errorf(pr.KeyN, "%s: %q: %s", what, pr.Key, problem)
			continue
		}
		// Options (drivers, external) are for later; an empty mapping now.
		d.Fields(pr.Value, what+"."+pr.Key, map[string]func(*yaml.Node){})
		names = append(names, pr.Key)
	}
	return names
}

func decodeRegistry(d *yamlfile.Doc, host string, v *yaml.Node) Registry {
	var r Registry
	what := "registry " + host
	var userNode, passNode *yaml.Node
	d.Fields(v, what, map[string]func(*yaml.Node){
		"username": func(v *yaml.Node) { userNode = v; r.Username, _ = d.Scalar(v, what+".username") },
		"password": func(v *yaml.Node) { passNode = v; r.Password, _ = decodeSecretRef(d, v, what+".password") },
	})
	if userNode == nil || passNode == nil {
		d.Errorf(v, "%s: want both username and password", what).Hint = "password takes env:NAME, file:PATH or cmd:COMMAND, never the password itself"
	}
	if !hostnameRE.MatchString(strings.Split(host, ":")[0]) {
		d.Errorf(v, "registry %q is not a host name", host)
	}
	return r
}

// decodeSecretRef reads env:NAME, file:PATH or cmd:COMMAND.
func decodeSecretRef(d *yamlfile.Doc, v *yaml.Node, what string) (SecretRef, bool) {
	s, ok := d.String(v, what)
	if !ok {
		return SecretRef{}, false
	}
	source, ref, found := strings.Cut(s, ":")
	switch {
	case !found || ref == "":
	case source == "env":
		if !envNameRE.MatchString(ref) {
			d.Errorf(v, "%s: %q is not an environment variable name", what, ref)
			return SecretRef{}, false
		}
		return SecretRef{source, ref}, true
	case source == "file", source == "cmd":
		return SecretRef{source, ref}, true
	}
	e := d.Errorf(v, "%s: want env:NAME, file:PATH or cmd:COMMAND, got %q", what, s)
	e.Hint = "secrets are referenced, never written in fleet.yaml"
	return SecretRef{}, false
}

func decodeService(d *yamlfile.Doc, p *Project, name string, keyN, v *yaml.Node) *Service {
	s := &Service{
		Name: name, Pos: d.Pos(keyN),
		Pull: "missing", MaxPerHost: 1,
		Restart:       Restart{Policy: "unless-stopped"},
		StopGrace:     DefaultStopGrace,
		History:       DefaultHistory,
		ImageDelivery: "pull",
		Env:           map[string]string{},
		Secrets:       map[string]SecretRef{},
		Labels:        map[string]string{},
		Update: UpdatePolicy{
			Parallelism:   Parallelism{Waves: []Wave{{Count: 1}}},
			Monitor:       DefaultMonitor,
			FailureAction: "rollback", HealthyDeadline: DefaultHealthyDeadline,
		},
		pos: map[string]diag.Pos{},
	}
	w := "service " + name
	at := func(key string, v *yaml.Node) { s.pos[key] = d.Pos(v) }
	ok := d.Fields(v, w, map[string]func(*yaml.Node){
		"image": func(v *yaml.Node) {
			at("image", v)
			if img, ok := d.String(v, w+".image"); ok {
				if !imageRE.MatchString(img) {
					d.Errorf(v, "%s.image: %q is not an image reference", w, img).Hint = "write it as [registry/]name[:tag][@sha256:digest], e.g. ghcr.io/acme/web:1.4.2"
				}
				s.Image = img
			}
		},
		"pull": func(v *yaml.Node) { s.Pull, _ = d.Enum(v, w+".pull", "missing", "always", "never") },
		"hosts": func(v *yaml.Node) {
			at("hosts", v)
			s.Hosts = decodeHosts(d, s, v, w+".hosts")
		},
		"replicas": func(v *yaml.Node) {
			at("replicas", v)
			s.Replicas, s.ReplicasSet = d.Int(v, w+".replicas", 0, 10000)
		},
		"max_per_host": func(v *yaml.Node) {
			at("max_per_host", v)
			s.MaxPerHost, _ = d.Int(v, w+".max_per_host", 1, 1000)
		},
		"spread": func(v *yaml.Node) {
			at("spread", v)
			if l, ok := d.String(v, w+".spread"); ok {
				if !labelKeyRE.MatchString(l) {
					d.Errorf(v, "%s.spread: %q is not a label name", w, l)
				}
				s.Spread = l
			}
		},
		"command":    func(v *yaml.Node) { s.Command = decodeArgv(d, v, w+".command") },
		"entrypoint": func(v *yaml.Node) { s.Entrypoint = decodeArgv(d, v, w+".entrypoint") },
		"env": func(v *yaml.Node) {
			at("env", v)
			s.Env, _ = d.StringMap(v, w+".env", func(k string) string {
				if !envNameRE.MatchString(k) {
					return "is not an environment variable name"
				}
				return ""
			})
		},
		"secrets": func(v *yaml.Node) {
			pairs, _ := d.Pairs(v, w+".secrets")
			for _, pr := range pairs {
				if !envNameRE.MatchString(pr.Key) {
					d.Errorf(pr.KeyN, "%s.secrets: %q is not an environment variable name", w, pr.Key)
					continue
				}
				at("secrets."+pr.Key, pr.KeyN)
				if ref, ok := decodeSecretRef(d, pr.Value, w+".secrets."+pr.Key); ok {
					s.Secrets[pr.Key] = ref
				}
			}
		},
		"ports": func(v *yaml.Node) {
			at("ports", v)
			items, _ := d.Items(v, w+".ports")
			for i, item := range items {
				if port, ok := decodePort(d, item, fmt.Sprintf("%s.ports[%d]", w, i)); ok {
					s.Ports = append(s.Ports, port)
				}
			}
		},
		"volumes": func(v *yaml.Node) {
			items, _ := d.Items(v, w+".volumes")
			for i, item := range items {
				if m, ok := decodeMount(d, p, item, fmt.Sprintf("%s.volumes[%d]", w, i)); ok {
					s.Volumes = append(s.Volumes, m)
				}
			}
		},
		"networks": func(v *yaml.Node) {
			items, _ := d.Items(v, w+".networks")
			for i, item := range items {
				n, ok := d.String(item, fmt.Sprintf("%s.networks[%d]", w, i))
				if !ok {
					continue
				}
				if !slices.Contains(p.Networks, n) {
					e := d.Errorf(item, "%s.networks: network %q is not declared", w, n)
					e.Hint = declareHint("networks", n, p.Networks)
					continue
				}
				s.Networks = append(s.Networks, n)
			}
		},
		"resources":   func(v *yaml.Node) { s.Resources = decodeResources(d, v, w+".resources") },
		"restart":     func(v *yaml.Node) { s.Restart = decodeRestart(d, v, w+".restart") },
		"user":        func(v *yaml.Node) { s.User = decodeUser(d, v, w+".user") },
		"workdir":     func(v *yaml.Node) { s.Workdir = decodeAbsPath(d, v, w+".workdir") },
		"labels":      func(v *yaml.Node) { s.Labels = decodeLabels(d, v, w+".labels") },
		"stop_grace":  func(v *yaml.Node) { s.StopGrace, _ = d.Duration(v, w+".stop_grace") },
		"healthcheck": func(v *yaml.Node) { at("healthcheck", v); s.Healthcheck = decodeHealthcheck(d, v, w+".healthcheck") },
		"update":      func(v *yaml.Node) { decodeUpdate(d, v, w+".update", &s.Update) },
		"history":     func(v *yaml.Node) { s.History, _ = d.Int(v, w+".history", 1, 1000) },
		"depends_on": func(v *yaml.Node) {
			at("depends_on", v)
			s.DependsOn, _ = d.Strings(v, w+".depends_on")
		},
		"proxy": func(v *yaml.Node) {
			at("proxy", v)
			s.Proxy = decodeProxy(d, v, w+".proxy")
		},
		"image_delivery": func(v *yaml.Node) {
			s.ImageDelivery, _ = d.Enum(v, w+".image_delivery", "pull", "push")
		},
		"pre_stop": func(v *yaml.Node) {
			argv, ok := d.Strings(v, w+".pre_stop")
			if ok && (len(argv) == 0 || argv[0] == "") {
				d.Errorf(v, "%s.pre_stop: no command", w).Hint = "an argument vector, run in the container: [/app/drain, --wait]"
				return
			}
			s.PreStop = argv
		},
	})
	if !ok {
		return s
	}
	if s.Update.Order == "" {
		// Behind the proxy, the new instance serves before the old one
		// stops: nothing binds a host port.
		s.Update.Order = "stop-first"
		if s.Proxy != nil {
			s.Update.Order = "start-first"
		}
	}
	if s.Image == "" && s.pos["image"] == (diag.Pos{}) {
		d.Errorf(keyN, "%s: no image", w).Hint = "add image: NAME:TAG"
	}
	for k := range s.Secrets {
		if _, clash := s.Env[k]; clash {
			d.Errs.Add(s.pos["secrets."+k], "%s: %s is both in env and in secrets", w, k).Hint = "keep it in secrets only"
		}
	}
	if s.Proxy != nil && len(s.Ports) > 0 {
		e := d.Errs.Add(s.pos["ports"], "%s: publishes ports and is served through the proxy", w)
		e.Hint = "drop ports: the proxy reaches the container on proxy.port, and a fixed host port would block zero-downtime updates"
	}
	if s.MaxPerHost > 1 && len(s.Ports) > 0 {
		e := d.Errs.Add(s.pos["ports"], "%s: max_per_host %d with published host ports: two instances on one host cannot both bind port %d", w, s.MaxPerHost, s.Ports[0].Host)
		e.Hint = "use proxy: instead of ports, or max_per_host: 1"
	}
	if hc := s.Healthcheck; hc != nil && hc.HTTP != "" && hc.Port == 0 {
		switch {
		case s.Proxy != nil:
			hc.Port = s.Proxy.Port
		case len(s.Ports) == 1:
			hc.Port = s.Ports[0].Container
		default:
			d.Errs.Add(s.pos["healthcheck"], "%s.healthcheck: http needs a port", w).Hint = "add port: the container port that serves the path"
		}
	}
	return s
}

func declareHint(section, name string, declared []string) string {
	if h := diag.Suggest(name, declared); h != "" {
		return h
	}
	return fmt.Sprintf("declare it at the top level: %s: {%s: {}}", section, name)
}

// decodeHosts reads a selector string or a list of host names.
func decodeHosts(d *yamlfile.Doc, s *Service, v *yaml.Node, what string) *inventory.Selector {
	n := yamlfile.Resolve(v)
	s.hosts = hostsRef{pos: d.Pos(n), quoted: n.Style&(yaml.DoubleQuotedStyle|yaml.SingleQuotedStyle) != 0}
	if n.Kind == yaml.SequenceNode {
		names, ok := d.Strings(v, what)
		if !ok || len(names) == 0 {
			s.hosts.bad = true
			if ok {
				d.Errorf(v, "%s: an empty list selects no host", what).Hint = "remove hosts: to run on every host"
			}
			return nil
		}
		for _, item := range n.Content {
			s.hosts.items = append(s.hosts.items, d.Pos(item))
		}
		return inventory.NamesSelector(names)
	}
	text, ok := d.String(v, what)
	if !ok {
		s.hosts.bad = true
		return nil
	}
	sel, err := inventory.ParseSelector(text)
	if err != nil {
		se := err.(*inventory.SelectorError)
		d.Errs.Add(s.hosts.at(se.Offset), "%s: %s", what, se.Msg).Hint = "selectors look like role=web,zone!=c or zone in (a,b)"
		s.hosts.bad = true
		return nil
	}
	return sel
}

// at is the position of the byte at offset in the selector's text.
func (r hostsRef) at(offset int) diag.Pos {
	p := r.pos
	if r.quoted {
		p.Col++
	}
	p.Col += offset
	return p
}

// decodeArgv reads a command as a list of arguments; a string is refused,
// since splitting it would need a shell's rules.
func decodeArgv(d *yamlfile.Doc, v *yaml.Node, what string) []string {
	n := yamlfile.Resolve(v)
	if n.Kind == yaml.ScalarNode && n.Tag == "!!str" {
		fields := strings.Fields(n.Value)
		quoted := make([]string, len(fields))
		for i, f := range fields {
			quoted[i] = strconv.Quote(f)
		}
		d.Errorf(v, "%s: want a list of arguments, got the text %q", what, n.Value).Hint = "write it as a list, e.g. [" + strings.Join(quoted, ", ") + "]; no shell splits it"
		return nil
	}
	args, ok := d.Strings(v, what)
	if ok && args == nil {
		args = []string{}
	}
	return args
}

// decodePort reads "[ip:]host:container[/proto]".
func decodePort(d *yamlfile.Doc, v *yaml.Node, what string) (Port, bool) {
	n := yamlfile.Resolve(v)
	if n.Kind == yaml.ScalarNode && n.Tag == "!!int" {
		d.Errorf(v, "%s: want \"HOST:CONTAINER\", got %s", what, n.Value).Hint = fmt.Sprintf("write \"%s:%s\" to publish it on the same host port", n.Value, n.Value)
		return Port{}, false
	}
	s, ok := d.String(v, what)
	if !ok {
		return Port{}, false
	}
	bad := func(why string) (Port, bool) {
		d.Errorf(v, "%s: %q: %s", what, s, why).Hint = `write it as "8080:80", "127.0.0.1:8080:80" or "53:53/udp"`
		return Port{}, false
	}
	spec, proto, hasProto := strings.Cut(s, "/")
	p := Port{Proto: "tcp"}
	if hasProto {
		if proto != "tcp" && proto != "udp" {
			return bad("the protocol must be tcp or udp")
		}
		p.Proto = proto
	}
	if strings.HasPrefix(spec, "[") { // [IPv6]:host:container
		end := strings.Index(spec, "]:")
		if end < 0 {
			return bad("an IPv6 address needs its closing ']'")
		}
		p.HostIP, spec = spec[1:end], spec[end+2:]
	}
	parts := strings.Split(spec, ":")
	switch {
	case len(parts) == 3 && p.HostIP == "":
		p.HostIP, parts = parts[0], parts[1:]
	case len(parts) != 2:
		return bad("want HOST:CONTAINER")
	}
	if p.HostIP != "" && net.ParseIP(p.HostIP) == nil {
		return bad(fmt.Sprintf("%q is not an IP address", p.HostIP))
	}
	var err error
	if p.Host, err = portNumber(parts[0]); err != nil {
		return bad("host port " + err.Error())
	}
	if p.Container, err = portNumber(parts[1]); err != nil {
		return bad("container port " + err.Error())
	}
	return p, true
}

func portNumber(s string) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > 65535 {
		return 0, fmt.Errorf("%q is not a port from 1 to 65535", s)
	}
	return n, nil
}

// decodeMount reads "volume:/path[:ro]" or "/host/path:/path[:ro]".
func decodeMount(d *yamlfile.Doc, p *Project, v *yaml.Node, what string) (Mount, bool) {
	s, ok := d.String(v, what)
	if !ok {
		return Mount{}, false
	}
	parts := strings.Split(s, ":")
	bad := func(why string) (Mount, bool) {
		d.Errorf(v, "%s: %q: %s", what, s, why).Hint = `write it as "VOLUME:/path", "/host/path:/path" or either with ":ro"`
		return Mount{}, false
	}
	if len(parts) < 2 || len(parts) > 3 {
		return bad("want SOURCE:TARGET[:ro]")
	}
	m := Mount{Source: parts[0], Target: parts[1]}
	if len(parts) == 3 {
		switch parts[2] {
		case "ro":
			m.ReadOnly = true
		case "rw":
		default:
			return bad(fmt.Sprintf("mode %q: want ro or rw", parts[2]))
		}
	}
	if !path.IsAbs(m.Target) || path.Clean(m.Target) != m.Target {
		return bad(fmt.Sprintf("target %q must be a clean absolute path", m.Target))
	}
	if strings.HasPrefix(m.Source, "/") {
		if path.Clean(m.Source) != m.Source {
			return bad(fmt.Sprintf("source %q must be a clean absolute path", m.Source))
		}
		return m, true
	}
	if checkName(m.Source) != "" {
		return bad(fmt.Sprintf("source %q is neither an absolute path nor a volume name", m.Source))
	}
	if !slices.Contains(p.Volumes, m.Source) {
		d.Errorf(v, "%s: volume %q is not declared", what, m.Source).Hint = declareHint("volumes", m.Source, p.Volumes)
		return Mount{}, false
	}
	m.Named = true
	return m, true
}

// The memory limits fleet passes on: Docker refuses less than 6 MiB, and
// a petabyte is far above any host while well inside int64.
const minMemory, maxMemory = 6 << 20, 1 << 50

var memoryRE = regexp.MustCompile(`^([0-9]+(?:\.[0-9]+)?)\s*([kKmMgGtT]?)(?:i?[bB])?$`)

func decodeResources(d *yamlfile.Doc, v *yaml.Node, what string) Resources {
	var r Resources
	d.Fields(v, what, map[string]func(*yaml.Node){
		"cpus": func(v *yaml.Node) { r.CPUs, _ = d.Float(v, what+".cpus", 0.01, 1024) },
		"memory": func(v *yaml.Node) {
			n := yamlfile.Resolve(v)
			var size float64
			bare := n.Kind == yaml.ScalarNode && (n.Tag == "!!int" || n.Tag == "!!float")
			switch {
			case bare && n.Tag == "!!int":
				// A number without a unit counts bytes, as docker run's
				// --memory does; past int64's range it reads as the largest.
				b, _ := strconv.ParseInt(strings.ReplaceAll(n.Value, "_", ""), 0, 64)
				size = float64(b)
			case bare:
				// yaml.v3 tags a whole number past int64's range !!float.
				if n.Decode(&size) != nil || math.IsNaN(size) {
					d.Errorf(v, "%s.memory: %s is not a size", what, n.Value).Hint = "write it as 512M, 1.5G or 256MiB"
					return
				}
			default:
				s, ok := d.String(v, what+".memory")
				if !ok {
					return
				}
				m := memoryRE.FindStringSubmatch(s)
				if m == nil {
					d.Errorf(v, "%s.memory: %q is not a size", what, s).Hint = "write it as 512M, 1.5G or 256MiB"
					return
				}
				size, _ = strconv.ParseFloat(m[1], 64)
				switch strings.ToLower(m[2]) {
				case "k":
					size *= 1 << 10
				case "m":
					size *= 1 << 20
				case "g":
					size *= 1 << 30
				case "t":
					size *= 1 << 40
				}
			}
			switch {
			case size < minMemory:
				e := d.Errorf(v, "%s.memory: %s is too small: Docker needs at least 6M", what, n.Value)
				e.Hint = "leave memory out for no limit"
				if bare {
					e.Hint = "a number without a unit counts bytes: write 512M or 1G, or leave memory out for no limit"
				}
			case size > maxMemory:
				e := d.Errorf(v, "%s.memory: %s is too large: the most is 1024T", what, n.Value)
				e.Hint = "give the container the memory it needs, such as 512M or 4G, or leave memory out for no limit"
			default:
				r.Memory = int64(size)
			}
		},
	})
	return r
}

func decodeRestart(d *yamlfile.Doc, v *yaml.Node, what string) Restart {
	n := yamlfile.Resolve(v)
	if n.Kind == yaml.ScalarNode && n.Tag == "!!bool" {
		d.Errorf(v, "%s: want no, always, on-failure[:N] or unless-stopped, got %s", what, n.Value).Hint = `to never restart, write restart: "no"`
		return Restart{Policy: "unless-stopped"}
	}
	s, ok := d.String(v, what)
	if !ok {
		return Restart{Policy: "unless-stopped"}
	}
	policy, count, hasCount := strings.Cut(s, ":")
	switch {
	case policy == "on-failure" && hasCount:
		n, err := strconv.Atoi(count)
		if err != nil || n < 1 {
			d.Errorf(v, "%s: %q: the retry count must be a positive number", what, s)
			break
		}
		return Restart{Policy: policy, MaxRetries: n}
	case !hasCount && (policy == "no" || policy == "always" || policy == "on-failure" || policy == "unless-stopped"):
		return Restart{Policy: policy}
	default:
		e := d.Errorf(v, "%s: %q: want no, always, on-failure[:N] or unless-stopped", what, s)
		e.Hint = diag.Suggest(policy, []string{"no", "always", "on-failure", "unless-stopped"})
	}
	return Restart{Policy: "unless-stopped"}
}

func decodeUser(d *yamlfile.Doc, v *yaml.Node, what string) string {
	s, ok := d.Scalar(v, what)
	if !ok {
		return ""
	}
	if !userRE.MatchString(s) {
		d.Errorf(v, "%s: %q: want USER, UID or UID:GID", what, s)
		return ""
	}
	return s
}

func decodeAbsPath(d *yamlfile.Doc, v *yaml.Node, what string) string {
	s, ok := d.String(v, what)
	if ok && (!path.IsAbs(s) || path.Clean(s) != s) {
		d.Errorf(v, "%s: %q must be a clean absolute path", what, s)
		return ""
	}
	return s
}

func decodeLabels(d *yamlfile.Doc, v *yaml.Node, what string) map[string]string {
	labels, _ := d.StringMap(v, what, func(k string) string {
		if strings.HasPrefix(k, "fleet.") {
			return "is reserved: fleet.* labels are fleet's own"
		}
		if !labelKeyRE.MatchString(k) {
			return "is not a valid label name"
		}
		return ""
	})
	if labels == nil {
		labels = map[string]string{}
	}
	return labels
}

func decodeHealthcheck(d *yamlfile.Doc, v *yaml.Node, what string) *Healthcheck {
	hc := &Healthcheck{Interval: DefaultInterval, Timeout: DefaultTimeout, Retries: DefaultRetries}
	kinds := 0
	ok := d.Fields(v, what, map[string]func(*yaml.Node){
		"http": func(v *yaml.Node) {
			kinds++
			if s, ok := d.String(v, what+".http"); ok {
				if !strings.HasPrefix(s, "/") || strings.ContainsAny(s, " \t\r\n") {
					d.Errorf(v, "%s.http: %q: want a path such as /up", what, s)
					return
				}
				hc.HTTP = s
			}
		},
		"tcp": func(v *yaml.Node) { kinds++; hc.TCP, _ = d.Int(v, what+".tcp", 1, 65535) },
		"cmd": func(v *yaml.Node) {
			kinds++
			hc.Cmd = decodeArgv(d, v, what+".cmd")
			if hc.Cmd != nil && len(hc.Cmd) == 0 {
				d.Errorf(v, "%s.cmd: empty command", what)
			}
		},
		"docker": func(v *yaml.Node) {
			kinds++
			if b, ok := d.Bool(v, what+".docker"); ok {
				if !b {
					d.Errorf(v, "%s.docker: false means nothing", what).Hint = "remove it, or use http, tcp or cmd"
				}
				hc.Docker = b
			}
		},
		"port":         func(v *yaml.Node) { hc.Port, _ = d.Int(v, what+".port", 1, 65535) },
		"interval":     func(v *yaml.Node) { hc.Interval = positiveDuration(d, v, what+".interval") },
		"timeout":      func(v *yaml.Node) { hc.Timeout = positiveDuration(d, v, what+".timeout") },
		"retries":      func(v *yaml.Node) { hc.Retries, _ = d.Int(v, what+".retries", 1, 100) },
		"start_period": func(v *yaml.Node) { hc.StartPeriod, _ = d.Duration(v, what+".start_period") },
	})
	if ok && kinds != 1 {
		d.Errorf(v, "%s: want exactly one of http, tcp, cmd or docker, got %d", what, kinds).Hint = "e.g. healthcheck: {http: /up, port: 8080}"
	}
	return hc
}

func positiveDuration(d *yamlfile.Doc, v *yaml.Node, what string) time.Duration {
	dur, ok := d.Duration(v, what)
	if ok && dur == 0 {
		d.Errorf(v, "%s: must be more than 0", what)
	}
	return dur
}

func decodeUpdate(d *yamlfile.Doc, v *yaml.Node, what string, u *UpdatePolicy) {
	d.Fields(v, what, map[string]func(*yaml.Node){
		"parallelism": func(v *yaml.Node) { u.Parallelism = decodeParallelism(d, v, what+".parallelism") },
		"order":       func(v *yaml.Node) { u.Order, _ = d.Enum(v, what+".order", "stop-first", "start-first") },
		"monitor":     func(v *yaml.Node) { u.Monitor, _ = d.Duration(v, what+".monitor") },
		"failure_action": func(v *yaml.Node) {
			u.FailureAction, _ = d.Enum(v, what+".failure_action", "rollback", "pause", "continue")
		},
		"max_failure_ratio": func(v *yaml.Node) { u.MaxFailureRatio, _ = d.Float(v, what+".max_failure_ratio", 0, 1) },
		"healthy_deadline":  func(v *yaml.Node) { u.HealthyDeadline = positiveDuration(d, v, what+".healthy_deadline") },
	})
}

// decodeParallelism reads a number, a percentage or a list of waves.
func decodeParallelism(d *yamlfile.Doc, v *yaml.Node, what string) Parallelism {
	n := yamlfile.Resolve(v)
	if n.Kind == yaml.SequenceNode {
		var p Parallelism
		for i, item := range n.Content {
			if w, ok := decodeWave(d, item, fmt.Sprintf("%s[%d]", what, i)); ok {
				p.Waves = append(p.Waves, w)
			}
		}
		if len(n.Content) == 0 {
			d.Errorf(v, "%s: an empty list of waves", what).Hint = "e.g. [1, 2, \"50%\"]: one instance first, then two, then half at a time"
		}
		if len(p.Waves) == 0 {
			p.Waves = []Wave{{Count: 1}}
		}
		return p
	}
	w, ok := decodeWave(d, v, what)
	if !ok {
		w = Wave{Count: 1}
	}
	return Parallelism{Waves: []Wave{w}}
}

func decodeWave(d *yamlfile.Doc, v *yaml.Node, what string) (Wave, bool) {
	n := yamlfile.Resolve(v)
	if n.Kind == yaml.ScalarNode && n.Tag == "!!int" {
		c, ok := d.Int(v, what, 1, 10000)
		return Wave{Count: c}, ok
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!str" && strings.HasSuffix(n.Value, "%") {
		f, err := strconv.ParseFloat(strings.TrimSuffix(n.Value, "%"), 64)
		if err == nil && f > 0 && f <= 100 {
			return Wave{Percent: f}, true
		}
	}
	d.Errorf(v, "%s: want a number of instances or a percentage such as \"25%%\", got %s", what, yamlfile.Describe(n))
	return Wave{}, false
}

func decodeProxy(d *yamlfile.Doc, v *yaml.Node, what string) *Proxy {
	px := &Proxy{Path: "/", DrainTimeout: DefaultDrainTimeout}
	var hostSet, portSet bool
	ok := d.Fields(v, what, map[string]func(*yaml.Node){
		"host": func(v *yaml.Node) {
			hostSet = true
			if s, ok := d.String(v, what+".host"); ok {
				if !hostnameRE.MatchString(s) {
					d.Errorf(v, "%s.host: %q is not a host name", what, s)
				}
				px.Host = s
			}
		},
		"path": func(v *yaml.Node) {
			if s, ok := d.String(v, what+".path"); ok {
				if !strings.HasPrefix(s, "/") || strings.ContainsAny(s, " \t\r\n?#") {
					d.Errorf(v, "%s.path: %q: want a path such as / or /api", what, s)
				}
				px.Path = s
			}
		},
		"port":          func(v *yaml.Node) { portSet = true; px.Port, _ = d.Int(v, what+".port", 1, 65535) },
		"drain_timeout": func(v *yaml.Node) { px.DrainTimeout, _ = d.Duration(v, what+".drain_timeout") },
		"tls": func(v *yaml.Node) {
			switch v.Value {
			case "false":
			case "true":
				px.TLS = TLSPublic
			case "internal":
				px.TLS = TLSInternal
			default:
				d.Errorf(v, "%s.tls: want false, true (a certificate from Let's Encrypt) or internal (from the proxy's own CA)", what)
			}
		},
	})
	if ok && (!hostSet || !portSet) {
		d.Errorf(v, "%s: want host and port", what).Hint = "e.g. proxy: {host: shop.example.com, port: 8080}"
	}
	if px.TLS == TLSPublic && strings.HasPrefix(px.Host, "*") {
		d.Errorf(v, "%s: %s with tls: true needs a wildcard certificate, which a public CA gives only through a DNS challenge that fleet does not set up", what, px.Host).Hint = "use tls: internal, or one proxy.host per name"
	}
	return px
}

// checkDependencies finds depends_on entries naming no service, and cycles.
func (p *Project) checkDependencies(errs *diag.List) {
	var names []string
	for _, s := range p.Services {
		names = append(names, s.Name)
	}
	for _, s := range p.Services {
		for _, dep := range s.DependsOn {
			switch {
			case dep == s.Name:
				errs.Add(s.pos["depends_on"], "service %s depends on itself", s.Name)
			case p.Service(dep) == nil:
				errs.Add(s.pos["depends_on"], "service %s depends on %q, which is not a service", s.Name, dep).Hint = diag.Suggest(dep, names)
			}
		}
	}
	if errs.Len() > 0 {
		return
	}
	// Depth-first search for a cycle, reported once from where it starts.
	state := map[string]int{} // 1 visiting, 2 done
	var stack []string
	var visit func(name string) bool
	visit = func(name string) bool {
		state[name] = 1
		stack = append(stack, name)
		for _, dep := range p.Service(name).DependsOn {
			if state[dep] == 1 {
				i := slices.Index(stack, dep)
				cycle := append(append([]string{}, stack[i:]...), dep)
				errs.Add(p.Service(dep).pos["depends_on"], "depends_on forms a cycle: %s", strings.Join(cycle, " → ")).Hint = "a service cannot wait for one that waits for it"
				return true
			}
			if state[dep] == 0 && visit(dep) {
				return true
			}
		}
		stack = stack[:len(stack)-1]
		state[name] = 2
		return false
	}
	for _, s := range p.Services {
		if state[s.Name] == 0 && visit(s.Name) {
			return
		}
	}
}

func itoa(n int) string { return strconv.Itoa(n) }
