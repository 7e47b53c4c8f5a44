// Package export writes a project's desired state in the formats of the
// orchestrators a fleet may grow into: a Docker Swarm stack file,
// Kubernetes manifests and a Nomad job.
//
// Each format is a pure function from the parsed project (and the
// inventory, whose host labels become placement rules) to bytes. fleet and
// these orchestrators do not mean quite the same things: where a setting
// does not carry over, or carries over with a different meaning, the
// output says so in a comment at that place, so that whoever moves a
// project reads what was left behind rather than finds it out in
// production. Secret values are never read: the output refers to secrets
// the orchestrator keeps, and says how to create them.
//
// Output is deterministic: keys sorted, services in file order, so that an
// export can be kept under version control and diffed.
package export

import (
	"fmt"
	"maps"
	"math"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/fleetdeploy/fleet/inventory"
	"github.com/fleetdeploy/fleet/plan"
)

// Formats are the formats Render knows, in the order help lists them.
var Formats = []string{"swarm", "kubernetes", "nomad"}

// Render writes p in format, one of Formats.
func Render(format string, p *plan.Project, inv *inventory.Inventory) ([]byte, error) {
	switch format {
	case "swarm":
		return Swarm(p, inv)
	case "kubernetes":
		return Kubernetes(p, inv)
	case "nomad":
		return Nomad(p, inv)
	}
	return nil, fmt.Errorf("unknown export format %q: want one of %s", format, strings.Join(Formats, ", "))
}

// requirement is one placement condition of a service, in terms every
// orchestrator can express: a node label compared with values, or the
// node's host name.
type requirement struct {
	Hostname bool   // compare the node's name rather than a label
	Key      string // the label, when not Hostname
	Op       inventory.Op
	Values   []string
}

// placement turns a service's host selector into requirements. A host
// name becomes a host-name requirement; group membership, which no
// orchestrator knows, becomes the group's host names as the inventory
// lists them today.
func placement(s *plan.Service, inv *inventory.Inventory) []requirement {
	sel := s.Hosts
	if sel == nil {
		return nil
	}
	if sel.Names != nil {
		return []requirement{{Hostname: true, Op: inventory.In, Values: sorted(sel.Names)}}
	}
	var reqs []requirement
	for _, t := range sel.Terms {
		switch {
		case t.Key == "group" && t.Op != inventory.Exists && t.Op != inventory.NotExists:
			var names []string
			for _, g := range t.Values {
				if inv != nil {
					names = append(names, inv.Groups[g]...)
				}
			}
			op := inventory.In
			if t.Op == inventory.NotEqual || t.Op == inventory.NotIn {
				op = inventory.NotIn
			}
			reqs = append(reqs, requirement{Hostname: true, Op: op, Values: sorted(names)})
		case (t.Op == inventory.Exists || t.Op == inventory.NotExists) && inv != nil && inv.Host(t.Key) != nil:
			op := inventory.In
			if t.Op == inventory.NotExists {
				op = inventory.NotIn
			}
			reqs = append(reqs, requirement{Hostname: true, Op: op, Values: []string{t.Key}})
		default:
			reqs = append(reqs, requirement{Key: t.Key, Op: t.Op, Values: t.Values})
		}
	}
	return reqs
}

// selectedHosts are the inventory's hosts a service may run on, sorted.
func selectedHosts(s *plan.Service, inv *inventory.Inventory) []string {
	if inv == nil {
		return nil
	}
	var names []string
	for _, h := range inv.Hosts {
		if s.Hosts == nil || s.Hosts.Matches(h) {
			names = append(names, h.Name)
		}
	}
	return sorted(names)
}

// labelKeys are the inventory labels that reqs compare, and spread when
// it is set: what the nodes must carry under the orchestrator's names.
func labelKeys(reqs []requirement, spread string) []string {
	var keys []string
	for _, r := range reqs {
		if !r.Hostname {
			keys = append(keys, r.Key)
		}
	}
	if spread != "" {
		keys = append(keys, spread)
	}
	return keys
}

// labelCommands are the node labels the orchestrator's nodes need for reqs
// to select what the inventory selects: each host's label, as a command.
func labelCommands(reqs []requirement, s *plan.Service, inv *inventory.Inventory, cmd func(host, key, value string) string) []string {
	if inv == nil {
		return nil
	}
	seen := map[string]bool{}
	var lines []string
	add := func(h *inventory.Host, key string) {
		if v, ok := h.Labels[key]; ok && !seen[h.Name+"\x00"+key] {
			seen[h.Name+"\x00"+key] = true
			lines = append(lines, cmd(h.Name, key, v))
		}
	}
	for _, r := range reqs {
		if r.Hostname {
			continue
		}
		for _, h := range inv.Hosts {
			// For an equality only the hosts that match need the label;
			// for the other operators, every host that has it does.
			if (r.Op == inventory.Equal || r.Op == inventory.In) && !slices.Contains(r.Values, h.Labels[r.Key]) {
				continue
			}
			add(h, r.Key)
		}
	}
	if s.Spread != "" {
		for _, h := range selectedHosts(s, inv) {
			add(inv.Host(h), s.Spread)
		}
	}
	sort.Strings(lines)
	return lines
}

