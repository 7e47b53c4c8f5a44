package plan

import (
	"fmt"
	"sort"
	"strings"
	"testing"

	"github.com/fleetdeploy/fleet/inventory"
)

// hostsFor makes candidates from "name:zone:memGiB" triples; a trailing
// "!" marks an unreachable host.
func hostsFor(specs ...string) []Candidate {
	var out []Candidate
	for _, s := range specs {
		reachable := !strings.HasSuffix(s, "!")
		f := strings.Split(strings.TrimSuffix(s, "!"), ":")
		var mem int64
		fmt.Sscan(f[2], &mem)
		out = append(out, Candidate{
			Host:      &inventory.Host{Name: f[0], Labels: map[string]string{"zone": f[1]}},
			Reachable: reachable, MemAvailable: mem << 30, CPUs: 2,
		})
	}
	return out
}

// obs makes observed instances from "host/slot" pairs; "host/slot-" is
// stopped.
func obs(specs ...string) []Observed {
	var out []Observed
	for i, s := range specs {
		host, slot, _ := strings.Cut(s, "/")
		o := Observed{Host: host, Running: !strings.HasSuffix(slot, "-"), Created: int64(i)}
		fmt.Sscan(strings.TrimSuffix(slot, "-"), &o.Slot)
		out = append(out, o)
	}
	return out
}

// summary renders a placement as "keep h1/1 h2/2 | create h3/3 | remove h4/4 (why)".
func summary(p Placement) string {
	var keep, create, remove []string
	for _, k := range p.Keep {
		keep = append(keep, fmt.Sprintf("%s/%d", k.Host, k.Slot))
	}
	for _, c := range p.Create {
		create = append(create, fmt.Sprintf("%s/%d", c.Host, c.Slot))
	}
	for _, r := range p.Remove {
		remove = append(remove, fmt.Sprintf("%s/%d (%s)", r.Instance.Host, r.Instance.Slot, r.Reason))
	}
	sort.Strings(remove)
	out := "keep " + strings.Join(keep, " ") + " | create " + strings.Join(create, " ") + " | remove " + strings.Join(remove, ", ")
	if p.Short > 0 {
		out += fmt.Sprintf(" | short %d", p.Short)
	}
	return out
}

func svc(replicas, maxPer int, spread string) *Service {
	s := &Service{Name: "web", MaxPerHost: maxPer, Spread: spread}
	if replicas >= 0 {
		s.Replicas, s.ReplicasSet = replicas, true
	}
	return s
}

