// Package push copies images from the local Docker engine to hosts, over
// the hosts' SSH connections, each host getting only the layers it lacks.
//
// An image is saved once from the local engine (docker save: the format
// every engine loads). For each host, the layers it already holds on the
// same chain, counted from the base, are left out of the tar it is sent:
// a host's engine looks a layer up by its chain before it reads the
// layer's file, on the classic store (docker load since 1.10) and on the
// containerd store (which skips blobs it is not given). What is loaded is
// checked by its image ID; a host whose engine did not take the short tar
// is sent the whole image once.
package push

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/fleetdeploy/fleet/executor"
)

// Image is an image saved from the local engine, ready to send.
type Image struct {
	Ref string // as the user named it
	ID  string
	// Layers are the image's diff IDs, base first.
	Layers []string
	// LayerSizes are the bytes of each layer's file in the tar.
	LayerSizes []int64
	Platform   string // os/architecture[/variant]
	// Size is the whole tar's.
	Size int64

	file string
	// layerFiles names the tar entry of each layer, from manifest.json.
	layerFiles []string
}

// ErrNoDocker is a machine without the docker command.
var ErrNoDocker = errors.New("the docker command is not installed here: fleet push reads images from the local engine through it")

// docker runs the docker CLI, which finds the local engine as the user's
// docker commands do: DOCKER_HOST, or the current context.
func docker(ctx context.Context, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, "docker", args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if errors.Is(err, exec.ErrNotFound) {
		return nil, ErrNoDocker
	}
	if err != nil {
		msg := strings.TrimSpace(stderr.String())
		if msg == "" {
			msg = err.Error()
		}
		return nil, errors.New(msg)
	}
	return out, nil
}

// Save reads ref from the local engine and saves it in dir.
func Save(ctx context.Context, dir, ref string) (*Image, error) {
	out, err := docker(ctx, "image", "inspect", "--format", "{{json .}}", "--", ref)
	if err != nil {
		switch {
		case errors.Is(err, ErrNoDocker):
			return nil, err
		case strings.Contains(strings.ToLower(err.Error()), "no such image"):
			return nil, fmt.Errorf("image %s is not in the local Docker engine (`docker images` does not list it): build or pull it first", ref)
		case strings.Contains(err.Error(), "Cannot connect to the Docker daemon"), strings.Contains(err.Error(), "error during connect"):
			return nil, fmt.Errorf("no local Docker engine to read image %s from (%v): start it, or point DOCKER_HOST or `docker context use` at one", ref, err)
		}
		return nil, fmt.Errorf("reading image %s from the local Docker engine: %v", ref, err)
	}
	var d struct {
		ID                        string `json:"Id"`
		RootFS                    struct{ Layers []string }
		Os, Architecture, Variant string
	}
	if err := json.Unmarshal(out, &d); err != nil {
		return nil, fmt.Errorf("reading image %s from the local Docker engine: %v", ref, err)
	}
	img := &Image{Ref: ref, ID: d.ID, Layers: d.RootFS.Layers, Platform: d.Os + "/" + d.Architecture}
	if d.Variant != "" {
		img.Platform += "/" + d.Variant
	}
	f, err := os.CreateTemp(dir, "image-*.tar")
	if err != nil {
		return nil, err
	}
	f.Close()
	img.file = f.Name()
	if _, err := docker(ctx, "save", "--output", img.file, "--", ref); err != nil {
		return nil, fmt.Errorf("saving image %s from the local Docker engine: %v", ref, err)
	}
	if err := img.index(); err != nil {
		return nil, fmt.Errorf("the local engine's save of %s: %w", ref, err)
	}
	return img, nil
}

// index reads the saved tar's manifest.json for the file of each layer,
// and the sizes of those files.
func (img *Image) index() error {
	f, err := os.Open(img.file)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	img.Size = st.Size()
	sizes := map[string]int64{}
	var manifest []struct{ Layers []string }
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		name := filepath.Clean(h.Name)
		sizes[name] = h.Size
		if name == "manifest.json" {
			if err := json.NewDecoder(tr).Decode(&manifest); err != nil {
				return fmt.Errorf("manifest.json: %w", err)
			}
		}
	}
	if len(manifest) != 1 || len(manifest[0].Layers) != len(img.Layers) {
		return fmt.Errorf("manifest.json names %d images, the first with %d layers; want one image with the %d layers the engine says", len(manifest), layersOf(manifest), len(img.Layers))
	}
	img.layerFiles = make([]string, len(img.Layers))
	img.LayerSizes = make([]int64, len(img.Layers))
	for i, l := range manifest[0].Layers {
		img.layerFiles[i] = filepath.Clean(l)
		img.LayerSizes[i] = sizes[img.layerFiles[i]]
	}
	return nil
}

func layersOf(m []struct{ Layers []string }) int {
	if len(m) == 0 {
		return 0
	}
	return len(m[0].Layers)
}

// Shared is how many of the image's layers, from the base, a host holds
// already on the same chain: the longest prefix of the image's layers
// that is a prefix of the layers of an image on the host.
func (img *Image) Shared(host [][]string) int {
	best := 0
	for _, layers := range host {
		n := 0
		for n < len(layers) && n < len(img.Layers) && layers[n] == img.Layers[n] {
			n++
		}
		best = max(best, n)
	}
	return best
}

// Cost is what pushing the image would send a host that holds held: the
// tar without the layers the host has on the image's chain, or nothing
// when it holds the image.
func (img *Image) Cost(held []executor.Image) int64 {
	chains := make([][]string, len(held))
	for i, h := range held {
		if h.ID == img.ID {
			return 0
		}
		chains[i] = h.Layers
	}
	n := img.Size
	for _, size := range img.LayerSizes[:img.Shared(chains)] {
		n -= size
	}
	return n
}

// WriteTar writes the saved tar to w without the files of its first skip
// layers, and returns the bytes of layer files it left out.
func (img *Image) WriteTar(w io.Writer, skip int) (left int64, err error) {
	leave := map[string]bool{}
	for _, f := range img.layerFiles[:skip] {
		leave[f] = true
	}
	f, err := os.Open(img.file)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	tr := tar.NewReader(f)
	tw := tar.NewWriter(w)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return left, err
		}
		if leave[filepath.Clean(h.Name)] {
			left += h.Size
			continue
		}
		if err := tw.WriteHeader(h); err != nil {
			return left, err
		}
		if _, err := io.Copy(tw, tr); err != nil {
			return left, err
		}
	}
	return left, tw.Close()
}
