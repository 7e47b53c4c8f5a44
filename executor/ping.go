package executor

import (
	"context"
	"time"
)

// Ping measures one round trip to the host's sshd, with a request that
// starts no process there (OpenSSH answers keepalive@openssh.com at once).
func (c *Conn) Ping(ctx context.Context) (time.Duration, error) {
	start := time.Now()
	done := make(chan error, 1)
	go func() {
		_, _, err := c.client.SendRequest("keepalive@openssh.com", true, nil)
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			return 0, c.fail("measuring the round trip", err)
		}
		return time.Since(start), nil
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}
