package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"testing"

	"github.com/fleetdeploy/fleet/executor"
	"github.com/fleetdeploy/fleet/integration/testfleet"
)

// benchFleet is the 10-host fleet of BenchmarkStateRead, named and placed
// after the shared one unless FLEET_BENCH_FLEET and FLEET_BENCH_SUBNET say
// otherwise.
func benchFleet() testfleet.Options {
	name := fleetName
	if len(name) > 5 {
		name = name[:5]
	}
	return testfleet.Options{
		Name:   envOr("FLEET_BENCH_FLEET", "b"+name),
		Subnet: envInt("FLEET_BENCH_SUBNET", 150+fleetSubnet),
		Hosts:  10,
	}
}

// cliStateScript reads a host's state with the docker CLI in one exec
// session, printing one JSON document: the way the executor does not take
// (see Engine), kept here to measure against. $1 is the project.
const cliStateScript = `set -e
printf '{"info":'; docker info --format '{{json .}}'
printf ',"containers":'
ids=$(docker ps -aq --no-trunc --filter "label=fleet.project=$1")
if [ -n "$ids" ]; then docker inspect $ids; else printf '[]'; fi
mem=0; while read -r k v _; do [ "$k" = MemAvailable: ] && mem=$v; done < /proc/meminfo
printf ',"mem_available_kb":%s,"disk":[%s]}' "$mem" "$(stat -f -c '%a,%S' /var/lib/docker)"`

type cliState struct {
	Info struct {
		Name          string
		ServerVersion string
		NCPU          int
		MemTotal      int64
	}
	Containers     []json.RawMessage
	MemAvailableKB int64 `json:"mem_available_kb"`
	Disk           []int64
}

func cliRead(ctx context.Context, c *executor.Conn, project string) (*cliState, error) {
	out, err := c.Output(ctx, "sh", "-c", cliStateScript, "fleet-state", project)
	if err != nil {
		return nil, err
	}
	var st cliState
	if err := json.Unmarshal(out, &st); err != nil {
		return nil, fmt.Errorf("decoding %q: %w", out, err)
	}
	return &st, nil
}

// BenchmarkStateRead reads the state of 10 hosts, 3 containers of the
// project on each, through the Engine API over SSH (what the executor
// does) and through the docker CLI in an exec session. "warm" reuses the
// run's connections, as a plan after the first read does; "cold" includes
// connecting, as the first read of a run does.
func BenchmarkStateRead(b *testing.B) {
	ctx := context.Background()
	opts := benchFleet()
	opts.Log = os.Stderr
	f, err := testfleet.Up(ctx, opts)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { f.Down(context.Background()) })
	ref, err := f.BuildExample(ctx, "1", 0)
	if err == nil {
		err = f.LoadImage(ctx, ref)
	}
	if err != nil {
		b.Fatal(err)
	}
	const project = "bench"
	var ts []executor.Target
	for _, h := range f.Hosts {
		ts = append(ts, executor.Target{Name: h.Name, Address: h.Addr, User: "root",
			IdentityFiles: []string{f.IdentityFile}, KnownHostsFiles: []string{f.KnownHosts}})
		for i := 1; i <= 3; i++ {
			// No health checks: forty of them every 2s would load the
			// machine more than the reads being measured.
			if _, err := h.Run(ctx, "docker", "run", "-d", "--no-healthcheck", "--name", "bench-"+strconv.Itoa(i),
				"--label", "fleet.project="+project, "--label", "fleet.slot="+strconv.Itoa(i),
				"-e", "HELLO_PORT="+strconv.Itoa(8080+i), ref); err != nil {
				b.Fatal(err)
			}
		}
		if _, err := h.Run(ctx, "docker", "run", "-d", "--no-healthcheck", "--name", "unmanaged", ref); err != nil {
			b.Fatal(err)
		}
	}

	api := func(ctx context.Context, e *executor.Executor) error {
		res, err := executor.States(ctx, e, ts, project)
		if err != nil {
			return err
		}
		for _, r := range res {
			if len(r.Value.Containers) != 3 {
				return fmt.Errorf("%s: %d containers", r.Host, len(r.Value.Containers))
			}
		}
		return nil
	}
	cli := func(ctx context.Context, e *executor.Executor) error {
		res, err := executor.Map(ctx, e, ts, "reading state", func(ctx context.Context, c *executor.Conn) (*cliState, error) {
			return cliRead(ctx, c, project)
		})
		if err != nil {
			return err
		}
		for _, r := range res {
			if len(r.Value.Containers) != 3 {
				return fmt.Errorf("%s: %d containers", r.Host, len(r.Value.Containers))
			}
		}
		return nil
	}
	for _, m := range []struct {
		name string
		read func(context.Context, *executor.Executor) error
	}{{"api", api}, {"cli", cli}} {
		b.Run(m.name+"/warm", func(b *testing.B) {
			e := executor.New(ctx, executor.Options{AgentSocket: "none"})
			defer e.Close()
			// Two reads first: the first opens the engine stream, the second
			// the SFTP session; later reads start nothing on the hosts.
			for range 2 {
				if err := m.read(ctx, e); err != nil {
					b.Fatal(err)
				}
			}
			b.ResetTimer()
			for range b.N {
				if err := m.read(ctx, e); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(m.name+"/cold", func(b *testing.B) {
			for range b.N {
				e := executor.New(ctx, executor.Options{AgentSocket: "none"})
				err := m.read(ctx, e)
				e.Close()
				if err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
