package executor

import (
	"context"
	"net/url"
	"strconv"
	"strings"
)

// Update changes a container's limits and restart policy in place, as
// `docker update` does: no restart, no new container. A memory limit keeps
// the swap allowance a new container would get (twice the limit); a zero
// limit leaves the current one as it is, since the engine reads zero as
// "unchanged".
func (e *Engine) Update(ctx context.Context, id string, cpus float64, memory int64, restart string) error {
	body := map[string]any{"NanoCpus": int64(cpus * 1e9)}
	if memory > 0 {
		body["Memory"] = memory
		body["MemorySwap"] = 2 * memory
	}
	if restart != "" {
		name, n, _ := strings.Cut(restart, ":")
		rp := map[string]any{"Name": name}
		if n != "" {
			count, _ := strconv.Atoi(n)
			rp["MaximumRetryCount"] = count
		}
		body["RestartPolicy"] = rp
	}
	_, err := e.call(ctx, "updating container "+ShortID(id), request{method: "POST", path: "/containers/" + url.PathEscape(id) + "/update", body: body})
	return err
}
