// Command sandbox drives a local test fleet from the shell: the demo's
// sandbox, and a way to poke at the hosts the integration tests use.
//
//	go run ./integration/sandbox up --hosts 3 --example 1
//	go run ./integration/sandbox ssh h1 -- docker ps
//	go run ./integration/sandbox cut h2     # pull h2's cable; "heal h2" plugs it back
//	go run ./integration/sandbox down
//
// It needs root, like the fleet it brings up.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/alecthomas/kong"

	"github.com/fleetdeploy/fleet/integration/testfleet"
)

type globals struct {
	Name     string `default:"demo" help:"Fleet name (up to 6 of a-z, 0-9)."`
	StateDir string `default:"${state_dir}" help:"Where fleets keep their files."`
}

type cli struct {
	globals

	Up     upCmd     `cmd:"" help:"Bring up a fleet (removing leftovers of one with the same name first)."`
	Down   downCmd   `cmd:"" help:"Stop every process of the fleet and remove all it made."`
	Status statusCmd `cmd:"" help:"List the hosts with their addresses and whether sshd and dockerd answer."`
	SSH    sshCmd    `cmd:"" name:"ssh" help:"Run a command on a host through OpenSSH, as root."`
	Cut    hostCmd   `cmd:"" help:"Cut a host off the network."`
	Heal   hostCmd   `cmd:"" help:"Put a cut-off host back on the network."`
	Stop   daemonCmd `cmd:"" help:"Stop a host's dockerd or sshd."`
	Start  daemonCmd `cmd:"" help:"Start a host's dockerd or sshd."`
}

type upCmd struct {
	Hosts   int      `default:"3" help:"Number of hosts."`
	Subnet  int      `default:"1" help:"N in 198.18.N.0/24."`
	Example []string `help:"Build these versions of the example service and load them onto every host."`
}

func (c *upCmd) Run(ctx context.Context, g *globals) error {
	f, err := testfleet.Up(ctx, testfleet.Options{
		Name: g.Name, Hosts: c.Hosts, Subnet: c.Subnet, StateDir: g.StateDir, Log: os.Stderr,
	})
	if err != nil {
		return err
	}
	f.SetLog(os.Stderr)
	for _, v := range c.Example {
		ref, err := f.BuildExample(ctx, v, 0)
		if err != nil {
			return err
		}
		if err := f.LoadImage(ctx, ref); err != nil {
			return err
		}
	}
	for _, h := range f.Hosts {
		fmt.Printf("%s\t%s\n", h.Name, h.Addr)
	}
	fmt.Printf("inventory\t%s\n", f.Inventory)
	return nil
}

type downCmd struct{}

func (c *downCmd) Run(ctx context.Context, g *globals) error {
	f, err := testfleet.Attach(g.StateDir, g.Name)
	if err != nil {
		// A crashed run may have left parts without a state file; Up's
		// purge handles that, so bring up nothing and take that down.
		return fmt.Errorf("%w (to clear leftovers of a crashed run, run \"up\" with the same name, then \"down\")", err)
	}
	f.SetLog(os.Stderr)
	return f.Down(ctx)
}

type statusCmd struct{}

func (c *statusCmd) Run(ctx context.Context, g *globals) error {
	f, err := testfleet.Attach(g.StateDir, g.Name)
	if err != nil {
		return err
	}
	fmt.Printf("fleet %s, inventory %s\n", f.Name, f.Inventory)
	for _, h := range f.Hosts {
		state := "up"
		if out, err := h.SSH(ctx, "docker version --format {{.Server.Version}}"); err != nil {
			state = "unreachable or broken: " + err.Error()
		} else {
			state = "docker " + strings.TrimSpace(string(out))
		}
		fmt.Printf("%s\t%s\t%s\n", h.Name, h.Addr, state)
	}
	return nil
}

type sshCmd struct {
	Host    string   `arg:"" help:"Host name, e.g. h1."`
	Command []string `arg:"" passthrough:"" help:"Command line for the host's shell."`
}

func (c *sshCmd) Run(ctx context.Context, g *globals) error {
	h, err := host(g, c.Host)
	if err != nil {
		return err
	}
	args := c.Command
	if len(args) > 0 && args[0] == "--" {
		args = args[1:]
	}
	out, err := h.SSH(ctx, strings.Join(args, " "))
	os.Stdout.Write(out)
	return err
}

type hostCmd struct {
	Host string `arg:"" help:"Host name, e.g. h1."`
}

func (c *hostCmd) Run(ctx context.Context, g *globals, k *kong.Context) error {
	h, err := host(g, c.Host)
	if err != nil {
		return err
	}
	if strings.HasPrefix(k.Command(), "cut") {
		return h.CutOff(ctx)
	}
	return h.Heal(ctx)
}

type daemonCmd struct {
	Host   string `arg:"" help:"Host name, e.g. h1."`
	Daemon string `arg:"" enum:"docker,sshd" help:"docker or sshd."`
}

func (c *daemonCmd) Run(ctx context.Context, g *globals, k *kong.Context) error {
	h, err := host(g, c.Host)
	if err != nil {
		return err
	}
	start := strings.HasPrefix(k.Command(), "start")
	switch {
	case c.Daemon == "docker" && start:
		return h.StartDocker(ctx)
	case c.Daemon == "docker":
		return h.StopDocker(ctx)
	case start:
		return h.StartSSHD(ctx)
	default:
		return h.StopSSHD(ctx)
	}
}

func host(g *globals, name string) (*testfleet.Host, error) {
	f, err := testfleet.Attach(g.StateDir, g.Name)
	if err != nil {
		return nil, err
	}
	h := f.Host(name)
	if h == nil {
		return nil, fmt.Errorf("fleet %s has no host %q", g.Name, name)
	}
	return h, nil
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var c cli
	k := kong.Parse(&c,
		kong.Description("Bring up and drive a local fleet of real test hosts (own netns, sshd and dockerd each)."),
		kong.Vars{"state_dir": testfleet.DefaultStateDir},
		kong.BindTo(ctx, (*context.Context)(nil)),
		kong.Bind(&c.globals),
	)
	k.FatalIfErrorf(k.Run())
}
