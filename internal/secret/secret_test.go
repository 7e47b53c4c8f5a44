package secret

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fleetdeploy/fleet/plan"
)

func TestRead(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "token")
	os.WriteFile(file, []byte("from-file\n"), 0o600)
	t.Setenv("FLEET_TEST_SECRET", "from env $(not run)")
	for _, c := range []struct {
		ref  plan.SecretRef
		want string
		err  string
	}{
		{ref: plan.SecretRef{Source: "env", Ref: "FLEET_TEST_SECRET"}, want: "from env $(not run)"},
		{ref: plan.SecretRef{Source: "env", Ref: "FLEET_TEST_UNSET_SECRET"}, err: "is not set"},
		{ref: plan.SecretRef{Source: "file", Ref: file}, want: "from-file"},
		{ref: plan.SecretRef{Source: "file", Ref: filepath.Join(dir, "none")}, err: "no such file"},
		{ref: plan.SecretRef{Source: "cmd", Ref: "printf 'a b\\n'"}, want: "a b"},
		{ref: plan.SecretRef{Source: "cmd", Ref: "echo oops >&2; exit 3"}, err: "oops"},
	} {
		got, err := Read(context.Background(), c.ref)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%v: error %v, want %q", c.ref, err, c.err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("%v: %q %v, want %q", c.ref, got, err, c.want)
		}
	}
}