// secretName is the name a secret is kept under in the orchestrator: the
// environment variable it is read from when it is one (so that two
// services reading the same variable share one secret), else the service
// and the variable the container sees.
func secretName(s *plan.Service, env string, ref plan.SecretRef) string {
	if ref.Source == "env" {
		return ref.Ref
	}
	return s.Name + "_" + env
}

// secretValue says how a secret's value is produced on the laptop, as a
// shell word to feed a create command.
func secretValue(ref plan.SecretRef) string {
	switch ref.Source {
	case "env":
		return `"$` + ref.Ref + `"`
	case "file":
		return `"$(cat ` + shellQuote(ref.Ref) + `)"`
	}
	return `"$(` + ref.Ref + `)"`
}

func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-./~") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// effectiveOrder is the update order fleet really uses: start-first falls
// back to stop-first for a service that publishes fixed host ports, since
// the new container could not bind them beside the old one.
func effectiveOrder(s *plan.Service) (order string, fellBack bool) {
	if s.Update.Order == "start-first" && len(s.Ports) > 0 {
		return "stop-first", true
	}
	return s.Update.Order, false
}

// firstWave is the update step size every orchestrator can take: a count,
// or a percentage. Later waves of a list do not carry over.
func firstWave(s *plan.Service) plan.Wave {
	if len(s.Update.Parallelism.Waves) == 0 {
		return plan.Wave{Count: 1}
	}
	return s.Update.Parallelism.Waves[0]
}

func waveText(w plan.Wave) string {
	if w.Percent > 0 {
		return fmt.Sprintf("%g%%", w.Percent)
	}
	return fmt.Sprint(w.Count)
}

// seconds rounds d up to whole seconds, at least min.
func seconds(d time.Duration, min int) int {
	n := int(math.Ceil(d.Seconds()))
	if n < min {
		return min
	}
	return n
}

func sorted(in []string) []string {
	out := append([]string(nil), in...)
	sort.Strings(out)
	return out
}

func sortedKeys[V any](m map[string]V) []string { return slices.Sorted(maps.Keys(m)) }

// projectNotes are the comments on settings of the whole project that no
// format carries: hooks, registry credentials, the proxy image.
func projectNotes(p *plan.Project, registryHint string) []string {
	var notes []string
	if len(p.Hooks.PreApply)+len(p.Hooks.PostApply)+len(p.Hooks.OnFailure) > 0 {
		notes = append(notes, "hooks (pre_apply, post_apply, on_failure) are not exported: they run on the machine that runs fleet apply; run them around the deploy command instead.")
	}
	for _, r := range sortedKeys(p.Registries) {
		notes = append(notes, fmt.Sprintf("registry %s: credentials (user %s, password from %s) are not exported; %s", r, p.Registries[r].Username, p.Registries[r].Password, registryHint))
	}
	return notes
}

// serviceNotes are the comments every format makes on a service.
func serviceNotes(s *plan.Service) []string {
	var notes []string
	if len(s.DependsOn) > 0 {
		notes = append(notes, "depends_on ["+strings.Join(s.DependsOn, ", ")+"]: not exported; the orchestrator starts services in no order, so each must wait for what it needs itself.")
	}
	if s.ImageDelivery == "push" {
		notes = append(notes, "image_delivery: push: the orchestrator's nodes pull "+s.Image+" from a registry; push it to one first.")
	}
	if len(s.Update.Parallelism.Waves) > 1 {
		var w []string
		for _, x := range s.Update.Parallelism.Waves {
			w = append(w, waveText(x))
		}
		notes = append(notes, "update.parallelism waves ["+strings.Join(w, ", ")+"]: only the first step size is exported.")
	}
	if order, fell := effectiveOrder(s); fell {
		notes = append(notes, "update.order start-first: exported as "+order+", as fleet applies it: the service publishes fixed host ports.")
	}
	if s.History != 0 && s.History != plan.DefaultHistory {
		notes = append(notes, fmt.Sprintf("history %d: revisions are kept by the orchestrator.", s.History))
	}
	return notes
}
