package export

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// dockerStackConfig runs Docker's own "docker stack config", which loads a
// stack file with the code "docker stack deploy" runs: the Compose schema,
// interpolation and conversion. It needs no daemon. The test is skipped
// where no docker with that command is installed (Debian's docker.io 20.10
// lacks it).
func dockerStackConfig(t *testing.T, stack []byte) (string, error) {
	t.Helper()
	docker, err := exec.LookPath("docker")
	if err != nil {
		t.Skip("no docker on PATH")
	}
	if err := exec.Command(docker, "stack", "config", "--help").Run(); err != nil {
		t.Skip("this docker has no \"docker stack config\"")
	}
	file := filepath.Join(t.TempDir(), "stack.yaml")
	if err := os.WriteFile(file, stack, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(docker, "stack", "config", "-c", file)
	// No daemon is asked; an unset DOCKER_HOST keeps it from trying one
	// named in the environment.
	cmd.Env = append(os.Environ(), "DOCKER_HOST=unix:///nonexistent")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", &toolError{err, stderr.String()}
	}
	return string(out), nil
}

type toolError struct {
	err    error
	stderr string
}

func (e *toolError) Error() string { return e.err.Error() + ": " + strings.TrimSpace(e.stderr) }

func TestSwarmExportsPassDockerStackConfig(t *testing.T) {
	p, inv := load(t, "../examples/shop/fleet.yaml", "../examples/shop/inventory.yaml")
	full, fullInv := parse(t, fullProject, fullInventory)
	hostile, hostileInv := hostileProject(t)
	for name, c := range map[string]struct {
		out func() ([]byte, error)
	}{
		"shop":    {func() ([]byte, error) { return Swarm(p, inv) }},
		"full":    {func() ([]byte, error) { return Swarm(full, fullInv) }},
		"hostile": {func() ([]byte, error) { return Swarm(hostile, hostileInv) }},
	} {
		t.Run(name, func(t *testing.T) {
			stack, err := c.out()
			if err != nil {
				t.Fatal(err)
			}
			got, err := dockerStackConfig(t, stack)
			if err != nil {
				t.Fatalf("docker stack config refuses the export: %v\n%s", err, stack)
			}
			if name == "hostile" && !strings.Contains(got, "${HOME} $(id) %{ if x }") {
				// docker stack config prints the file after interpolation:
				// the value must come out as fleet.yaml has it.
				t.Errorf("the value did not survive Compose's interpolation:\n%s", got)
			}
		})
	}
}

// TestDockerStackConfigRejectsABrokenStack shows that the checker above
// can fail: a key the Compose schema lacks, and a "$" left unescaped.
func TestDockerStackConfigRejectsABrokenStack(t *testing.T) {
	p, inv := load(t, "../examples/shop/fleet.yaml", "../examples/shop/inventory.yaml")
	stack, err := Swarm(p, inv)
	if err != nil {
		t.Fatal(err)
	}
	for name, broken := range map[string]string{
		"unknown key":       strings.Replace(string(stack), "max_replicas_per_node: 1", "max_replicas_per_host: 1", 1),
		"wrong type":        strings.Replace(string(stack), "replicas: 3", "replicas: three", 1),
		"bad interpolation": strings.Replace(string(stack), "JAVA_OPTS: -Xms512m -Xmx1g", "JAVA_OPTS: ${-Xms512m", 1),
	} {
		t.Run(name, func(t *testing.T) {
			if broken == string(stack) {
				t.Fatal("the test's edit found nothing to change")
			}
			if _, err := dockerStackConfig(t, []byte(broken)); err == nil {
				t.Error("docker stack config accepted a broken stack")
			}
		})
	}
}
