package proxy

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
)

// localHost is a proxy's host on this machine: its files are local ones,
// and connections are made from here.
type localHost struct{}

func (localHost) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	var d net.Dialer
	return d.DialContext(ctx, network, addr)
}

func (localHost) ReadFile(ctx context.Context, p string) ([]byte, error) { return os.ReadFile(p) }

func (localHost) WriteFile(ctx context.Context, p string, r io.Reader, mode fs.FileMode) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, b, mode); err != nil {
		return err
	}
	return os.Rename(tmp, p)
}

func (localHost) MkdirAll(ctx context.Context, p string) error { return os.MkdirAll(p, 0o755) }

// configStore stands in for Caddy's admin API as far as /config/ goes:
// the whole configuration, read with an Etag and written with If-Match.
// It counts the writes, each of which would reload Caddy.
type configStore struct {
	mu      sync.Mutex
	cfg     map[string]any
	version int
	writes  int
}

func (s *configStore) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	etag := fmt.Sprintf(`"%d"`, s.version)
	switch {
	case r.URL.Path != "/config/":
		http.NotFound(w, r)
	case r.Method == http.MethodGet:
		w.Header().Set("Etag", etag)
		json.NewEncoder(w).Encode(s.cfg)
	case r.Method == http.MethodPost:
		if m := r.Header.Get("If-Match"); m != "" && m != etag {
			http.Error(w, `{"error":"changed"}`, http.StatusPreconditionFailed)
			return
		}
		var cfg map[string]any
		if err := json.NewDecoder(r.Body).Decode(&cfg); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		s.cfg, s.version, s.writes = cfg, s.version+1, s.writes+1
	}
}

// upstreamsOf is the route's upstreams as the configuration has them.
func (s *configStore) upstreamsOf(t *testing.T, id string) []string {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	b, _ := json.Marshal(s.cfg)
	var raw map[string]any
	json.Unmarshal(b, &raw)
	c, err := readConfig(raw)
	if err != nil {
		t.Fatal(err)
	}
	r := c.route(id)
	if r == nil {
		return nil
	}
	return r.upstreams()
}

func newTestAdmin(t *testing.T) (*Admin, *configStore, string) {
	t.Helper()
	dir := t.TempDir()
	ln, err := net.Listen("unix", filepath.Join(dir, "admin.sock"))
	if err != nil {
		t.Fatal(err)
	}
	store := &configStore{}
	srv := &http.Server{Handler: store}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return NewAdmin("h1", localHost{}, dir, "admin.sock"), store, dir
}

// A slot changes hands with a write of its file and no write of the
// configuration (no reload); only a slot that joins or leaves the route
// changes the configuration, and slots or addresses that no running
// container has leave it along with the next change.
func TestSwapBySlot(t *testing.T) {
	ctx := context.Background()
	a, store, dir := newTestAdmin(t)
	r := Route{ID: "fleet.shop.web", Host: "shop.example.com", Path: "/"}
	slot := func(n int) string {
		b, err := os.ReadFile(filepath.Join(dir, slotsDir, slotFile(r.ID, n)))
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(b))
	}
	running := map[string]bool{"10.0.0.1:80": true, "10.0.0.2:80": true, "10.0.0.3:80": true}
	live := func(addr string) bool { return running[addr] }
	swap := func(n int, add, remove, want string, writes int, ups ...string) {
		t.Helper()
		was, err := a.Swap(ctx, r, n, add, remove, live)
		if err != nil {
			t.Fatal(err)
		}
		if was != want {
			t.Errorf("slot %d served by %q before, want %q", n, was, want)
		}
		if store.writes != writes {
			t.Errorf("%d writes of the configuration, want %d", store.writes, writes)
		}
		if got := store.upstreamsOf(t, r.ID); !slices.Equal(got, ups) {
			t.Errorf("upstreams %q, want %q", got, ups)
		}
	}

	swap(1, "10.0.0.1:80", "", "", 1, slotDial(r.ID, 1))
	if slot(1) != "10.0.0.1:80" {
		t.Errorf("slot 1 holds %q", slot(1))
	}
	// A replacement: the file alone.
	swap(1, "10.0.0.2:80", "10.0.0.1:80", "10.0.0.1:80", 1, slotDial(r.ID, 1))
	if slot(1) != "10.0.0.2:80" {
		t.Errorf("slot 1 holds %q after its replacement", slot(1))
	}
	swap(1, "10.0.0.2:80", "", "10.0.0.2:80", 1, slotDial(r.ID, 1))
	swap(2, "10.0.0.3:80", "", "", 2, slotDial(r.ID, 1), slotDial(r.ID, 2))
	// Taking out a container that does not serve the slot changes nothing.
	swap(2, "", "10.0.0.1:80", "10.0.0.3:80", 2, slotDial(r.ID, 1), slotDial(r.ID, 2))
	// Slot 1's container stopped by hand: it leaves with the next change.
	delete(running, "10.0.0.2:80")
	running["10.0.0.4:80"] = true
	swap(3, "10.0.0.4:80", "", "", 3, slotDial(r.ID, 2), slotDial(r.ID, 3))
	swap(2, "", "10.0.0.3:80", "10.0.0.3:80", 4, slotDial(r.ID, 3))
	swap(3, "", "10.0.0.4:80", "10.0.0.4:80", 5)
	if store.upstreamsOf(t, r.ID) != nil {
		t.Error("a route with no upstream left is kept")
	}
}

// Routes written before slots name addresses: those of containers that
// run stay until their slot takes them over; the others go.
func TestSwapKeepsAddressesThatRun(t *testing.T) {
	ctx := context.Background()
	a, store, _ := newTestAdmin(t)
	r := Route{ID: "fleet.shop.web", Host: "shop.example.com", Path: "/"}
	c, _ := readConfig(nil)
	c.setRoute(r, []string{"10.0.0.1:80", "10.0.0.2:80", "10.0.0.9:80"})
	store.cfg = c.raw()
	running := map[string]bool{"10.0.0.1:80": true, "10.0.0.2:80": true, "10.0.0.5:80": true}
	was, err := a.Swap(ctx, r, 1, "10.0.0.5:80", "10.0.0.1:80", func(addr string) bool { return running[addr] })
	if err != nil {
		t.Fatal(err)
	}
	if was != "10.0.0.1:80" {
		t.Errorf("served before by %q, want the address it replaced", was)
	}
	if got, want := store.upstreamsOf(t, r.ID), []string{"10.0.0.2:80", slotDial(r.ID, 1)}; !slices.Equal(got, want) {
		t.Errorf("upstreams %q, want %q", got, want)
	}
	routes, err := a.Routes(ctx, "shop")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := routes["web"].Upstreams, []string{"10.0.0.2:80", "10.0.0.5:80"}; !slices.Equal(got, want) {
		t.Errorf("Routes reads upstreams %q, want the addresses %q", got, want)
	}
}

func TestSlotDialReadsBack(t *testing.T) {
	d := slotDial("fleet.shop.web", 12)
	if d != "{file./data/upstreams/fleet.shop.web.12}" {
		t.Errorf("slot dial %q", d)
	}
	if n, ok := slotOf("fleet.shop.web", d); !ok || n != 12 {
		t.Errorf("slotOf(%q) = %d, %v", d, n, ok)
	}
	for _, other := range []string{"10.0.0.1:80", slotDial("fleet.shop.api", 1), slotDial("fleet.shop.web-2", 1), "{file./data/upstreams/fleet.shop.web.x}"} {
		if _, ok := slotOf("fleet.shop.web", other); ok {
			t.Errorf("%q is taken for a slot of fleet.shop.web", other)
		}
	}
}
