package integration

import (
	"context"
	"encoding/json"
	"os/exec"
	"strings"
	"testing"

	"github.com/fleetdeploy/fleet/integration/testfleet"
)

const noSFTPYAML = `project: nosftp
services:
  web:
    image: fleet-example/hello:@VERSION@
    pull: never
    hosts: h2,h3
    ports: ["8101:8080"]
    env: {HELLO_MODE: slow, HELLO_HEALTHY_AFTER: "@HEALTHY@"}
    healthcheck: {http: /up, port: 8080, interval: 500ms}
    update: {monitor: 0s}
`

func noSFTPProject(version, healthy string) string {
	return strings.NewReplacer("@VERSION@", version, "@HEALTHY@", healthy).Replace(noSFTPYAML)
}

// withoutSFTP takes the SFTP subsystem away from h's sshd for the test.
func withoutSFTP(t *testing.T, h *testfleet.Host) {
	t.Helper()
	if err := h.SetSFTP(context.Background(), false); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := h.SetSFTP(context.Background(), true); err != nil {
			t.Error(err)
		}
	})
}

// TestHostWithoutSFTP: a host whose sshd offers no SFTP subsystem, as on
// hardened hosts, is planned, applied, rolled back, locked and shows its
// history and figures like the others, its files reached through exec
// sessions; -v says which way each host's files go.
func TestHostWithoutSFTP(t *testing.T) {
	ctx := context.Background()
	h2, h3 := fleet.Hosts[1], fleet.Hosts[2]
	withoutSFTP(t, h3)
	cleanupProject(t, "nosftp")
	t.Cleanup(func() {
		eachHost(t, func(h *testfleet.Host) error {
			_, err := h.Run(context.Background(), "rm", "-rf", "/var/lib/fleet/nosftp")
			return err
		})
	})
	// OpenSSH's own client is refused it too.
	sftp := exec.Command("ssh", append([]string{"-s"}, append(h3.SSHArgs(), "sftp")...)...)
	if out, err := sftp.CombinedOutput(); err == nil || !strings.Contains(string(out), "subsystem request failed") {
		t.Fatalf("ssh -s %s sftp: %v\n%s", h3.Name, err, out)
	}

	p := newProject(t, noSFTPProject("1", "1s"))
	out := p.expect(0, []string{"fleet: h3: files through exec sessions", "fleet: h2: files over SFTP", "2 to create"}, "-v", "plan")
	if n := strings.Count(out, "h3: files "); n != 1 {
		t.Errorf("-v says %d times how h3's files are reached, want once:\n%s", n, out)
	}
	p.expect(0, []string{"2 changed"}, "apply", "--yes", "-m", "first")
	p.write(noSFTPProject("2", "1s"))
	p.expect(0, []string{"2 changed"}, "apply", "--yes")
	for _, h := range []*testfleet.Host{h2, h3} {
		if err := serving(ctx, h.Addr+":8101", "2"); err != nil {
			t.Fatal(err)
		}
	}

	// h3's history was written through the shell, and is read back alone.
	if ls, err := h3.Run(ctx, "ls", "/var/lib/fleet/nosftp/revisions/web"); err != nil || string(ls) != "1.json\n2.json\n" {
		t.Errorf("h3's records: %q, %v", ls, err)
	}
	out = p.expect(0, []string{"first", "fleet-example/hello:2"}, "--hosts", "h3", "history", "web")
	if lines := strings.Split(strings.TrimSpace(out), "\n")[1:]; len(lines) != 2 || !strings.HasPrefix(lines[0], "1 ") || !strings.HasPrefix(lines[1], "2 ") {
		t.Errorf("fleet --hosts h3 history web:\n%s", out)
	}
	p.expect(0, []string{"Rolling web back to revision 1", "2 changed"}, "rollback", "web", "--to", "1", "--yes")
	for _, h := range []*testfleet.Host{h2, h3} {
		if err := serving(ctx, h.Addr+":8101", "1"); err != nil {
			t.Fatal(err)
		}
	}

	// Locked like the others: while a run holds h3, another that wants it
	// exits 4, naming the holder.
	p.write(noSFTPProject("2", "4s"))
	first, firstOut := backgroundApply(t, p)
	untilLocked(t, h3, "nosftp", firstOut)
	p.expect(4, []string{"the deploy lock on h3 is held by", "fleet apply"}, "--hosts", "h3", "apply", "--yes")
	p.expect(0, []string{"h3: locked by", "h2: locked by"}, "lock", "status")
	if err := first.Wait(); err != nil || !strings.Contains(firstOut.String(), "2 changed") {
		t.Fatalf("the first apply: %v\n%s", err, firstOut)
	}
	p.expect(0, []string{"No deploy lock"}, "lock", "status")

	// Its figures, read by one shell.
	stdout, _, code := p.run("--json", "--hosts", "h3", "hosts")
	var reports []struct {
		State     string `json:"state"`
		CPUs      int    `json:"cpus"`
		MemFree   int64  `json:"mem_available"`
		DiskFree  int64  `json:"disk_free"`
		Instances int    `json:"instances"`
	}
	if err := json.Unmarshal([]byte(stdout), &reports); err != nil || code != 0 || len(reports) != 1 {
		t.Fatalf("fleet hosts: exit %d, %v\n%s", code, err, stdout)
	}
	if r := reports[0]; r.State != "ok" || r.CPUs < 1 || r.MemFree <= 0 || r.DiskFree <= 0 || r.Instances != 1 {
		t.Errorf("h3's figures: %+v", r)
	}
}
