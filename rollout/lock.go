package rollout

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	mrand "math/rand/v2"
	"os"
	"os/user"
	"path"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/fleetdeploy/fleet/executor"
)

// The deploy lock keeps two runs from changing the same hosts at once. It
// lives on the hosts a run changes, so two operators on two machines see
// each other, and it works with nothing on a host but its files.
//
// A host's lock is a directory of generations, 1.json, 2.json, …: the
// newest one says who holds the lock, or that it was let go. A file is
// never rewritten; every change of the lock, taking it, renewing it,
// taking it over, letting it go, creates the next generation, whole, with
// link(2), which succeeds only where nothing is ([executor.Conn.CreateFile]).
// Of two runs that act on the same generation, one creates the next and
// the other finds it there: that is the compare-and-swap, and no run ever
// needs to wait and look again to know it won. Older generations are
// removed, the newest never, so a generation number is never given twice
// while it counts; a run that looked long ago and creates a generation
// since removed sees a newer one when it looks again, and gives way.
//
// The holder renews its lease by creating a generation every sixth of
// the lease. A lock is taken over when its holder's process is gone from
// this very machine (same machine id, boot and PID namespace, and the
// process that started then), or when its newest generation is older than
// the lease by the host's own clock: the file's time and the host's
// current time, both as the host stamps files, so no two clocks are
// compared. A holder that has not renewed for half its lease (a host that
// stalls, a partition) counts the lock as lost and stops, well before
// anyone may take it over; so does one that finds the next generation
// made by someone else (taken over, or broken with release --force).

// DefaultLease is how long a lock holds without renewal.
const DefaultLease = 30 * time.Second

// renewalGrace is how long letting go of the lock waits for a renewal
// under way on a host.
const renewalGrace = 2 * time.Second

// Holder describes who holds a lock.
type Holder struct {
	User    string    `json:"user"`
	Machine string    `json:"machine"`
	PID     int       `json:"pid"`
	Command string    `json:"command"`
	Started time.Time `json:"started"`
	// MachineID tells the holder's machine, boot and PID namespace apart
	// from every other, hashed; empty where they cannot be read. Only a
	// holder with this run's own MachineID is judged by its PID.
	MachineID string `json:"machine_id,omitempty"`
	// ProcStart is when the holder's process started, in clock ticks since
	// boot, so that a PID given to another process since does not pass for
	// the holder.
	ProcStart uint64 `json:"proc_start,omitempty"`
}

func (h Holder) String() string {
	return fmt.Sprintf("%s@%s (pid %d) since %s, running %q", h.User, h.Machine, h.PID, h.Started.Local().Format("15:04:05"), h.Command)
}

// Me describes this run as a lock holder.
func Me(command string) Holder {
	machine, _ := os.Hostname()
	start, _ := procStart(os.Getpid())
	return Holder{User: userName(), Machine: machine, PID: os.Getpid(), Command: command, Started: time.Now().UTC(),
		MachineID: machineID(), ProcStart: start}
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

// machineID identifies this machine, its current boot and this process's
// PID namespace: a host name alone is shared by machines, and a PID means
// something only within one boot and one namespace. It is hashed, as the
// machine id is not to be handed out; empty where it cannot be read.
func machineID() string {
	var id []byte
	for _, f := range []string{"/etc/machine-id", "/var/lib/dbus/machine-id"} {
		if b, err := os.ReadFile(f); err == nil && len(bytes.TrimSpace(b)) > 0 {
			id = bytes.TrimSpace(b)
			break
		}
	}
	boot, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	ns, nsErr := os.Readlink("/proc/self/ns/pid")
	if id == nil || err != nil || nsErr != nil {
		return ""
	}
	sum := sha256.Sum256([]byte("fleet deploy lock\x00" + string(id) + "\x00" + string(bytes.TrimSpace(boot)) + "\x00" + ns))
	return hex.EncodeToString(sum[:16])
}

// procStart reads when process pid started, in clock ticks since boot.
func procStart(pid int) (uint64, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, false
	}
	// Fields follow the command name in parentheses; the start time is the
	// 22nd field, the 20th after the name.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 {
		return 0, false
	}
	n, err := strconv.ParseUint(f[19], 10, 64)
	return n, err == nil
}