func TestPlace(t *testing.T) {
	three := hostsFor("h1:a:4", "h2:b:8", "h3:c:2")
	for _, c := range []struct {
		name       string
		s          *Service
		hosts      []Candidate
		observed   []Observed
		reschedule bool
		want       string
		note       string
	}{
		{name: "fresh, one per host", s: svc(-1, 1, ""), hosts: three,
			want: "keep  | create h1/1 h2/2 h3/3 | remove "},
		{name: "fresh replicas go to the most free memory first", s: svc(2, 1, ""), hosts: three,
			want: "keep  | create h2/1 h1/2 | remove "},
		{name: "converged stays put", s: svc(2, 1, ""), hosts: three, observed: obs("h3/1", "h1/2"),
			want: "keep h3/1 h1/2 | create  | remove "},
		{name: "scale up fills the free slot numbers", s: svc(3, 1, ""), hosts: three, observed: obs("h3/2"),
			want: "keep h3/2 | create h2/1 h1/3 | remove "},
		{name: "scale down removes stopped first", s: svc(2, 1, ""), hosts: three, observed: obs("h1/1", "h2/2-", "h3/3"),
			want: "keep h1/1 h3/3 | create  | remove h2/2 (scaled down to 2)"},
		{name: "scale down removes crowded next", s: svc(2, 2, ""), hosts: three, observed: obs("h1/1", "h1/2", "h2/3"),
			want: "keep h1/1 h2/3 | create  | remove h1/2 (scaled down to 2)"},
		{name: "scale down otherwise the highest slot", s: svc(1, 1, ""), hosts: three, observed: obs("h1/1", "h2/2"),
			want: "keep h1/1 | create  | remove h2/2 (scaled down to 1)"},
		{name: "over max_per_host", s: svc(2, 1, ""), hosts: three, observed: obs("h1/1", "h1/2"),
			want: "keep h1/1 | create h2/2 | remove h1/2 (more than 1 on host h1)"},
		{name: "host no longer selected", s: svc(1, 1, ""), hosts: hostsFor("h1:a:4"), observed: obs("h9/1"),
			want: "keep  | create h1/1 | remove h9/1 (host h9 is no longer selected)"},
		{name: "two copies of a slot keep the running one", s: svc(2, 1, ""), hosts: three, observed: obs("h1/1", "h2/1-"),
			want: "keep h1/1 | create h2/2 | remove h2/1 (a second copy of slot 1 (the one on h1 stays))"},
		{name: "spread over zones", s: svc(3, 2, "zone"), hosts: hostsFor("h1:a:9", "h2:a:8", "h3:b:1", "h4:c:1"),
			want: "keep  | create h1/1 h3/2 h4/3 | remove "},
		{name: "spread counts what runs", s: svc(3, 2, "zone"), hosts: hostsFor("h1:a:9", "h2:a:8", "h3:b:1", "h4:c:1"), observed: obs("h3/1", "h4/2"),
			want: "keep h3/1 h4/2 | create h1/3 | remove "},
		{name: "does not fit", s: svc(4, 1, ""), hosts: three,
			want: "keep  | create h2/1 h1/2 h3/3 | remove  | short 1"},
		{name: "unreachable host: nothing placed elsewhere", s: svc(3, 1, ""), hosts: hostsFor("h1:a:4", "h2:b:4", "h3:c:4!"), observed: obs("h1/1", "h2/2"),
			want: "keep h1/1 h2/2 | create  | remove ", note: "host h3 is unreachable: 1 of 3 instances are unknown"},
		{name: "unreachable host: the note hints at --reschedule", s: svc(3, 1, ""), hosts: hostsFor("h1:a:4", "h2:b:4", "h3:c:4!"), observed: obs("h1/1"),
			want: "keep h1/1 | create  | remove ", note: "host h3 is unreachable: 2 of 3 instances are unknown and may run there; --reschedule places them on the other hosts"},
		{name: "unreachable host, rescheduled", s: svc(2, 2, ""), hosts: hostsFor("h1:a:4", "h2:b:4!"), observed: obs("h1/1"), reschedule: true,
			want: "keep h1/1 | create h1/2 | remove ", note: "host h2 is unreachable: 1 instance of web placed on h1 instead (--reschedule); the extras go once it is back"},
		{name: "rescheduled onto several hosts", s: svc(4, 2, ""), hosts: hostsFor("h1:a:4", "h2:b:2", "h3:c:4!"), observed: obs("h2/1"), reschedule: true,
			want: "keep h2/1 | create h1/2 h1/3 h2/4 | remove ", note: "host h3 is unreachable: 3 instances of web placed on h1 (2), h2 instead (--reschedule)"},
		{name: "rescheduled in part", s: svc(3, 1, ""), hosts: hostsFor("h1:a:4", "h2:b:4", "h3:c:4!"), observed: obs("h1/1"), reschedule: true,
			want: "keep h1/1 | create h2/2 | remove  | short 1", note: "1 instance of web placed on h2 instead (--reschedule); the extras go once it is back; 1 more does not fit: no reachable selected host has room (max_per_host 1)"},
		{name: "no room to reschedule", s: svc(2, 1, ""), hosts: hostsFor("h1:a:4", "h2:b:4!"), observed: obs("h1/1"), reschedule: true,
			want: "keep h1/1 | create  | remove  | short 1", note: "host h2 is unreachable: web cannot be rescheduled: no reachable selected host has room (max_per_host 1); 1 of 2 instances are unknown"},
		{name: "no reachable host to reschedule to", s: svc(1, 1, ""), hosts: hostsFor("h1:a:4!"), reschedule: true,
			want: "keep  | create  | remove  | short 1", note: "host h1 is unreachable: web cannot be rescheduled: no selected host is reachable"},
		{name: "nothing to reschedule", s: svc(2, 1, ""), hosts: hostsFor("h1:a:4", "h2:b:4", "h3:c:4!"), observed: obs("h1/1", "h2/2"), reschedule: true,
			want: "keep h1/1 h2/2 | create  | remove ", note: "host h3 is unreachable: all 2 instances of web run on the others; nothing to reschedule"},
		{name: "one per host is not rescheduled", s: svc(-1, 1, ""), hosts: hostsFor("h1:a:4", "h2:b:4!"), observed: obs("h1/1"), reschedule: true,
			want: "keep h1/1 | create  | remove ", note: "host h2 is unreachable: its instance is unknown and left alone (--reschedule moves nothing: web runs one instance on every selected host)"},
		{name: "host back after a reschedule: the extra goes", s: svc(2, 2, ""), hosts: hostsFor("h1:a:4", "h2:b:4"), observed: obs("h2/2", "h1/1", "h1/2"),
			want: "keep h1/1 h1/2 | create  | remove h2/2 (a second copy of slot 2 (the one on h1 stays))"},
		{name: "one per host skips unreachable hosts", s: svc(-1, 1, ""), hosts: hostsFor("h1:a:4", "h2:b:4!"),
			want: "keep  | create h1/1 | remove ", note: "host h2 is unreachable"},
	} {
		p := Place(c.s, c.hosts, c.observed, c.reschedule)
		if got := summary(p); got != c.want {
			t.Errorf("%s:\n got %s\nwant %s", c.name, got, c.want)
		}
		if c.note != "" && !strings.Contains(strings.Join(p.Notes, "; "), c.note) {
			t.Errorf("%s: notes %q lack %q", c.name, p.Notes, c.note)
		}
	}
}

// TestPlaceIsStable re-plans the result of a placement and expects no
// change: what plan says once, it says again.
func TestPlaceIsStable(t *testing.T) {
	hosts := hostsFor("h1:a:9", "h2:a:8", "h3:b:1", "h4:c:1", "h5:c:5")
	for _, s := range []*Service{svc(3, 1, "zone"), svc(7, 2, "zone"), svc(-1, 1, ""), svc(4, 3, "")} {
		first := Place(s, hosts, nil, false)
		var now []Observed
		for _, c := range first.Create {
			now = append(now, Observed{Host: c.Host, Slot: c.Slot, Running: true})
		}
		again := Place(s, hosts, now, false)
		if len(again.Create) != 0 || len(again.Remove) != 0 {
			t.Errorf("replicas %d: re-planning changes things: %s", s.Replicas, summary(again))
		}
	}
}
