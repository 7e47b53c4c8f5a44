package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The completion scripts load in bash, zsh and fish, and offer commands,
// flags, flag values, services from fleet.yaml and hosts from the
// inventory, as each shell asks for them.
func TestCompletionInEveryShell(t *testing.T) {
	for _, sh := range []string{"bash", "zsh", "fish"} {
		if _, err := exec.LookPath(sh); err != nil {
			if testing.Short() {
				t.Skipf("%s is not installed (scripts/deps installs it; scripts/test runs this test)", sh)
			}
			t.Fatalf("%s is not installed: scripts/deps installs it", sh)
		}
	}
	bin := buildFleet(t)
	dir := t.TempDir()
	write(t, filepath.Join(dir, "fleet.yaml"), "project: shop\nservices:\n  web: {image: nginx, hosts: all}\n  worker: {image: busybox, hosts: all}\n")
	write(t, filepath.Join(dir, "inventory.yaml"), "hosts:\n  web1: {address: 192.0.2.1}\n  web2: {address: 192.0.2.2}\ngroups:\n  front: [web1, web2]\n")
	shell := func(sh, script string) string {
		t.Helper()
		cmd := exec.Command(sh, "-c", script)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "PATH="+filepath.Dir(bin)+":"+os.Getenv("PATH"), "HOME="+dir)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s -c %q: %v\n%s", sh, script, err, out)
		}
		return string(out)
	}

	bash := func(words ...string) string {
		t.Helper()
		line := "source <(fleet completion bash); COMP_WORDS=(fleet"
		for _, w := range words {
			line += " '" + w + "'"
		}
		line += "); COMP_CWORD=" + fmt.Sprint(len(words)) + "; _fleet; echo \"${COMPREPLY[*]}\""
		return strings.TrimSpace(shell("bash", line))
	}
	for words, want := range map[string]string{
		"lo":                      "lock logs",
		"logs|":                   "web worker",
		"exec|w":                  "web worker",
		"logs|web|--s":            "--since --slot --ssh-config",
		"status|--hosts|":         "web1 web2 group=front",
		"plan|--host-key-policy|": "strict accept-new off",
		"completion|":             "bash zsh fish",
		"lock|":                   "status release",
		"export|":                 "swarm kubernetes nomad",
		"export|k":                "kubernetes",
	} {
		if got := bash(strings.Split(words, "|")...); got != want {
			t.Errorf("bash: fleet %s<Tab> offers %q, want %q", strings.ReplaceAll(words, "|", " "), got, want)
		}
	}

	if got := shell("zsh", "autoload -U compinit && compinit -u && source <(fleet completion zsh) && print -r -- ${_comps[fleet]}"); strings.TrimSpace(got) != "_fleet" {
		t.Errorf("zsh: fleet's completion function is %q once loaded, want _fleet", got)
	}

	fish := func(line string) string {
		t.Helper()
		return strings.Join(strings.Fields(shell("fish", "fleet completion fish | source; complete -C '"+line+"'")), " ")
	}
	for line, want := range map[string]string{
		"fleet lo":            "lock logs",
		"fleet rollback ":     "web worker",
		"fleet logs --hosts=": "--hosts=group=front --hosts=web1 --hosts=web2", // fish sorts them
	} {
		if got := fish(line); got != want {
			t.Errorf("fish: %q<Tab> offers %q, want %q", line, got, want)
		}
	}
}
