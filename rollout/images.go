package rollout

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strings"

	"github.com/fleetdeploy/fleet/executor"
)

// A run records on a host each image it brought there: one file per image
// ID, beside the history, holding the references it was pulled by. Only
// an image that was not on the host before (or that the pull moved a tag
// to) is recorded: an image the host had already is someone else's, and
// fleet prune never touches it.

func imagesDir(c *executor.Conn, project string) string {
	return path.Join(StateDir(c, project), "images")
}

// imageFile names the record of image id, or "" for what is no image ID:
// the name comes from the engine's answer, and names a file.
func imageFile(c *executor.Conn, project, id string) string {
	hex := strings.TrimPrefix(id, "sha256:")
	if len(hex) != 64 || !containerID(hex) {
		return ""
	}
	return path.Join(imagesDir(c, project), hex)
}

// RecordImage records on the host behind c that fleet brought image id
// there as ref, for project: fleet prune removes only what is recorded.
// The rollout records what it pulls; fleet push, what it sends.
func RecordImage(ctx context.Context, c *executor.Conn, project, id, ref string) error {
	return recordImage(ctx, c, project, id, ref)
}

// recordImage adds ref to the record of image id on c.
func recordImage(ctx context.Context, c *executor.Conn, project, id, ref string) error {
	file := imageFile(c, project, id)
	if file == "" {
		return fmt.Errorf("host %s: %q is no image ID", c.Host(), id)
	}
	refs, err := readImageRecord(ctx, c, file)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if slices.Contains(refs, ref) {
		return nil
	}
	b, _ := json.Marshal(imageRecord{Refs: append(refs, ref)})
	if err := c.MkdirAll(ctx, path.Dir(file)); err != nil {
		return err
	}
	return c.WriteFile(ctx, file, strings.NewReader(string(b)+"\n"), 0o600)
}

type imageRecord struct {
	Refs []string `json:"refs"`
}

func readImageRecord(ctx context.Context, c *executor.Conn, file string) ([]string, error) {
	b, err := c.ReadFile(ctx, file)
	if err != nil {
		return nil, err
	}
	var r imageRecord
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("%s: %w: remove the file, and fleet prune leaves that image alone", file, err)
	}
	return r.Refs, nil
}

// readImageRecords reads every image record of the project on c: the
// references fleet pulled, by image ID.
func readImageRecords(ctx context.Context, c *executor.Conn, project string) (map[string][]string, error) {
	names, err := c.ReadDir(ctx, imagesDir(c, project))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	out := map[string][]string{}
	for _, name := range names {
		id := "sha256:" + name
		file := imageFile(c, project, id)
		if file == "" {
			continue
		}
		refs, err := readImageRecord(ctx, c, file)
		if err != nil {
			return nil, err
		}
		out[id] = refs
	}
	return out, nil
}

// Pruned is what fleet prune removed on a host, or would remove.
type Pruned struct {
	Containers []PrunedContainer `json:"containers"`
	Images     []PrunedImage     `json:"images"`
	// Freed is the bytes the removals freed on the host's disk, measured
	// by the engine before and after; for a dry run, the bytes of the
	// images' own layers (layers the images to remove share among
	// themselves come on top).
	Freed int64 `json:"freed_bytes"`
}

// PrunedContainer is a stopped container pruned.
type PrunedContainer struct {
	Name    string `json:"name"`
	ID      string `json:"id"`
	Service string `json:"service"`
	Why     string `json:"why"`
}

// PrunedImage is an image fleet brought to the host that nothing needs
// any more: removed, or kept because someone else tagged it too.
type PrunedImage struct {
	ID      string   `json:"id"`
	Refs    []string `json:"refs"`
	Bytes   int64    `json:"bytes"` // of layers no other image shares
	Removed bool     `json:"removed"`
	// Kept says why an image that fleet no longer needs stays.
	Kept string `json:"kept,omitempty"`
}

