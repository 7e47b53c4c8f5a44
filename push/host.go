package push

import (
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/fleetdeploy/fleet/executor"
	"github.com/fleetdeploy/fleet/plan"
)

// Host is what a push needs of a host: its engine, and a place to record
// what it brought there, for fleet prune.
type Host interface {
	Host() string
	Images(ctx context.Context) ([]executor.Image, error)
	Platform(ctx context.Context) (string, error)
	ImageInspect(ctx context.Context, ref string) (*executor.Image, error)
	// DiskFree is the space free for the engine, in bytes.
	DiskFree(ctx context.Context) (int64, error)
	Load(ctx context.Context, r io.Reader) error
	// RecordImage records that the push brought image id to the host as
	// ref; nil when there is no project to record it for.
	RecordImage(ctx context.Context, id, ref string) error
}

// Sent is what one image cost one host.
type Sent struct {
	Image string `json:"image"`
	ID    string `json:"id"`
	// Bytes is what the host was sent: the tar, without the layers it had.
	Bytes int64 `json:"bytes_sent"`
	// Layers is the image's count; Shared, how many of them the host had.
	Layers int `json:"layers"`
	Shared int `json:"layers_there"`
	// Already is an image the host held, tag included: nothing was sent.
	Already bool `json:"already_there,omitempty"`
	// Whole is an image sent whole after the host's engine did not take
	// the short tar; Why says why.
	Whole bool   `json:"whole,omitempty"`
	Why   string `json:"why_whole,omitempty"`
	// Warning is what went wrong after the image was loaded.
	Warning string `json:"warning,omitempty"`
}

// Options change how images are sent.
type Options struct {
	// Gzip compresses what is sent (at gzip's fastest level, which every
	// engine's load reads): worth it on a link slower than about 25 MB/s,
	// a waste of CPU on a LAN (BENCHMARKS.md).
	Gzip bool
	// Sending, when not nil, is told of the bytes as they go, from
	// another goroutine.
	Sending func(n int64)
}

// ToHost sends the images to h, one after the other, and says what each
// cost. It stops at the first image the host could not be given.
func ToHost(ctx context.Context, h Host, images []*Image, opts Options) ([]Sent, error) {
	platform, err := h.Platform(ctx)
	if err != nil {
		return nil, err
	}
	held, err := h.Images(ctx)
	if err != nil {
		return nil, err
	}
	var sent []Sent
	for _, img := range images {
		if !samePlatform(img.Platform, platform) {
			return sent, fmt.Errorf("image %s is for %s and host %s runs %s: build it for %s (docker build --platform %s)", img.Ref, img.Platform, h.Host(), platform, platform, platform)
		}
		s, err := toHost(ctx, h, img, held, opts)
		if err != nil {
			return sent, err
		}
		sent = append(sent, s)
		held = append(held, executor.Image{ID: img.ID, Layers: img.Layers, RepoTags: []string{img.Ref}})
	}
	return sent, nil
}

func toHost(ctx context.Context, h Host, img *Image, held []executor.Image, opts Options) (Sent, error) {
	s := Sent{Image: img.Ref, ID: img.ID, Layers: len(img.Layers)}
	chains := make([][]string, len(held))
	hadIt := false // under another name: the load only tags it
	for i, hi := range held {
		chains[i] = hi.Layers
		if hi.ID != img.ID {
			continue
		}
		hadIt = true
		if img.Ref == img.ID || slices.ContainsFunc(hi.RepoTags, func(t string) bool { return sameRef(t, img.Ref) }) {
			s.Already, s.Shared = true, len(img.Layers)
			return s, nil
		}
	}
	s.Shared = img.Shared(chains)
	if err := roomFor(ctx, h, img, img.Cost(held)); err != nil {
		return s, err
	}
	var err error
	s.Bytes, err = load(ctx, h, img, s.Shared, opts)
	if err == nil {
		err = check(ctx, h, img)
	}
	if err != nil && s.Shared > 0 && ctx.Err() == nil {
		// An engine that reported the load done but left the image
		// incomplete, or refused the layers it was not given: once
		// more with everything.
		s.Whole, s.Why = true, err.Error()
		var whole int64
		whole, err = load(ctx, h, img, 0, opts)
		s.Bytes += whole
		if err == nil {
			err = check(ctx, h, img)
		}
	}
	if err != nil {
		return s, err
	}
	// An image the host had before is not fleet's to prune, as with a
	// pull that found it there.
	if hadIt {
		return s, nil
	}
	if err := h.RecordImage(ctx, img.ID, img.Ref); err != nil {
		s.Warning = fmt.Sprintf("fleet prune will not remove %s from this host: %v", img.Ref, err)
	}
	return s, nil
}