// processAlive reports whether the process pid, started at start (0: not
// known), still runs on this machine.
func processAlive(pid int, start uint64) bool {
	if err := syscall.Kill(pid, 0); err != nil && !errors.Is(err, syscall.EPERM) {
		return false
	}
	if now, ok := procStart(pid); ok && start != 0 && now != start {
		return false // the PID went to another process
	}
	return true
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

// LockLostError says that a run no longer holds the lock on a host: its
// lease could not be renewed in time, another run took it over, or it was
// broken by hand. The run must stop.
type LockLostError struct {
	Host string
	// Holder is who took it, when another run did.
	Holder *Holder
	// BrokenBy is who broke it with release --force.
	BrokenBy *Holder
	// Err is why it could not be renewed.
	Err error
}

func (e *LockLostError) Error() string {
	const stopped = "this run stopped, the step in flight finished or undone"
	switch {
	case e.Holder != nil:
		return fmt.Sprintf("lost the deploy lock on %s: it was taken over by %s; %s", e.Host, e.Holder, stopped)
	case e.BrokenBy != nil:
		return fmt.Sprintf("lost the deploy lock on %s: it was broken by %s@%s with fleet lock release --force; %s", e.Host, e.BrokenBy.User, e.BrokenBy.Machine, stopped)
	}
	return fmt.Sprintf("lost the deploy lock on %s: its lease could not be renewed in time (%v); %s: run it again once %s answers", e.Host, e.Err, stopped, e.Host)
}

func (e *LockLostError) Unwrap() error { return e.Err }

// ExitCode is 4 when another run holds the lock now, as for a held lock.
func (e *LockLostError) ExitCode() int {
	if e.Holder != nil {
		return 4
	}
	return 1
}

// StateDir is where a project's lock and history live on a host:
// /var/lib/fleet for root, the user's own directory otherwise.
func StateDir(c *executor.Conn, project string) string {
	return path.Join(stateRoot(c), project)
}

// stateRoot holds the state of every project on the host.
func stateRoot(c *executor.Conn) string {
	if c.Target().User == "root" {
		return "/var/lib/fleet"
	}
	return ".local/share/fleet"
}

func lockDir(c *executor.Conn, project string) string { return path.Join(StateDir(c, project), "lock") }

func genPath(dir string, gen int) string { return path.Join(dir, strconv.Itoa(gen)+".json") }

// generations returns the generation numbers among names, ascending.
func generations(names []string) []int {
	var gens []int
	for _, name := range names {
		num, ok := strings.CutSuffix(name, ".json")
		if n, err := strconv.Atoi(num); ok && err == nil && n > 0 && strconv.Itoa(n) == num {
			gens = append(gens, n)
		}
	}
	sort.Ints(gens)
	return gens
}

// record is one generation of a host's lock.
type record struct {
	Holder
	// Run tells this run's generations from any other's.
	Run          string  `json:"run"`
	LeaseSeconds float64 `json:"lease_seconds"`
	// Released marks a lock let go; Forced, one broken by hand.
	Released bool `json:"released,omitempty"`
	Forced   bool `json:"forced,omitempty"`
}

func (r record) lease() time.Duration {
	if r.LeaseSeconds <= 0 {
		return DefaultLease
	}
	return time.Duration(r.LeaseSeconds * float64(time.Second))
}

func (r record) json() []byte {
	b, _ := json.MarshalIndent(r, "", "  ")
	return append(b, '\n')
}

// lockState is a host's lock as read: its newest generation (0 for none),
// that generation's record and when the host wrote it.
type lockState struct {
	gen     int
	rec     record
	written time.Time
}

func (s lockState) free() bool { return s.gen == 0 || s.rec.Released }

// LocksSeen holds the deploy lock of each host as a run found it before
// it read the host's state ([ReadForChange]).
type LocksSeen map[string]lockState

// Untouched says whether no run has taken the lock on any of hosts since
// it was seen free: its newest generation is still the one seen. The
// hosts a run reads but does not lock are checked so, one listing each.
func (seen LocksSeen) Untouched(ctx context.Context, conns []*executor.Conn, project string) bool {
	for _, c := range conns {
		if st, ok := seen[c.Host()]; !ok || !st.free() {
			return false
		}
	}
	var untouched atomic.Bool
	untouched.Store(true)
	var wg sync.WaitGroup
	for _, c := range conns {
		st := seen[c.Host()]
		wg.Add(1)
		go func() {
			defer wg.Done()
			names, err := c.ReadDir(ctx, lockDir(c, project))
			switch gens := generations(names); {
			case errors.Is(err, fs.ErrNotExist) && st.gen == 0:
			case err != nil, len(gens) == 0 && st.gen != 0, len(gens) > 0 && gens[len(gens)-1] != st.gen:
				untouched.Store(false)
			}
		}()
	}
	wg.Wait()
	return untouched.Load()
}

// seeLock lists the lock in dir, and returns once it has: the function it
// returns then gives the lock as its newest generation says, read in the
// meantime, or nil where it could not be read.
func seeLock(ctx context.Context, c *executor.Conn, dir string) func() *lockState {
	names, err := c.ReadDir(ctx, dir)
	gens := generations(names)
	switch {
	case errors.Is(err, fs.ErrNotExist), err == nil && len(gens) == 0:
		return func() *lockState { return &lockState{} }
	case err != nil:
		return func() *lockState { return nil }
	}
	gen := gens[len(gens)-1]
	seen := make(chan *lockState, 1)
	go func() {
		st := lockState{gen: gen}
		b, err := c.ReadFile(ctx, genPath(dir, gen))
		if err != nil || json.Unmarshal(b, &st.rec) != nil {
			seen <- nil // superseded meanwhile, or unreadable: unknown
			return
		}
		seen <- &st
	}()
	return func() *lockState { return <-seen }
}

// readLock reads the newest generation of the lock in dir.
func readLock(ctx context.Context, c *executor.Conn, dir string) (lockState, error) {
	for tries := 0; ; tries++ {
		names, err := c.ReadDir(ctx, dir)
		if errors.Is(err, fs.ErrNotExist) {
			// SFTP servers say the same of a path that is no directory.
			if fi, serr := c.Stat(ctx, dir); serr == nil && !fi.Dir {
				return lockState{}, fmt.Errorf("host %s: %s is not a directory", c.Host(), dir)
			}
			return lockState{}, nil
		}
		if err != nil {
			return lockState{}, err
		}
		gens := generations(names)
		if len(gens) == 0 {
			return lockState{}, nil
		}
		st := lockState{gen: gens[len(gens)-1]}
		p := genPath(dir, st.gen)
		fi, err := c.Stat(ctx, p)
		var b []byte
		if err == nil {
			b, err = c.ReadFile(ctx, p)
		}
		if errors.Is(err, fs.ErrNotExist) && tries < 5 {
			continue // superseded and removed meanwhile: look again
		}
		if err != nil {
			return lockState{}, err
		}
		if err := json.Unmarshal(b, &st.rec); err != nil {
			return lockState{}, fmt.Errorf("host %s: the deploy lock's record %s is unreadable: %w", c.Host(), p, err)
		}
		st.written = fi.ModTime
		return st, nil
	}
}

// clockGrain is how finely hosts tell file times: both times a lease is
// judged by may be cut to the second.
const clockGrain = time.Second

// stale says why the lock in st may be taken over, or "" while its holder
// may still be at work.
func stale(ctx context.Context, c *executor.Conn, dir string, st lockState, me Holder) (string, error) {
	h := st.rec.Holder
	if me.MachineID != "" && h.MachineID == me.MachineID && h.PID > 0 && !processAlive(h.PID, h.ProcStart) {
		return "its process is gone", nil
	}
	now, err := c.HostTime(ctx, dir)
	if err != nil {
		return "", err
	}
	quiet := now.Sub(st.written)
	if quiet > st.rec.lease()+clockGrain {
		return fmt.Sprintf("its lease ran out: not renewed for %s (lease %s), by the host's clock", quiet, st.rec.lease()), nil
	}
	return "", nil
}

// Lock is a held deploy lock.
type Lock struct {
	project string
	rec     record // what this run writes
	lease   time.Duration

	// life ends when the lock is released: no renewal starts after it.
	// renewals ends the renewals in flight, renewalGrace later at most.
	life         context.Context
	end          context.CancelFunc
	renewals     context.Context
	stopRenewals context.CancelFunc
	wg           sync.WaitGroup

	mu    sync.Mutex
	hosts []*hostLock
	// seen is the lock as the run read it before the state; touched, that
	// some host's lock was not taken straight from the generation seen.
	seen    LocksSeen
	touched bool

	lost     chan struct{}
	lostOnce sync.Once
	lostErr  error
}

// hostLock is the lock held on one host. Only its keeper changes gen and
// renewed; lost is guarded by the Lock's mu.
type hostLock struct {
	// c is the connection to the host, replaced by another when it is
	// lost, by the renewals while the lock is held, then by its release.
	c   *executor.Conn
	dir string
	// gen is the newest generation this run made; renewed, when the
	// attempt that made it began, by this machine's monotonic clock.
	gen     int
	renewed time.Time
	lost    bool
}

// reconnect connects to the host again if h's connection was lost: a
// lease renewed in time over a new connection is as good as any.
func (h *hostLock) reconnect(ctx context.Context) error {
	c, err := h.c.Reconnect(ctx)
	if err != nil {
		return err
	}
	h.c = c
	return nil
}

// Acquire takes the lock on every host of conns, waiting up to wait for a
// holder to let go. On failure nothing stays locked. warn is told of every
// lock taken over.
//
// While the lock is held, it is renewed on every host on its own; a host
// where it is lost closes [Lock.Lost], and [Lock.Err] says which and why.
func Acquire(ctx context.Context, conns []*executor.Conn, project string, me Holder, wait, lease time.Duration, warn func(string)) (*Lock, error) {
	return AcquireAfterRead(ctx, conns, project, me, wait, lease, warn, nil)
}

// AcquireAfterRead is Acquire for a run that read the hosts with
// [ReadForChange]: on a host whose lock it saw free, it makes the next
// generation straight away, without reading the lock again, and
// [Lock.Untouched] then says whether that worked on every host.
func AcquireAfterRead(ctx context.Context, conns []*executor.Conn, project string, me Holder, wait, lease time.Duration, warn func(string), seen LocksSeen) (*Lock, error) {
	conns = append([]*executor.Conn(nil), conns...)
	sort.Slice(conns, func(i, j int) bool { return conns[i].Host() < conns[j].Host() })
	var id [12]byte
	rand.Read(id[:])
	rec := record{Holder: me, Run: hex.EncodeToString(id[:]), LeaseSeconds: lease.Seconds()}
	deadline := time.Now().Add(wait)
	for {
		l, err := tryAll(ctx, conns, project, rec, lease, warn, seen)
		if err == nil {
			return l, nil
		}
		// After a wait, the lock has moved on since the read.
		seen = nil
		var held *LockHeldError
		if !errors.As(err, &held) || time.Now().After(deadline) {
			return nil, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(min(2*time.Second+time.Duration(mrand.Int64N(int64(500*time.Millisecond))), time.Until(deadline)+10*time.Millisecond)):
		}
	}
}

// tryAll takes the lock on every host. The first host in name order is
// taken alone, first: of runs that want the same hosts, one gets it and
// the others give way there, before touching any other host. The rest are
// taken at once. Nobody waits while holding part of it (a held host gives
// everything back), so two runs cannot deadlock; they retry after a pause
// with some jitter.
func tryAll(ctx context.Context, conns []*executor.Conn, project string, rec record, lease time.Duration, warn func(string), seen LocksSeen) (*Lock, error) {
	l := &Lock{project: project, rec: rec, lease: lease, lost: make(chan struct{}), seen: seen, touched: seen == nil}
	l.life, l.end = context.WithCancel(context.Background())
	l.renewals, l.stopRenewals = context.WithCancel(context.Background())
	if len(conns) == 0 {
		return l, nil
	}
	errs := make([]error, len(conns))
	warnings := make([]string, len(conns))
	take := func(i int) {
		h, why, err := l.take(ctx, conns[i])
		if err != nil {
			errs[i] = opFailed("taking the deploy lock", err)
			return
		}
		if why != "" {
			warnings[i] = why
		}
		l.keep(h)
	}
	take(0)
	if errs[0] == nil {
		var wg sync.WaitGroup
		for i := 1; i < len(conns); i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				take(i)
			}()
		}
		wg.Wait()
	}
	for _, w := range warnings {
		if w != "" && warn != nil {
			warn(w)
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
		l.Release(context.WithoutCancel(ctx))
		return nil, first
	}
	return l, nil
}

