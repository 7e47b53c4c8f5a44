package rollout

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"strconv"
	"time"

	"github.com/fleetdeploy/fleet/executor"
	"github.com/fleetdeploy/fleet/plan"
)

// waitHealthy gates one new instance: it must pass its health check within
// healthy_deadline, then stay running and healthy for monitor. A container
// that exits, restarts, or fails its check retries times in a row fails.
//
// The check runs from the host's side of the SSH connection: an HTTP or
// TCP check is a TCP connection that the SSH connection itself carries to
// the container's own address, so it needs no published port, and no
// curl on the host or in a FROM scratch image.
//
// progress is told why the check fails, when it goes on failing for more
// than a second, and each time the reason changes. restarts is how many
// times the engine had restarted the container before: one more is a
// crash.
func waitHealthy(ctx context.Context, h Host, id string, s *plan.Service, progress func(string), restarts int) error {
	eng := h.Engine()
	hc := s.Healthcheck
	interval := 500 * time.Millisecond
	retries := 1
	var startPeriod time.Duration
	if hc != nil {
		interval, retries, startPeriod = hc.Interval, hc.Retries, hc.StartPeriod
	}
	started := time.Now()
	deadline := started.Add(s.Update.HealthyDeadline)
	var passedAt time.Time
	failures := 0
	var last error
	var told string
	var lostAt time.Time // when the host's connection was found lost
	for {
		c, err := eng.Inspect(ctx, id)
		if err == nil && c.Running {
			err = probe(ctx, h, c, hc)
		}
		if errors.Is(err, executor.ErrConnLost) {
			// Not the container's doing: look again over a new
			// connection, for as long as the health check could take.
			if lostAt.IsZero() {
				lostAt = time.Now()
				progress("connection lost: connecting again")
			}
			if time.Since(lostAt) > s.Update.HealthyDeadline || passedAt.IsZero() && time.Now().After(deadline) {
				return err
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(min(interval, time.Second)):
			}
			continue
		}
		if err != nil && c == nil {
			return err
		}
		if !lostAt.IsZero() {
			progress("connected again")
			lostAt = time.Time{}
		}
		switch {
		case c.RestartCount > restarts:
			return fmt.Errorf("container crashed: restarted %d times within %s (last exit code %d)", c.RestartCount-restarts, time.Since(started).Round(100*time.Millisecond), c.ExitCode)
		case !c.Running:
			return fmt.Errorf("container %s with exit code %d, %s into its health check", c.Status, c.ExitCode, time.Since(started).Round(100*time.Millisecond))
		}
		if err != nil && time.Since(started) > time.Second {
			if why := "not healthy yet: " + err.Error(); why != told {
				progress(why)
				told = why
			}
		}
		switch {
		case err == nil:
			failures = 0
			if passedAt.IsZero() {
				passedAt = time.Now()
			}
			if time.Since(passedAt) >= s.Update.Monitor {
				return nil
			}
		case passedAt.IsZero() && time.Since(started) < startPeriod:
			// Failures during start_period do not count.
		default:
			failures++
			last = err

			if !passedAt.IsZero() && failures >= retries {
				return fmt.Errorf("healthy, then failed %d checks in a row during monitor: %v", failures, err)
			}
		}
		if passedAt.IsZero() && time.Now().After(deadline) {
			if last == nil {
				last = err
			}
			return fmt.Errorf("not healthy within %s: %v", s.Update.HealthyDeadline, last)
		}
		// Until the first pass, look more often than the interval: a
		// rollout step waits on exactly this moment, and most services
		// answer within a second of starting.
		wait := interval
		if passedAt.IsZero() {
			wait = min(interval, 50*time.Millisecond)
			if time.Since(started) < time.Second {
				wait = min(interval, 10*time.Millisecond)
			}
		} else if left := time.Until(passedAt.Add(s.Update.Monitor)); left > 0 && left < wait {
			// The last look at the end of monitor, not up to an interval
			// after it: the step waits on it.
			wait = left
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
	}
}

// probe runs the health check once.
func probe(ctx context.Context, h Host, c *executor.Container, hc *plan.Healthcheck) error {
	if hc == nil {
		return nil // running is healthy
	}
	timeout := hc.Timeout
	pctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	switch {
	case hc.Docker:
		switch c.Health {
		case "healthy":
			return nil
		case "":
			return errors.New("the image has no HEALTHCHECK")
		}
		return fmt.Errorf("docker reports it %s", c.Health)
	case len(hc.Cmd) > 0:
		code, err := h.Engine().Exec(pctx, c.ID, hc.Cmd, io.Discard, io.Discard)
		if err != nil {
			return err
		}
		if code != 0 {
			return fmt.Errorf("%s exited %d", hc.Cmd[0], code)
		}
		return nil
	}
	ip := containerIP(c)
	if ip == "" {
		return errors.New("the container has no address to check")
	}
	port := hc.TCP
	if hc.HTTP != "" {
		port = hc.Port
	}
	addr := net.JoinHostPort(ip, strconv.Itoa(port))
	if hc.TCP != 0 {
		nc, err := h.DialContext(pctx, "tcp", addr)
		if err != nil {
			return err
		}
		return nc.Close()
	}
	client := &http.Client{
		Timeout: timeout,
		Transport: &http.Transport{
			DialContext:       func(ctx context.Context, _, _ string) (net.Conn, error) { return h.DialContext(ctx, "tcp", addr) },
			DisableKeepAlives: true,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	req, err := http.NewRequestWithContext(pctx, http.MethodGet, "http://"+addr+hc.HTTP, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode >= 400 {
		return fmt.Errorf("GET %s: %s", hc.HTTP, resp.Status)
	}
	return nil
}

func containerIP(c *executor.Container) string {
	for _, n := range sortedNetworkNames(c.Networks) {
		if ip := c.Networks[n]; ip != "" {
			return ip
		}
	}
	return ""
}

func sortedNetworkNames(m map[string]string) []string {
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}
