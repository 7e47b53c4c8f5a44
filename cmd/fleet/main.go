// Command fleet deploys containers to a fleet of existing Linux hosts over
// SSH: an inventory plus a desired-state file is diffed against what the
// hosts run, and the plan is carried out in parallel.
//
// This package turns a command line into calls to the inventory, plan,
// executor and rollout packages, and their results into text or JSON. One
// file per command.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/alecthomas/kong"

	"github.com/fleetdeploy/fleet/internal/diag"
)

// cli is the command line. Each command is a struct with a Run method; its
// help tag is the one-line summary shown by "fleet --help", and its example
// tag the line shown under it.
type cli struct {
	globals
	ShowVersion kong.VersionFlag `name:"version" help:"Print fleet's version, commit and build date, as \"fleet version\" does."`

	Validate   validateCmd   `cmd:"" help:"Check fleet.yaml and the inventory without contacting any host." example:"fleet validate -f fleet.yaml -i hosts.ini"`
	Plan       planCmd       `cmd:"" help:"Read every host and show what apply would change, and why." example:"fleet plan --detailed-exitcode -o release.plan"`
	Apply      applyCmd      `cmd:"" help:"Carry the plan out: rolling, health-gated, rolled back on failure." example:"fleet apply --yes"`
	Reconcile  reconcileCmd  `cmd:"" help:"Apply for cron and timers: silent when nothing drifted, repairs what did, writes metrics." example:"fleet reconcile --metrics-file /var/lib/node_exporter/textfile/fleet.prom --max-changes 10 --jitter 1m"`
	Rollback   rollbackCmd   `cmd:"" help:"Put a service back on an earlier revision: its image and its config, rolled out like any change." example:"fleet rollback web --to 3"`
	History    historyCmd    `cmd:"" help:"A service's kept revisions, oldest first: when, who, image, change cause, outcome." example:"fleet history web"`
	Lock       lockCmd       `cmd:"" help:"Show or break the deploy lock." example:"fleet lock status"`
	Status     statusCmd     `cmd:"" help:"Every instance: host, slot, revision, image, state, health, uptime." example:"fleet status web --json"`
	Exec       execCmd       `cmd:"" help:"Run a command in every running instance of a service at once (or in one: --slot), output prefixed by host and slot; fleet exits with the worst exit status." example:"fleet exec web --slot 2 -- ls -l /data"`
	Logs       logsCmd       `cmd:"" help:"The logs of every instance of a service, merged in time order, each line prefixed by host and slot." example:"fleet logs web --since 10m --grep '(?i)error'"`
	Push       pushCmd       `cmd:"" help:"Copy images from the local Docker engine to the hosts over SSH, no registry needed: each host is sent only the layers it lacks." example:"fleet push app:2 --hosts role=web"`
	Prune      pruneCmd      `cmd:"" help:"Remove what fleet brought to the hosts and nothing needs any more: stopped containers fleet.yaml has no place for, and images no container uses and no kept revision can roll back to." example:"fleet prune --dry-run"`
	Hosts_     hostsCmd      `cmd:"" name:"hosts" help:"Check every host: reachable, SSH round trip, Docker, free memory and disk, instances." example:"fleet hosts --hosts role=web"`
	Inventory  inventoryCmd  `cmd:"" help:"Show the resolved inventory (addresses, users, keys, jump hosts, labels, groups)." example:"fleet inventory --hosts role=web --json"`
	Export     exportCmd     `cmd:"" help:"Write the desired state as a Swarm stack, Kubernetes manifests or a Nomad job, with a comment on each setting that does not carry over." example:"fleet export kubernetes -o shop.k8s.yaml"`
	Init       initCmd       `cmd:"" help:"Write a commented starter fleet.yaml and inventory.yaml." example:"fleet init"`
	Completion completionCmd `cmd:"" help:"Print the shell completion script for bash, zsh or fish: commands, flags, services and hosts complete on Tab." example:"source <(fleet completion bash)"`
	Complete_  completeCmd   `cmd:"" name:"__complete" hidden:"" help:"The words that may complete a command line (what the completion scripts ask)."`
	Version    versionCmd    `cmd:"" help:"Print fleet's version, commit and build date." example:"fleet version --json"`
}

