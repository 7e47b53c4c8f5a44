package main

import (
	"encoding/json"
	"fmt"
	"runtime"
	"runtime/debug"
)

// Stamped by the release build (goreleaser.yaml):
// -X main.version=… -X main.commit=… -X main.date=…
var (
	version = ""
	commit  = ""
	date    = ""
)

type versionCmd struct{}

// buildInfo is what "fleet version" reports.
type buildInfo struct {
	Version  string `json:"version"`
	Commit   string `json:"commit"`
	Date     string `json:"date"`
	Go       string `json:"go"`
	Platform string `json:"platform"`
}

// currentBuild fills in what the release build did not stamp from what the
// Go toolchain recorded, so "go install" and "go build" binaries say
// something true too.
func currentBuild() buildInfo {
	b := buildInfo{Version: version, Commit: commit, Date: date, Go: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	if info, ok := debug.ReadBuildInfo(); ok {
		if b.Version == "" && info.Main.Version != "" && info.Main.Version != "(devel)" {
			b.Version = info.Main.Version
		}
		for _, s := range info.Settings {
			switch {
			case s.Key == "vcs.revision" && b.Commit == "":
				b.Commit = s.Value
			case s.Key == "vcs.time" && b.Date == "":
				b.Date = s.Value
			}
		}
	}
	if b.Version == "" {
		b.Version = "dev"
	}
	return b
}

func (c *versionCmd) Run(g *globals, out *output) error {
	b := currentBuild()
	if g.JSON {
		enc := json.NewEncoder(out.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(b)
	}
	_, err := fmt.Fprintln(out.stdout, b)
	return err
}

// String is the line "fleet version" and "fleet --version" print.
func (b buildInfo) String() string {
	commit, date := b.Commit, b.Date
	if commit == "" {
		commit = "unknown"
	}
	if date == "" {
		date = "unknown"
	}
	return fmt.Sprintf("fleet %s (commit %s, built %s, %s %s)", b.Version, commit, date, b.Go, b.Platform)
}
