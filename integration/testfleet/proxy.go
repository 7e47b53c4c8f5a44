package testfleet

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
)

// ProxyImage is the Caddy that the test hosts run as their proxy (fleet.yaml's
// proxy_image): built from source, since the hosts cannot pull caddy:2.
const ProxyImage = "fleet-test/caddy:2.11.9"

const proxyDockerfile = `FROM scratch
COPY caddy /usr/bin/caddy
ENV PATH=/usr/bin
ENTRYPOINT ["caddy"]
CMD ["run"]
`

// BuildProxy builds ProxyImage on the laptop's engine and saves it for
// LoadImage. Caddy itself is compiled once per machine (some minutes on two
// cores) from the module in ./caddy and kept in the user's cache directory,
// under the hash of that module's files: a new Caddy version builds anew.
// It is compiled without optimisations, a quarter less work, which
// correctness tests do not notice.
func (f *Fleet) BuildProxy(ctx context.Context) (string, error) {
	if err := f.startLaptop(ctx); err != nil {
		return "", err
	}
	repo, err := repoRoot(ctx)
	if err != nil {
		return "", err
	}
	src := filepath.Join(repo, "integration", "testfleet", "caddy")
	sum := sha256.New()
	for _, name := range []string{"go.mod", "go.sum", "main.go"} {
		b, err := os.ReadFile(filepath.Join(src, name))
		if err != nil {
			return "", err
		}
		fmt.Fprintf(sum, "%s %d\n", name, len(b))
		sum.Write(b)
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		return "", err
	}
	bin := filepath.Join(cache, "fleet", "caddy-"+hex.EncodeToString(sum.Sum(nil))[:12], "caddy")
	if err := buildOnce(ctx, f, src, bin); err != nil {
		return "", err
	}
	dir, err := os.MkdirTemp(f.Dir, "build-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(dir)
	// A hard link, not a copy, where the cache is on the same file system.
	if err := os.Link(bin, filepath.Join(dir, "caddy")); err != nil {
		b, err := os.ReadFile(bin)
		if err == nil {
			err = os.WriteFile(filepath.Join(dir, "caddy"), b, 0o755)
		}
		if err != nil {
			return "", err
		}
	}
	return ProxyImage, f.buildImage(ctx, dir, []byte(proxyDockerfile), ProxyImage)
}

// buildOnce builds Caddy from src into bin unless it is there. Two test
// processes on one machine (the shards of one run) build it once: the
// second waits for the first on a lock beside bin.
func buildOnce(ctx context.Context, f *Fleet, src, bin string) error {
	if _, err := os.Stat(bin); err == nil {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(bin), 0o755); err != nil {
		return err
	}
	lock, err := os.OpenFile(bin+".lock", os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return err
	}
	if _, err := os.Stat(bin); err == nil {
		return nil // built while this one waited
	}
	f.logf("building Caddy for the test hosts' proxy (once per machine, some minutes)")
	tmp := fmt.Sprintf("%s.%d", bin, os.Getpid())
	build := exec.CommandContext(ctx, "go", "build", "-trimpath", "-gcflags=all=-N -l", "-ldflags", "-s -w", "-o", tmp, ".")
	build.Dir = src
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOFLAGS=-mod=readonly")
	if out, err := build.CombinedOutput(); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("building Caddy: %w: %s", err, out)
	}
	return os.Rename(tmp, bin)
}