// take takes the lock on one host, and says why when it took it over.
func (l *Lock) take(ctx context.Context, c *executor.Conn) (*hostLock, string, error) {
	dir := lockDir(c, l.project)
	if st, ok := l.seen[c.Host()]; ok && st.free() {
		if h := l.takeNext(ctx, c, dir, st.gen); h != nil {
			return h, "", nil
		}
	}
	l.mu.Lock()
	l.touched = true
	l.mu.Unlock()
	if err := c.MkdirAll(ctx, dir); err != nil {
		return nil, "", err
	}
	for tries := 0; tries < 5; tries++ {
		st, err := readLock(ctx, c, dir)
		if err != nil {
			return nil, "", err
		}
		why := ""
		// A generation of this very run, from an attempt that gave back
		// what it took but could not say so here, is no one else's.
		if !st.free() && st.rec.Run != l.rec.Run {
			if why, err = stale(ctx, c, dir, st, l.rec.Holder); err != nil {
				return nil, "", err
			}
			if why == "" {
				return nil, "", &LockHeldError{Host: c.Host(), Holder: st.rec.Holder}
			}
			why = fmt.Sprintf("taking over the deploy lock on %s from %s: %s", c.Host(), st.rec.Holder, why)
		}
		h := &hostLock{c: c, dir: dir, gen: st.gen + 1, renewed: time.Now()}
		err = c.CreateFile(ctx, genPath(dir, h.gen), bytes.NewReader(l.rec.json()), 0o644)
		if errors.Is(err, fs.ErrExist) {
			continue // another run moved first: look again
		}
		if err != nil {
			return nil, "", err
		}
		// A generation removed as superseded can be made again by a run
		// that looked before: only the newest counts.
		names, err := c.ReadDir(ctx, dir)
		if err != nil {
			l.letGo(context.WithoutCancel(ctx), h)
			return nil, "", err
		}
		gens := generations(names)
		if len(gens) == 0 || gens[len(gens)-1] != h.gen {
			continue
		}
		removeBelow(ctx, c, dir, gens, h.gen)
		return h, why, nil
	}
	return nil, "", fmt.Errorf("host %s: the deploy lock changed hands at every look: try again", c.Host())
}

