package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"golang.org/x/term"

	"github.com/fleetdeploy/fleet/executor"
)

type execCmd struct {
	Service string   `arg:"" help:"The service whose instances run the command."`
	Command []string `arg:"" optional:"" passthrough:"" name:"command" help:"The command and its arguments, after --: given to the container as they are, never to a shell."`
	Slot    int      `placeholder:"N" help:"Only the instance in slot N (fleet status shows the slots)."`
	TTY     bool     `short:"t" name:"tty" help:"An interactive terminal in one instance (name it with --slot, or --hosts, when there are several): your keys go to the command, its screen comes back, the terminal's size follows yours, and fleet exits with its status. (-t: -i names the inventory.)"`
	Project string   `placeholder:"NAME" help:"The project's instances, found by their labels: no fleet.yaml needed, only the inventory."`
}

// execResult is what the command did in one instance.
type execResult struct {
	Host      string `json:"host"`
	Slot      int    `json:"slot"`
	Container string `json:"container"`
	ExitCode  int    `json:"exit_code"`
	Stdout    string `json:"stdout"`
	Stderr    string `json:"stderr"`
	Error     string `json:"error,omitempty"`
}

func (c *execCmd) Run(ctx context.Context, g *globals, out *output) error {
	if len(c.Command) > 0 && c.Command[0] == "--" {
		c.Command = c.Command[1:]
	}
	if len(c.Command) == 0 {
		return fmt.Errorf("no command: give it after --, as in fleet exec %s -- ls -l /", c.Service)
	}
	if c.Slot < 0 {
		return errors.New("--slot takes a number above 0")
	}
	s, err := g.openService(ctx, c.Project, c.Service)
	if err != nil {
		return err
	}
	defer s.close()

	found, err := instancesOf(s, c.Service, c.Slot, c.Project != "")
	if err != nil {
		return err
	}
	var all []logInstance
	for _, in := range found {
		switch {
		case in.c.Running:
			all = append(all, in)
		case c.Slot != 0:
			return fmt.Errorf("instance %s/%d (container %s) is %s, not running: the command can run only in a running container (fleet apply starts it)", in.host, in.slot, in.c.Name, in.c.Status)
		}
	}
	if len(all) == 0 && len(s.fleet.Unreachable) == 0 {
		return fmt.Errorf("no instance of %s runs on the hosts that answered (%d of %d): nothing to run the command in", c.Service, len(s.fleet.States), len(s.scope))
	}
	if c.TTY {
		if len(all) != 1 {
			var names []string
			for _, in := range all {
				names = append(names, in.host+"/"+strconv.Itoa(in.slot))
			}
			return fmt.Errorf("--tty runs in one instance, and %s has %d running (%s): name one with --slot N", c.Service, len(all), orNone(names))
		}
		return c.terminal(ctx, s, all[0])
	}

	// Each instance runs the command at once; its output comes line by
	// line, prefixed as fleet logs prefixes it, unless --json gathers it.
	pr := newLogPrinter(g, out, all, false)
	results := make([]execResult, len(all))
	var wg sync.WaitGroup
	for i, in := range all {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := &results[i]
			*r = execResult{Host: in.host, Slot: in.slot, Container: in.c.Name}
			var stdout, stderr strings.Builder
			var wout, werr io.Writer = &stdout, &stderr
			if !g.JSON {
				wout = &lineWriter{line: func(l string) { pr.printTo(out.stdout, logLine{Host: in.host, Slot: in.slot, Line: l}) }}
				werr = &lineWriter{line: func(l string) { pr.printTo(out.stderr, logLine{Host: in.host, Slot: in.slot, Line: l}) }}
			}
			code, err := s.fleet.Conns[in.host].Engine().Exec(ctx, in.c.ID, c.Command, wout, werr)
			for _, w := range []io.Writer{wout, werr} {
				if lw, ok := w.(*lineWriter); ok {
					lw.flush()
				}
			}
			r.ExitCode, r.Stdout, r.Stderr = code, stdout.String(), stderr.String()
			if err != nil {
				r.Error = err.Error()
			}
		}()
	}
	wg.Wait()

	worst, failed := 0, []string{}
	for _, r := range results {
		who := r.Host + "/" + strconv.Itoa(r.Slot)
		switch {
		case r.Error != "":
			failed = append(failed, who)
			if !g.JSON {
				fmt.Fprintf(out.stderr, "fleet: %s: %s\n", who, r.Error)
			}
		case r.ExitCode != 0:
			worst = max(worst, r.ExitCode)
			if !g.JSON {
				fmt.Fprintf(out.stderr, "fleet: %s: exit status %d\n", who, r.ExitCode)
			}
		}
	}
	for _, host := range slices.Sorted(maps.Keys(s.fleet.Unreachable)) {
		failed = append(failed, host)
		if !g.JSON {
			fmt.Fprintf(out.stderr, "fleet: host %s unreachable: %s\n", host, s.fleet.Unreachable[host])
		}
	}
	if g.JSON {
		enc := json.NewEncoder(out.stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(map[string]any{"results": results, "unreachable": s.fleet.Unreachable}); err != nil {
			return err
		}
	}
	switch {
	case worst > 0:
		// The command's own status, as ssh passes it on.
		return silentError{worst, ""}
	case len(failed) > 0:
		return silentError{1, fmt.Sprintf("the command did not run in %s", strings.Join(failed, ", "))}
	}
	return nil
}

// terminal runs the command in one instance on a terminal, with the
// user's terminal in raw mode meanwhile (keys such as Ctrl-C go to the
// command), and exits with the command's status.
func (c *execCmd) terminal(ctx context.Context, s *session, in logInstance) error {
	t := executor.Terminal{In: os.Stdin, Out: os.Stdout}
	if fd := int(os.Stdin.Fd()); term.IsTerminal(fd) {
		old, err := term.MakeRaw(fd)
		if err != nil {
			return fmt.Errorf("putting the terminal in raw mode: %w", err)
		}
		defer term.Restore(fd, old)
	}
	if fd := int(os.Stdout.Fd()); term.IsTerminal(fd) {
		t.Size = func() (int, int) {
			w, h, _ := term.GetSize(fd)
			return w, h
		}
		winch := make(chan os.Signal, 1)
		signal.Notify(winch, syscall.SIGWINCH)
		defer signal.Stop(winch)
		resized := make(chan struct{}, 1)
		go func() {
			for range winch {
				select {
				case resized <- struct{}{}:
				default:
				}
			}
		}()
		t.Resized = resized
	}
	code, err := s.fleet.Conns[in.host].Engine().ExecTerminal(ctx, in.c.ID, c.Command, t)
	if err != nil {
		return fmt.Errorf("%s/%d: %w", in.host, in.slot, err)
	}
	if code != 0 {
		return silentError{code, ""}
	}
	return nil
}
