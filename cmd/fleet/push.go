package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/term"

	"github.com/fleetdeploy/fleet/executor"
	"github.com/fleetdeploy/fleet/plan"
	"github.com/fleetdeploy/fleet/push"
	"github.com/fleetdeploy/fleet/rollout"
)

type pushCmd struct {
	Images []string `arg:"" name:"image" help:"Images of the local Docker engine, as docker names them: app:2, registry.example.com/app:2, or an image ID."`
	Gzip   bool     `help:"Compress what is sent (gzip's fastest level): for links slower than about 25 MB/s; on a LAN it only costs CPU."`
}

// Help is the detail of "fleet push --help".
func (*pushCmd) Help() string {
	return "Copies images from the local Docker engine (the one the docker command uses: DOCKER_HOST, " +
		"or the current docker context) to the hosts (--hosts, or every host of the inventory), over " +
		"their SSH connections, all hosts at once, without a registry. Each host is sent only the " +
		"layers it does not hold yet: after the first push of an image, the next release costs the " +
		"layers that changed. What a host loaded is checked by its image ID. With fleet.yaml beside, " +
		"what was pushed is recorded for fleet prune. Exit 1 when any host could not be given every image."
}

// pushReport is "fleet push --json": by host, what each image cost it, and
// the hosts that could not be given every image, with why.
type pushReport struct {
	Hosts  map[string][]push.Sent `json:"hosts"`
	Failed map[string]string      `json:"failed"`
}

func (c *pushCmd) Run(ctx context.Context, g *globals, out *output) error {
	// The project, when fleet.yaml is there, to record what was pushed.
	inv, hosts, project, err := g.hostsAndProject()
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "fleet-push-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	var images []*push.Image
	for _, ref := range c.Images {
		img, err := push.Save(ctx, dir, ref)
		if err != nil {
			return err
		}
		images = append(images, img)
	}
	gzip := c.Gzip
	ex := executor.New(ctx, g.executorOptions(inv))
	defer ex.Close()
	targets := make([]executor.Target, len(hosts))
	for i, h := range hosts {
		targets[i] = rollout.Target(h)
	}
	names := make([]string, len(targets))
	for i, t := range targets {
		names[i] = t.Name
	}
	shown := startPushProgress(out.stderr, names)
	results, _ := executor.Map(ctx, ex, targets, "pushing", func(ctx context.Context, c *executor.Conn) ([]push.Sent, error) {
		// The images it did get are said with a failure too.
		defer shown.hostDone(c.Host())
		return push.ToHost(ctx, pushHost{c, project}, images, push.Options{Gzip: gzip, Sending: shown.sending(c.Host())})
	})
	shown.stop()
	report := pushReport{Hosts: map[string][]push.Sent{}, Failed: map[string]string{}}
	for i, r := range results {
		name := targets[i].Name
		report.Hosts[name] = r.Value
		if r.Err != nil {
			// The line names the host already, and what it was doing.
			why := r.Err
			var he *executor.HostError
			for errors.As(why, &he) && he.Host == name {
				why = he.Err
			}
			report.Failed[name] = why.Error()
		}
	}
	if g.JSON {
		enc := json.NewEncoder(out.stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(report); err != nil {
			return err
		}
	} else {
		writePushReport(out.stdout, report, images, targets)
	}
	if n := len(report.Failed); n > 0 {
		failed := slices.Sorted(maps.Keys(report.Failed))
		return silentError{1, fmt.Sprintf("%d of %d hosts not given every image (%s): run it again to send what is still missing", n, len(targets), strings.Join(failed, ", "))}
	}
	return nil
}

// pushProgress is, on a terminal, a block redrawn while a push runs: a
// line for the whole push, then one per host with the bytes it was sent so
// far, as many as the terminal has room for, those still under way first.
// Elsewhere (a log, a pipe) it shows nothing: the report at the end says
// it all.
type pushProgress struct {
	hosts   []string
	sent    map[string]*atomic.Int64
	done    map[string]*atomic.Bool
	stopped chan struct{}
	wg      sync.WaitGroup
}

func startPushProgress(w io.Writer, hosts []string) *pushProgress {
	p := &pushProgress{hosts: hosts, sent: map[string]*atomic.Int64{}, done: map[string]*atomic.Bool{}, stopped: make(chan struct{})}
	for _, h := range hosts {
		p.sent[h], p.done[h] = new(atomic.Int64), new(atomic.Bool)
	}
	f, ok := w.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return p
	}
	start := time.Now()
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		drawn := 0
		for {
			select {
			case <-p.stopped:
				if drawn > 0 {
					fmt.Fprintf(f, "\x1b[%dF\x1b[J", drawn)
				}
				return
			case <-tick.C:
				width, height, err := term.GetSize(int(f.Fd()))
				if err != nil || width <= 0 {
					width, height = 80, 24
				}
				lines := p.lines(time.Since(start), max(height-2, 2))
				if drawn > 0 {
					fmt.Fprintf(f, "\x1b[%dF\x1b[J", drawn)
				}
				for _, l := range lines {
					if len(l) > width-1 {
						l = l[:width-1]
					}
					fmt.Fprintln(f, l)
				}
				drawn = len(lines)
			}
		}
	}()
	return p
}

