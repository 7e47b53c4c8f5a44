package main

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/fleetdeploy/fleet/executor"
	"github.com/fleetdeploy/fleet/integration/testfleet"
)

// Sizes of the delivery part's image: the example, a base layer, and the
// app layer that every release changes.
const (
	deliveryBase = 20 << 20
	deliveryApp  = 5 << 20
)

// delivery times getting a one-layer change (a new 5 MiB app layer over a
// 20 MiB base that the hosts hold) to every host, three ways, each round
// with a layer of its own: fleet push (only what each host lacks), docker
// save | ssh docker load to each host at once (the whole image), and a
// registry on the first host (docker push from the laptop, then every
// host pulls, over ssh). Bytes are what the hosts' links received.
func (b *bench) delivery(ctx context.Context, rounds int) error {
	f := b.fleet
	reg := f.Hosts[0]
	if err := reg.StartRegistry(ctx, "", ""); err != nil {
		return err
	}
	defer reg.StopRegistry(context.Background())
	registry := fmt.Sprintf("%s:%d", reg.Addr, testfleet.RegistryPort)
	dir := filepath.Join(b.dir, "delivery")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	laptop := func(args ...string) error {
		cmd := exec.CommandContext(ctx, "docker", append([]string{"--host", f.LaptopDocker}, args...)...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "DOCKER_BUILDKIT=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("docker %s: %v: %s", strings.Join(args, " "), err, out)
		}
		return nil
	}
	noise := func(name string, n int) error {
		buf := make([]byte, n)
		rand.Read(buf)
		return os.WriteFile(filepath.Join(dir, name), buf, 0o644)
	}
	if err := noise("base.bin", deliveryBase); err != nil {
		return err
	}
	os.WriteFile(filepath.Join(dir, "Dockerfile.base"), []byte("FROM "+testfleet.ExampleImage+":2\nCOPY base.bin /base.bin\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "Dockerfile.app"), []byte("FROM bench/base\nCOPY app.bin /app.bin\n"), 0o644)
	if err := laptop("build", "-q", "-f", "Dockerfile.base", "-t", "bench/base", "."); err != nil {
		return err
	}
	// release makes an image with a new app layer, under the registry's
	// name too.
	n := 0
	release := func() (string, error) {
		n++
		ref := fmt.Sprintf("%s/bench/app:%d", registry, n)
		if err := noise("app.bin", deliveryApp); err != nil {
			return "", err
		}
		return ref, laptop("build", "-q", "-f", "Dockerfile.app", "-t", ref, ".")
	}
	push := func(ref string) error {
		cmd := exec.CommandContext(ctx, b.bin, "--ssh-config", "none", "-i", f.Inventory, "push", ref)
		cmd.Env = append(os.Environ(), "DOCKER_HOST="+f.LaptopDocker)
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("fleet push %s: %v: %s", ref, err, out)
		}
		return nil
	}
	onEveryHost := func(command func(h *testfleet.Host) *exec.Cmd) error {
		errs := make([]error, len(f.Hosts))
		var wg sync.WaitGroup
		for i, h := range f.Hosts {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if out, err := command(h).CombinedOutput(); err != nil {
					errs[i] = fmt.Errorf("%s: %v: %s", h.Name, err, out)
				}
			}()
		}
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				return err
			}
		}
		return nil
	}
	ssh := func(h *testfleet.Host, command string) *exec.Cmd {
		return exec.CommandContext(ctx, "ssh", append(h.SSHArgs(), command)...)
	}
	pull := func(ref string) error {
		if err := laptop("push", ref); err != nil {
			return err
		}
		return onEveryHost(func(h *testfleet.Host) *exec.Cmd { return ssh(h, "docker pull -q "+ref) })
	}
	saveLoad := func(ref string) error {
		return onEveryHost(func(h *testfleet.Host) *exec.Cmd {
			line, _ := executor.ShellJoin(append([]string{"docker", "--host", f.LaptopDocker, "save", ref, "|", "ssh"}, h.SSHArgs()...))
			// The pipe is the point: unquote it.
			line = strings.Replace(line, "'|'", "|", 1) + " docker load -q"
			return exec.CommandContext(ctx, "sh", "-c", line)
		})
	}
	// The hosts hold the base, each way: pushed by fleet, and pulled from
	// the registry (a registry knows only the layers it sent).
	first, err := release()
	if err != nil {
		return err
	}
	if err := push(first); err != nil {
		return err
	}
	if err := pull(first); err != nil {
		return err
	}
	received := func() (int64, error) {
		var sum int64
		for _, h := range f.Hosts {
			n, err := h.ReceivedBytes()
			if err != nil {
				return 0, err
			}
			sum += n
		}
		return sum, nil
	}
	type way struct {
		name  string
		do    func(ref string) error
		times []time.Duration
		bytes []int64
	}
	ways := []*way{
		{name: "fleet push", do: push},
		{name: "docker save | ssh docker load", do: saveLoad},
		{name: "registry: docker push + pull", do: pull},
	}
	for i := 0; i < rounds; i++ {
		for _, w := range ways {
			ref, err := release()
			if err != nil {
				return err
			}
			before, err := received()
			if err != nil {
				return err
			}
			w.times = append(w.times, timed(func() error { return w.do(ref) }))
			after, err := received()
			if err != nil {
				return err
			}
			w.bytes = append(w.bytes, after-before)
		}
	}
	fmt.Println()
	fmt.Printf("%-44s %9s %12s %12s\n", fmt.Sprintf("a %d MiB layer changed, to %d hosts", deliveryApp>>20, len(f.Hosts)), "median", "MB received", "× fleet push")
	for _, w := range ways {
		fmt.Printf("%-44s %8.2fs %12.1f %11.2f×\n", w.name, median(w.times).Seconds(), float64(medianBytes(w.bytes))/1e6, ratio(w.times, ways[0].times))
	}
	return nil
}

func medianBytes(b []int64) int64 {
	d := make([]time.Duration, len(b))
	for i, n := range b {
		d[i] = time.Duration(n)
	}
	return int64(median(d))
}
