package proxy

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fleetdeploy/fleet/plan"
)

// A load balancer's route sends to the hosts' proxies with health checks
// and retries; setting the same hosts again writes nothing (no reload),
// and setting none removes the route. TLS is served as the route asks.
func TestBalance(t *testing.T) {
	ctx := context.Background()
	a, store, _ := newTestAdmin(t)
	r := Route{ID: "fleet.shop.web", Host: "shop.example.com", Path: "/", TLS: plan.TLSInternal, DrainTimeout: 10 * time.Second}
	check := Check{Path: "/up", Timeout: 10 * time.Second}
	balance := func(want bool, writes int, ups ...string) {
		t.Helper()
		changed, err := a.Balance(ctx, r, ups, check)
		if err != nil {
			t.Fatal(err)
		}
		if changed != want || store.writes != writes {
			t.Errorf("balance %v: changed %v after %d writes, want %v after %d", ups, changed, store.writes, want, writes)
		}
		if got := store.upstreamsOf(t, r.ID); !slices.Equal(got, ups) {
			t.Errorf("upstreams %v, want %v", got, ups)
		}
	}
	balance(true, 1, "10.0.0.1:80", "10.0.0.2:80")
	balance(false, 1, "10.0.0.1:80", "10.0.0.2:80")

	b, _ := json.Marshal(store.cfg)
	cfg := string(b)
	for _, want := range []string{
		`"health_checks":{"active":{"fails":1,"headers":{"Host":["shop.example.com"]},"interval":"1s","passes":1,"timeout":"1s","uri":"/up"}`,
		`"passive":{"fail_duration":"10s","max_fails":1}`,
		`"response_header_timeout":"10s"`,
		`"try_duration":"13s"`,
		// Served over HTTPS with the proxy's own CA; plain HTTP redirects.
		`"fleet-tls":{"automatic_https":{"disable_redirects":true},"listen":[":443"]`,
		`"@id":"redirect.fleet.shop.web"`,
		`"@id":"fleet.tls.shop.example.com"`,
	} {
		if !strings.Contains(cfg, want) {
			t.Errorf("the configuration lacks %s:\n%s", want, cfg)
		}
	}

	balance(true, 2, "10.0.0.1:80")
	balance(true, 3)
	if strings.Contains(mustJSON(t, store.cfg), "fleet.shop.web") {
		t.Errorf("a route with no host is left: %s", mustJSON(t, store.cfg))
	}
	balance(false, 3)
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