// takeNext makes generation gen+1 of the lock in dir, gen being the
// newest one the run saw free before it read the host's state. If that
// one is the newest then, no run held the lock in between: a run that did
// made gen+1 itself, or removed it only once a newer one was there. Any
// other outcome, failure included, returns nil, and take reads the lock
// as usual, a generation of this run left behind being its own.
func (l *Lock) takeNext(ctx context.Context, c *executor.Conn, dir string, gen int) *hostLock {
	h := &hostLock{c: c, dir: dir, gen: gen + 1, renewed: time.Now()}
	if gen == 0 {
		// Perhaps no lock was ever taken here: its directory comes first.
		if err := c.MkdirAll(ctx, dir); err != nil {
			return nil
		}
	}
	if err := c.CreateFile(ctx, genPath(dir, h.gen), bytes.NewReader(l.rec.json()), 0o644); err != nil {
		return nil
	}
	names, err := c.ReadDir(ctx, dir)
	if err != nil {
		return nil
	}
	gens := generations(names)
	if len(gens) == 0 || gens[len(gens)-1] != h.gen {
		return nil
	}
	l.removeBelowLater(c, dir, gens, h.gen)
	return h
}

// Untouched says whether the lock was taken on every host straight from
// the generation the run saw free before reading the host's state (see
// [AcquireAfterRead]): then no run changed those hosts since they were
// read.
func (l *Lock) Untouched() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return !l.touched
}

