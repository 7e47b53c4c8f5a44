package inventory

import "os"

// Listing is the resolved inventory as "fleet inventory --json" prints it,
// one entry per host name.
type Listing struct {
	Hosts map[string]ListedHost `json:"hosts"`
}

// ListedHost is one host of a Listing.
type ListedHost struct {
	Address      string            `json:"address"`
	Port         int               `json:"port"`
	User         string            `json:"user"`
	IdentityFile string            `json:"identity_file"`
	Jump         []string          `json:"jump"`
	Sudo         bool              `json:"sudo"`
	LB           bool              `json:"lb"`
	Labels       map[string]string `json:"labels"`
	Groups       []string          `json:"groups"`
}

// Listing returns the inventory as a Listing. A host's identity file is
// the one the inventory names, else the first of ssh_config's that exists
// (what ssh would offer first after the agent's keys), else "".
func (inv *Inventory) Listing() Listing {
	l := Listing{Hosts: map[string]ListedHost{}}
	for _, h := range inv.Hosts {
		lh := ListedHost{
			Address: h.Address, Port: h.Port, User: h.User,
			IdentityFile: h.IdentityFile,
			Jump:         []string{},
			Sudo:         h.Sudo, LB: h.LB,
			Labels: h.Labels, Groups: h.Groups,
		}
		if lh.IdentityFile == "" {
			for _, f := range h.IdentityFiles {
				if _, err := os.Stat(f); err == nil {
					lh.IdentityFile = f
					break
				}
			}
		}
		for _, hop := range h.Jump {
			lh.Jump = append(lh.Jump, hop.Name)
		}
		if lh.Groups == nil {
			lh.Groups = []string{}
		}
		l.Hosts[h.Name] = lh
	}
	return l
}
