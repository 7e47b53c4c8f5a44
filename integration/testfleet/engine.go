package testfleet

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
)

// The harness looks at a host's containers through its dockerd's socket
// directly, as the docker CLI would, without starting a process: the
// tests do it after nearly every step, and a docker CLI run costs more
// CPU than what it asks for.

// engine calls the host's dockerd.
func (h *Host) engine(ctx context.Context, method, path string, v any) error {
	c := dockerClient(filepath.Join(h.Dir, "run", "docker.sock"))
	defer c.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, method, "http://docker"+path, nil)
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return fmt.Errorf("host %s: %w", h.Name, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("host %s: %w", h.Name, err)
	}
	if resp.StatusCode >= 300 {
		return fmt.Errorf("host %s: %s %s: %s: %s", h.Name, method, path, resp.Status, body)
	}
	if v != nil {
		return json.Unmarshal(body, v)
	}
	return nil
}

// dockerClient speaks HTTP to the dockerd listening on socket.
func dockerClient(socket string) *http.Client {
	return &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", socket)
	}}}
}

// ContainersOf returns the IDs of the containers, running or not, that
// carry the label (key=value).
func (h *Host) ContainersOf(ctx context.Context, label string) ([]string, error) {
	filters, _ := json.Marshal(map[string][]string{"label": {label}})
	var list []struct{ ID string }
	if err := h.engine(ctx, http.MethodGet, "/containers/json?all=1&filters="+url.QueryEscape(string(filters)), &list); err != nil {
		return nil, err
	}
	ids := make([]string, len(list))
	for i, c := range list {
		ids[i] = c.ID
	}
	return ids, nil
}

// RemoveProject removes every container of a fleet project from the host,
// and its state: lock, history and marks.
func (h *Host) RemoveProject(ctx context.Context, project string) error {
	ids, err := h.ContainersOf(ctx, "fleet.project="+project)
	if err != nil {
		return err
	}
	for _, id := range ids {
		if err := h.engine(ctx, http.MethodDelete, "/containers/"+id+"?force=1&v=1", nil); err != nil {
			// Gone meanwhile (a removal under way) is as good.
			if now, lerr := h.ContainersOf(ctx, "fleet.project="+project); lerr != nil || slices.Contains(now, id) {
				return err
			}
		}
	}
	return os.RemoveAll(filepath.Join(h.Dir, "fleet", project))
}