// keep holds h and renews its lease until the lock is released or lost.
func (l *Lock) keep(h *hostLock) {
	l.mu.Lock()
	l.hosts = append(l.hosts, h)
	l.mu.Unlock()
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		every, giveUp := l.lease/6, l.lease/2
		// attempt is when the first try at the next generation began: a
		// try that failed here may still have succeeded on the host.
		var attempt time.Time
		for {
			wait := time.Until(h.renewed.Add(every))
			if !attempt.IsZero() {
				wait = time.Second // a failed try: again soon
			}
			select {
			case <-l.life.Done():
				return
			case <-time.After(wait):
			}
			if attempt.IsZero() {
				attempt = time.Now()
			}
			deadline := h.renewed.Add(giveUp)
			ctx, cancel := context.WithDeadline(l.renewals, deadline)
			err := l.renew(ctx, h, attempt)
			cancel()
			if l.life.Err() != nil {
				return
			}
			var lost *LockLostError
			switch {
			case err == nil:
				attempt = time.Time{}
			case errors.As(err, &lost):
				l.lose(h, lost)
				return
			case !time.Now().Before(deadline):
				l.lose(h, &LockLostError{Host: h.c.Host(), Err: fmt.Errorf("not renewed for %s: %w", time.Since(h.renewed).Round(time.Second), err)})
				return
			}
		}
	}()
}

