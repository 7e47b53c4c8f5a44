package plan

import (
	"fmt"
	"sort"
	"strings"

	"github.com/fleetdeploy/fleet/inventory"
)

// Candidate is a host a service may run on, as placement sees it.
type Candidate struct {
	Host      *inventory.Host
	Reachable bool
	// MemAvailable (bytes) and CPUs rank hosts when several fit equally.
	MemAvailable int64
	CPUs         int
}

// Observed is an instance found on a host.
type Observed struct {
	Host      string
	Slot      int
	Running   bool
	Revision  int
	Container string // the engine's ID
	Created   int64  // unix time, to prefer the newer of two copies
	// Unchecked: never seen healthy (see LiveContainer.Unchecked).
	Unchecked bool
}

// Placed is an instance's place after placement: an instance that stays
// (Existing set) or one to create.
type Placed struct {
	Slot     int
	Host     string
	Existing *Observed
	// Rescheduled names the unreachable hosts a new instance stands in
	// for (--reschedule).
	Rescheduled []string
}

// Removal is an instance to remove, with why.
type Removal struct {
	Instance Observed
	Reason   string
}

// Placement says where a service's instances run.
type Placement struct {
	Keep   []Placed
	Create []Placed
	Remove []Removal
	// Short is how many instances could not be placed; Notes say why, and
	// what is unknown.
	Short int
	Notes []string
}