// roomFor makes sure the host has room for what the image brings, before
// anything is sent: the engine unpacks a loaded tar to a temporary
// directory before it registers its layers, so for a moment the new layers
// take twice their size.
func roomFor(ctx context.Context, h Host, img *Image, bytes int64) error {
	free, err := h.DiskFree(ctx)
	if err != nil {
		return err
	}
	if need := 2 * bytes; free < need {
		return fmt.Errorf("only %s free for Docker, and image %s needs about %s there (%s of layers the host lacks, unpacked, then registered): free space first (fleet prune removes what fleet brought that nothing needs)",
			plan.SizeText(free), img.Ref, plan.SizeText(need), plan.SizeText(bytes))
	}
	return nil
}

// load sends the image's tar without the files of its first skip layers,
// streamed as it is made, and returns the bytes sent.
func load(ctx context.Context, h Host, img *Image, skip int, opts Options) (int64, error) {
	pr, pw := io.Pipe()
	go func() {
		var w io.Writer = pw
		var zw *gzip.Writer
		if opts.Gzip {
			zw, _ = gzip.NewWriterLevel(pw, gzip.BestSpeed)
			w = zw
		}
		_, err := img.WriteTar(w, skip)
		if zw != nil && err == nil {
			err = zw.Close()
		}
		pw.CloseWithError(err)
	}()
	c := &counter{r: pr, sending: opts.Sending}
	err := h.Load(ctx, c)
	pr.CloseWithError(io.ErrClosedPipe) // the writer stops, if the load ended early
	return c.n.Load(), err
}

// check makes sure the host holds the image whole, under its name: an
// engine may report a load done that left it without a layer.
func check(ctx context.Context, h Host, img *Image) error {
	got, err := h.ImageInspect(ctx, img.ID)
	if err != nil {
		return fmt.Errorf("the host's engine did not keep image %s after loading it: %w", img.Ref, err)
	}
	if !slices.Equal(got.Layers, img.Layers) {
		return fmt.Errorf("the host's engine loaded image %s with %d of its %d layers", img.Ref, len(got.Layers), len(img.Layers))
	}
	if img.Ref != img.ID {
		if tagged, err := h.ImageInspect(ctx, img.Ref); err != nil || tagged.ID != img.ID {
			return fmt.Errorf("the host's engine loaded image %s but did not tag it so", img.Ref)
		}
	}
	return nil
}

// samePlatform compares os/architecture; a variant (v7, v8) is not
// always said by an engine.
func samePlatform(a, b string) bool {
	cut := func(p string) string {
		parts := strings.SplitN(p, "/", 3)
		return strings.Join(parts[:min(2, len(parts))], "/")
	}
	return cut(a) == cut(b)
}

// sameRef says whether tag, as an engine lists it, is ref.
func sameRef(tag, ref string) bool {
	if _, t := executor.SplitRef(ref); t == "" {
		ref += ":latest"
	}
	return tag == ref || tag == "docker.io/"+ref || tag == "docker.io/library/"+ref
}

// counter counts the bytes read through it; the load reads in a
// goroutine of its own.
type counter struct {
	r       io.Reader
	n       atomic.Int64
	sending func(int64)
}

func (c *counter) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	if c.sending != nil && n > 0 {
		c.sending(int64(n))
	}
	return n, err
}
