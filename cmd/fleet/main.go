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
	"strings"
	"syscall"

	"github.com/alecthomas/kong"
)

// cli is the command line. Each command is a struct with a Run method; its
// help tag is the one-line summary shown by "fleet --help", and its example
// tag the line shown under it.
type cli struct {
	Version versionCmd `cmd:"" help:"Print fleet's version, commit and build date." example:"fleet version --json"`
}

// exitCoder is an error that sets the process's exit code; see the exit
// code table in the README.
type exitCoder interface{ ExitCode() int }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
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
	)
	if err != nil {
		fmt.Fprintf(stderr, "fleet: error: %v\n", err)
		return 1
	}
	kctx, err := parser.Parse(args)
	if exit >= 0 { // --help
		return exit
	}
	if err != nil {
		fmt.Fprintf(stderr, "fleet: error: %v\n", err)
		fmt.Fprintln(stderr, "fleet: hint: run \"fleet --help\" for the commands and their flags")
		return 1
	}
	if err := kctx.Run(); err != nil {
		fmt.Fprintf(stderr, "fleet: error: %v\n", err)
		var ec exitCoder
		if errors.As(err, &ec) {
			return ec.ExitCode()
		}
		return 1
	}
	return 0
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
