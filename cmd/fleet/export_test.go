package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestExportWritesEachFormat(t *testing.T) {
	for format, want := range map[string]string{
		"swarm":      "docker stack deploy",
		"kubernetes": "kind: Deployment",
		"nomad":      `job "shop" {`,
	} {
		out, errOut, code := fleet(t, "--ssh-config", "none", "-f", "../../examples/shop/fleet.yaml", "-i", "../../examples/shop/inventory.yaml", "export", format)
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("export %s: exit %d, %q, stdout without %q", format, code, errOut, want)
		}
	}
}

func TestExportToFile(t *testing.T) {
	dst := filepath.Join(t.TempDir(), "shop.hcl")
	out, errOut, code := fleet(t, "--ssh-config", "none", "-f", "../../examples/shop/fleet.yaml", "-i", "../../examples/shop/inventory.yaml", "export", "nomad", "-o", dst)
	if code != 0 || out != "" || !strings.Contains(errOut, "wrote "+dst) {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	data, err := os.ReadFile(dst)
	if err != nil || !strings.Contains(string(data), `job "shop" {`) {
		t.Errorf("%v: %.200s", err, data)
	}
}

// TestExportSaysHostsIsNotApplied: the export is the whole project
// whatever --hosts says, and says so rather than leave it unsaid.
func TestExportSaysHostsIsNotApplied(t *testing.T) {
	whole, _, _ := fleet(t, "--ssh-config", "none", "-f", "../../examples/shop/fleet.yaml", "-i", "../../examples/shop/inventory.yaml", "export", "swarm")
	out, errOut, code := fleet(t, "--ssh-config", "none", "-f", "../../examples/shop/fleet.yaml", "-i", "../../examples/shop/inventory.yaml", "--hosts", "lb1", "export", "swarm")
	if code != 0 || out != whole || !strings.Contains(errOut, "warning: --hosts lb1 is not applied: the export is the whole project") {
		t.Errorf("exit %d, stderr %q, same output as without --hosts: %v", code, errOut, out == whole)
	}
}

func TestExportUnknownFormatNamesTheThree(t *testing.T) {
	_, errOut, code := fleet(t, "--ssh-config", "none", "-f", "../../examples/shop/fleet.yaml", "-i", "../../examples/shop/inventory.yaml", "export", "compose")
	if code != 1 || !strings.Contains(errOut, `unknown export format "compose": want one of swarm, kubernetes, nomad`) {
		t.Errorf("exit %d: %s", code, errOut)
	}
}

// TestExportOfAnInvalidFileSaysWhatValidateSays: the same errors, the
// same words, nothing written.
func TestExportOfAnInvalidFileSaysWhatValidateSays(t *testing.T) {
	files := map[string]string{
		"inventory.yaml": "hosts:\n  web1: {address: 203.0.113.10, labels: {role: web}}\n",
		"fleet.yaml":     "project: shop\nservices:\n  web:\n    image: nginx:1.27\n    hosts: role=wbe\n    healthcheck: {http: /up, port: 80, timeout: 2}\n",
	}
	_, validateErr, validateCode := inDir(t, files, "validate")
	out, exportErr, exportCode := inDir(t, files, "export", "kubernetes")
	if exportCode != 1 || validateCode != 1 || exportErr != validateErr || out != "" {
		t.Errorf("export: exit %d, stdout %q, stderr:\n%s\nvalidate: exit %d, stderr:\n%s", exportCode, out, exportErr, validateCode, validateErr)
	}
}

func TestExportHelpTeaches(t *testing.T) {
	out, _, code := fleet(t, "export", "--help")
	for _, want := range []string{"swarm", "kubernetes", "nomad", "comment", "Secret values are never written", "-o, --output=FILE"} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("exit %d; help lacks %q:\n%s", code, want, out)
		}
	}
}