// renew creates the next generation of h's lock. attempt is when the
// first try at it began, the time its lease is counted from.
func (l *Lock) renew(ctx context.Context, h *hostLock, attempt time.Time) error {
	if err := h.reconnect(ctx); err != nil {
		return err
	}
	next := genPath(h.dir, h.gen+1)
	err := h.c.CreateFile(ctx, next, bytes.NewReader(l.rec.json()), 0o644)
	if errors.Is(err, fs.ErrExist) {
		b, rerr := h.c.ReadFile(ctx, next)
		var rec record
		if rerr != nil || json.Unmarshal(b, &rec) != nil {
			return err
		}
		if rec.Run != l.rec.Run {
			lost := &LockLostError{Host: h.c.Host()}
			if rec.Released {
				lost.BrokenBy = &rec.Holder
			} else {
				lost.Holder = &rec.Holder
			}
			return lost
		}
		err = nil // made by an earlier try that seemed to fail
	}
	if err != nil {
		return err
	}
	h.c.Remove(ctx, genPath(h.dir, h.gen))
	h.gen++
	h.renewed = attempt
	return nil
}

// lose marks h lost and tells whoever watches the lock.
func (l *Lock) lose(h *hostLock, err *LockLostError) {
	l.mu.Lock()
	h.lost = true
	l.mu.Unlock()
	l.lostOnce.Do(func() {
		l.lostErr = err
		close(l.lost)
	})
}

// Lost is closed when the lock is lost on a host: the run must stop.
func (l *Lock) Lost() <-chan struct{} { return l.lost }

// Err says where and why the lock was lost; nil while it holds.
func (l *Lock) Err() error {
	select {
	case <-l.lost:
		return l.lostErr
	default:
		return nil
	}
}

// Context returns a context that ends with parent, or when the lock is
// lost, with the [LockLostError] as its cause.
func (l *Lock) Context(parent context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancelCause(parent)
	go func() {
		select {
		case <-l.lost:
			cancel(l.lostErr)
		case <-ctx.Done():
		}
	}()
	return ctx, func() { cancel(context.Canceled) }
}

