package plan

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"net"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/fleetdeploy/fleet/inventory"
)

// Live is what the hosts run, as read at the start of a run.
type Live struct {
	Hosts       map[string]*LiveHost // the hosts that answered
	Unreachable map[string]string    // the others, with why
	// Faults names the kind of trouble of a host in Unreachable when it is
	// known: "engine down" is not "unreachable".
	Faults map[string]string
}

// LiveHost is one host's state: its facts and every container of the
// project.
type LiveHost struct {
	MemAvailable int64
	CPUs         int
	Containers   []LiveContainer
	// Images maps each image reference present on the host to its ID, so
	// that a tag that now names another image is seen.
	Images map[string]string
	// Recorded is, by service, the newest revision the host's history
	// holds: a failed or rolled-back attempt leaves no container behind,
	// and its number must not be given again.
	Recorded map[string]Recorded
	// Routes holds, by service, the project's routes on the host's proxy,
	// for a project with proxied services; empty when no proxy runs
	// there, nil when they were not read.
	Routes map[string]LiveRoute
	// Proxy says whether the host runs the proxy, once read, and
	// ProxyImage what the running one was made from.
	Proxy      ProxyState
	ProxyImage string
}

// ProxyState is whether a host runs the proxy: "" when not read.
type ProxyState string

const (
	ProxyAbsent  ProxyState = "absent"
	ProxyRunning ProxyState = "running"
	// ProxyCutShort is a proxy that serves under its temporary name after
	// an upgrade was cut short: apply finishes the upgrade.
	ProxyCutShort ProxyState = "cut short"
)

// ProxyContainer is the proxy's container on every host.
const ProxyContainer = "fleet-proxy"

// LiveRoute is a service's route on a host's proxy.
type LiveRoute struct {
	Host, Path string // the path as a prefix without its last /: "" for /
	TLS        TLS
	Upstreams  []string
}

// Recorded is the newest revision of a service in a host's history.
type Recorded struct {
	Revision int
	Spec     string
	Outcome  string
	Who      string
	When     time.Time
	// Rollback is set when fleet rollback made the revision.
	Rollback *RollbackOf
}

// RollbackOf says what a revision made by fleet rollback went back from
// and to.
type RollbackOf struct {
	To       int    `json:"to"`        // the revision whose spec it restored
	From     int    `json:"from"`      // the revision it replaced
	FromSpec string `json:"from_spec"` // and that revision's spec
}

// LiveContainer is a container as the engine reports it.
type LiveContainer struct {
	ID, Name   string
	Labels     map[string]string
	Image      string // the reference it was created from
	ImageID    string
	Env        map[string]string // with the image's own defaults
	Command    []string
	Entrypoint []string
	Ports      []Port
	Volumes    []Mount
	Networks   []string
	// Addresses are its IP addresses, on each network, while it runs.
	Addresses []string
	User      string
	Workdir   string
	CPUs      float64
	Memory    int64
	Restart   Restart
	Running   bool
	Status    string // created, running, exited, ...
	ExitCode  int
	Created   time.Time
	// Unchecked marks a container that a run created, started or changed
	// in place and never saw pass its health check: that run ended first,
	// killed or cut off. It is not trusted as it is.
	Unchecked bool
}

// Input is everything a plan is computed from.
type Input struct {
	Project   *Project
	Inventory *inventory.Inventory
	// Scope is the hosts the run may read and change (all, or --hosts).
	Scope []*inventory.Host
	Live  Live
	// Secrets holds each service's secret values, to compare with what the
	// containers have; values go nowhere else.
	Secrets map[string]map[string]string
	// Services limits the plan to these services (--service); empty is all.
	Services   []string
	Reschedule bool
	// Pushed holds, by reference, the images of the services with
	// image_delivery: push as this machine's engine has them: what the
	// hosts are to run, and what pushing would send each one.
	Pushed map[string]PushedImage
}

// PushedImage is an image that fleet pushes from this machine.
type PushedImage struct {
	ID string
	// Bytes is, by host, what a push would send it: 0 when it holds the
	// image already. A host not listed could not be asked.
	Bytes map[string]int64
}

// Push is what pushing a service's image sends one host.
type Push struct {
	Host  string `json:"host"`
	Bytes int64  `json:"bytes"`
}

