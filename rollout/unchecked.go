package rollout

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"time"

	"github.com/fleetdeploy/fleet/executor"
)

// A run marks on a host each container it is about to start or change in
// place, before it does, and takes the mark away once the container has
// passed its health check, or is gone. A mark that outlives its run (the
// run was killed, or lost the host, in the middle of a step) says that
// nobody saw that container healthy: the next plan does not trust it
// (see plan.LiveContainer.Unchecked). The marks live beside the history,
// one empty file per container, named by its ID.

func uncheckedDir(c *executor.Conn, project string) string {
	return path.Join(StateDir(c, project), "unchecked")
}

// markUnchecked marks or unmarks container id on c.
func markUnchecked(ctx context.Context, c *executor.Conn, project, id string, unchecked bool) error {
	if !containerID(id) {
		return fmt.Errorf("host %s: %q is no container ID", c.Host(), id)
	}
	dir := uncheckedDir(c, project)
	file := path.Join(dir, id)
	if !unchecked {
		// Remove, not RemoveAll: one request where the mark is there (a
		// new container's, on the way from one step to the next) rather
		// than a listing first.
		if err := c.Remove(ctx, file); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return hostOpFailed(c.Host(), "taking away the mark of "+executor.ShortID(id)+" as not yet healthy", err)
		}
		return nil
	}
	// The directory is made only when it is missing: a mark is in the way
	// of every start, and each request is a round trip.
	err := c.Touch(ctx, file)
	if errors.Is(err, fs.ErrNotExist) {
		if err = c.MkdirAll(ctx, dir); err == nil {
			err = c.Touch(ctx, file)
		}
	}
	if err != nil {
		return hostOpFailed(c.Host(), "marking "+executor.ShortID(id)+" as not yet healthy", err)
	}
	return nil
}

// readUnchecked reads which containers of the project are marked on c.
func readUnchecked(ctx context.Context, c *executor.Conn, project string) (map[string]bool, error) {
	names, err := c.ReadDir(ctx, uncheckedDir(c, project))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	marked := map[string]bool{}
	for _, name := range names {
		if containerID(name) {
			marked[name] = true
		}
	}
	return marked, nil
}

// containerID reports whether id looks like an engine's container ID: it
// names a file on the host, so nothing else may pass.
func containerID(id string) bool {
	if len(id) < 12 || len(id) > 128 {
		return false
	}
	for _, r := range id {
		if !('0' <= r && r <= '9' || 'a' <= r && r <= 'f') {
			return false
		}
	}
	return true
}

// markTimeout bounds taking a mark away, which is done even after an
// interruption.
const markTimeout = 30 * time.Second
