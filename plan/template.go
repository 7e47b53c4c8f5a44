package plan

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// The labels every container fleet creates carries. LabelTemplate holds
// the container's template as JSON, so that a plan can say exactly what
// changed since the container was made without any other state: a label
// cannot change while the container lives.
const (
	LabelProject  = "fleet.project"
	LabelService  = "fleet.service"
	LabelSlot     = "fleet.slot"
	LabelRevision = "fleet.revision"
	LabelSpec     = "fleet.spec"     // short hash of the template (secrets by name only)
	LabelTemplate = "fleet.template" // the template as JSON, secrets by name only
	// LabelReplicas is the replicas asked for when the container was made
	// ("" for one per host): when every instance agrees with fleet.yaml, a
	// missing one was removed by hand rather than scaled.
	LabelReplicas = "fleet.replicas"
)

// Template is what a container is made from, apart from its slot: the
// fields that only a new container can change. Resources and the restart
// policy are not in it: they change in place (docker update), and are
// compared with what the engine reports.
type Template struct {
	Image      string            `json:"image"`
	Command    []string          `json:"command,omitempty"`
	Entrypoint []string          `json:"entrypoint,omitempty"`
	Env        map[string]string `json:"env,omitempty"`
	Secrets    []string          `json:"secrets,omitempty"` // names; values never leave the laptop's memory
	Ports      []Port            `json:"ports,omitempty"`
	Volumes    []Mount           `json:"volumes,omitempty"`
	Networks   []string          `json:"networks,omitempty"`
	User       string            `json:"user,omitempty"`
	Workdir    string            `json:"workdir,omitempty"`
	Labels     map[string]string `json:"labels,omitempty"`
	StopGrace  time.Duration     `json:"stop_grace,omitempty"`
}

// TemplateOf returns the template of service s.
func TemplateOf(s *Service) Template {
	t := Template{
		Image: s.Image, Command: s.Command, Entrypoint: s.Entrypoint,
		Env: s.Env, Ports: s.Ports, Volumes: s.Volumes, Networks: s.Networks,
		User: s.User, Workdir: s.Workdir, Labels: s.Labels, StopGrace: s.StopGrace,
	}
	for name := range s.Secrets {
		t.Secrets = append(t.Secrets, name)
	}
	sort.Strings(t.Secrets)
	return t
}

// JSON is the template's canonical encoding (map keys sorted by
// encoding/json), the value of LabelTemplate.
func (t Template) JSON() string {
	b, err := json.Marshal(t)
	if err != nil {
		panic(err) // plain data: cannot fail
	}
	return string(b)
}

// Spec is the hash that identifies a revision's content: the template
// alone, secrets by name. A secret's value goes into no hash: a hash of
// it, printed or on a label, could be brute-forced back to a low-entropy
// secret. New secret values are found by comparing the containers'
// environment with them, in memory (see compare).
func (t Template) Spec() string {
	sum := sha256.Sum256([]byte(t.JSON()))
	return "t" + hex.EncodeToString(sum[:])[:16]
}

