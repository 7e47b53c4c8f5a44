package main

import (
	"bytes"
	"crypto/sha256"
	"debug/elf"
	"go/ast"
	"go/build"
	"go/importer"
	"go/parser"
	"go/token"
	"go/types"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// releaseBuild is the part of goreleaser.yaml that decides what the
// binaries are.
type releaseBuild struct {
	ID           string   `yaml:"id"`
	Main         string   `yaml:"main"`
	Binary       string   `yaml:"binary"`
	Env          []string `yaml:"env"`
	Goos         []string `yaml:"goos"`
	Goarch       []string `yaml:"goarch"`
	Flags        []string `yaml:"flags"`
	Ldflags      []string `yaml:"ldflags"`
	ModTimestamp string   `yaml:"mod_timestamp"`
}

// releaseConfig is every key that goreleaser.yaml uses, each a GoReleaser v2
// key of that name and type. It is read strictly, so that a key misspelt or
// misplaced fails here, at once, where GoReleaser's own check needs minutes
// to build; a new key belongs here once `goreleaser check` has passed it
// (scripts/test runs that check whenever goreleaser.yaml changes). It is
// stricter than GoReleaser here and there: a list is a list, where
// GoReleaser also takes a single string.
type releaseConfig struct {
	Version     int            `yaml:"version"`
	ProjectName string         `yaml:"project_name"`
	Builds      []releaseBuild `yaml:"builds"`
	Archives    []struct {
		Formats      []string `yaml:"formats"`
		NameTemplate string   `yaml:"name_template"`
		Files        []string `yaml:"files"`
	} `yaml:"archives"`
	Checksum struct {
		NameTemplate string `yaml:"name_template"`
	} `yaml:"checksum"`
	Snapshot struct {
		VersionTemplate string `yaml:"version_template"`
	} `yaml:"snapshot"`
	Changelog struct {
		Sort    string `yaml:"sort"`
		Filters struct {
			Exclude []string `yaml:"exclude"`
		} `yaml:"filters"`
	} `yaml:"changelog"`
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

// readRelease reads goreleaser.yaml strictly and checks that its one build
// makes every platform fleet is released for.
func readRelease(t *testing.T) releaseConfig {
	t.Helper()
	raw, err := os.ReadFile("../../goreleaser.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var cfg releaseConfig
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err != nil {
		t.Fatalf("goreleaser.yaml: %v", err)
	}
	if cfg.Version != 2 {
		t.Errorf("goreleaser.yaml is version %d; this test and scripts/test's goreleaser check know version 2", cfg.Version)
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
	return cfg
}

func TestReleaseConfig(t *testing.T) { readRelease(t) }

func TestReleaseBuild(t *testing.T) {
	b := readRelease(t).Builds[0]

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
	// Every other system of the release compiles too, once per system:
	// the project's code has no file of its own per processor
	// (TestNoCodePerProcessor). Type-checked, not built: in a pure Go
	// program (CGO_ENABLED=0) what fails one system's build and not
	// another's is a type error (a file for some systems only, a syscall
	// field Linux alone has), and a cold cross build of the standard
	// library costs a minute and a half of CPU where this costs seconds.
	for _, goos := range b.Goos {
		if goos != runtime.GOOS {
			typeCheck(t, b, goos, b.Goarch[len(b.Goarch)-1])
		}
	}
}

// typeCheck type-checks fleet's main package and, from source, everything
// it imports, as b builds it for goos/goarch.
func typeCheck(t *testing.T, b releaseBuild, goos, goarch string) {
	t.Helper()
	// The source importer reads build.Default.
	defer func(saved build.Context) { build.Default = saved }(build.Default)
	ctx := build.Default
	ctx.GOOS, ctx.GOARCH, ctx.CgoEnabled = goos, goarch, !slices.Contains(b.Env, "CGO_ENABLED=0")
	// A test built with -trimpath does not know where Go is; go does.
	goroot, err := exec.Command("go", "env", "GOROOT").Output()
	if err != nil {
		t.Fatalf("go env GOROOT: %v", err)
	}
	ctx.GOROOT = strings.TrimSpace(string(goroot))
	build.Default = ctx
	pkg, err := ctx.ImportDir(filepath.Join("../..", b.Main), 0)
	if err != nil {
		t.Fatalf("%s/%s: %v", goos, goarch, err)
	}
	fset := token.NewFileSet()
	var files []*ast.File
	for _, name := range pkg.GoFiles {
		f, err := parser.ParseFile(fset, filepath.Join(pkg.Dir, name), nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	conf := types.Config{Importer: importer.ForCompiler(fset, "source", nil)}
	if _, err := conf.Check(pkg.ImportPath, fset, files, nil); err != nil {
		t.Errorf("fleet does not compile for %s/%s: %v", goos, goarch, err)
	}
}

// TestNoCodePerProcessor keeps true what TestReleaseBuild counts on: no
// source file of the project is for one processor alone.
func TestNoCodePerProcessor(t *testing.T) {
	out, err := exec.Command("go", "list", "-f", `{{.Dir}} {{join .IgnoredGoFiles " "}}`, "../../...").Output()
	if err != nil {
		t.Fatal(err)
	}
	arch := regexp.MustCompile(`(_|\b)(386|amd64|arm|arm64|loong64|mips\w*|ppc64\w*|riscv64|s390x|wasm)\b`)
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		for _, name := range f[1:] {
			head, _, _ := strings.Cut(string(read(t, filepath.Join(f[0], name))), "package ")
			if arch.MatchString(strings.TrimSuffix(name, ".go")) || arch.MatchString(head) {
				t.Errorf("%s is for some processors only: check each of the release's processors in TestReleaseBuild", filepath.Join(f[0], name))
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