// Plan is the actions that turn live state into desired state. It is plain
// data: rendered for people, encoded with --json, saved with -o.
type Plan struct {
	Project  string         `json:"project"`
	Services []*ServicePlan `json:"services"`
	// Unreachable lists the hosts that could not be read, with why.
	Unreachable []HostProblem `json:"unreachable"`
	// ProxyUpgrades are carried out before any service.
	ProxyUpgrades []ProxyUpgrade `json:"proxy_upgrades"`
	// Balanced says that the inventory has load balancers (see
	// Balancer): the hosts serve proxied services to them over plain
	// HTTP.
	Balanced bool `json:"balanced,omitempty"`
	// Balancers are the load balancers' routes, changed or not; the
	// changes are carried out with their services.
	Balancers []Balancer `json:"balancers"`
	// Fingerprints hash each host's live state; a saved plan is applied
	// only while they still match.
	Fingerprints map[string]string `json:"fingerprints"`
	Summary      Summary           `json:"summary"`
}

// HostProblem is a host that could not be read.
type HostProblem struct {
	Host   string `json:"host"`
	State  string `json:"state"` // unreachable, or: engine down, no docker, docker denied
	Reason string `json:"reason"`
}

// Problems sums up the hosts that could not be read, of total in scope
// (0: not said): "1 of 5 hosts unreachable", or "3 hosts not ready: 2
// unreachable, 1 engine down", as fleet hosts says it.
func (p *Plan) Problems(total int) string {
	n := map[string]int{}
	for _, u := range p.Unreachable {
		n[u.State]++
	}
	count := plural(len(p.Unreachable), "host")
	if total > 0 {
		count = fmt.Sprintf("%d of %s", len(p.Unreachable), plural(total, "host"))
	}
	if len(n) == 1 && n["unreachable"] > 0 {
		return count + " unreachable"
	}
	var parts []string
	for _, state := range slices.Sorted(maps.Keys(n)) {
		parts = append(parts, fmt.Sprintf("%d %s", n[state], state))
	}
	return fmt.Sprintf("%s not ready: %s", count, strings.Join(parts, ", "))
}

// ServicePlan is one service's part of the plan.
type ServicePlan struct {
	Name string `json:"name"`
	// Revision is the revision the service will run; NewRevision says it
	// is made by this plan.
	Revision    int       `json:"revision"`
	NewRevision bool      `json:"new_revision"`
	Spec        string    `json:"spec"`
	Template    Template  `json:"template"`
	Resources   Resources `json:"resources"`
	Restart     Restart   `json:"restart"`
	Actions     []*Action `json:"actions"`
	Notes       []string  `json:"notes,omitempty"`
	// Pushes are the hosts that apply pushes the image to, for a service
	// with image_delivery: push, before its first step.
	Pushes []Push `json:"pushes,omitempty"`
	// PushImage is the ID of the image this machine had under the
	// service's tag when the plan was made (image_delivery: push): what
	// the plan shows is that image, and a saved plan carries out no other.
	PushImage string `json:"push_image,omitempty"`
	// Warnings say what apply will fail on unless something is done first.
	Warnings []string `json:"warnings,omitempty"`
}

// Kind is what an action does to an instance.
type Kind string

const (
	Create    Kind = "create"
	Update    Kind = "update" // in place: resources, restart policy
	Replace   Kind = "replace"
	Remove    Kind = "remove"
	Start     Kind = "start"
	Unchanged Kind = "unchanged"
)

// Marker is the sign plan output shows for each kind.
func (k Kind) Marker() string {
	switch k {
	case Create:
		return "+"
	case Update:
		return "~"
	case Replace:
		return "-/+"
	case Remove:
		return "-"
	case Start:
		return ">"
	}
	return " "
}

// Action is one change to one instance, with its reasons.
type Action struct {
	Kind      Kind     `json:"kind"`
	Host      string   `json:"host"`
	Slot      int      `json:"slot"`
	Container string   `json:"container,omitempty"` // the existing container's ID
	Name      string   `json:"name,omitempty"`      // and name
	Revision  int      `json:"revision,omitempty"`  // the existing container's revision
	Reasons   []string `json:"reasons"`
	Drift     bool     `json:"drift,omitempty"`
	// Before is, for an update in place, the limits and restart policy the
	// container has: what a rollback puts back. The service plan's
	// Resources and Restart are what it gets.
	Before *Settings `json:"before,omitempty"`
}