// lines is the block to show, at most room lines.
func (p *pushProgress) lines(took time.Duration, room int) []string {
	var total int64
	done := 0
	var going, finished []string
	for _, h := range p.hosts {
		n := p.sent[h].Load()
		total += n
		if p.done[h].Load() {
			done++
			finished = append(finished, fmt.Sprintf("  %s: %s sent, done", h, plan.SizeText(n)))
		} else {
			going = append(going, fmt.Sprintf("  %s: %s sent", h, plan.SizeText(n)))
		}
	}
	lines := []string{fmt.Sprintf("pushing: %d of %d hosts done, %s sent (%.0fs)", done, len(p.hosts), plan.SizeText(total), took.Seconds())}
	hosts := append(going, finished...)
	if len(hosts) > room-1 {
		hosts = append(hosts[:room-2], fmt.Sprintf("  and %d more", len(hosts)-(room-2)))
	}
	return append(lines, hosts...)
}

func (p *pushProgress) sending(host string) func(int64) {
	return func(n int64) { p.sent[host].Add(n) }
}

func (p *pushProgress) hostDone(host string) { p.done[host].Store(true) }

func (p *pushProgress) stop() {
	close(p.stopped)
	p.wg.Wait()
}

// writePushReport prints a line per host and image, and a total.
func writePushReport(w io.Writer, r pushReport, images []*push.Image, targets []executor.Target) {
	var sent, spared int64
	for _, t := range targets {
		for _, s := range r.Hosts[t.Name] {
			line := fmt.Sprintf("%s: %s ", t.Name, s.Image)
			switch {
			case s.Already:
				line += "already there"
			case s.Whole:
				line += fmt.Sprintf("%s sent, the whole image (the host's engine did not take it without the %d layers it has: %s)", plan.SizeText(s.Bytes), s.Shared, s.Why)
			case s.Shared > 0:
				line += fmt.Sprintf("%s sent (%d of %d layers there already)", plan.SizeText(s.Bytes), s.Shared, s.Layers)
			default:
				line += fmt.Sprintf("%s sent", plan.SizeText(s.Bytes))
			}
			if s.Warning != "" {
				line += "; warning: " + s.Warning
			}
			fmt.Fprintln(w, line)
			sent += s.Bytes
			for _, img := range images {
				if img.Ref == s.Image && !s.Whole {
					spared += img.Size - s.Bytes
				}
			}
		}
		if why, ok := r.Failed[t.Name]; ok {
			fmt.Fprintf(w, "%s: not pushed: %s\n", t.Name, why)
		}
	}
	if given := len(targets) - len(r.Failed); given > 0 {
		fmt.Fprintf(w, "%s to %s: %s sent, %s not sent (there already)\n", plural(len(images), "image"), plural(given, "host"), plan.SizeText(sent), plan.SizeText(max(spared, 0)))
	}
}

// pushHost is a host connection as a push drives it.
type pushHost struct {
	c       *executor.Conn
	project string
}

func (h pushHost) Host() string { return h.c.Host() }

func (h pushHost) Images(ctx context.Context) ([]executor.Image, error) {
	return h.c.Engine().Images(ctx)
}

func (h pushHost) Platform(ctx context.Context) (string, error) { return h.c.Engine().Platform(ctx) }

func (h pushHost) ImageInspect(ctx context.Context, ref string) (*executor.Image, error) {
	return h.c.Engine().ImageInspect(ctx, ref)
}

func (h pushHost) Load(ctx context.Context, r io.Reader) error { return h.c.Engine().Load(ctx, r) }

func (h pushHost) DiskFree(ctx context.Context) (int64, error) { return h.c.DiskFree(ctx) }

func (h pushHost) RecordImage(ctx context.Context, id, ref string) error {
	if h.project == "" {
		return nil
	}
	return rollout.RecordImage(ctx, h.c, h.project, id, ref)
}
