package push

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/fleetdeploy/fleet/executor"
)

// saved writes a save tar of an image with two layers (100 and 200
// bytes) as docker save does, and returns the image read from it.
func saved(t *testing.T) *Image {
	t.Helper()
	file := filepath.Join(t.TempDir(), "image.tar")
	f, err := os.Create(file)
	if err != nil {
		t.Fatal(err)
	}
	tw := tar.NewWriter(f)
	manifest, _ := json.Marshal([]map[string]any{{"Config": "cfg.json", "RepoTags": []string{"app:2"}, "Layers": []string{"l1/layer.tar", "l2/layer.tar"}}})
	for _, e := range []struct {
		name string
		body string
	}{
		{"l1/layer.tar", strings.Repeat("a", 100)},
		{"l1/json", "{}"},
		{"l2/layer.tar", strings.Repeat("b", 200)},
		{"cfg.json", "{}"},
		{"manifest.json", string(manifest)},
	} {
		if err := tw.WriteHeader(&tar.Header{Name: e.name, Mode: 0o644, Size: int64(len(e.body))}); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(e.body))
	}
	if err := errors.Join(tw.Close(), f.Close()); err != nil {
		t.Fatal(err)
	}
	img := &Image{Ref: "app:2", ID: "sha256:img2", Layers: []string{"sha256:a", "sha256:b"}, Platform: "linux/amd64", file: file}
	if err := img.index(); err != nil {
		t.Fatal(err)
	}
	return img
}

func TestIndexAndWriteTar(t *testing.T) {
	img := saved(t)
	if !slices.Equal(img.LayerSizes, []int64{100, 200}) {
		t.Errorf("layer sizes %v, want [100 200]", img.LayerSizes)
	}
	for skip, want := range map[int][]string{
		0: {"l1/layer.tar", "l1/json", "l2/layer.tar", "cfg.json", "manifest.json"},
		1: {"l1/json", "l2/layer.tar", "cfg.json", "manifest.json"},
		2: {"l1/json", "cfg.json", "manifest.json"},
	} {
		pr, pw := io.Pipe()
		done := make(chan int64)
		go func() {
			left, err := img.WriteTar(pw, skip)
			pw.CloseWithError(err)
			done <- left
		}()
		got := entries(t, pr)
		io.Copy(io.Discard, pr)
		left := <-done
		if !slices.Equal(got, want) {
			t.Errorf("skipping %d layers: %v, want %v", skip, got, want)
		}
		if wantLeft := []int64{0, 100, 300}[skip]; left != wantLeft {
			t.Errorf("skipping %d layers left out %d bytes, want %d", skip, left, wantLeft)
		}
	}
}

func entries(t *testing.T, r io.Reader) []string {
	t.Helper()
	var names []string
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return names
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, h.Name)
	}
}

func TestShared(t *testing.T) {
	img := &Image{Layers: []string{"a", "b", "c"}}
	for _, c := range []struct {
		host [][]string
		want int
	}{
		{nil, 0},
		{[][]string{{"a"}}, 1},
		{[][]string{{"a", "x"}, {"a", "b", "d"}}, 2},
		{[][]string{{"b", "c"}}, 0}, // the same layers on another chain
		{[][]string{{"a", "b", "c", "d"}}, 3},
	} {
		if got := img.Shared(c.host); got != c.want {
			t.Errorf("host %v: %d shared, want %d", c.host, got, c.want)
		}
	}
}

// fakeHost loads a save tar as the classic store does: a layer whose file
// is missing must be on the host already, on the same chain.
type fakeHost struct {
	platform string
	images   []executor.Image
	// lies: the engine says a short load went well, and keeps nothing.
	lies     bool
	loads    [][]string // the entries of each tar loaded
	recorded []string
	free     int64 // bytes free for the engine; 0: plenty
}

func (h *fakeHost) DiskFree(context.Context) (int64, error) {
	if h.free == 0 {
		return 1 << 40, nil
	}
	return h.free, nil
}

func (h *fakeHost) Host() string                                     { return "h1" }
func (h *fakeHost) Platform(context.Context) (string, error)         { return h.platform, nil }
func (h *fakeHost) Images(context.Context) ([]executor.Image, error) { return h.images, nil }

func (h *fakeHost) ImageInspect(_ context.Context, ref string) (*executor.Image, error) {
	for _, img := range h.images {
		if img.ID == ref || slices.Contains(img.RepoTags, ref) {
			return &img, nil
		}
	}
	return nil, executor.ErrNotFound
}

func (h *fakeHost) Load(_ context.Context, r io.Reader) error {
	names := []string{}
	// The engine reads a compressed tar as well.
	br := bufio.NewReader(r)
	if magic, _ := br.Peek(2); len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return err
		}
		r = zr
	} else {
		r = br
	}
	tr := tar.NewReader(r)
	for {
		hd, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		names = append(names, hd.Name)
	}
	h.loads = append(h.loads, names)
	missing := !slices.Contains(names, "l1/layer.tar")
	if missing && h.lies {
		return nil
	}
	if missing && !slices.ContainsFunc(h.images, func(i executor.Image) bool { return len(i.Layers) > 0 && i.Layers[0] == "sha256:a" }) {
		return errors.New("open l1/layer.tar: no such file or directory")
	}
	h.images = append(h.images, executor.Image{ID: "sha256:img2", RepoTags: []string{"app:2"}, Layers: []string{"sha256:a", "sha256:b"}})
	return nil
}