// legacySpec is the spec label of containers made by fleet before
// Spec left the secrets out: recomputed in memory only, so that those
// containers count as made from the same spec and are not replaced.
func (t Template) legacySpec(secrets map[string]string) string {
	h := sha256.New()
	h.Write([]byte(t.JSON()))
	for _, n := range slices.Sorted(maps.Keys(secrets)) {
		fmt.Fprintf(h, "\x00%s\x00%s", n, secrets[n])
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}

// ParseTemplate reads a LabelTemplate value.
func ParseTemplate(s string) (Template, error) {
	var t Template
	err := json.Unmarshal([]byte(s), &t)
	return t, err
}

// diff lists the differences from old to new as reasons: "image a → b",
// "env.KEY changed", "ports 8080:80 → 9090:80".
func (old Template) diff(new Template) []string {
	var r []string
	if old.Image != new.Image {
		r = append(r, fmt.Sprintf("image %s → %s", old.Image, new.Image))
	}
	if !equalArgs(old.Command, new.Command) {
		r = append(r, fmt.Sprintf("command %s → %s", argsText(old.Command), argsText(new.Command)))
	}
	if !equalArgs(old.Entrypoint, new.Entrypoint) {
		r = append(r, fmt.Sprintf("entrypoint %s → %s", argsText(old.Entrypoint), argsText(new.Entrypoint)))
	}
	r = append(r, mapDiff("env", old.Env, new.Env)...)
	r = append(r, setDiff("secret", old.Secrets, new.Secrets)...)
	if a, b := portsText(old.Ports), portsText(new.Ports); a != b {
		r = append(r, fmt.Sprintf("ports %s → %s", orNone(a), orNone(b)))
	}
	if a, b := mountsText(old.Volumes), mountsText(new.Volumes); a != b {
		r = append(r, fmt.Sprintf("volumes %s → %s", orNone(a), orNone(b)))
	}
	if a, b := strings.Join(sorted(old.Networks), ","), strings.Join(sorted(new.Networks), ","); a != b {
		r = append(r, fmt.Sprintf("networks %s → %s", orNone(a), orNone(b)))
	}
	if old.User != new.User {
		r = append(r, fmt.Sprintf("user %s → %s", orNone(old.User), orNone(new.User)))
	}
	if old.Workdir != new.Workdir {
		r = append(r, fmt.Sprintf("workdir %s → %s", orNone(old.Workdir), orNone(new.Workdir)))
	}
	r = append(r, mapDiff("label", old.Labels, new.Labels)...)
	if old.StopGrace != new.StopGrace {
		r = append(r, fmt.Sprintf("stop_grace %s → %s", old.StopGrace, new.StopGrace))
	}
	return r
}

// mapDiff names the keys added, removed or changed; values are not shown,
// since env values are often secrets in all but name.
func mapDiff(what string, old, new map[string]string) []string {
	var r []string
	for _, k := range slices.Sorted(maps.Keys(new)) {
		ov, ok := old[k]
		switch {
		case !ok:
			r = append(r, fmt.Sprintf("%s.%s added", what, k))
		case ov != new[k]:
			r = append(r, fmt.Sprintf("%s.%s changed", what, k))
		}
	}
	for _, k := range slices.Sorted(maps.Keys(old)) {
		if _, ok := new[k]; !ok {
			r = append(r, fmt.Sprintf("%s.%s removed", what, k))
		}
	}
	return r
}

func setDiff(what string, old, new []string) []string {
	var r []string
	for _, n := range new {
		if !slices.Contains(old, n) {
			r = append(r, fmt.Sprintf("%s %s added", what, n))
		}
	}
	for _, o := range old {
		if !slices.Contains(new, o) {
			r = append(r, fmt.Sprintf("%s %s removed", what, o))
		}
	}
	return r
}

func sorted(s []string) []string {
	out := append([]string(nil), s...)
	sort.Strings(out)
	return out
}

func equalArgs(a, b []string) bool {
	if (a == nil) != (b == nil) || len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func argsText(a []string) string {
	if a == nil {
		return "(image default)"
	}
	q := make([]string, len(a))
	for i, s := range a {
		q[i] = strconv.Quote(s)
	}
	return "[" + strings.Join(q, " ") + "]"
}

// PortText renders a port as fleet.yaml writes it.
func PortText(p Port) string {
	s := fmt.Sprintf("%d:%d", p.Host, p.Container)
	if p.HostIP != "" {
		s = p.HostIP + ":" + s
	}
	if p.Proto != "" && p.Proto != "tcp" {
		s += "/" + p.Proto
	}
	return s
}

func portsText(ports []Port) string {
	var s []string
	for _, p := range ports {
		s = append(s, PortText(p))
	}
	sort.Strings(s)
	return strings.Join(s, ",")
}

func mountsText(mounts []Mount) string {
	var s []string
	for _, m := range mounts {
		t := m.Source + ":" + m.Target
		if m.ReadOnly {
			t += ":ro"
		}
		s = append(s, t)
	}
	sort.Strings(s)
	return strings.Join(s, ",")
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}
