package integration

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/fleetdeploy/fleet/integration/testfleet"
)

// fleet is the shared test fleet: five real hosts with the example service's
// versions 1 and 2 loaded, up for the whole package.
var fleet *testfleet.Fleet

// The fleet's name and subnet can be changed through the environment, so
// that two runs of these tests on one machine (two checkouts, say) do not
// take each other's hosts down.
var (
	fleetName   = envOr("FLEET_TEST_FLEET", "itest")
	fleetSubnet = envInt("FLEET_TEST_SUBNET", 2)
)

const fleetHosts = 5

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

func envInt(key string, def int) int {
	n, err := strconv.Atoi(os.Getenv(key))
	if err != nil {
		return def
	}
	return n
}

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	if os.Getenv(crashChildEnv) != "" {
		crashChild() // never returns
	}
	flag.Parse()
	switch {
	case flag.Lookup("test.list").Value.String() != "":
		return m.Run() // naming the tests needs no fleet
	case testing.Short():
		fmt.Fprintln(os.Stderr, "integration: skipped with -short: these tests bring up a fleet of real hosts")
		return 0
	case os.Geteuid() != 0:
		fmt.Fprintln(os.Stderr, "integration: skipped: the test fleet needs root (network namespaces, sshd, dockerd); run the README's test command, which uses sudo")
		return 0
	}
	// Every fleet run by the tests gives up on a cut-off host after 3 s,
	// not 10: the test hosts are local, and the tests that cut one off
	// wait for that time once per command.
	os.Setenv("FLEET_CONNECT_TIMEOUT", "3s")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var err error
	fleet, err = testfleet.Up(ctx, testfleet.Options{
		Name: fleetName, Hosts: fleetHosts, Subnet: fleetSubnet, NATPortsOnly: true, Log: os.Stderr,
		// The last host has a disk of its own that TestFullDisk fills; the
		// other tests use it as any host.
		DiskSize: func(k int) int64 {
			if k == fleetHosts {
				return 1 << 30
			}
			return 0
		},
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "integration:", err)
		return 1
	}
	// An interrupted run still takes the fleet down; a killed one leaves it
	// to the next run's Up, which removes it first.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-sigs
		fleet.Down(context.Background())
		os.Exit(130)
	}()
	defer func() {
		if err := fleet.Down(context.Background()); err != nil {
			fmt.Fprintln(os.Stderr, "integration: taking the fleet down:", err)
		}
	}()
	if fleetBin, err = buildFleet(); err != nil {
		fmt.Fprintln(os.Stderr, "integration: building fleet:", err)
		return 1
	}
	defer os.RemoveAll(filepath.Dir(fleetBin))
	for _, v := range []string{"1", "2"} {
		// The image's own HEALTHCHECK is left all but idle: the tests
		// gate on fleet's checks, and TestHealthGatesOfEveryKind builds
		// its own image for the one that gates on Docker's.
		ref, err := fleet.BuildExample(ctx, v, time.Hour)
		if err == nil {
			err = fleet.LoadImage(ctx, ref)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "integration:", err)
			return 1
		}
	}
	// The proxy's image takes minutes to build on a machine that has
	// not built it before: it starts now, beside the tests that do not
	// need it, if this run has a test that does.
	run := flag.Lookup("test.run").Value.String()
	for _, name := range []string{"TestProxyRolloutsDropNoRequest", "TestProxyServesEveryInstanceOfAHost", "TestProxyKilledAtAnyMomentDropsNoRequest"} {
		if run == "" || matches(run, name) {
			go proxyImage()
			break
		}
	}
	return m.Run()
}

// matches reports whether a -run pattern (with no subtest part) may
// select the test called name.
func matches(pattern, name string) bool {
	ok, err := regexp.MatchString(pattern, name)
	return ok || err != nil
}

// eachHost runs fn on every host of the shared fleet at once.
func eachHost(t *testing.T, fn func(h *testfleet.Host) error) {
	t.Helper()
	eachOf(t, fleet.Hosts, fn)
}

// eachOf runs fn on each of hosts at once.
func eachOf(t *testing.T, hosts []*testfleet.Host, fn func(h *testfleet.Host) error) {
	t.Helper()
	var wg sync.WaitGroup
	var mu sync.Mutex
	for _, h := range hosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := fn(h); err != nil {
				mu.Lock()
				t.Errorf("%s: %v", h.Name, err)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
}

// get fetches url and returns its body, failing on anything but 200.
func get(ctx context.Context, url string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := (&http.Client{Timeout: 3 * time.Second}).Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return string(body), fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return string(body), nil
}

// serving waits until the example service on addr answers with version.
func serving(ctx context.Context, addr, version string) error {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	for {
		body, err := get(ctx, "http://"+addr+"/version")
		if err == nil && strings.TrimSpace(body) == version {
			return nil
		}
		if err == nil {
			err = fmt.Errorf("serves version %q, want %q", strings.TrimSpace(body), version)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %w", addr, err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// sampleAvailability asks every host's published port for /version, all
// hosts at once, every 50 ms, until the returned function is called; that
// returns how many samples were taken and the fewest hosts that answered
// in one.
func sampleAvailability(t *testing.T, port string) (stop func() (samples, worst int)) {
	t.Helper()
	done := make(chan struct{})
	var n, fewest atomic.Int64
	fewest.Store(int64(len(fleet.Hosts)))
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-done:
				return
			default:
			}
			var up atomic.Int64
			var inner sync.WaitGroup
			for _, h := range fleet.Hosts {
				inner.Add(1)
				go func() {
					defer inner.Done()
					ctx, cancel := context.WithTimeout(context.Background(), time.Second)
					defer cancel()
					if _, err := get(ctx, "http://"+h.Addr+":"+port+"/version"); err == nil {
						up.Add(1)
					}
				}()
			}
			inner.Wait()
			n.Add(1)
			if u := up.Load(); u < fewest.Load() {
				fewest.Store(u)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()
	return func() (int, int) {
		close(done)
		wg.Wait()
		return int(n.Load()), int(fewest.Load())
	}
}

// withRegistry runs a registry on h holding the example image's version 2
// (wanting user's password, if user is given) until the test ends, and
// returns the registry's address and that image's reference through it;
// the image pulled from it is removed from h at the end too.
func withRegistry(t *testing.T, h *testfleet.Host, user, password string) (registry, ref string) {
	t.Helper()
	ctx := context.Background()
	if err := h.StartRegistry(ctx, user, password, testfleet.ExampleImage+":2"); err != nil {
		t.Fatal(err)
	}
	registry = fmt.Sprintf("127.0.0.1:%d", testfleet.RegistryPort)
	ref = registry + "/" + testfleet.ExampleImage + ":2"
	t.Cleanup(func() {
		h.Run(ctx, "docker", "rmi", ref)
		h.StopRegistry(ctx)
	})
	return registry, ref
}