// Settings are what an update in place changes on a container.
type Settings struct {
	Resources Resources `json:"resources"`
	Restart   Restart   `json:"restart"`
}

// Summary counts the actions.
type Summary struct {
	Create    int `json:"create"`
	Update    int `json:"update"`
	Replace   int `json:"replace"`
	Remove    int `json:"remove"`
	Start     int `json:"start"`
	Unchanged int `json:"unchanged"`
	// ProxyUpgrade counts hosts, not instances.
	ProxyUpgrade int `json:"proxy_upgrade"`
	// Balance counts the load balancers' routes that change.
	Balance int `json:"balance"`
}

// Changes reports whether the plan does anything.
func (p *Plan) Changes() bool {
	s := p.Summary
	return s.Create+s.Update+s.Replace+s.Remove+s.Start+s.ProxyUpgrade+s.Balance > 0
}

// Compute makes the plan. It reads nothing but its input.
func Compute(in Input) *Plan {
	p := &Plan{Project: in.Project.Name, Fingerprints: map[string]string{}, Unreachable: []HostProblem{}}
	inScope := map[string]bool{}
	for _, h := range in.Scope {
		inScope[h.Name] = true
		if reason, down := in.Live.Unreachable[h.Name]; down {
			state := in.Live.Faults[h.Name]
			if state == "" {
				state = "unreachable"
			}
			p.Unreachable = append(p.Unreachable, HostProblem{Host: h.Name, State: state, Reason: reason})
		} else if lh := in.Live.Hosts[h.Name]; lh != nil {
			p.Fingerprints[h.Name] = fingerprint(lh)
		}
	}
	sort.Slice(p.Unreachable, func(i, j int) bool { return p.Unreachable[i].Host < p.Unreachable[j].Host })

	for _, s := range in.Project.Services {
		if len(in.Services) > 0 && !slices.Contains(in.Services, s.Name) {
			continue
		}
		sp := planService(in, s, inScope)
		p.Services = append(p.Services, sp)
		for _, a := range sp.Actions {
			switch a.Kind {
			case Create:
				p.Summary.Create++
			case Update:
				p.Summary.Update++
			case Replace:
				p.Summary.Replace++
			case Remove:
				p.Summary.Remove++
			case Start:
				p.Summary.Start++
			default:
				p.Summary.Unchanged++
			}
		}
	}
	p.Balanced = Balanced(in.Inventory)
	p.Balancers = balancers(in, p)
	for _, b := range p.Balancers {
		if b.Reason != "" {
			p.Summary.Balance++
		}
	}
	p.ProxyUpgrades = proxyUpgrades(in, p)
	p.Summary.ProxyUpgrade = len(p.ProxyUpgrades)
	return p
}

// ProxyUpgrade is a host whose proxy runs another image than proxy_image:
// apply hands it over to a new proxy first, failing no request.
type ProxyUpgrade struct {
	Host string `json:"host"`
	From string `json:"from"`
	To   string `json:"to"`
}

// proxyUpgrades are the hosts where the project's proxied services keep
// or get an instance, and the load balancers, whose proxy runs another
// image than proxy_image.
func proxyUpgrades(in Input, p *Plan) []ProxyUpgrade {
	out := []ProxyUpgrade{}
	consider := func(host string) {
		lh := in.Live.Hosts[host]
		if lh == nil || !(lh.Proxy == ProxyCutShort || lh.Proxy == ProxyRunning && lh.ProxyImage != in.Project.ProxyImage) ||
			slices.ContainsFunc(out, func(u ProxyUpgrade) bool { return u.Host == host }) {
			return
		}
		out = append(out, ProxyUpgrade{Host: host, From: lh.ProxyImage, To: in.Project.ProxyImage})
	}
	for _, sp := range p.Services {
		if s := in.Project.Service(sp.Name); s == nil || s.Proxy == nil {
			continue
		}
		for _, a := range sp.Actions {
			if a.Kind != Remove {
				consider(a.Host)
			}
		}
	}
	for _, b := range p.Balancers {
		consider(b.LB)
	}
	slices.SortFunc(out, func(a, b ProxyUpgrade) int { return strings.Compare(a.Host, b.Host) })
	return out
}

