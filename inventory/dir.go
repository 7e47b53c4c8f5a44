package inventory

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/fleetdeploy/fleet/internal/diag"
	"github.com/fleetdeploy/fleet/internal/yamlfile"
)

// An inventory directory ("-i inventory/") is read as Ansible reads one:
// every file in it, in sorted order, subdirectories included, is a source
// of the same inventory, and what later files say of a host or group adds
// to, or overrides, what earlier ones said. Ansible skips hidden names,
// group_vars, host_vars and vars_plugins, and names ending in one of its
// inventory_ignore_extensions; so does fleet. Only the directory's own
// group_vars/ and host_vars/ apply, as for a file those beside it: a
// subdirectory's are not read.
//
// Ansible tries each file with its inventory plugins in turn and passes
// over, with a warning, one that none can read; fleet refuses such a file
// instead, naming it, as it refuses a bad inventory file. What needs
// Ansible to run something (an executable script, an inventory plugin's
// configuration) or a reader fleet lacks (TOML) is refused too, with the
// command that turns it into a static inventory.

// ansibleIgnoredExts are Ansible's default inventory_ignore_extensions:
// files whose names end so are not inventory sources. Its
// inventory_ignore_patterns are empty by default.
var ansibleIgnoredExts = []string{".pyc", ".pyo", ".swp", ".bak", "~", ".rpm", ".md", ".txt", ".rst", ".orig", ".ini", ".cfg", ".retry"}

// ignoredInDir says whether Ansible passes over an entry of an inventory
// directory.
func ignoredInDir(name string) bool {
	switch {
	case strings.HasPrefix(name, "."), name == "group_vars", name == "host_vars", name == "vars_plugins":
		return true
	}
	for _, ext := range ansibleIgnoredExts {
		if strings.HasSuffix(name, ext) {
			return true
		}
	}
	return false
}

// dirReader reads the files of an inventory directory into one Ansible
// inventory.
type dirReader struct {
	a        *ansibleInventory
	errs     *diag.List
	warnings []*diag.Error
	ignored  []string // files ending in .ini that were passed over
}

// loadDir reads and resolves the Ansible inventory directory dir.
func loadDir(dir string, opts Options) (*Inventory, error) {
	errs := &diag.List{}
	r := &dirReader{a: newAnsibleInventory(dir, "ansible-dir", dir), errs: errs}
	r.walk(dir, nil)
	if len(r.a.files) == 0 {
		if errs.Len() == 0 {
			e := errs.Add(diag.Pos{File: dir}, "no inventory file in this directory")
			e.Hint = "put an Ansible inventory (INI or YAML) in it, or give a file with -i FILE"
			if len(r.ignored) > 0 {
				e.Hint = "Ansible passes over files ending in .ini in an inventory directory: give the file itself, -i " + r.ignored[0]
			}
		}
		return nil, errs.Err()
	}
	raw := r.a.finish(errs)
	if raw == nil || errs.Len() > 0 {
		return nil, errs.Err()
	}
	raw.warnings = append(r.warnings, raw.warnings...)
	inv := raw.resolve(opts, errs)
	if err := errs.Err(); err != nil {
		return nil, err
	}
	return inv, nil
}

// walk reads every inventory source in dir, in Ansible's order. ancestors
// are the real paths of the directories above, to stop at a symbolic link
// that leads back up.
func (r *dirReader) walk(dir string, ancestors []string) {
	real, err := filepath.EvalSymlinks(dir)
	if err != nil {
		r.errs.Add(diag.Pos{File: dir}, "%s", pathErr(err))
		return
	}
	if slices.Contains(ancestors, real) {
		r.errs.Add(diag.Pos{File: dir}, "a symbolic link back to a directory above it, which would be read forever")
		return
	}
	entries, err := os.ReadDir(dir) // sorted by name, as Ansible sorts
	if err != nil {
		r.errs.Add(diag.Pos{File: dir}, "%s", pathErr(err))
		return
	}
	for _, e := range entries {
		path := filepath.Join(dir, e.Name())
		if ignoredInDir(e.Name()) {
			if strings.HasSuffix(e.Name(), ".ini") && !strings.HasPrefix(e.Name(), ".") {
				r.ignored = append(r.ignored, path)
				r.warnings = append(r.warnings, &diag.Error{
					Pos:  diag.Pos{File: path},
					Msg:  "not read: Ansible passes over files ending in .ini in an inventory directory",
					Hint: "to have Ansible and fleet read it, rename it without .ini",
				})
			}
			continue
		}
		fi, err := os.Stat(path) // through symbolic links, as Ansible goes
		if err != nil {
			r.errs.Add(diag.Pos{File: path}, "%s", pathErr(err))
			continue
		}
		switch {
		case fi.IsDir():
			r.walk(path, append(ancestors, real))
		case fi.Mode().IsRegular():
			r.file(path, fi)
		default:
			r.errs.Add(diag.Pos{File: path}, "neither a file nor a directory").Hint = "move it out of the inventory directory"
		}
	}
}

