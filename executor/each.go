package executor

import (
	"context"
	"sync"
)

// Result is one host's outcome of a multi-host operation.
type Result[T any] struct {
	Host  string
	Value T
	Err   error // a *HostError, or nil
}

// Map connects to every target and runs fn on each connection, at most
// Options.Parallel hosts at once. It returns every host's own outcome, in
// the order of targets, and an [Errors] of the failed hosts sorted by name
// (nil when none failed): one unreachable host never hides the others.
// op names what is being done, for errors.
func Map[T any](ctx context.Context, e *Executor, targets []Target, op string, fn func(context.Context, *Conn) (T, error)) ([]Result[T], error) {
	results := make([]Result[T], len(targets))
	errs := make([]*HostError, len(targets))
	slots := make(chan struct{}, e.opts.Parallel)
	var wg sync.WaitGroup
	for i, t := range targets {
		results[i].Host = t.Name
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case slots <- struct{}{}:
			case <-ctx.Done():
				errs[i] = hostErr(t.Name, op, ctx.Err())
				results[i].Err = errs[i]
				return
			}
			defer func() { <-slots }()
			c, err := e.Connect(ctx, t)
			if err == nil {
				results[i].Value, err = fn(ctx, c)
			}
			if err != nil {
				errs[i] = hostErr(t.Name, op, err)
				results[i].Err = errs[i]
			}
		}()
	}
	wg.Wait()
	return results, collect(errs)
}

// Each is [Map] for operations without a value.
func Each(ctx context.Context, e *Executor, targets []Target, op string, fn func(context.Context, *Conn) error) error {
	_, err := Map(ctx, e, targets, op, func(ctx context.Context, c *Conn) (struct{}, error) {
		return struct{}{}, fn(ctx, c)
	})
	return err
}

// States reads every target's state for project: [Engine.State] on each
// host at once.
func States(ctx context.Context, e *Executor, targets []Target, project string) ([]Result[*HostState], error) {
	return Map(ctx, e, targets, "reading state", func(ctx context.Context, c *Conn) (*HostState, error) {
		return c.Engine().State(ctx, project)
	})
}
