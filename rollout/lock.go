package rollout

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/user"
	"path"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/fleetdeploy/fleet/executor"
)

// The deploy lock keeps two runs from changing the same hosts at once. It
// lives on the hosts a run changes, so two operators on two machines see
// each other: a directory made with mkdir, which only one can create, and
// in it a file naming the holder and when its lease runs out. The holder
// renews the lease while it runs; a lock whose lease ran out, or whose
// holder process is gone from this same machine, is taken over with a
// warning.

// DefaultLease is how long a lock holds without renewal.
const DefaultLease = 30 * time.Second

// Holder describes who holds a lock.
type Holder struct {
	User    string    `json:"user"`
	Machine string    `json:"machine"`
	PID     int       `json:"pid"`
	Command string    `json:"command"`
	Started time.Time `json:"started"`
	Expires time.Time `json:"expires"`
}

func (h Holder) String() string {
	return fmt.Sprintf("%s@%s (pid %d) since %s, running %q", h.User, h.Machine, h.PID, h.Started.Local().Format("15:04:05"), h.Command)
}

// Me describes this run as a lock holder.
func Me(command string) Holder {
	machine, _ := os.Hostname()
	return Holder{User: userName(), Machine: machine, PID: os.Getpid(), Command: command, Started: time.Now().UTC()}
}

// userName is the name of the user running fleet: from the user database
// (cron and sudo may leave $USER unset or stale), then $USER or $LOGNAME,
// the numeric id only when nothing names it.
func userName() string {
	if u, err := user.Current(); err == nil && u.Username != "" {
		return u.Username
	}
	for _, v := range []string{"USER", "LOGNAME"} {
		if name := os.Getenv(v); name != "" {
			return name
		}
	}
	return fmt.Sprintf("uid %d", os.Getuid())
}

// LockHeldError says that another run holds the lock on a host.
type LockHeldError struct {
	Host   string
	Holder Holder
}

func (e *LockHeldError) Error() string {
	return fmt.Sprintf("the deploy lock on %s is held by %s; wait for it (--lock-wait 5m), or, if that run is gone, fleet lock release --force", e.Host, e.Holder)
}

// ExitCode is 4, the exit code of a held lock.
func (e *LockHeldError) ExitCode() int { return 4 }

// StateDir is where a project's lock (and, later, history) lives on a host:
// /var/lib/fleet for root, the user's own directory otherwise.
func StateDir(c *executor.Conn, project string) string {
	if c.Target().User == "root" {
		return path.Join("/var/lib/fleet", project)
	}
	return path.Join(".local/share/fleet", project)
}

func lockDir(c *executor.Conn, project string) string { return path.Join(StateDir(c, project), "lock") }

// Lock is a held deploy lock.
type Lock struct {
	project string
	me      Holder
	lease   time.Duration
	conns   []*executor.Conn
	stop    chan struct{}
	done    chan struct{}
}

// Acquire takes the lock on every host of conns, waiting up
// to wait for a holder to let go. On failure nothing stays locked. warn is
// told of every lock taken over.
func Acquire(ctx context.Context, conns []*executor.Conn, project string, me Holder, wait, lease time.Duration, warn func(string)) (*Lock, error) {
	sort.Slice(conns, func(i, j int) bool { return conns[i].Host() < conns[j].Host() })
	l := &Lock{project: project, me: me, lease: lease, stop: make(chan struct{}), done: make(chan struct{})}
	deadline := time.Now().Add(wait)
	for {
		err := l.tryAll(ctx, conns, warn)
		if err == nil {
			go l.renew()
			return l, nil
		}
		var held *LockHeldError
		if !errors.As(err, &held) || time.Now().After(deadline) {
			return nil, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(min(2*time.Second+time.Duration(rand.Int64N(int64(500*time.Millisecond))), time.Until(deadline)+10*time.Millisecond)):
		}
	}
}

// tryAll takes the lock on every host at once. Nobody waits while holding
// part of it (a held host gives everything back), so two runs cannot
// deadlock; they retry after a pause with some jitter.
func (l *Lock) tryAll(ctx context.Context, conns []*executor.Conn, warn func(string)) error {
	taken := make([]bool, len(conns))
	errs := make([]error, len(conns))
	var wg sync.WaitGroup
	for i, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = l.try(ctx, c, warn)
			taken[i] = errs[i] == nil
		}()
	}
	wg.Wait()
	l.conns = nil
	for i, c := range conns {
		if taken[i] {
			l.conns = append(l.conns, c)
		}
	}
	// The first error in host order, a held lock before any other.
	var first error
	for _, err := range errs {
		var held *LockHeldError
		if errors.As(err, &held) {
			first = err
			break
		}
		if first == nil {
			first = err
		}
	}
	if first != nil {
		l.release(context.WithoutCancel(ctx))
		l.conns = nil
	}
	return first
}