// globals are the flags every command takes.
type globals struct {
	File      string `short:"f" env:"FLEET_FILE" default:"fleet.yaml" placeholder:"FILE" help:"Desired state: the services and how they run."`
	Inventory string `short:"i" env:"FLEET_INVENTORY" default:"inventory.yaml" placeholder:"PATH" help:"The hosts: fleet's inventory, or an Ansible inventory (INI or YAML file, or a directory of them) as it is."`
	Hosts     string `placeholder:"SELECTOR" help:"Limit the run to these hosts: role=web, zone!=c, group=db, web1,web2 ..."`
	LB        string `name:"lb" env:"FLEET_LB" placeholder:"SELECTOR" help:"Treat these hosts as load balancers too, as lb: true in the inventory does: their proxy sends every proxied service's requests to the hosts that run it."`
	SSHConfig string `name:"ssh-config" env:"FLEET_SSH_CONFIG" placeholder:"FILE" help:"ssh_config to read, or none (default: yours and the system's, as ssh reads them)."`
	Parallel  int    `default:"512" placeholder:"N" help:"Hosts contacted at once."`
	HostKeys  string `name:"host-key-policy" enum:"strict,accept-new,off" default:"strict" help:"Unknown host keys: strict refuses, accept-new records them, off checks nothing. A changed key is always refused but with off."`
	JSON      bool   `help:"Machine output: JSON on stdout."`
	NoColor   bool   `help:"No colour (also when NO_COLOR is set or output is not a terminal)."`
	Verbose   bool   `short:"v" help:"Say more about what is being done."`
	// As OpenSSH's ConnectTimeout: how long a host that does not answer
	// holds a run up before it is named unreachable.
	ConnectTimeout time.Duration `name:"connect-timeout" env:"FLEET_CONNECT_TIMEOUT" default:"10s" placeholder:"D" help:"Give up on a host that does not answer within D."`
	// A registry that stops answering mid-pull leaves Docker's pull
	// waiting for ever.
	PullStallTimeout time.Duration `name:"pull-stall-timeout" env:"FLEET_PULL_STALL_TIMEOUT" default:"2m" placeholder:"D" help:"Give up on an image pull that makes no progress for D."`

	// stderr is where -v lines go.
	stderr io.Writer
}

// verboseLog prints what the executor says under -v; nil without -v.
func (g *globals) verboseLog() func(string) {
	if !g.Verbose || g.stderr == nil {
		return nil
	}
	return func(line string) { fmt.Fprintln(g.stderr, "fleet: "+line) }
}

// exitCoder is an error that sets the process's exit code; see the exit
// code table in the README.
type exitCoder interface{ ExitCode() int }

// main runs the command line. A command that changes nothing ends at once
// on the first Ctrl-C (or SIGTERM). For the others, the first one cancels
// the work: a rollout finishes or undoes the step in flight, puts failed
// instances back and lets go of the deploy lock, over connections that
// stay open for that. A second one ends the process at once, after saying
// what that leaves behind on the hosts. Either way the exit code is 128
// plus the signal's number, as a shell reports it: 130 for Ctrl-C, 143
// for SIGTERM.
func main() {
	ctx, cancel := context.WithCancel(context.Background())
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		sig := <-sigs
		if readOnly.Load() {
			fmt.Fprintln(os.Stderr, "fleet: interrupted")
			os.Exit(int(signalExit(sig)))
		}
		fmt.Fprintln(os.Stderr, "fleet: interrupted: finishing or undoing what is in flight (interrupt again to stop at once)")
		interrupted.Store(signalExit(sig))
		cancel()
		sig = <-sigs
		// Stopping at once may leave instances down: say which, and how
		// to repair them.
		if left := leftBehind.Load(); left != nil {
			fmt.Fprintln(os.Stderr, "fleet: stopped at once, leaving behind:")
			for _, line := range (*left)() {
				fmt.Fprintln(os.Stderr, "  "+line)
			}
			fmt.Fprintln(os.Stderr, "fleet: run fleet apply to repair it")
		}
		os.Exit(int(signalExit(sig)))
	}()
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	cancel()
	if by := interrupted.Load(); by != 0 && code != 0 {
		// Cut short by the interrupt: said as a shell says it.
		code = int(by)
	}
	os.Exit(code)
}

// interrupted is the exit code of the signal that interrupted the
// command, once one did.
var interrupted atomic.Int32

// changesNothing names the commands that change nothing, on the hosts or
// here: stopped at any moment, they leave nothing half done, so the first
// interrupt ends them at once rather than after a connection attempt or a
// health check runs out. Any other command (apply, rollback, lock release,
// init, and every new one until it is listed here) gets to finish or undo
// what is in flight.
var changesNothing = map[string]bool{
	"validate": true, "plan": true, "status": true, "history": true, "hosts": true,
	"inventory": true, "lock status": true, "version": true, "logs": true,
	"completion": true, "__complete": true, "export": true,
}