func planService(in Input, s *Service, inScope map[string]bool) *ServicePlan {
	tmpl := TemplateOf(s)
	sp := &ServicePlan{
		Name: s.Name, Template: tmpl, Spec: tmpl.Spec(),
		Resources: s.Resources, Restart: s.Restart,
	}

	// The hosts the service may use, within the run's scope.
	var candidates []Candidate
	for _, h := range s.SelectedHosts(in.Inventory) {
		if !inScope[h.Name] {
			continue
		}
		c := Candidate{Host: h}
		if lh := in.Live.Hosts[h.Name]; lh != nil {
			c.Reachable, c.MemAvailable, c.CPUs = true, lh.MemAvailable, lh.CPUs
		}
		candidates = append(candidates, c)
	}
	// Its instances on every host in scope that answered.
	containers := map[string]*LiveContainer{}
	var observed []Observed
	maxRev := 0
	for _, h := range in.Scope {
		lh := in.Live.Hosts[h.Name]
		if lh == nil {
			continue
		}
		for i := range lh.Containers {
			c := &lh.Containers[i]
			if c.Labels[LabelProject] != in.Project.Name || c.Labels[LabelService] != s.Name {
				continue
			}
			slot, _ := strconv.Atoi(c.Labels[LabelSlot])
			rev, _ := strconv.Atoi(c.Labels[LabelRevision])
			maxRev = max(maxRev, rev)
			// The revision already made from this spec; one never seen
			// healthy is attempted again as a revision of its own.
			if spec := c.Labels[LabelSpec]; (spec == sp.Spec || spec == sp.Template.legacySpec(in.Secrets[s.Name])) && !c.Unchecked && sp.Revision < rev {
				sp.Revision = rev
			}
			containers[c.ID] = c
			observed = append(observed, Observed{Host: h.Name, Slot: slot, Running: c.Running, Revision: rev, Container: c.ID, Created: c.Created.Unix(), Unchecked: c.Unchecked})
		}
	}
	// The newest record of the service, on any host in scope: its number
	// is taken even when no container of it remains.
	var newest Recorded
	for _, h := range in.Scope {
		if lh := in.Live.Hosts[h.Name]; lh != nil {
			if r, ok := lh.Recorded[s.Name]; ok && r.Revision > newest.Revision {
				newest = r
			}
		}
	}
	maxRev = max(maxRev, newest.Revision)
	if sp.Revision == 0 {
		sp.Revision, sp.NewRevision = maxRev+1, true
	}
	if rb := newest.Rollback; rb != nil && sp.NewRevision && newest.Outcome == "deployed" && runs(observed, newest.Revision) {
		note := fmt.Sprintf("%s was rolled back to revision %d by %s on %s (now revision %d); ", s.Name, rb.To, newest.Who, newest.When.UTC().Format("2006-01-02 15:04 UTC"), newest.Revision)
		if rb.FromSpec == sp.Spec {
			note += fmt.Sprintf("fleet.yaml still asks for what revision %d ran, so applying deploys it again as revision %d", rb.From, sp.Revision)
		} else {
			note += fmt.Sprintf("fleet.yaml now asks for something else, so applying deploys it as revision %d", sp.Revision)
		}
		note += fmt.Sprintf(". To stay on revision %d, make fleet.yaml match it (fleet history %s shows it).", rb.To, s.Name)
		sp.Notes = append(sp.Notes, note)
	}

	pl := Place(s, candidates, observed, in.Reschedule)
	sp.Notes = append(sp.Notes, pl.Notes...)
	for _, k := range pl.Keep {
		c := containers[k.Existing.Container]
		sp.Actions = append(sp.Actions, compare(in, s, sp, k, c))
	}
	for _, cr := range pl.Create {
		a := &Action{Kind: Create, Host: cr.Host, Slot: cr.Slot}
		switch {
		case len(cr.Rescheduled) > 0:
			a.Reasons = []string{fmt.Sprintf("rescheduled: %s unreachable", hostsPhrase(cr.Rescheduled))}
		case len(observed) == 0:
			a.Reasons = []string{"new: no instance runs"}
		case !s.ReplicasSet:
			a.Reasons, a.Drift = []string{"container missing on this host"}, true
		case sameReplicas(observed, containers, s.Replicas):
			a.Reasons, a.Drift = []string{fmt.Sprintf("container missing: %d of %d run", len(pl.Keep), s.Replicas)}, true
		default:
			a.Reasons = []string{fmt.Sprintf("scale to %d (%d run)", s.Replicas, len(pl.Keep))}
		}
		sp.Actions = append(sp.Actions, a)
	}
	for _, r := range pl.Remove {
		c := containers[r.Instance.Container]
		sp.Actions = append(sp.Actions, &Action{Kind: Remove, Host: r.Instance.Host, Slot: r.Instance.Slot,
			Container: c.ID, Name: c.Name, Revision: r.Instance.Revision, Reasons: []string{r.Reason}})
	}
	sort.SliceStable(sp.Actions, func(i, j int) bool {
		a, b := sp.Actions[i], sp.Actions[j]
		if a.Host != b.Host {
			return a.Host < b.Host
		}
		return a.Slot < b.Slot
	})
	if s.Proxy != nil {
		if hosts := lackProxy(in.Live, sp); len(hosts) > 0 {
			ports := fmt.Sprintf("port %d", ProxyPort)
			if HostTLS(s, Balanced(in.Inventory)) != TLSOff {
				ports = fmt.Sprintf("ports %d and %d", ProxyPort, ProxyTLSPort)
			}
			sp.Notes = append(sp.Notes, fmt.Sprintf("the proxy is made (or started) first on %s: a container %s (%s) on the host's network, serving %s",
				strings.Join(hosts, ", "), ProxyContainer, in.Project.ProxyImage, ports))
		}
	}
	if s.Proxy != nil {
		if hosts := nonRootProxies(in.Inventory, sp); len(hosts) > 0 {
			sp.Warnings = append(sp.Warnings, fmt.Sprintf("%s: fleet logs in as another user than root there, without sudo, and the proxy's admin socket and files are root's: its route cannot be changed (set sudo: true for the host, or log in as root)",
				strings.Join(hosts, ", ")))
		}
	}
	if pi, ok := in.Pushed[sp.Template.Image]; ok && s.ImageDelivery == "push" {
		sp.PushImage = pi.ID
		pushes(sp, pi)
	} else if s.Pull == "never" {
		if hosts := lackImage(in.Live, sp); len(hosts) > 0 {
			sp.Warnings = append(sp.Warnings, fmt.Sprintf("image %s is not on %s and pull is never: load it there (docker load) or set pull: missing",
				sp.Template.Image, strings.Join(hosts, ", ")))
		}
	}
	return sp
}