func (h *fakeHost) RecordImage(_ context.Context, id, ref string) error {
	h.recorded = append(h.recorded, id+" "+ref)
	return nil
}

func TestToHost(t *testing.T) {
	base := executor.Image{ID: "sha256:img1", RepoTags: []string{"app:1"}, Layers: []string{"sha256:a", "sha256:x"}}
	for _, c := range []struct {
		name   string
		host   *fakeHost
		shared int
		loads  int // tars sent
		whole  bool
		layers int // layer files in the last tar
	}{
		{"a host that holds nothing gets everything", &fakeHost{platform: "linux/amd64"}, 0, 1, false, 2},
		{"a host with the base layer gets the rest", &fakeHost{platform: "linux/amd64", images: []executor.Image{base}}, 1, 1, false, 1},
		{"a host that holds the image gets nothing", &fakeHost{platform: "linux/amd64", images: []executor.Image{{ID: "sha256:img2", RepoTags: []string{"app:2"}, Layers: []string{"sha256:a", "sha256:b"}}}}, 2, 0, false, 0},
		{"an engine that loses what it was not sent gets it whole", &fakeHost{platform: "linux/amd64", images: []executor.Image{base}, lies: true}, 1, 2, true, 2},
	} {
		t.Run(c.name, func(t *testing.T) {
			sent, err := ToHost(context.Background(), c.host, []*Image{saved(t)}, Options{})
			if err != nil {
				t.Fatal(err)
			}
			s := sent[0]
			if s.Shared != c.shared || len(c.host.loads) != c.loads || s.Whole != c.whole {
				t.Errorf("%d shared, %d loads, whole %v; want %d, %d, %v", s.Shared, len(c.host.loads), s.Whole, c.shared, c.loads, c.whole)
			}
			if c.loads > 0 {
				last := c.host.loads[len(c.host.loads)-1]
				n := 0
				for _, name := range last {
					if strings.HasSuffix(name, "layer.tar") {
						n++
					}
				}
				if n != c.layers {
					t.Errorf("the last tar held %d layers, want %d: %v", n, c.layers, last)
				}
				if s.Bytes == 0 || len(c.host.recorded) != 1 {
					t.Errorf("%d bytes counted, %v recorded", s.Bytes, c.host.recorded)
				}
			}
			if _, err := c.host.ImageInspect(context.Background(), "app:2"); err != nil {
				t.Errorf("the host has no app:2 after the push: %v", err)
			}
		})
	}
}

// TestToHostTagsWhatTheHostHadWithoutRecordingIt: an image the host holds
// under another name is only tagged (no layer sent), and not recorded for
// fleet prune: it was not fleet's to begin with.
func TestToHostTagsWhatTheHostHadWithoutRecordingIt(t *testing.T) {
	h := &fakeHost{platform: "linux/amd64", images: []executor.Image{{ID: "sha256:img2", RepoTags: []string{"user/own:1"}, Layers: []string{"sha256:a", "sha256:b"}}}}
	sent, err := ToHost(context.Background(), h, []*Image{saved(t)}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(h.loads) != 1 || slices.ContainsFunc(h.loads[0], func(n string) bool { return strings.HasSuffix(n, "layer.tar") }) || sent[0].Shared != 2 {
		t.Errorf("loads %v, %d layers there; want one tar without layers", h.loads, sent[0].Shared)
	}
	if len(h.recorded) != 0 {
		t.Errorf("recorded %v for prune; the host had the image before", h.recorded)
	}
}

func TestToHostGzip(t *testing.T) {
	plain, zipped := &fakeHost{platform: "linux/amd64"}, &fakeHost{platform: "linux/amd64"}
	a, err := ToHost(context.Background(), plain, []*Image{saved(t)}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	b, err := ToHost(context.Background(), zipped, []*Image{saved(t)}, Options{Gzip: true})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(plain.loads[0], zipped.loads[0]) || b[0].Bytes >= a[0].Bytes/2 {
		t.Errorf("gzip: %d bytes for %v, plain: %d bytes for %v; want the same tar, in less than half the bytes", b[0].Bytes, zipped.loads[0], a[0].Bytes, plain.loads[0])
	}
}

func TestToHostRefusesWhatDoesNotFit(t *testing.T) {
	h := &fakeHost{platform: "linux/amd64", free: 500}
	_, err := ToHost(context.Background(), h, []*Image{saved(t)}, Options{})
	if err == nil || !strings.Contains(err.Error(), "only 500B free for Docker, and image app:2 needs about") || len(h.loads) != 0 {
		t.Errorf("%v, %d loads; want a refusal naming the host, the space free and the space needed, nothing sent", err, len(h.loads))
	}
}

func TestToHostRefusesAnotherPlatform(t *testing.T) {
	h := &fakeHost{platform: "linux/arm64"}
	_, err := ToHost(context.Background(), h, []*Image{saved(t)}, Options{})
	if err == nil || !strings.Contains(err.Error(), "image app:2 is for linux/amd64 and host h1 runs linux/arm64") || len(h.loads) != 0 {
		t.Errorf("%v, %d loads; want a refusal naming both platforms, nothing sent", err, len(h.loads))
	}
}