// readOnly says whether the command being run is one of changesNothing;
// run sets it once the command line is parsed.
var readOnly atomic.Bool

// signalExit is the exit code of a process ended by sig.
func signalExit(sig os.Signal) int32 {
	if s, ok := sig.(syscall.Signal); ok {
		return 128 + int32(s)
	}
	return 130
}

// run executes one command line and returns the exit code; main and the
// tests share it.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var c cli
	exit := -1
	parser, err := kong.New(&c,
		kong.Name("fleet"),
		kong.Description("Deploy containers to your existing Linux hosts over SSH: no agents, no control plane.\n\n"+
			"An inventory (hosts) and fleet.yaml (services) are compared with what the hosts run;\n"+
			"the difference is a plan, and apply carries it out host by host, in parallel."),
		kong.Writers(stdout, stderr),
		kong.Exit(func(code int) { exit = code }),
		kong.Help(helpWithExamples),
		kong.ConfigureHelp(kong.HelpOptions{Compact: true, NoExpandSubcommands: true}),
		kong.BindTo(ctx, (*context.Context)(nil)),
		kong.Bind(&output{stdout: stdout, stderr: stderr}),
		kong.Bind(&c.globals),
		kong.Vars{"version": currentBuild().String()},
	)
	if err != nil {
		fmt.Fprintf(stderr, "fleet: error: %v\n", err)
		return 1
	}
	// Before "--": what comes after is the command's own.
	if before, _, _ := strings.Cut(" "+strings.Join(args, " ")+" ", " -- "); strings.Contains(before+" ", " exec ") && strings.Contains(before+" ", " -it ") {
		fmt.Fprintln(stderr, "fleet: error: -it: -i names the inventory; for an interactive terminal give -t (--tty) alone")
		return 1
	}
	kctx, err := parser.Parse(args)
	if exit >= 0 { // --help
		return exit
	}
	if err != nil {
		fmt.Fprintf(stderr, "fleet: error: %v\n", err)
		if slices.Contains(args, "logs") && slices.Contains(args, "-f") {
			fmt.Fprintln(stderr, "fleet: hint: to follow the logs, give --follow (or -F): -f names fleet.yaml")
		}
		fmt.Fprintln(stderr, "fleet: hint: run \"fleet --help\" for the commands and their flags")
		return 1
	}
	c.globals.stderr = stderr
	readOnly.Store(changesNothing[commandName(kctx)])
	if err := kctx.Run(); err != nil {
		if err.Error() != "" {
			report(stderr, err)
		}
		return exitCodeOf(err)
	}
	return 0
}

// commandName is the command a parsed command line runs, without its
// arguments: "plan", "lock status".
func commandName(kctx *kong.Context) string {
	var names []string
	for _, p := range kctx.Path {
		if p.Command != nil {
			names = append(names, p.Command.Name)
		}
	}
	return strings.Join(names, " ")
}

// report prints an error for the user: file errors one per line, as
// file:line:col, with a count; anything else as "fleet: error: ...".
func report(w io.Writer, err error) {
	var list *diag.List
	if errors.As(err, &list) {
		fmt.Fprintln(w, list.Error())
		files := map[string]bool{}
		var names []string
		for _, e := range list.Errors() {
			if !files[e.Pos.File] {
				files[e.Pos.File] = true
				names = append(names, e.Pos.File)
			}
		}
		noun := "errors"
		if list.Len() == 1 {
			noun = "error"
		}
		fmt.Fprintf(w, "fleet: %d %s in %s; no host was contacted\n", list.Len(), noun, strings.Join(names, " and "))
		return
	}
	fmt.Fprintf(w, "fleet: error: %v\n", err)
}

// output is where commands write: results to stdout, diagnostics to stderr.
type output struct {
	stdout, stderr io.Writer
}

// helpWithExamples prints kong's help, then an example for each command
// at the level being shown.
func helpWithExamples(opts kong.HelpOptions, ctx *kong.Context) error {
	if err := kong.DefaultHelpPrinter(opts, ctx); err != nil {
		return err
	}
	node := ctx.Selected()
	if node == nil {
		node = ctx.Model.Node
	}
	var lines []string
	if ex := node.Tag.Get("example"); ex != "" {
		lines = append(lines, ex)
	}
	for _, child := range node.Children {
		if ex := child.Tag.Get("example"); ex != "" && !child.Hidden {
			lines = append(lines, ex)
		}
	}
	if len(lines) > 0 {
		fmt.Fprintf(ctx.Stdout, "\nExamples:\n  %s\n", strings.Join(lines, "\n  "))
	}
	return nil
}