// Prune removes on c the given stopped containers of the project (the
// ones fleet.yaml has no place for), and
// then every image fleet brought there (for this project) that no
// container on the host uses, that no kept revision of any project on
// the host names, and that keep does not name (the images fleet.yaml asks
// for). An image tagged by someone else as well stays, and is said. With
// dryRun, it removes nothing and says what it would.
func Prune(ctx context.Context, c *executor.Conn, project string, stopped []PrunedContainer, keep []string, dryRun bool) (*Pruned, error) {
	eng := c.Engine()
	out := &Pruned{Containers: []PrunedContainer{}, Images: []PrunedImage{}}
	gone := map[string]bool{}
	for _, ctr := range stopped {
		if !dryRun {
			// Without force: a container started since the host was read
			// is refused, and stays.
			if err := eng.Remove(ctx, ctr.ID, false); err != nil && !errors.Is(err, executor.ErrNotFound) {
				return out, err
			}
		}
		gone[ctr.ID] = true
		out.Containers = append(out.Containers, ctr)
	}
	records, err := readImageRecords(ctx, c, project)
	if err != nil {
		return out, fmt.Errorf("reading the images fleet brought: %w", err)
	}
	if len(records) == 0 {
		return out, nil
	}
	needed := map[string]bool{}
	all, err := eng.List(ctx, nil)
	if err != nil {
		return out, err
	}
	for _, ctr := range all {
		if !gone[ctr.ID] {
			needed[ctr.ImageID] = true
		}
	}
	kept, err := keptImages(ctx, c)
	if err != nil {
		return out, err
	}
	for _, ref := range append(kept, keep...) {
		img, err := eng.ImageInspect(ctx, ref)
		if err == nil {
			needed[img.ID] = true
		} else if !errors.Is(err, executor.ErrNotFound) {
			return out, err
		}
	}
	type candidate struct {
		img  *executor.Image
		refs []string
	}
	var candidates []candidate
	var stale []string
	for id, refs := range records {
		if needed[id] {
			continue
		}
		img, err := eng.ImageInspect(ctx, id)
		if errors.Is(err, executor.ErrNotFound) {
			stale = append(stale, id)
			continue
		}
		if err != nil {
			return out, err
		}
		// Only the references that still name this image are fleet's to
		// remove: a tag moved to another image since is not.
		var own []string
		for _, ref := range refs {
			if named, err := eng.ImageInspect(ctx, ref); err == nil && named.ID == id {
				own = append(own, ref)
			}
		}
		candidates = append(candidates, candidate{img, own})
	}
	slices.SortFunc(candidates, func(a, b candidate) int { return a.img.Created.Compare(b.img.Created) })
	if len(candidates) == 0 && len(stale) == 0 {
		return out, nil
	}
	before, err := eng.DiskUsage(ctx)
	if err != nil {
		return out, err
	}
	for _, cand := range candidates {
		p := PrunedImage{ID: cand.img.ID, Refs: cand.refs, Bytes: before.Images[cand.img.ID]}
		if p.Refs == nil {
			p.Refs = []string{}
		}
		var others []string
		for _, tag := range cand.img.RepoTags {
			if !slices.ContainsFunc(cand.refs, func(ref string) bool { return familiar(ref) == familiar(tag) }) {
				others = append(others, tag)
			}
		}
		switch {
		case len(others) > 0:
			p.Kept = "also tagged " + strings.Join(others, ", ")
		case dryRun:
			p.Removed = true
			out.Freed += p.Bytes
		default:
			if err := removeImage(ctx, eng, cand.img.ID, cand.refs); err != nil {
				out.Images = append(out.Images, p)
				return out, err
			}
			p.Removed = true
			stale = append(stale, cand.img.ID)
		}
		out.Images = append(out.Images, p)
	}
	if dryRun {
		return out, nil
	}
	for _, id := range stale {
		if err := c.RemoveAll(ctx, imageFile(c, project, id)); err != nil {
			return out, err
		}
	}
	after, err := eng.DiskUsage(ctx)
	if err != nil {
		return out, err
	}
	out.Freed = max(0, before.Layers-after.Layers)
	return out, nil
}

// removeImage untags refs, which removes the image with the last of them,
// and then the image by its ID if it is left with none (pulled by digest,
// or its tag moved to another image).
func removeImage(ctx context.Context, eng *executor.Engine, id string, refs []string) error {
	for _, ref := range refs {
		if err := eng.RemoveImage(ctx, ref); err != nil && !errors.Is(err, executor.ErrNotFound) {
			return err
		}
	}
	if err := eng.RemoveImage(ctx, id); err != nil && !errors.Is(err, executor.ErrNotFound) {
		return err
	}
	return nil
}

// familiar writes a reference as the engine lists its tags: Docker Hub's
// prefixes left out, and ":latest" where no tag or digest is given.
func familiar(ref string) string {
	ref = strings.TrimPrefix(ref, "docker.io/")
	ref = strings.TrimPrefix(ref, "index.docker.io/")
	ref = strings.TrimPrefix(ref, "library/")
	if name, _ := executor.SplitRef(ref); name == ref {
		ref += ":latest"
	}
	return ref
}

// keptImages reads the image of every revision that any project keeps on
// c: a rollback to any of them must find its image.
func keptImages(ctx context.Context, c *executor.Conn) ([]string, error) {
	root := stateRoot(c)
	projects, err := c.ReadDir(ctx, root)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var refs []string
	for _, project := range projects {
		base := path.Join(root, project, "revisions")
		services, err := c.ReadDir(ctx, base)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		for _, service := range services {
			dir := path.Join(base, service)
			nums, err := listRevisions(ctx, c, dir)
			if err != nil {
				return nil, err
			}
			for _, n := range nums {
				b, err := c.ReadFile(ctx, path.Join(dir, fmt.Sprintf("%d.json", n)))
				if err != nil {
					return nil, err
				}
				var r Revision
				if err := json.Unmarshal(b, &r); err != nil {
					// A record that cannot be read may name any image:
					// nothing is removed rather than the wrong one.
					return nil, fmt.Errorf("%s/%d.json: %w; fix or remove it", dir, n, err)
				}
				if !slices.Contains(refs, r.Template.Image) {
					refs = append(refs, r.Template.Image)
				}
			}
		}
	}
	return refs, nil
}
