package rollout

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fleetdeploy/fleet/executor"
	"github.com/fleetdeploy/fleet/internal/sshtest"
)

// The tests in this file take the deploy lock on SSH servers of their own
// (real sh, OpenSSH's sftp-server), over both ways to a host's files.

const testProject = "locktest"

// run is one run of fleet: its own connections to the hosts.
func run(t *testing.T, servers ...*sshtest.Server) []*executor.Conn {
	t.Helper()
	e := executor.New(context.Background(), executor.Options{AgentSocket: "none"})
	t.Cleanup(func() { e.Close() })
	var conns []*executor.Conn
	for i, s := range servers {
		c, err := e.Connect(context.Background(), executor.Target{Name: fmt.Sprintf("h%d", i+1), Address: s.Host, Port: s.Port, User: "deploy",
			IdentityFiles: []string{s.KeyFile}, KnownHostsFiles: []string{s.KnownHosts}})
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	return conns
}

// newestGeneration is the number of the newest generation file of the
// lock on s: a renewal writes the next one before it removes the old.
func newestGeneration(t *testing.T, s *sshtest.Server) int {
	t.Helper()
	names, err := os.ReadDir(lockFiles(s))
	if err != nil {
		t.Fatal(err)
	}
	newest := 0
	for _, n := range names {
		if g, err := strconv.Atoi(strings.TrimSuffix(n.Name(), ".json")); err == nil {
			newest = max(newest, g)
		}
	}
	return newest
}

// lockFiles is the lock directory of the test project on s.
func lockFiles(s *sshtest.Server) string {
	return filepath.Join(s.Home, ".local/share/fleet", testProject, "lock")
}

// TestLockExcludes races eight runs for one host, round after round, over
// SFTP and over exec sessions: each round exactly one takes the lock, the
// others are told who holds it, and nobody takes it over.
func TestLockExcludes(t *testing.T) {
	for _, subsystem := range []string{sshtest.WithSFTP, sshtest.NoSFTP} {
		t.Run(subsystem, func(t *testing.T) {
			s := sshtest.New(t, subsystem)
			var runs [][]*executor.Conn
			for range 8 {
				runs = append(runs, run(t, s))
			}
			rounds := 5
			if subsystem == sshtest.NoSFTP {
				rounds = 2 // a process per operation: slower
			}
			for round := range rounds {
				locks := make([]*Lock, len(runs))
				errs := make([]error, len(runs))
				var warned []string
				var mu sync.Mutex
				var wg sync.WaitGroup
				for i, conns := range runs {
					wg.Add(1)
					go func() {
						defer wg.Done()
						locks[i], errs[i] = Acquire(context.Background(), conns, testProject, Me(fmt.Sprintf("run %d", i)), 0, DefaultLease, func(w string) {
							mu.Lock()
							warned = append(warned, w)
							mu.Unlock()
						})
					}()
				}
				wg.Wait()
				var won []int
				for i, err := range errs {
					var held *LockHeldError
					switch {
					case err == nil:
						won = append(won, i)
					case !errors.As(err, &held):
						t.Errorf("round %d, run %d: %v", round, i, err)
					}
				}
				if len(won) != 1 || len(warned) > 0 {
					t.Fatalf("round %d: runs %v took the lock, with warnings %q", round, won, warned)
				}
				for i, err := range errs {
					if err != nil && !strings.Contains(err.Error(), fmt.Sprintf("running %q", fmt.Sprintf("run %d", won[0]))) {
						t.Errorf("round %d, run %d was told %v; want the holder, run %d", round, i, err, won[0])
					}
				}
				if err := locks[won[0]].Release(context.Background()); err != nil {
					t.Fatal(err)
				}
			}
			// What stays is one generation that says the lock is free.
			names, _ := os.ReadDir(lockFiles(s))
			if len(names) != 1 {
				t.Errorf("left in the lock directory: %v", names)
			}
		})
	}
}

// writeGeneration writes a generation of the test project's lock by hand,
// dated at written.
func writeGeneration(t *testing.T, s *sshtest.Server, gen int, rec record, written time.Time) {
	t.Helper()
	dir := lockFiles(s)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, fmt.Sprintf("%d.json", gen))
	if err := os.WriteFile(p, rec.json(), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(p, written, written); err != nil {
		t.Fatal(err)
	}
}

// TestLockTakeOver: a lock is taken over when its lease ran out by the
// host's clock, or when its holder's process is gone from this very
// machine; never while its lease runs, and never on a PID alone when the
// holder's machine is another.
func TestLockTakeOver(t *testing.T) {
	elsewhere := Holder{User: "ops", Machine: "elsewhere", PID: 4242, Command: "fleet apply", MachineID: "0123456789abcdef0123456789abcdef"}
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	me := Me("fleet apply")
	sameMachineDead := me
	sameMachineDead.PID = dead.Process.Pid
	otherMachineDead := sameMachineDead
	otherMachineDead.MachineID = elsewhere.MachineID
	reused := me // this very process's PID, started at another time
	reused.ProcStart++
	for _, c := range []struct {
		name    string
		holder  Holder
		lease   float64
		age     time.Duration
		warning string // "" for a lock that holds
	}{
		{"lease ran out", elsewhere, 30, time.Minute, "its lease ran out: not renewed for 1m"},
		{"lease runs", elsewhere, 30, 20 * time.Second, ""},
		{"long lease runs", elsewhere, 3600, time.Minute, ""},
		{"dead process here", sameMachineDead, 30, 0, "its process is gone"},
		{"dead PID of another machine", otherMachineDead, 30, 0, ""},
		{"PID given to another process", reused, 30, 0, "its process is gone"},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := sshtest.New(t, sshtest.WithSFTP)
			writeGeneration(t, s, 7, record{Holder: c.holder, Run: "other", LeaseSeconds: c.lease}, time.Now().Add(-c.age))
			var warned []string
			l, err := Acquire(context.Background(), run(t, s), testProject, me, 0, DefaultLease, func(w string) { warned = append(warned, w) })
			if c.warning == "" {
				var held *LockHeldError
				if !errors.As(err, &held) || held.Host != "h1" || held.Holder.PID != c.holder.PID {
					t.Fatalf("took a live lock: %v, warnings %q", err, warned)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer l.Release(context.Background())
			if len(warned) != 1 || !strings.Contains(warned[0], "taking over the deploy lock on h1 from "+c.holder.User+"@"+c.holder.Machine) || !strings.Contains(warned[0], c.warning) {
				t.Errorf("warnings %q, want one saying %q", warned, c.warning)
			}
			if names, _ := os.ReadDir(lockFiles(s)); len(names) != 1 || names[0].Name() != "8.json" {
				t.Errorf("lock directory %v, want 8.json alone", names)
			}
		})
	}
}

// TestLockLostWhenHostStalls stalls one of two hosts under a held lock:
// the holder counts the lock lost there within half its lease, names the
// host, and goes on renewing on the other; a second run takes it over only
// after that, once the lease ran out by the host's clock.
func TestLockLostWhenHostStalls(t *testing.T) {
	for _, subsystem := range []string{sshtest.WithSFTP, sshtest.NoSFTP} {
		t.Run(subsystem, func(t *testing.T) {
			if _, err := os.Stat(sshtest.SFTPServer); err != nil && subsystem == sshtest.WithSFTP {
				t.Skip("OpenSSH's sftp-server is needed to stall SFTP")
			}
			slow, other := sshtest.New(t, subsystem), sshtest.New(t, subsystem)
			const lease = 3 * time.Second
			first, err := Acquire(context.Background(), run(t, slow, other), testProject, Me("first"), 0, lease, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer first.Release(context.Background())
			ctx, stop := first.Context(context.Background())
			defer stop()

			resume := slow.Stall()
			defer resume()
			stalled := time.Now()
			select {
			case <-first.Lost():
			case <-time.After(3 * lease):
				t.Fatal("the lock was not lost on a stalled host")
			}
			lostAt := time.Now()
			var lost *LockLostError
			if !errors.As(first.Err(), &lost) || lost.Host != "h1" || !strings.Contains(lost.Error(), "lost the deploy lock on h1: its lease could not be renewed") {
				t.Errorf("lost: %v", first.Err())
			}
			select {
			case <-ctx.Done():
				if !errors.Is(context.Cause(ctx), first.Err()) {
					t.Errorf("the lock's context ended for %v", context.Cause(ctx))
				}
			case <-time.After(time.Second):
				t.Error("the lock's context did not end")
			}
			if d := lostAt.Sub(stalled); d > lease/2+lease/6+time.Second {
				t.Errorf("lost %s after the stall, want within half the lease and one renewal", d)
			}
			// The other host is still renewed.
			before := newestGeneration(t, other)
			time.Sleep(lease / 2)
			if after := newestGeneration(t, other); after <= before {
				t.Errorf("the other host's lock was not renewed: generation %d, then %d", before, after)
			}

			resume()
			var warned []string
			second, err := Acquire(context.Background(), run(t, slow), testProject, Me("second"), 4*lease, lease, func(w string) { warned = append(warned, w) })
			if err != nil {
				t.Fatal(err)
			}
			defer second.Release(context.Background())
			if took := time.Now(); took.Before(lostAt) {
				t.Errorf("taken over at %s, before the holder stopped at %s", took, lostAt)
			}
			if len(warned) != 1 || !strings.Contains(warned[0], "its lease ran out") || !strings.Contains(warned[0], `running "first"`) {
				t.Errorf("warnings %q", warned)
			}
			// The first run lets go of what it holds, and leaves the
			// second's lock alone.
			if err := first.Release(context.Background()); err != nil {
				t.Error(err)
			}
			st := LockStatus(context.Background(), map[string]*executor.Conn{"h1": run(t, slow)[0]}, testProject)
			if h := st["h1"].Holder; h == nil || h.Command != "second" {
				t.Errorf("after the first run let go: %+v", st["h1"])
			}
		})
	}
}

// TestLockBrokenByForce: a lock broken with release --force is lost to
// its holder at its next renewal, which says who broke it; the holder's
// release then leaves the lock alone.
func TestLockBrokenByForce(t *testing.T) {
	s := sshtest.New(t, sshtest.WithSFTP)
	const lease = 3 * time.Second
	l, err := Acquire(context.Background(), run(t, s), testProject, Me("holder"), 0, lease, nil)
	if err != nil {
		t.Fatal(err)
	}
	breaker := run(t, s)[0]
	if err := ForceRelease(context.Background(), map[string]*executor.Conn{"h1": breaker}, testProject, Holder{User: "ops", Machine: "desk", Command: "fleet lock release --force"}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-l.Lost():
	case <-time.After(2 * lease):
		t.Fatal("a broken lock was not lost")
	}
	if err := l.Err(); err == nil || !strings.Contains(err.Error(), "it was broken by ops@desk") {
		t.Errorf("lost: %v", err)
	}
	third, err := Acquire(context.Background(), run(t, s), testProject, Me("third"), 0, lease, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer third.Release(context.Background())
	l.Release(context.Background())
	if st := LockStatus(context.Background(), map[string]*executor.Conn{"h1": breaker}, testProject); st["h1"].Holder == nil || st["h1"].Holder.Command != "third" {
		t.Errorf("after the broken holder let go: %+v", st["h1"])
	}
}

// TestLockStatusSaysWhatItCannotRead: a host whose lock cannot be read is
// not reported as unlocked.
func TestLockStatusSaysWhatItCannotRead(t *testing.T) {
	for _, subsystem := range []string{sshtest.WithSFTP, sshtest.NoSFTP} {
		t.Run(subsystem, func(t *testing.T) {
			s := sshtest.New(t, subsystem)
			dir := lockFiles(s)
			os.MkdirAll(filepath.Dir(dir), 0o755)
			if err := os.WriteFile(dir, []byte("not a directory"), 0o644); err != nil {
				t.Fatal(err)
			}
			st := LockStatus(context.Background(), map[string]*executor.Conn{"h1": run(t, s)[0]}, testProject)
			if st["h1"].Err == nil || st["h1"].Holder != nil {
				t.Errorf("status of an unreadable lock: %+v", st["h1"])
			}
		})
	}
}

// seenLocks reads the lock on each host as ReadForChange does before a
// host's state.
func seenLocks(t *testing.T, conns []*executor.Conn) LocksSeen {
	t.Helper()
	seen := LocksSeen{}
	for _, c := range conns {
		st, err := readLock(context.Background(), c, lockDir(c, testProject))
		if err != nil {
			t.Fatal(err)
		}
		seen[c.Host()] = st
	}
	return seen
}

// TestLockUntouchedSinceRead: a run that read the hosts, then takes the
// lock, is told whether any run held it on any host in between: on the
// hosts it locks and on those it only read. Only then may it skip
// reading them again.
func TestLockUntouchedSinceRead(t *testing.T) {
	ctx := context.Background()
	for _, subsystem := range []string{sshtest.WithSFTP, sshtest.NoSFTP} {
		t.Run(subsystem, func(t *testing.T) {
			servers := []*sshtest.Server{sshtest.New(t, subsystem), sshtest.New(t, subsystem), sshtest.New(t, subsystem)}
			mine, other := run(t, servers...), run(t, servers...)
			locked, readOnly := mine[:2], mine[2:]
			take := func(conns []*executor.Conn, seen LocksSeen) *Lock {
				t.Helper()
				l, err := AcquireAfterRead(ctx, conns, testProject, Me("mine"), 0, DefaultLease, nil, seen)
				if err != nil {
					t.Fatal(err)
				}
				return l
			}
			otherRun := func(conns ...*executor.Conn) {
				t.Helper()
				l, err := Acquire(ctx, conns, testProject, Me("other"), 0, DefaultLease, nil)
				if err != nil {
					t.Fatal(err)
				}
				if err := l.Release(ctx); err != nil {
					t.Fatal(err)
				}
			}
			check := func(what string, l *Lock, seen LocksSeen, wantLocked, wantRead bool) {
				t.Helper()
				if got := l.Untouched(); got != wantLocked {
					t.Errorf("%s: Untouched() = %v, want %v", what, got, wantLocked)
				}
				if got := seen.Untouched(ctx, readOnly, testProject); got != wantRead {
					t.Errorf("%s: the host only read untouched = %v, want %v", what, got, wantRead)
				}
				// Whichever way it was taken, the lock is this run's, and
				// another run is refused.
				if _, err := Acquire(ctx, other[:2], testProject, Me("other"), 0, DefaultLease, nil); !errors.As(err, new(*LockHeldError)) {
					t.Errorf("%s: another run while this one holds the lock: %v", what, err)
				}
				if err := l.Release(ctx); err != nil {
					t.Fatal(err)
				}
				// Let go, the lock is one generation: those it superseded
				// are gone, whether removed before or beside the run.
				for _, c := range locked {
					names, err := c.ReadDir(ctx, lockDir(c, testProject))
					if gens := generations(names); err != nil || len(gens) != 1 {
						t.Errorf("%s: the lock on %s after the release holds generations %v (%v), want one", what, c.Host(), gens, err)
					}
				}
			}

			// Hosts that never had a lock, and nothing in between.
			seen := seenLocks(t, mine)
			check("first lock ever", take(locked, seen), seen, true, true)

			// Nothing in between.
			seen = seenLocks(t, mine)
			check("nothing in between", take(locked, seen), seen, true, true)

			// Another run took and let go of the lock on h2 in between:
			// the generation after the one seen was removed with it, so
			// making it again succeeds, and is not the newest.
			seen = seenLocks(t, mine)
			otherRun(other[1])
			check("another run on a locked host", take(locked, seen), seen, false, true)

			// Another run on the host only read.
			seen = seenLocks(t, mine)
			otherRun(other[2])
			check("another run on the host only read", take(locked, seen), seen, true, false)

			// Seen while another run held it.
			held, err := Acquire(ctx, other, testProject, Me("other"), 0, DefaultLease, nil)
			if err != nil {
				t.Fatal(err)
			}
			seen = seenLocks(t, mine)
			held.Release(ctx)
			check("seen held", take(locked, seen), seen, false, false)
		})
	}
}

func TestGenerations(t *testing.T) {
	got := generations([]string{"10.json", "9.json", ".9.json.fleet-tmp-ab", "holder.json", "007.json", "0.json", "-1.json", "3.json", "x.json", "11"})
	if fmt.Sprint(got) != "[3 9 10]" {
		t.Errorf("generations: %v", got)
	}
}
