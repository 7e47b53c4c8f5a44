package testfleet

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

// ExampleImage is the repository of the example service's images; its tags
// are the versions built.
const ExampleImage = "fleet-example/hello"

// startLaptop starts the harness's own dockerd, the one that plays the
// user's laptop: it builds images and has no network of its own. It runs
// in a private mount namespace so that nothing it mounts outlives it.
func (f *Fleet) startLaptop(ctx context.Context) error {
	if f.LaptopDocker != "" {
		return nil
	}
	dir := filepath.Join(f.Dir, "laptop")
	for _, d := range []string{"docker", "exec"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			return err
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "daemon.json"), f.daemonJSON(), 0o644); err != nil {
		return err
	}
	cg := f.cgroup() + "/laptop"
	for _, c := range []string{cg + "/daemons", cg + "/containers"} {
		if err := cgroupCreate(c); err != nil {
			return err
		}
	}
	socket := filepath.Join(dir, "docker.sock")
	cmd := exec.Command("unshare", "--mount", "--propagation", "private", "--",
		"sh", "-c", `echo $$ > "$0" && exec "$@"`, cgroupProcs(cg+"/daemons"),
		"dockerd",
		"--config-file", filepath.Join(dir, "daemon.json"),
		"--host", "unix://"+socket,
		"--data-root", filepath.Join(dir, "docker"),
		"--exec-root", filepath.Join(dir, "exec"),
		"--pidfile", filepath.Join(dir, "docker.pid"),
		"--bridge", "none", "--iptables=false", "--ip-forward=false", "--ip-masq=false",
		"--cgroup-parent", "/"+cg+"/containers",
	)
	if err := f.spawn(cmd, filepath.Join(dir, "dockerd.log")); err != nil {
		return err
	}
	if err := waitFor(ctx, "the laptop's dockerd", func() error { return pingDocker(ctx, socket) }); err != nil {
		return err
	}
	f.LaptopDocker = "unix://" + socket
	return f.save()
}

// laptopDocker runs the docker CLI against the laptop's engine.
func (f *Fleet) laptopDocker(ctx context.Context, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, "docker", append([]string{"--host", f.LaptopDocker}, args...)...)
	// The classic builder needs nothing but the engine: no buildx plugin.
	cmd.Env = append(os.Environ(), "DOCKER_BUILDKIT=0")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("docker %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return out, nil
}

// BuildExample builds the example service at the given version into
// ExampleImage:version on the laptop's engine and saves it for loading onto
// hosts. The version is stamped into the binary, so every version is a
// different image with its own ID, as real releases are.
//
// healthEvery, when not zero, replaces the interval of the image's own
// HEALTHCHECK: Docker runs it in every running container, about 0.15 s of
// the machine's CPU a run, and tests that gate on fleet's own checks run
// dozens of containers at once.
func (f *Fleet) BuildExample(ctx context.Context, version string, healthEvery time.Duration) (string, error) {
	if err := f.startLaptop(ctx); err != nil {
		return "", err
	}
	repo, err := repoRoot(ctx)
	if err != nil {
		return "", err
	}
	build, err := os.MkdirTemp(f.Dir, "build-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(build)
	src := filepath.Join(repo, "examples", "hello")
	gobuild := exec.CommandContext(ctx, "go", "build", "-trimpath",
		"-ldflags", "-s -w -X main.version="+version, "-o", filepath.Join(build, "hello"), ".")
	gobuild.Dir = src
	gobuild.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux")
	if out, err := gobuild.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building the example service: %w: %s", err, out)
	}
	dockerfile, err := os.ReadFile(filepath.Join(src, "Dockerfile"))
	if err != nil {
		return "", err
	}
	if healthEvery != 0 {
		interval := regexp.MustCompile(`(?m)^(HEALTHCHECK .*--interval=)\S+`)
		if !interval.Match(dockerfile) {
			return "", fmt.Errorf("the example's Dockerfile has no HEALTHCHECK --interval to replace")
		}
		dockerfile = interval.ReplaceAll(dockerfile, []byte("${1}"+healthEvery.String()))
	}
	ref := ExampleImage + ":" + version
	return ref, f.buildImage(ctx, build, dockerfile, ref)
}

// buildImage builds the image ref from dir and dockerfile on the laptop's
// engine, and saves it for LoadImage.
func (f *Fleet) buildImage(ctx context.Context, dir string, dockerfile []byte, ref string) error {
	if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), dockerfile, 0o644); err != nil {
		return err
	}
	if _, err := f.laptopDocker(ctx, "build", "--quiet", "--tag", ref, dir); err != nil {
		return err
	}
	if err := os.MkdirAll(f.imagesDir(), 0o700); err != nil {
		return err
	}
	if _, err := f.laptopDocker(ctx, "save", "--output", f.imageTar(ref), ref); err != nil {
		return err
	}
	f.logf("built %s", ref)
	return nil
}

func (f *Fleet) imagesDir() string { return filepath.Join(f.Dir, "images") }

func (f *Fleet) imageTar(ref string) string {
	return filepath.Join(f.imagesDir(), strings.NewReplacer("/", "_", ":", "_").Replace(ref)+".tar")
}

// LoadImage loads an image built by the laptop onto the given hosts, or onto
// every host when none is given, the way an operator seeds hosts that have
// no registry to pull from.
func (f *Fleet) LoadImage(ctx context.Context, ref string, hosts ...*Host) error {
	if len(hosts) == 0 {
		hosts = f.Hosts
	}
	tar := f.imageTar(ref)
	if _, err := os.Stat(tar); err != nil {
		return fmt.Errorf("image %s was not built by this fleet: %w", ref, err)
	}
	return parallel(hosts, func(h *Host) error {
		_, err := h.Run(ctx, "docker", "load", "--quiet", "--input", tar)
		return err
	})
}

// repoRoot finds the fleet repository from the working directory, which is
// inside it for tests and for `go run`.
func repoRoot(ctx context.Context) (string, error) {
	out, err := run(ctx, "go", "env", "GOMOD")
	if err != nil {
		return "", err
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", fmt.Errorf("run inside the fleet repository: the example service's source is needed")
	}
	return filepath.Dir(mod), nil
}
