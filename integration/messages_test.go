package integration

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/fleetdeploy/fleet/executor"
	"github.com/fleetdeploy/fleet/integration/testfleet"
)

// The tests in this file hold fleet to its words: one wording for one
// fault, however the fault surfaced, and messages that name what failed
// and say what to check.

const messagesYAML = `project: msgs
services:
  web:
    image: fleet-example/hello:1
    pull: never
    ports: ["8096:8080"]
`

// lineOf returns the line of out that begins with prefix, or "".
func lineOf(out, prefix string) string {
	for _, line := range strings.Split(strings.ReplaceAll(out, "\r\n", "\n"), "\n") {
		if strings.HasPrefix(line, prefix) {
			return line
		}
	}
	return ""
}

// TestMessagesOfHostFaults takes one host off the network, stops another's
// sshd and a third's Docker engine, and reads the fleet with fleet hosts
// and fleet plan: each fault reads as its one wording on every run (a
// cut-off host first times out, then the kernel reports "no route to
// host", which is the same fault), and the host whose engine is down is
// said to be so, not to be unreachable.
func TestMessagesOfHostFaults(t *testing.T) {
	ctx := context.Background()
	cut, nosshd, nodocker := fleet.Hosts[2], fleet.Hosts[3], fleet.Hosts[4]
	if err := cut.CutOff(ctx); err != nil {
		t.Fatal(err)
	}
	defer cut.Heal(ctx)
	if err := nosshd.StopSSHD(ctx); err != nil {
		t.Fatal(err)
	}
	defer nosshd.StartSSHD(ctx)
	if err := nodocker.StopDocker(ctx); err != nil {
		t.Fatal(err)
	}
	defer nodocker.StartDocker(ctx)

	unreachable := fmt.Sprintf("no answer from %s:22 (host down, or a firewall drops SSH): check the address, and that port 22 is open", cut.Addr)
	refused := fmt.Sprintf("connection refused on port 22 of %s (sshd not running?): check that sshd runs on the host, and the port in the inventory", nosshd.Addr)
	engineDown := "docker engine not running (connect to /var/run/docker.sock: no such file or directory): check with `systemctl status docker` on the host"
	wantHosts := map[string]string{
		cut.Name:      cut.Name + "    unreachable  " + unreachable,
		nosshd.Name:   nosshd.Name + "    refused      " + refused,
		nodocker.Name: nodocker.Name + "    engine down  " + engineDown,
	}

	p := newProject(t, messagesYAML)
	for run := 1; run <= 2; run++ {
		out, errOut, code := p.run("hosts")
		if code != 1 || errOut != "fleet: error: 3 of 5 hosts not ready: 2 unreachable, 1 engine down\n" {
			t.Errorf("hosts, run %d: exit %d, stderr %q", run, code, errOut)
		}
		for host, want := range wantHosts {
			if got := lineOf(out, host+" "); got != want {
				t.Errorf("hosts, run %d: the line of %s is\n%s\nwant\n%s", run, host, got, want)
			}
		}
		for _, h := range fleet.Hosts[:2] {
			if !strings.HasPrefix(lineOf(out, h.Name+" "), h.Name+"    ok ") {
				t.Errorf("hosts, run %d: %s is not ok:\n%s", run, h.Name, out)
			}
		}

		out, errOut, code = p.run("plan")
		if code != 1 || !strings.Contains(errOut, "3 of 5 hosts not ready: 1 engine down, 2 unreachable") {
			t.Errorf("plan, run %d: exit %d\n%s", run, code, errOut)
		}
		for host, want := range map[string]string{cut.Name: unreachable, nosshd.Name: refused, nodocker.Name: engineDown} {
			if got := lineOf(out, "! host "+host+" "); !strings.HasSuffix(got, ": "+want) || host == nodocker.Name && !strings.HasPrefix(got, "! host "+host+" engine down: ") {
				t.Errorf("plan, run %d: the line of %s is\n%s\nwant it to end in\n%s", run, host, got, want)
			}
		}
		for _, raw := range []string{"dial tcp", "i/o timeout", "no route to host", "raw stream"} {
			if strings.Contains(out, raw) {
				t.Errorf("plan, run %d, shows the raw %q:\n%s", run, raw, out)
			}
		}
	}

	// -v shows what each wording was read from.
	out, _, _ := p.run("hosts", "-v")
	if got := lineOf(out, cut.Name+" "); !strings.HasPrefix(got, wantHosts[cut.Name]+" [dial tcp "+cut.Addr+":22: ") {
		t.Errorf("hosts -v: the line of %s is\n%s", cut.Name, got)
	}

	// On a terminal, the reasons are cut to its width; -v keeps them whole.
	screen, code := p.runTTY("hosts")
	if code != 1 {
		t.Errorf("hosts on a terminal: exit %d", code)
	}
	for _, h := range []*testfleet.Host{cut, nosshd, nodocker} {
		line := lineOf(screen, h.Name+" ")
		if n := utf8.RuneCountInString(line); n > 100 || !strings.HasSuffix(line, "…") ||
			!strings.HasPrefix(wantHosts[h.Name], strings.TrimSuffix(line, "…")) {
			t.Errorf("hosts on a terminal 100 wide: the line of %s (%d wide) is\n%s", h.Name, n, line)
		}
	}
	if !strings.Contains(screen, `"fleet hosts -v" prints them whole`) {
		t.Errorf("hosts on a terminal does not say how to see the whole reasons:\n%s", screen)
	}
	screen, _ = p.runTTY("hosts", "-v")
	if got := lineOf(screen, nodocker.Name+" "); got != wantHosts[nodocker.Name] {
		t.Errorf("hosts -v on a terminal: the line of %s is\n%s", nodocker.Name, got)
	}
}

