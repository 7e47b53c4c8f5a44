package rollout

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/fleetdeploy/fleet/executor"
	"github.com/fleetdeploy/fleet/plan"
)

// Revision is the record of one revision of a service, kept on every host
// the revision ran on: its full spec (secrets by name only), and who made
// it, when, from where, why, and how it went. "fleet rollback" makes a new
// revision from an old record.
type Revision struct {
	Service   string         `json:"service"`
	Revision  int            `json:"revision"`
	Spec      string         `json:"spec"`
	Template  plan.Template  `json:"template"`
	Resources plan.Resources `json:"resources"`
	Restart   plan.Restart   `json:"restart"`
	When      time.Time      `json:"when"`
	Who       string         `json:"who"` // user@machine
	Cause     string         `json:"cause"`
	Outcome   string         `json:"outcome"` // deployed, rolled back, paused, interrupted, failed
	// Rollback is set on a revision made by fleet rollback.
	Rollback *plan.RollbackOf `json:"rollback,omitempty"`
}

func revisionsDir(c *executor.Conn, project, service string) string {
	return path.Join(StateDir(c, project), "revisions", service)
}

// recordRevision writes the record on the given hosts and keeps only the
// newest keep records there.
func recordRevision(ctx context.Context, conns []*executor.Conn, project string, rev Revision, keep int) error {
	b, _ := json.MarshalIndent(rev, "", "  ")
	var mu sync.Mutex
	var errs []error
	var wg sync.WaitGroup
	for _, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			dir := revisionsDir(c, project, rev.Service)
			err := func() error {
				// Over a new connection if the run's was lost.
				c, err := c.Reconnect(ctx)
				if err != nil {
					return err
				}
				if err := c.MkdirAll(ctx, dir); err != nil {
					return err
				}
				if err := c.WriteFile(ctx, path.Join(dir, strconv.Itoa(rev.Revision)+".json"), strings.NewReader(string(b)+"\n"), 0o600); err != nil {
					return err
				}
				if rev.Revision <= keep {
					// No more than keep numbers up to this one: nothing
					// to prune, and no listing to make.
					return nil
				}
				nums, err := listRevisions(ctx, c, dir)
				if err != nil || len(nums) <= keep {
					return err
				}
				for _, n := range nums[:len(nums)-keep] {
					if err := c.RemoveAll(ctx, path.Join(dir, strconv.Itoa(n)+".json")); err != nil {
						return err
					}
				}
				return nil
			}()
			if err != nil {
				mu.Lock()
				errs = append(errs, hostOpFailed(c.Host(), fmt.Sprintf("recording revision %d", rev.Revision), err))
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// listRevisions returns the revision numbers recorded in dir, ascending.
func listRevisions(ctx context.Context, c *executor.Conn, dir string) ([]int, error) {
	names, err := c.ReadDir(ctx, dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil // no history yet
		}
		return nil, err
	}
	var nums []int
	for _, name := range names {
		if n, err := strconv.Atoi(strings.TrimSuffix(name, ".json")); err == nil && strings.HasSuffix(name, ".json") {
			nums = append(nums, n)
		}
	}
	sort.Ints(nums)
	return nums, nil
}

// recorded reads, for each of services, the newest revision the host's
// history holds: what a plan needs to number a new revision and to say
// that a service was rolled back. A host without history has none. The
// services are read at once, each a listing and then a record.
func recorded(ctx context.Context, c *executor.Conn, project string, services []string) map[string]plan.Recorded {
	out := map[string]plan.Recorded{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, service := range services {
		wg.Add(1)
		go func() {
			defer wg.Done()
			dir := revisionsDir(c, project, service)
			nums, err := listRevisions(ctx, c, dir)
			if err != nil || len(nums) == 0 {
				return // the other services' records still count
			}
			n := nums[len(nums)-1]
			// The number is taken even when its record cannot be read.
			rec := plan.Recorded{Revision: n}
			var r Revision
			if b, err := c.ReadFile(ctx, path.Join(dir, strconv.Itoa(n)+".json")); err == nil && json.Unmarshal(b, &r) == nil {
				rec = plan.Recorded{Revision: n, Spec: r.Spec, Outcome: r.Outcome, Who: r.Who, When: r.When, Rollback: r.Rollback}
			}
			mu.Lock()
			out[service] = rec
			mu.Unlock()
		}()
	}
	wg.Wait()
	return out
}

// History reads a service's revisions from every host and merges them:
// one record per revision, oldest first. Hosts that cannot be read are
// skipped; the records are the same wherever a revision ran.
func History(ctx context.Context, conns map[string]*executor.Conn, project, service string) ([]Revision, error) {
	byRev := map[int]Revision{}
	var mu sync.Mutex
	var errs []error
	var wg sync.WaitGroup
	for _, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			dir := revisionsDir(c, project, service)
			nums, err := listRevisions(ctx, c, dir)
			for _, n := range nums {
				if err != nil {
					break
				}
				var b []byte
				if b, err = c.ReadFile(ctx, path.Join(dir, strconv.Itoa(n)+".json")); err != nil {
					break
				}
				var r Revision
				if err = json.Unmarshal(b, &r); err != nil {
					err = fmt.Errorf("revision %d: %w", n, err)
					break
				}
				mu.Lock()
				// Where a run was interrupted, hosts may disagree on the
				// outcome: the latest word wins.
				if prev, ok := byRev[n]; !ok || r.When.After(prev.When) {
					byRev[n] = r
				}
				mu.Unlock()
			}
			if err != nil {
				mu.Lock()
				errs = append(errs, onHost(c.Host(), err))
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	var revs []Revision
	for _, r := range byRev {
		revs = append(revs, r)
	}
	sort.Slice(revs, func(i, j int) bool { return revs[i].Revision < revs[j].Revision })
	return revs, errors.Join(errs...)
}

// AsService returns s as it was at revision r: the container template,
// resources and restart policy of r, with the rest of s (placement,
// health check, update policy) as fleet.yaml has it now. Secret values are
// never stored: a secret of r is read from where fleet.yaml says now.
func (r Revision) AsService(s *plan.Service) (*plan.Service, error) {
	old := *s
	t := r.Template
	old.Image, old.Command, old.Entrypoint = t.Image, t.Command, t.Entrypoint
	old.Env = map[string]string{}
	for k, v := range t.Env {
		old.Env[k] = v
	}
	old.Secrets = map[string]plan.SecretRef{}
	for _, name := range t.Secrets {
		ref, ok := s.Secrets[name]
		if !ok {
			return nil, fmt.Errorf("revision %d has the secret %s, which fleet.yaml no longer names: add it back under secrets: to roll back to it", r.Revision, name)
		}
		old.Secrets[name] = ref
	}
	old.Ports, old.Volumes, old.Networks = t.Ports, t.Volumes, t.Networks
	old.User, old.Workdir, old.Labels, old.StopGrace = t.User, t.Workdir, t.Labels, t.StopGrace
	old.Resources, old.Restart = r.Resources, r.Restart
	return &old, nil
}