// Place decides where service s runs, given the hosts it may run on (all
// selected hosts, reachable or not) and what they run now. It is stable:
// an instance on a valid host stays where it is, so re-planning a
// converged fleet moves nothing. Instances of unreachable hosts cannot be
// seen; they are replaced elsewhere only when reschedule is set.
func Place(s *Service, candidates []Candidate, observed []Observed, reschedule bool) Placement {
	var p Placement
	byName := map[string]*Candidate{}
	for i := range candidates {
		byName[candidates[i].Host.Name] = &candidates[i]
	}
	var unreachable []string
	for _, c := range candidates {
		if !c.Reachable {
			unreachable = append(unreachable, c.Host.Name)
		}
	}

	// Instances on hosts the service no longer selects go; of two copies of
	// one slot, the running and newer one stays.
	var valid []Observed
	for _, o := range observed {
		if c := byName[o.Host]; c == nil {
			p.Remove = append(p.Remove, Removal{o, fmt.Sprintf("host %s is no longer selected", o.Host)})
			continue
		}
		valid = append(valid, o)
	}
	valid, dups := dedupeSlots(valid)
	p.Remove = append(p.Remove, dups...)

	perHost := map[string]int{}
	maxPer := s.MaxPerHost
	if !s.ReplicasSet {
		maxPer = 1
	}
	// Crowded hosts give back what exceeds max_per_host: stopped first.
	sortForRemoval(valid, nil, s.Spread, byName)
	var kept []Observed
	for i := len(valid) - 1; i >= 0; i-- { // best kept first
		o := valid[i]
		if perHost[o.Host] >= maxPer {
			p.Remove = append(p.Remove, Removal{o, fmt.Sprintf("more than %d on host %s", maxPer, o.Host)})
			continue
		}
		perHost[o.Host]++
		kept = append(kept, o)
	}

	want := len(kept)
	if s.ReplicasSet {
		want = s.Replicas
	}
	if s.ReplicasSet && len(kept) > want {
		sortForRemoval(kept, perHost, s.Spread, byName)
		for _, o := range kept[:len(kept)-want] {
			p.Remove = append(p.Remove, Removal{o, fmt.Sprintf("scaled down to %d", want)})
			perHost[o.Host]--
		}
		kept = kept[len(kept)-want:]
	}
	sort.Slice(kept, func(i, j int) bool { return kept[i].Slot < kept[j].Slot })
	used := map[int]bool{}
	for i := range kept {
		o := kept[i]
		used[o.Slot] = true
		p.Keep = append(p.Keep, Placed{Slot: o.Slot, Host: o.Host, Existing: &kept[i]})
	}

	nextSlot := func() int {
		for n := 1; ; n++ {
			if !used[n] {
				used[n] = true
				return n
			}
		}
	}
	if !s.ReplicasSet {
		// One on every reachable selected host that has none.
		for _, c := range candidates {
			if c.Reachable && perHost[c.Host.Name] == 0 {
				p.Create = append(p.Create, Placed{Slot: nextSlot(), Host: c.Host.Name})
			}
		}
		if len(unreachable) > 0 {
			note := fmt.Sprintf("%s unreachable: its instance is unknown and left alone", hostsPhrase(unreachable))
			if reschedule {
				note += fmt.Sprintf(" (--reschedule moves nothing: %s runs one instance on every selected host)", s.Name)
			}
			p.Notes = append(p.Notes, note)
		}
		return p
	}

	missing := want - len(kept)
	if len(unreachable) > 0 && !reschedule && missing > 0 {
		p.Notes = append(p.Notes, fmt.Sprintf("%s unreachable: %d of %d instances are unknown and may run there; --reschedule places them on the other hosts", hostsPhrase(unreachable), missing, want))
		return p
	}
	if len(unreachable) > 0 && reschedule && missing == 0 {
		p.Notes = append(p.Notes, fmt.Sprintf("%s unreachable: all %d instances of %s run on the others; nothing to reschedule", hostsPhrase(unreachable), want, s.Name))
	}
	spreadCount := map[string]int{}
	if s.Spread != "" {
		for _, o := range kept {
			spreadCount[byName[o.Host].Host.Labels[s.Spread]]++
		}
	}
	var placedOn []string
	for ; missing > 0; missing-- {
		best := pickHost(candidates, perHost, maxPer, s.Spread, spreadCount)
		if best == nil {
			p.Short = missing
			break
		}
		perHost[best.Host.Name]++
		if s.Spread != "" {
			spreadCount[best.Host.Labels[s.Spread]]++
		}
		p.Create = append(p.Create, Placed{Slot: nextSlot(), Host: best.Host.Name, Rescheduled: unreachable})
		placedOn = append(placedOn, best.Host.Name)
	}
	switch {
	case len(unreachable) == 0 || len(placedOn)+p.Short == 0:
		if p.Short > 0 {
			p.Notes = append(p.Notes, fmt.Sprintf("%d of %d instances do not fit: %s", p.Short, want, noRoom(candidates, maxPer)))
		}
	case len(placedOn) == 0:
		p.Notes = append(p.Notes, fmt.Sprintf("%s unreachable: %s cannot be rescheduled: %s; %d of %d instances are unknown",
			hostsPhrase(unreachable), s.Name, noRoom(candidates, maxPer), p.Short, want))
	default:
		back := "it is"
		if len(unreachable) > 1 {
			back = "they are"
		}
		note := fmt.Sprintf("%s unreachable: %s of %s placed on %s instead (--reschedule); the extras go once %s back",
			hostsPhrase(unreachable), plural(len(placedOn), "instance"), s.Name, countedHosts(placedOn), back)
		if p.Short == 1 {
			note += "; 1 more does not fit: " + noRoom(candidates, maxPer)
		} else if p.Short > 1 {
			note += fmt.Sprintf("; %d more do not fit: %s", p.Short, noRoom(candidates, maxPer))
		}
		p.Notes = append(p.Notes, note)
	}
	return p
}

// noRoom says why no host could take another instance.
func noRoom(candidates []Candidate, maxPer int) string {
	for _, c := range candidates {
		if c.Reachable {
			return fmt.Sprintf("no reachable selected host has room (max_per_host %d)", maxPer)
		}
	}
	return "no selected host is reachable"
}

// countedHosts lists hosts in order, each once: "h1 (2), h4".
func countedHosts(names []string) string {
	count := map[string]int{}
	var order []string
	for _, n := range names {
		if count[n] == 0 {
			order = append(order, n)
		}
		count[n]++
	}
	for i, n := range order {
		if count[n] > 1 {
			order[i] = fmt.Sprintf("%s (%d)", n, count[n])
		}
	}
	return strings.Join(order, ", ")
}

