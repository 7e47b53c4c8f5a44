// Package secret reads the values that fleet.yaml references (env:NAME,
// file:PATH, cmd:COMMAND) on the machine fleet runs on. Values live in
// memory only: they go to the engine in the body of a request inside the
// SSH connection, and nowhere else.
package secret

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"slices"
	"strings"
	"time"

	"github.com/fleetdeploy/fleet/plan"
)

// Resolve reads every secret of every service, and every registry
// password, and returns them by service (registries under "registry:HOST").
// All problems are reported together, each naming its service and secret.
func Resolve(ctx context.Context, p *plan.Project) (map[string]map[string]string, error) {
	out := map[string]map[string]string{}
	var problems []string
	for _, s := range p.Services {
		values := map[string]string{}
		for _, name := range slices.Sorted(maps.Keys(s.Secrets)) {
			v, err := Read(ctx, s.Secrets[name])
			if err != nil {
				problems = append(problems, fmt.Sprintf("service %s, secret %s: %v", s.Name, name, err))
				continue
			}
			values[name] = v
		}
		out[s.Name] = values
	}
	for _, host := range slices.Sorted(maps.Keys(p.Registries)) {
		v, err := Read(ctx, p.Registries[host].Password)
		if err != nil {
			problems = append(problems, fmt.Sprintf("registry %s, password: %v", host, err))
			continue
		}
		out["registry:"+host] = map[string]string{"password": v}
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("reading secrets:\n  %s", strings.Join(problems, "\n  "))
	}
	return out, nil
}

// Read reads one secret. A trailing newline, which files and commands
// usually end with, is not part of the value.
func Read(ctx context.Context, ref plan.SecretRef) (string, error) {
	switch ref.Source {
	case "env":
		v, ok := os.LookupEnv(ref.Ref)
		if !ok {
			return "", fmt.Errorf("environment variable %s is not set", ref.Ref)
		}
		return v, nil
	case "file":
		b, err := os.ReadFile(expandHome(ref.Ref))
		if err != nil {
			return "", err
		}
		return strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r"), nil
	case "cmd":
		// The user's own command, run by the user's own shell on this
		// machine, as a credential helper would be.
		ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, "sh", "-c", ref.Ref)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			return "", fmt.Errorf("command failed: %v: %s", err, strings.TrimSpace(stderr.String()))
		}
		return strings.TrimSuffix(strings.TrimSuffix(string(out), "\n"), "\r"), nil
	}
	return "", fmt.Errorf("unknown source %q", ref.Source)
}

func expandHome(p string) string {
	if strings.HasPrefix(p, "~/") {
		if home, err := os.UserHomeDir(); err == nil {
			return home + p[1:]
		}
	}
	return p
}
