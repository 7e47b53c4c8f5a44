package proxy

import (
	"context"
	"encoding/json"
	"reflect"
	"strings"
	"time"
)

// A load-balancer host (lb: true in the inventory) runs the same proxy as
// the other hosts, and holds one route per proxied service whose
// upstreams are the proxies of the service's hosts (their address and
// port 80), not containers: each of those proxies drains and swaps its own
// instances, so a rolling update changes nothing on the load balancer. It
// changes only when a host gets its first instance of the service or loses
// its last one, and then it reloads (see Admin.Swap for what a reload
// costs).
//
// The load balancer skips a host that does not answer: it asks each one
// the service's health path every second (an active check, with the
// route's host name), a host that fails a request is left out for a while
// (a passive check), and a request that could not be sent, or that got no
// answer in time, is sent to another host for as long as its try duration
// allows. Requests other than GET are sent again only when they could not
// be sent at all, as Caddy does.

// Check is how a load balancer checks the hosts of a route.
type Check struct {
	// Path, when not "", is asked of every host every second with the
	// route's host name; a host that does not answer it with 2xx or 3xx
	// is left out until it does.
	Path string
	// Timeout bounds the wait for an answer's headers: a host cut off
	// holds a request that long before it is sent to another host.
	Timeout time.Duration
}

// balancer timings: how long a connection to a host may take, how long a
// host that failed a request is left out, and how often the hosts are
// asked their health.
const (
	balancerDial     = 2 * time.Second
	balancerFailFor  = 10 * time.Second
	balancerInterval = time.Second
)

// Balance makes the route r send to upstreams (addresses of the service's
// hosts' proxies), checked as check says; with no upstreams it removes the
// route. It says whether it changed the configuration: a change that
// changes nothing is not sent.
func (a *Admin) Balance(ctx context.Context, r Route, upstreams []string, check Check) (changed bool, err error) {
	err = a.update(ctx, func(cfg *config) (bool, error) {
		changed = false
		have, tls := cfg.routeAndTLS(r.ID)
		var want route
		if len(upstreams) > 0 {
			want = newBalancer(r, upstreams, check)
		}
		if have == nil && want == nil || have != nil && want != nil && tls == r.TLS && sameJSON(have, want) {
			return false, nil
		}
		cfg.placeRoute(r, want)
		changed = true
		return true, nil
	})
	return changed, err
}

// newBalancer is a load balancer's route (see Balance).
func newBalancer(r Route, upstreams []string, check Check) route {
	health := map[string]any{
		"passive": map[string]any{"fail_duration": balancerFailFor.String(), "max_fails": 1},
	}
	// A wildcard route has no one host name to ask with.
	if check.Path != "" && !strings.HasPrefix(r.Host, "*") {
		health["active"] = map[string]any{
			"uri":      check.Path,
			"headers":  map[string]any{"Host": []any{r.Host}},
			"interval": balancerInterval.String(),
			"timeout":  balancerInterval.String(),
			"passes":   1,
			"fails":    1,
		}
	}
	return proxyRoute(r, map[string]any{
		"upstreams":     dials(upstreams),
		"health_checks": health,
		"load_balancing": map[string]any{
			"try_duration": (check.Timeout + balancerDial + time.Second).String(),
			"try_interval": "250ms",
		},
		"transport": map[string]any{
			"protocol":                "http",
			"dial_timeout":            balancerDial.String(),
			"response_header_timeout": check.Timeout.String(),
		},
	})
}

// sameJSON reports whether a route read from the proxy says what want
// says, once both are JSON.
func sameJSON(have, want route) bool {
	b, err := json.Marshal(want)
	if err != nil {
		return false
	}
	var w map[string]any
	if json.Unmarshal(b, &w) != nil {
		return false
	}
	return reflect.DeepEqual(map[string]any(have), w)
}