// pushes says which hosts apply pushes the image to: those that are to
// get a new container and do not hold the image.
func pushes(sp *ServicePlan, pi PushedImage) {
	var parts []string
	for _, a := range sp.Actions {
		if (a.Kind != Create && a.Kind != Replace) || slices.ContainsFunc(sp.Pushes, func(p Push) bool { return p.Host == a.Host }) {
			continue
		}
		if n, ok := pi.Bytes[a.Host]; ok && n > 0 {
			sp.Pushes = append(sp.Pushes, Push{Host: a.Host, Bytes: n})
			parts = append(parts, fmt.Sprintf("%s %s", a.Host, SizeText(n)))
		}
	}
	if len(parts) > 0 {
		sp.Notes = append(sp.Notes, fmt.Sprintf("image %s (%s) is pushed first from this machine, only the layers each host lacks: %s",
			sp.Template.Image, ShortImageID(pi.ID), strings.Join(parts, ", ")))
	}
}

// nonRootProxies names the hosts where sp changes an instance and fleet
// logs in as another user than root, without sudo: it cannot reach the
// proxy there.
func nonRootProxies(inv *inventory.Inventory, sp *ServicePlan) []string {
	var hosts []string
	for _, a := range sp.Actions {
		if a.Kind == Unchanged || slices.Contains(hosts, a.Host) {
			continue
		}
		if h := inv.Host(a.Host); h != nil && h.User != "root" && !h.Sudo {
			hosts = append(hosts, a.Host)
		}
	}
	return hosts
}

// lackProxy names the hosts where no proxy runs and sp puts a container
// in its route.
func lackProxy(live Live, sp *ServicePlan) []string {
	var hosts []string
	for _, a := range sp.Actions {
		lh := live.Hosts[a.Host]
		if a.Kind == Unchanged || a.Kind == Remove || lh == nil || lh.Proxy != ProxyAbsent || slices.Contains(hosts, a.Host) {
			continue
		}
		hosts = append(hosts, a.Host)
	}
	return hosts
}