// try takes the lock on one host.
func (l *Lock) try(ctx context.Context, c *executor.Conn, warn func(string)) error {
	dir := lockDir(c, l.project)
	if err := c.MkdirAll(ctx, path.Dir(dir)); err != nil {
		return err
	}
	err := c.Mkdir(ctx, dir)
	switch {
	case err == nil:
		return l.write(ctx, c)
	case !errors.Is(err, fs.ErrExist):
		return err
	}
	// Held: by whom, and is it still alive?
	current, rerr := readHolder(ctx, c, l.project)
	if rerr != nil {
		// A holder that died between mkdir and writing its file.
		current = Holder{User: "unknown", Machine: "unknown", Expires: time.Time{}}
	}
	if current.Machine == l.me.Machine && current.PID == l.me.PID {
		return l.write(ctx, c)
	}
	gone := current.Machine == l.me.Machine && current.PID > 0 && !processAlive(current.PID)
	if time.Now().Before(current.Expires) && !gone {
		return &LockHeldError{Host: c.Host(), Holder: current}
	}
	why := "its lease ran out at " + current.Expires.Local().Format("15:04:05")
	if gone {
		why = "its process is gone"
	}
	if warn != nil {
		warn(fmt.Sprintf("taking over the deploy lock on %s from %s: %s", c.Host(), current, why))
	}
	if err := l.write(ctx, c); err != nil {
		return err
	}
	// Two runs may take over at once: the last writer holds it.
	time.Sleep(200 * time.Millisecond)
	if now, err := readHolder(ctx, c, l.project); err != nil || now.PID != l.me.PID || now.Machine != l.me.Machine {
		return &LockHeldError{Host: c.Host(), Holder: now}
	}
	return nil
}

func (l *Lock) write(ctx context.Context, c *executor.Conn) error {
	h := l.me
	h.Expires = time.Now().Add(l.lease).UTC()
	b, _ := json.MarshalIndent(h, "", "  ")
	return c.WriteFile(ctx, path.Join(lockDir(c, l.project), "holder.json"), strings.NewReader(string(b)+"\n"), 0o644)
}

func readHolder(ctx context.Context, c *executor.Conn, project string) (Holder, error) {
	var h Holder
	b, err := c.ReadFile(ctx, path.Join(lockDir(c, project), "holder.json"))
	if err != nil {
		return h, err
	}
	err = json.Unmarshal(b, &h)
	return h, err
}

// renew extends the lease on every host until the lock is released.
func (l *Lock) renew() {
	defer close(l.done)
	tick := time.NewTicker(l.lease / 3)
	defer tick.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-tick.C:
			// In parallel, so one slow host does not let another's lease
			// run out.
			ctx, cancel := context.WithTimeout(context.Background(), l.lease/3)
			var wg sync.WaitGroup
			for _, c := range l.conns {
				wg.Add(1)
				go func() {
					defer wg.Done()
					l.write(ctx, c)
				}()
			}
			wg.Wait()
			cancel()
		}
	}
}

// Release lets go of the lock on every host.
func (l *Lock) Release(ctx context.Context) error {
	close(l.stop)
	<-l.done
	return l.release(ctx)
}

func (l *Lock) release(ctx context.Context) error {
	var errs []error
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, c := range l.conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := c.RemoveAll(ctx, lockDir(c, l.project)); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// LockStatus reads who holds the lock on each host; hosts without one are
// left out.
func LockStatus(ctx context.Context, conns map[string]*executor.Conn, project string) map[string]Holder {
	out := map[string]Holder{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for name, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			h, err := readHolder(ctx, c, project)
			if err != nil {
				if _, serr := c.ReadDir(ctx, lockDir(c, project)); serr != nil {
					return // no lock
				}
				h = Holder{User: "unknown", Machine: "unknown"}
			}
			mu.Lock()
			out[name] = h
			mu.Unlock()
		}()
	}
	wg.Wait()
	return out
}

// ForceRelease removes the lock on every host, whoever holds it.
func ForceRelease(ctx context.Context, conns map[string]*executor.Conn, project string) error {
	l := &Lock{project: project}
	for _, c := range conns {
		l.conns = append(l.conns, c)
	}
	return l.release(ctx)
}

func processAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}
