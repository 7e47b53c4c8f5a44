package main

import (
	"bytes"
	"crypto/sha256"
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// releaseBuild is the part of goreleaser.yaml that decides what the
// binaries are.
type releaseBuild struct {
	Main    string   `yaml:"main"`
	Env     []string `yaml:"env"`
	Goos    []string `yaml:"goos"`
	Goarch  []string `yaml:"goarch"`
	Flags   []string `yaml:"flags"`
	Ldflags []string `yaml:"ldflags"`
}

// goBuild builds fleet as goreleaser would with b, for goos/goarch, into dir.
func goBuild(t *testing.T, b releaseBuild, goos, goarch, dir string) string {
	t.Helper()
	stamp := strings.NewReplacer("{{.Version}}", "1.2.3", "{{.Commit}}", "0123abc", "{{.CommitDate}}", "2026-01-02T03:04:05Z")
	out := filepath.Join(dir, "fleet")
	args := append([]string{"build"}, b.Flags...)
	args = append(args, "-ldflags", stamp.Replace(strings.Join(b.Ldflags, " ")), "-o", out, "./"+strings.TrimPrefix(b.Main, "./"))
	cmd := exec.Command("go", args...)
	cmd.Dir = "../.."
	cmd.Env = append(append(os.Environ(), b.Env...), "GOOS="+goos, "GOARCH="+goarch)
	if msg, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, msg)
	}
	return out
}

func TestReleaseBuild(t *testing.T) {
	raw, err := os.ReadFile("../../goreleaser.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		Builds []releaseBuild `yaml:"builds"`
	}
	if err := yaml.Unmarshal(raw, &cfg); err != nil {
		t.Fatal(err)
	}
	if len(cfg.Builds) != 1 {
		t.Fatalf("goreleaser.yaml has %d builds, want 1", len(cfg.Builds))
	}
	b := cfg.Builds[0]
	want := map[string]bool{"linux/amd64": false, "linux/arm64": false, "darwin/amd64": false, "darwin/arm64": false}
	for _, os := range b.Goos {
		for _, arch := range b.Goarch {
			want[os+"/"+arch] = true
		}
	}
	for p, ok := range want {
		if !ok {
			t.Errorf("goreleaser.yaml does not build %s", p)
		}
	}

	// Two builds in different directories are identical: reproducible.
	first := goBuild(t, b, "linux", "amd64", t.TempDir())
	second := goBuild(t, b, "linux", "amd64", t.TempDir())
	if sum(t, first) != sum(t, second) {
		t.Error("two release builds of the same tree differ")
	}
	if bytes.Contains(read(t, first), []byte(mustAbs(t, "../.."))) {
		t.Error("the release binary contains the build directory's path")
	}

	// Static: no program interpreter, no shared libraries.
	f, err := elf.Open(first)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Error("release binary is dynamically linked (has PT_INTERP)")
		}
	}
	if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
		t.Errorf("release binary needs %v", libs)
	}

	// The version is stamped where "fleet version" reads it.
	out, err := exec.Command(first, "version").Output()
	if err != nil {
		t.Fatal(err)
	}
	if got := string(out); !strings.HasPrefix(got, "fleet 1.2.3 (commit 0123abc, built 2026-01-02T03:04:05Z,") {
		t.Errorf("fleet version says %q", got)
	}

	if testing.Short() {
		return
	}
	for _, goos := range b.Goos {
		for _, goarch := range b.Goarch {
			if goos+"/"+goarch != "linux/amd64" {
				goBuild(t, b, goos, goarch, t.TempDir())
			}
		}
	}
}

func read(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func sum(t *testing.T, path string) [32]byte { return sha256.Sum256(read(t, path)) }

func mustAbs(t *testing.T, path string) string {
	t.Helper()
	abs, err := filepath.Abs(path)
	if err != nil {
		t.Fatal(err)
	}
	return abs
}