// lackImage names the hosts that are to get a new container of sp but do
// not have its image. An image named by digest is not in the hosts' lists
// of tags, and is left to apply to judge.
func lackImage(live Live, sp *ServicePlan) []string {
	image := sp.Template.Image
	if strings.Contains(image, "@") {
		return nil
	}
	var hosts []string
	for _, a := range sp.Actions {
		if (a.Kind != Create && a.Kind != Replace) || slices.Contains(hosts, a.Host) {
			continue
		}
		if lh := live.Hosts[a.Host]; lh != nil && !hasImage(lh.Images, image) {
			hosts = append(hosts, a.Host)
		}
	}
	return hosts
}

// hasImage looks an image up in a host's tags, which name images of
// Docker Hub without its registry ("nginx:1.27", "acme/web:1").
func hasImage(images map[string]string, image string) bool {
	if _, ok := images[image]; ok {
		return true
	}
	for _, hub := range []string{"docker.io/", "index.docker.io/"} {
		if short, ok := strings.CutPrefix(image, hub); ok {
			_, found := images[strings.TrimPrefix(short, "library/")]
			return found
		}
	}
	return false
}

// sameReplicas reports whether every instance was made for the replicas
// fleet.yaml asks for now.
func sameReplicas(observed []Observed, containers map[string]*LiveContainer, replicas int) bool {
	for _, o := range observed {
		if containers[o.Container].Labels[LabelReplicas] != strconv.Itoa(replicas) {
			return false
		}
	}
	return true
}

// runs reports whether an instance of the revision is among those
// observed.
func runs(observed []Observed, revision int) bool {
	for _, o := range observed {
		if o.Revision == revision {
			return true
		}
	}
	return false
}

// neverChecked says why an instance not seen healthy is not trusted.
const neverChecked = "never seen healthy: left by a run that ended before its health check passed"