// Release lets go of the lock on every host where this run still holds
// it; where another run took it over, it is left alone. Each host gets
// one lease at most: a lock that cannot be let go runs out by itself.
func (l *Lock) Release(ctx context.Context) error {
	l.end()
	// A renewal under way is let finish, for a moment: cut short, it
	// would leave its SFTP session to be replaced and its generation to
	// be read back before the lock could be let go.
	waited := make(chan struct{})
	go func() {
		l.wg.Wait()
		close(waited)
	}()
	select {
	case <-waited:
	case <-time.After(renewalGrace):
		l.stopRenewals()
		<-waited
	}
	l.stopRenewals()
	l.mu.Lock()
	hosts := l.hosts
	l.hosts = nil
	l.mu.Unlock()
	var mu sync.Mutex
	var errs []error
	var wg sync.WaitGroup
	for _, h := range hosts {
		if h.lost {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := l.letGo(ctx, h); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// letGo creates the generation after h's that says the lock is free; if
// another run made it first, the lock is that run's, and stays.
func (l *Lock) letGo(ctx context.Context, h *hostLock) error {
	ctx, cancel := context.WithTimeout(ctx, l.lease)
	defer cancel()
	if err := h.reconnect(ctx); err != nil {
		return err
	}
	rec := l.rec
	rec.Released = true
	for {
		next := genPath(h.dir, h.gen+1)
		err := h.c.CreateFile(ctx, next, bytes.NewReader(rec.json()), 0o644)
		if errors.Is(err, fs.ErrExist) {
			// A renewal cut short by the release may have made it.
			var made record
			if b, rerr := h.c.ReadFile(ctx, next); rerr == nil && json.Unmarshal(b, &made) == nil && made.Run == l.rec.Run && !made.Released {
				h.c.Remove(ctx, genPath(h.dir, h.gen))
				h.gen++
				continue
			}
			return nil
		}
		if err != nil {
			return err
		}
		// This run's own generations below are all gone but this one;
		// what others left below goes when the lock is next taken.
		h.c.Remove(ctx, genPath(h.dir, h.gen))
		return nil
	}
}

// removeBelowLater is removeBelow beside what the run does next: the lock
// is the run's once its generation is the newest, whatever lies below it.
// Release waits for it as for a renewal, and as briefly: what a stalled
// host keeps goes when the lock is next taken there.
func (l *Lock) removeBelowLater(c *executor.Conn, dir string, gens []int, gen int) {
	if len(gens) == 0 || gens[0] >= gen {
		return
	}
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		ctx, cancel := context.WithTimeout(l.renewals, l.lease/2)
		defer cancel()
		removeBelow(ctx, c, dir, gens, gen)
	}()
}

// removeBelow removes the generations of gens older than gen: superseded,
// they count no more. The newest is never removed, so that no number is
// given twice while it counts.
func removeBelow(ctx context.Context, c *executor.Conn, dir string, gens []int, gen int) {
	for _, g := range gens {
		if g < gen {
			c.Remove(ctx, genPath(dir, g))
		}
	}
}

// LockState is a host's lock as fleet lock status shows it.
type LockState struct {
	// Holder holds the lock; nil when nobody does.
	Holder *Holder
	// Quiet is how long the holder has not renewed, by the host's clock,
	// and Lease how long it may; Quiet is -1 when the clock could not be
	// read.
	Quiet, Lease time.Duration
	// Err is why the lock could not be read.
	Err error
}

// LockStatus reads who holds the lock on each host.
func LockStatus(ctx context.Context, conns map[string]*executor.Conn, project string) map[string]LockState {
	out := map[string]LockState{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for name, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var ls LockState
			dir := lockDir(c, project)
			st, err := readLock(ctx, c, dir)
			switch {
			case err != nil:
				ls.Err = err
			case !st.free():
				ls.Holder, ls.Lease, ls.Quiet = &st.rec.Holder, st.rec.lease(), -1
				if now, err := c.HostTime(ctx, dir); err == nil {
					ls.Quiet = now.Sub(st.written)
				}
			}
			mu.Lock()
			out[name] = ls
			mu.Unlock()
		}()
	}
	wg.Wait()
	return out
}

// ForceRelease breaks the lock on every host, whoever holds it: it makes
// the generation that says the lock is free, which a holder still at work
// finds when it next renews, and stops. me is who breaks it.
func ForceRelease(ctx context.Context, conns map[string]*executor.Conn, project string, me Holder) error {
	rec := record{Holder: me, Released: true, Forced: true}
	var mu sync.Mutex
	var errs []error
	var wg sync.WaitGroup
	for _, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := forceRelease(ctx, c, project, rec); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

func forceRelease(ctx context.Context, c *executor.Conn, project string, rec record) error {
	dir := lockDir(c, project)
	for tries := 0; tries < 5; tries++ {
		st, err := readLock(ctx, c, dir)
		if err != nil || st.free() {
			return err
		}
		err = c.CreateFile(ctx, genPath(dir, st.gen+1), bytes.NewReader(rec.json()), 0o644)
		if errors.Is(err, fs.ErrExist) {
			continue // renewed meanwhile
		}
		if err != nil {
			return err
		}
		if names, err := c.ReadDir(ctx, dir); err == nil {
			removeBelow(ctx, c, dir, generations(names), st.gen+1)
		}
		return nil
	}
	return fmt.Errorf("host %s: the deploy lock changed hands at every look: try again", c.Host())
}
