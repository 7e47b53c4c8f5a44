package main

import (
	"context"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"

	"github.com/alecthomas/kong"
	"gopkg.in/yaml.v3"

	"github.com/fleetdeploy/fleet/export"
	"github.com/fleetdeploy/fleet/inventory"
)

type completionCmd struct {
	Shell string `arg:"" enum:"bash,zsh,fish" help:"bash, zsh or fish."`
}

// The scripts ask fleet itself (fleet __complete) for the words that may
// come next: commands, flags, service names from fleet.yaml, host and
// group names from the inventory. Where it has none (a file's name), the
// shell completes file names.
const (
	bashCompletion = `# fleet's completion for bash: source <(fleet completion bash)
_fleet() {
  local IFS=$'\n'
  COMPREPLY=($(fleet __complete -- "${COMP_WORDS[@]:1:COMP_CWORD}" 2>/dev/null))
}
complete -o default -F _fleet fleet
`
	zshCompletion = `#compdef fleet
# fleet's completion for zsh: source <(fleet completion zsh), after compinit
_fleet() {
  local -a candidates
  candidates=("${(@f)$(fleet __complete -- "${(@)words[2,CURRENT]}" 2>/dev/null)}")
  if [[ -n "${candidates[1]}" ]]; then
    compadd -Q -- "${candidates[@]}"
  else
    _files
  fi
}
compdef _fleet fleet
`
	fishCompletion = `# fleet's completion for fish: fleet completion fish | source
complete -c fleet -f -a '(fleet __complete -- (commandline -opc)[2..-1] (commandline -ct) 2>/dev/null; or __fish_complete_path (commandline -ct))'
`
)

func (c *completionCmd) Run(out *output) error {
	script := map[string]string{"bash": bashCompletion, "zsh": zshCompletion, "fish": fishCompletion}[c.Shell]
	_, err := fmt.Fprint(out.stdout, script)
	return err
}

// completeCmd prints the words that may complete the last of words, one
// a line: what the completion scripts call.
type completeCmd struct {
	Words []string `arg:"" optional:"" passthrough:""`
}

func (c *completeCmd) Run(ctx context.Context, kctx *kong.Context, out *output) error {
	words := c.Words
	if len(words) > 0 && words[0] == "--" {
		words = words[1:]
	}
	if len(words) == 0 {
		words = []string{""}
	}
	typed := words[len(words)-1]
	// bash takes "=" apart: --hosts=h1 comes as --hosts, =, h1.
	var before []string
	for _, w := range words[:len(words)-1] {
		if w != "=" {
			before = append(before, w)
		}
	}
	// zsh and fish keep --hosts=h1 whole: the words offered keep the flag.
	prefix := ""
	if flag, value, ok := strings.Cut(typed, "="); ok && strings.HasPrefix(flag, "-") {
		before, typed, prefix = append(before, flag), value, flag+"="
	}

	node := kctx.Model.Node
	file, inv := os.Getenv("FLEET_FILE"), os.Getenv("FLEET_INVENTORY")
	if file == "" {
		file = "fleet.yaml"
	}
	if inv == "" {
		inv = "inventory.yaml"
	}
	args := 0
	var valueOf *kong.Flag // the flag whose value is being typed
	for i := 0; i < len(before); i++ {
		w := before[i]
		valueOf = nil
		switch {
		case w == "--":
			return silentError{1, ""} // the rest is a command's own
		case strings.HasPrefix(w, "-"):
			name, value, hasValue := strings.Cut(w, "=")
			f := flagNamed(node, name)
			if f == nil || f.IsBool() || hasValue {
				if f != nil && hasValue {
					file, inv = fileFlags(f, value, file, inv)
				}
				continue
			}
			if i+1 < len(before) {
				file, inv = fileFlags(f, before[i+1], file, inv)
				i++
			} else {
				valueOf = f
			}
		default:
			if child := childNamed(node, w); child != nil {
				node, args = child, 0
			} else {
				args++
			}
		}
	}

	var candidates []string
	switch {
	case valueOf != nil:
		switch {
		case len(valueOf.Enum) > 0:
			candidates = strings.Split(valueOf.Enum, ",")
		case valueOf.Name == "hosts":
			candidates = hostNames(inv)
		}
	case strings.HasPrefix(typed, "-"):
		for n := node; n != nil; n = n.Parent {
			for _, f := range n.Flags {
				if !f.Hidden {
					candidates = append(candidates, "--"+f.Name)
				}
			}
		}
	case len(node.Children) > 0:
		for _, child := range node.Children {
			if !child.Hidden {
				candidates = append(candidates, child.Name)
			}
		}
	case args < len(node.Positional) && node.Positional[args].Name == "service":
		candidates = servicesIn(file)
	case args < len(node.Positional) && node.Name == "export" && node.Positional[args].Name == "format":
		candidates = export.Formats
	case args < len(node.Positional) && len(node.Positional[args].Enum) > 0:
		candidates = strings.Split(node.Positional[args].Enum, ",")
	}
	offered := 0
	for _, w := range candidates {
		if strings.HasPrefix(w, typed) {
			fmt.Fprintln(out.stdout, prefix+w)
			offered++
		}
	}
	if offered == 0 {
		// The scripts then complete file names.
		return silentError{1, ""}
	}
	return nil
}

func flagNamed(node *kong.Node, name string) *kong.Flag {
	for n := node; n != nil; n = n.Parent {
		for _, f := range n.Flags {
			if name == "--"+f.Name || (f.Short != 0 && name == "-"+string(f.Short)) {
				return f
			}
		}
	}
	return nil
}

func childNamed(node *kong.Node, name string) *kong.Node {
	for _, child := range node.Children {
		if child.Name == name || slices.Contains(child.Aliases, name) {
			return child
		}
	}
	return nil
}

// fileFlags follows -f and -i on the line being completed: the services
// and hosts offered are those of the files named there.
func fileFlags(f *kong.Flag, value, file, inv string) (string, string) {
	switch f.Name {
	case "file":
		return value, inv
	case "inventory":
		return file, value
	}
	return file, inv
}

// servicesIn are the services of the fleet.yaml at path, read for their
// names alone: a file with mistakes elsewhere still offers them.
func servicesIn(path string) []string {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	var doc struct {
		Services map[string]yaml.Node `yaml:"services"`
	}
	if yaml.Unmarshal(data, &doc) != nil {
		return nil
	}
	return slices.Sorted(maps.Keys(doc.Services))
}

// hostNames are what --hosts may name in the inventory at path: its hosts,
// and its groups as group=NAME.
func hostNames(path string) []string {
	inv, err := inventory.Load(path, inventory.Options{SSHConfig: "none"})
	if err != nil {
		return nil
	}
	var names []string
	for _, h := range inv.Hosts {
		names = append(names, h.Name)
	}
	for _, g := range slices.Sorted(maps.Keys(inv.Groups)) {
		names = append(names, "group="+g)
	}
	return names
}