// compare decides what an instance that stays needs: nothing, a start, an
// update in place, or a new container.
func compare(in Input, s *Service, sp *ServicePlan, k Placed, c *LiveContainer) *Action {
	a := &Action{Kind: Unchanged, Host: k.Host, Slot: k.Slot, Container: c.ID, Name: c.Name, Revision: k.Existing.Revision}
	made, err := ParseTemplate(c.Labels[LabelTemplate])
	if c.Unchecked {
		// Nothing better of its slot is left: it is made anew and gated.
		a.Kind = Replace
		a.Reasons = append(a.Reasons, neverChecked)
	}

	// What fleet.yaml changed since the container was made.
	if spec := c.Labels[LabelSpec]; spec != sp.Spec && spec != sp.Template.legacySpec(in.Secrets[s.Name]) {
		a.Kind = Replace
		if err != nil {
			a.Reasons = append(a.Reasons, "made without a readable template (another version of fleet?)")
		} else {
			a.Reasons = append(a.Reasons, made.diff(sp.Template)...)
		}
		for _, name := range slices.Sorted(maps.Keys(in.Secrets[s.Name])) {
			if slices.Contains(made.Secrets, name) && c.Env[name] != in.Secrets[s.Name][name] {
				a.Reasons = append(a.Reasons, fmt.Sprintf("secret %s changed", name))
			}
		}
		if len(a.Reasons) == 0 {
			a.Reasons = append(a.Reasons, "revision "+strconv.Itoa(sp.Revision)+" differs")
		}
	} else {
		// Same spec: a secret whose value is not the container's changed
		// at its source (or by hand: fleet cannot tell, and rolls the
		// value out either way); whatever else differs was done by hand.
		for _, name := range sp.Template.Secrets {
			if v, ok := in.Secrets[s.Name][name]; ok && c.Env[name] != v {
				a.Kind = Replace
				a.Reasons = append(a.Reasons, fmt.Sprintf("secret %s changed", name))
			}
		}
		drift := handChanges(sp.Template, c)
		if len(drift) > 0 {
			a.Kind, a.Drift = Replace, true
			a.Reasons = append(a.Reasons, drift...)
		}
	}
	// A tag that now names another image on the host; or, for an image
	// that fleet pushes, on this machine.
	if a.Kind == Unchanged {
		if pi, ok := in.Pushed[sp.Template.Image]; ok && s.ImageDelivery == "push" {
			if pi.ID != c.ImageID {
				a.Kind = Replace
				a.Reasons = append(a.Reasons, fmt.Sprintf("image %s here is %s (container runs %s)", sp.Template.Image, ShortImageID(pi.ID), ShortImageID(c.ImageID)))
			}
		} else if lh := in.Live.Hosts[k.Host]; lh != nil {
			if id, ok := lh.Images[sp.Template.Image]; ok && id != c.ImageID {
				a.Kind = Replace
				a.Reasons = append(a.Reasons, fmt.Sprintf("image %s now is %s (container runs %s)", sp.Template.Image, ShortImageID(id), ShortImageID(c.ImageID)))
			}
		}
	}
	// What the limits and restart policy change. They change in place,
	// except that the engine cannot lift a limit: a container that must
	// lose one is made anew, and so is one that is to get a limit it does
	// not have, since a rollback could not lift it again; it goes back to
	// the old container instead.
	var settings []string
	newLimit, lifted := false, false
	if c.CPUs != s.Resources.CPUs {
		settings = append(settings, fmt.Sprintf("cpus %s → %s", cpusText(c.CPUs), cpusText(s.Resources.CPUs)))
		newLimit, lifted = newLimit || c.CPUs == 0, lifted || s.Resources.CPUs == 0
	}
	if c.Memory != s.Resources.Memory {
		settings = append(settings, fmt.Sprintf("memory %s → %s", bytesText(c.Memory), bytesText(s.Resources.Memory)))
		newLimit, lifted = newLimit || c.Memory == 0, lifted || s.Resources.Memory == 0
	}
	if c.Restart != s.Restart {
		settings = append(settings, fmt.Sprintf("restart %s → %s", orNone(c.Restart.String()), s.Restart))
	}
	switch {
	case a.Kind == Replace || lifted:
		a.Kind = Replace
		a.Reasons = append(a.Reasons, settings...)
		return a
	case newLimit:
		a.Kind = Replace
		a.Reasons = append(a.Reasons, settings...)
		a.Reasons = append(a.Reasons, "a limit it lacks takes a new container (a rollback could not lift it in place)")
		return a
	case len(settings) > 0:
		a.Kind = Update
		a.Reasons = append(a.Reasons, settings...)
		a.Before = &Settings{Resources: Resources{CPUs: c.CPUs, Memory: c.Memory}, Restart: c.Restart}
	}
	// A proxied instance that runs but is not in its route serves
	// nothing (the proxy was removed, or the host rebooted and the
	// container has a new address): put back in place.
	if a.Kind == Unchanged && c.Running && s.Proxy != nil {
		if why := routeDrift(in.Live.Hosts[k.Host], s, HostTLS(s, Balanced(in.Inventory)), c); why != "" {
			a.Kind, a.Drift = Update, true
			a.Reasons = append(a.Reasons, why)
			a.Before = &Settings{Resources: Resources{CPUs: c.CPUs, Memory: c.Memory}, Restart: c.Restart}
		}
	}
	if !c.Running {
		a.Drift = true
		stopped := fmt.Sprintf("container %s (exit code %d)", c.Status, c.ExitCode)
		if a.Kind == Update {
			a.Reasons = append(a.Reasons, stopped+", started after the update")
		} else {
			a.Kind = Start
			a.Reasons = append(a.Reasons, stopped)
		}
	}
	return a
}

// routeDrift says why a running container of a proxied service does not
// serve as fleet.yaml says: none of its addresses, on the service's proxy
// port, is in the service's route on the host's proxy, or the route is
// for another host name or path, or not served with tls. A host whose
// routes were not read says nothing.
func routeDrift(lh *LiveHost, s *Service, tls TLS, c *LiveContainer) string {
	if lh == nil || lh.Routes == nil {
		return ""
	}
	r := lh.Routes[s.Name]
	in := false
	for _, ip := range c.Addresses {
		in = in || slices.Contains(r.Upstreams, net.JoinHostPort(ip, strconv.Itoa(s.Proxy.Port)))
	}
	switch path := strings.TrimSuffix(s.Proxy.Path, "/"); {
	case !in:
		return "not in its route on the host's proxy"
	case r.Host != s.Proxy.Host || r.Path != path || r.TLS != tls:
		was := r.Path
		if was == "" {
			was = "/"
		}
		return fmt.Sprintf("its route serves %s, not %s", siteText(r.Host, was, r.TLS), siteText(s.Proxy.Host, s.Proxy.Path, tls))
	}
	return ""
}