// file reads one inventory source of the directory. As Ansible does, a
// file named .yml, .yaml, .json or without extension is read as YAML when
// it is YAML and as INI otherwise; any other file as INI.
func (r *dirReader) file(path string, fi fs.FileInfo) {
	data, err := yamlfile.ReadFile(path)
	var tooLarge *diag.List
	switch {
	case errors.As(err, &tooLarge):
		r.errs.Merge(tooLarge)
		return
	case err != nil:
		r.errs.Add(diag.Pos{File: path}, "%s", pathErr(err))
		return
	}
	if !static(path, fi, data, r.errs) {
		return
	}
	if onlyComments(data) {
		r.a.files = append(r.a.files, path) // Ansible's INI reader takes it, with nothing in it
		return
	}
	top := diag.Pos{File: path, Line: 1, Col: 1}
	format := "ansible-ini"
	switch filepath.Ext(path) {
	case "", ".yml", ".yaml", ".json":
		format = detect(data)
		keys := topKeys(data)
		switch {
		case slices.Contains(keys, "project") && slices.Contains(keys, "services"):
			r.errs.Add(top, "fleet's desired state, not an inventory").Hint = "keep it out of the inventory directory"
			return
		case format == "fleet" && keys != nil:
			r.errs.Add(top, "an inventory in fleet's own format: a directory is read as an Ansible inventory, which fleet's format cannot be part of").Hint =
				"give this file alone, -i " + path + ", or move it out of the directory"
			return
		case format == "fleet":
			format = "ansible-yaml" // neither YAML nor INI: the YAML reader says what is wrong
		}
	}
	if format == "ansible-yaml" {
		r.a.readYAML(path, data, r.errs)
	} else {
		r.a.readINI(path, data, r.errs)
	}
}

// static refuses, with an error in errs, an inventory source that Ansible
// would have to run, or that only a reader fleet lacks understands.
func static(path string, fi fs.FileInfo, data []byte, errs *diag.List) bool {
	top := diag.Pos{File: path, Line: 1, Col: 1}
	convert := "ansible-inventory -i " + path + " --list --yaml > hosts.yml"
	switch {
	case fi.Mode()&0o111 != 0 && (bytes.HasPrefix(data, []byte("#!")) || bytes.HasPrefix(data, []byte("\x7fELF"))):
		errs.Add(top, "an executable inventory script: Ansible would run it to list the hosts; fleet reads static inventories").Hint =
			"save what it lists, " + convert + ", and use that instead of the script"
		return false
	case filepath.Ext(path) == ".toml":
		errs.Add(top, "a TOML inventory: fleet reads Ansible's INI and YAML inventories").Hint = "convert it, " + convert
		return false
	}
	return true
}

// onlyComments says whether a file holds nothing but blank lines and
// comments.
func onlyComments(data []byte) bool {
	for _, line := range strings.Split(string(data), "\n") {
		if t := strings.TrimSpace(line); t != "" && t[0] != '#' && t[0] != ';' {
			return false
		}
	}
	return true
}

// topKeys returns the keys of a YAML mapping at the top of data, or nil
// if data is not one.
func topKeys(data []byte) []string {
	var root yaml.Node
	if yaml.Unmarshal(data, &root) != nil || len(root.Content) == 0 || root.Content[0].Kind != yaml.MappingNode {
		return nil
	}
	keys := []string{}
	for i, n := range root.Content[0].Content {
		if i%2 == 0 {
			keys = append(keys, n.Value)
		}
	}
	return keys
}

// pathErr is what went wrong with a file, without the file's name, which
// the error's position already gives.
func pathErr(err error) string {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	return err.Error()
}