// dedupeSlots keeps one instance per slot: running before stopped, newer
// before older.
func dedupeSlots(list []Observed) (kept []Observed, removed []Removal) {
	bySlot := map[int][]Observed{}
	var slots []int
	for _, o := range list {
		if len(bySlot[o.Slot]) == 0 {
			slots = append(slots, o.Slot)
		}
		bySlot[o.Slot] = append(bySlot[o.Slot], o)
	}
	sort.Ints(slots)
	for _, slot := range slots {
		copies := bySlot[slot]
		sort.SliceStable(copies, func(i, j int) bool {
			// A copy never seen healthy yields to one that was: it is
			// what a run killed in its step left, and the other is what
			// that step replaced.
			if copies[i].Unchecked != copies[j].Unchecked {
				return !copies[i].Unchecked
			}
			if copies[i].Running != copies[j].Running {
				return copies[i].Running
			}
			if copies[i].Created != copies[j].Created {
				return copies[i].Created > copies[j].Created
			}
			return copies[i].Host < copies[j].Host
		})
		kept = append(kept, copies[0])
		for _, o := range copies[1:] {
			why := fmt.Sprintf("a second copy of slot %d (the one on %s stays)", slot, copies[0].Host)
			if o.Unchecked && !copies[0].Unchecked {
				why = neverChecked + fmt.Sprintf("; the copy of slot %d it was to replace stays", slot)
			}
			removed = append(removed, Removal{o, why})
		}
	}
	return kept, removed
}

// sortForRemoval orders instances from first to remove to last: stopped,
// then on the most crowded host, then in the most represented spread
// value, then the highest slot.
func sortForRemoval(list []Observed, perHost map[string]int, spread string, byName map[string]*Candidate) {
	count := perHost
	if count == nil {
		count = map[string]int{}
		for _, o := range list {
			count[o.Host]++
		}
	}
	spreadCount := map[string]int{}
	if spread != "" {
		for _, o := range list {
			spreadCount[byName[o.Host].Host.Labels[spread]]++
		}
	}
	sort.SliceStable(list, func(i, j int) bool {
		a, b := list[i], list[j]
		if a.Running != b.Running {
			return !a.Running
		}
		if count[a.Host] != count[b.Host] {
			return count[a.Host] > count[b.Host]
		}
		if spread != "" {
			sa, sb := spreadCount[byName[a.Host].Host.Labels[spread]], spreadCount[byName[b.Host].Host.Labels[spread]]
			if sa != sb {
				return sa > sb
			}
		}
		return a.Slot > b.Slot
	})
}

// pickHost ranks the hosts with room: the least used spread value, then
// the fewest instances of the service, then the most free memory, the most
// CPUs, and the name, so that the choice is the same on every run.
func pickHost(candidates []Candidate, perHost map[string]int, maxPer int, spread string, spreadCount map[string]int) *Candidate {
	var best *Candidate
	better := func(a, b *Candidate) bool {
		if spread != "" {
			sa, sb := spreadCount[a.Host.Labels[spread]], spreadCount[b.Host.Labels[spread]]
			if sa != sb {
				return sa < sb
			}
		}
		if perHost[a.Host.Name] != perHost[b.Host.Name] {
			return perHost[a.Host.Name] < perHost[b.Host.Name]
		}
		if a.MemAvailable != b.MemAvailable {
			return a.MemAvailable > b.MemAvailable
		}
		if a.CPUs != b.CPUs {
			return a.CPUs > b.CPUs
		}
		return a.Host.Name < b.Host.Name
	}
	for i := range candidates {
		c := &candidates[i]
		if !c.Reachable || perHost[c.Host.Name] >= maxPer {
			continue
		}
		if best == nil || better(c, best) {
			best = c
		}
	}
	return best
}

func hostsPhrase(names []string) string {
	if len(names) == 1 {
		return "host " + names[0] + " is"
	}
	return "hosts " + strings.Join(names, ", ") + " are"
}