// siteText is what a route serves, as a URL: https://shop.example.com/api.
func siteText(host, path string, t TLS) string {
	text := t.Scheme() + "://" + host + path
	if t == TLSInternal {
		text += " (tls: internal)"
	}
	return text
}

// handChanges compares a container with the template it was made from,
// on what the engine reports, and names what was changed by hand.
func handChanges(t Template, c *LiveContainer) []string {
	var r []string
	if c.Image != t.Image {
		r = append(r, fmt.Sprintf("image is %s, not %s (changed by hand)", c.Image, t.Image))
	}
	for _, k := range slices.Sorted(maps.Keys(t.Env)) {
		if c.Env[k] != t.Env[k] {
			r = append(r, fmt.Sprintf("env.%s differs from revision (changed by hand)", k))
		}
	}
	if a, b := portsText(c.Ports), portsText(t.Ports); a != b {
		r = append(r, fmt.Sprintf("ports are %s, not %s (changed by hand)", orNone(a), orNone(b)))
	}
	if a, b := mountsText(c.Volumes), mountsText(t.Volumes); a != b {
		r = append(r, fmt.Sprintf("volumes are %s, not %s (changed by hand)", orNone(a), orNone(b)))
	}
	want := t.Networks
	if len(want) == 0 {
		want = []string{"bridge"}
	}
	if a, b := fmt.Sprint(sorted(c.Networks)), fmt.Sprint(sorted(want)); a != b {
		r = append(r, fmt.Sprintf("networks are %s, not %s (changed by hand)", a, b))
	}
	return r
}

// fingerprint hashes what a plan depends on in a host's state.
func fingerprint(lh *LiveHost) string {
	type entry struct {
		ID, Status, Spec, ImageID string
		Running                   bool
	}
	var entries []entry
	for _, c := range lh.Containers {
		entries = append(entries, entry{c.ID, c.Status, c.Labels[LabelSpec], c.ImageID, c.Running})
	}
	sort.Slice(entries, func(i, j int) bool { return entries[i].ID < entries[j].ID })
	var images []string
	for ref, id := range lh.Images {
		images = append(images, ref+"="+id)
	}
	sort.Strings(images)
	b, _ := json.Marshal(struct {
		C []entry
		I []string
	}{entries, images})
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])[:16]
}

// ShortImageID is an image ID as docker images shows it, the first 12
// hex digits after "sha256:".
func ShortImageID(id string) string {
	if len(id) > 19 && id[:7] == "sha256:" {
		return id[7:19]
	}
	return id
}

func cpusText(c float64) string {
	if c == 0 {
		return "unlimited"
	}
	return strconv.FormatFloat(c, 'f', -1, 64)
}

func bytesText(b int64) string {
	switch {
	case b == 0:
		return "unlimited"
	case b%(1<<30) == 0:
		return fmt.Sprintf("%dG", b>>30)
	case b%(1<<20) == 0:
		return fmt.Sprintf("%dM", b>>20)
	}
	return strconv.FormatInt(b, 10)
}

// DurationText writes d as fleet.yaml would, and as Go, Docker and Nomad
// read it: 2m and 1m30s, not 2m0s.
func DurationText(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// SizeText writes a byte count as docker's own commands do: 12.3MB, with
// three digits at most where the unit allows.
func SizeText(n int64) string {
	const unit = 1000
	if n < unit {
		return fmt.Sprintf("%dB", n)
	}
	f, prefixes := float64(n)/unit, "kMGT"
	i := 0
	for ; f >= unit && i < len(prefixes)-1; i++ {
		f /= unit
	}
	decimals := 0
	switch {
	case f < 10:
		decimals = 2
	case f < 100:
		decimals = 1
	}
	text := strconv.FormatFloat(f, 'f', decimals, 64)
	if strings.Contains(text, ".") {
		text = strings.TrimRight(strings.TrimRight(text, "0"), ".")
	}
	return text + string(prefixes[i]) + "B"
}
