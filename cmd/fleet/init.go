package main

import (
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

//go:embed starter
var starter embed.FS

type initCmd struct {
	Dir   string `default:"." help:"Where to write the files."`
	Force bool   `help:"Overwrite files that exist."`
}

func (c *initCmd) Run(out *output) error {
	files := []string{"fleet.yaml", "inventory.yaml"}
	if !c.Force {
		for _, f := range files {
			if _, err := os.Stat(filepath.Join(c.Dir, f)); err == nil {
				return fmt.Errorf("%s exists; fleet init writes nothing over it (--force does)", filepath.Join(c.Dir, f))
			}
		}
	}
	for _, f := range files {
		data, err := fs.ReadFile(starter, "starter/"+f)
		if err != nil {
			return err
		}
		dst := filepath.Join(c.Dir, f)
		if err := os.WriteFile(dst, data, 0o644); err != nil {
			return errors.Join(fmt.Errorf("writing %s", dst), err)
		}
		fmt.Fprintf(out.stdout, "wrote %s\n", dst)
	}
	fmt.Fprintln(out.stdout, "next: edit both files, then run \"fleet validate\"")
	return nil
}
