package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
)

func fleet(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(context.Background(), args, &out, &errb)
	return out.String(), errb.String(), code
}

func TestHelpListsCommandsWithExamples(t *testing.T) {
	out, _, code := fleet(t, "--help")
	if code != 0 {
		t.Fatalf("fleet --help exited %d", code)
	}
	for _, want := range []string{"Commands:", "validate", "inventory", "init", "version", "Print fleet's version", "Examples:", "fleet version --json", "fleet validate -f"} {
		if !strings.Contains(out, want) {
			t.Errorf("fleet --help lacks %q:\n%s", want, out)
		}
	}
}

func TestUnknownCommandHints(t *testing.T) {
	_, errOut, code := fleet(t, "deploy")
	if code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
	if !strings.Contains(errOut, "fleet: error: unexpected argument deploy") || !strings.Contains(errOut, "fleet: hint:") {
		t.Errorf("stderr: %q", errOut)
	}
}

func TestVersionJSON(t *testing.T) {
	out, _, code := fleet(t, "version", "--json")
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	var b buildInfo
	if err := json.Unmarshal([]byte(out), &b); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, out)
	}
	if b.Version == "" || b.Go == "" || b.Platform == "" {
		t.Errorf("incomplete: %+v", b)
	}
}

func TestVersionFlagSaysWhatVersionSays(t *testing.T) {
	flag, _, code := fleet(t, "--version")
	if code != 0 {
		t.Fatalf("fleet --version exited %d", code)
	}
	cmd, _, _ := fleet(t, "version")
	if flag != cmd || !strings.HasPrefix(flag, "fleet ") {
		t.Errorf("fleet --version says %q, fleet version %q", flag, cmd)
	}
}