// TestMessagesOfPulls pulls from a password-protected registry on a host
// an image that is not there, with the right credentials, then one that
// is, with wrong ones and with none: each error names the host, the image
// and the registry once, and the cause, with the engine's own words last.
func TestMessagesOfPulls(t *testing.T) {
	ctx := context.Background()
	h := fleet.Hosts[1]
	const password = "pull-pw"
	registry, there := withRegistry(t, h, "puller", password)
	missing := registry + "/" + testfleet.ExampleImage + ":9"

	e := newExecutor(t, ctx, executor.Options{})
	c, err := e.Connect(ctx, target(h))
	if err != nil {
		t.Fatal(err)
	}
	right := &executor.RegistryAuth{Username: "puller", Password: password}
	wrong := &executor.RegistryAuth{Username: "puller", Password: "wrong"}
	for _, p := range []struct {
		ref  string
		auth *executor.RegistryAuth
		want string
	}{
		{missing, right, "image " + missing + " not found on registry " + registry + ": check the name and the tag (engine: manifest unknown)"},
		{there, wrong, "registry " + registry + " refused the credentials for image " + there + ": check `registries:` in fleet.yaml (engine: unauthorized: authentication required)"},
		{there, nil, "registry " + registry + " wants credentials for image " + there + ": give them under `registries:` in fleet.yaml (engine: no basic auth credentials)"},
	} {
		err := c.Engine().Pull(ctx, p.ref, p.auth)
		if want := "host " + h.Name + ": " + p.want; err == nil || err.Error() != want {
			t.Errorf("pulling %s: %v\nwant\n%s", p.ref, err, want)
		}
	}

	// fleet apply shows the same words for a tag the registry lacks.
	cleanupProject(t, "msgpull")
	proj := newProject(t, `project: msgpull
services:
  web:
    image: `+missing+`
    hosts: `+h.Name+`
    pull: always
registries:
  "`+registry+`": {username: puller, password: env:FLEET_IT_MSG_REGISTRY}
`)
	t.Setenv("FLEET_IT_MSG_REGISTRY", password)
	out := proj.expect(1, []string{"image " + missing + " not found on registry " + registry + ": check the name and the tag (engine: manifest unknown)"}, "apply", "--yes")
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, "not found on registry") && strings.Count(line, missing) != 1 {
			t.Errorf("apply names the image more than once:\n%s", line)
		}
	}
	if strings.Contains(out, "manifest for") {
		t.Errorf("apply shows the engine's raw text:\n%s", out)
	}
}
