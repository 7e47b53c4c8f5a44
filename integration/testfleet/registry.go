package testfleet

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// RegistryPort is where a host's registry listens, on every address of the
// host: as 127.0.0.1:RegistryPort the host's own dockerd trusts it without
// TLS, as engines trust any loopback registry.
const RegistryPort = 5000

// StartRegistry runs a container registry on the host (Debian's
// docker-registry, installed when missing), holding the given images of
// the host's engine as 127.0.0.1:5000/REF. With a user, the registry then
// wants that user's password for every request, pulls included.
func (h *Host) StartRegistry(ctx context.Context, user, password string, images ...string) error {
	if err := installPackage(ctx, "docker-registry", "docker-registry", h.fleet.log); err != nil {
		return err
	}
	dir := filepath.Join(h.Dir, "registry")
	if err := os.MkdirAll(filepath.Join(dir, "data"), 0o700); err != nil {
		return err
	}
	if err := h.runRegistry(ctx, dir, ""); err != nil {
		return err
	}
	for _, ref := range images {
		local := fmt.Sprintf("127.0.0.1:%d/%s", RegistryPort, ref)
		for _, argv := range [][]string{{"docker", "tag", ref, local}, {"docker", "push", local}, {"docker", "rmi", local}} {
			if _, err := h.Run(ctx, argv...); err != nil {
				h.StopRegistry(ctx)
				return err
			}
		}
	}
	if user == "" {
		return nil
	}
	if err := h.StopRegistry(ctx); err != nil {
		return err
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
	if err != nil {
		return err
	}
	htpasswd := filepath.Join(dir, "htpasswd")
	if err := os.WriteFile(htpasswd, []byte(user+":"+string(hash)+"\n"), 0o600); err != nil {
		return err
	}
	return h.runRegistry(ctx, dir, htpasswd)
}

func (h *Host) runRegistry(ctx context.Context, dir, htpasswd string) error {
	config := fmt.Sprintf(`version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: %s
http:
  addr: 0.0.0.0:%d
`, filepath.Join(dir, "data"), RegistryPort)
	if htpasswd != "" {
		config += fmt.Sprintf("auth:\n  htpasswd:\n    realm: fleet-test\n    path: %s\n", htpasswd)
	}
	configPath := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(configPath, []byte(config), 0o600); err != nil {
		return err
	}
	cmd := h.enter("sh", "-c", `echo $$ > "$0" && exec docker-registry serve "$1"`, filepath.Join(h.Dir, "run", "registry.pid"), configPath)
	if err := h.fleet.spawn(cmd, filepath.Join(h.Dir, "log", "registry.log")); err != nil {
		return err
	}
	url := fmt.Sprintf("http://%s:%d/v2/", h.Addr, RegistryPort)
	return waitFor(ctx, "the registry of "+h.Name, func() error {
		c := http.Client{Timeout: time.Second}
		resp, err := c.Get(url)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusUnauthorized {
			return fmt.Errorf("GET %s: %s", url, resp.Status)
		}
		return nil
	})
}

// StopRegistry stops the host's registry; its images stay for the next
// StartRegistry.
func (h *Host) StopRegistry(ctx context.Context) error {
	return stopPidfile(ctx, filepath.Join(h.Dir, "run", "registry.pid"), "registry of "+h.Name)
}

// installPackage installs a Debian package when the program it provides is
// missing.
func installPackage(ctx context.Context, program, pkg string, log io.Writer) error {
	if err := aptInstall(ctx, log, func() []string {
		if _, err := exec.LookPath(program); err != nil {
			return []string{pkg}
		}
		return nil
	}); err != nil {
		return err
	}
	_, err := exec.LookPath(program)
	return err
}
