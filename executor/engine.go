package executor

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// Engine drives the Docker engine of one host through the Engine API,
// spoken over the host's SSH connection: to the engine's socket, forwarded
// by sshd itself (a direct-streamlocal channel) when the login user may use
// it; otherwise `docker system dial-stdio` runs in an exec session (through
// `sudo -n` when the target needs it) and relays HTTP to the engine, as
// Docker's own ssh:// hosts do.
//
// Why the API, and not the docker CLI in exec sessions: measured with
// integration's BenchmarkStateRead (10 hosts on one 2-core machine, 3
// containers of the project on each), reading every host's state took
// 56-76 ms through the API on the run's open connections against 361-448 ms
// with the CLI (one exec session per host running `docker info`, `docker
// ps` and `docker inspect`), and 346-430 ms against 512-646 ms when
// connecting is included. The CLI pays a session and three docker processes per host on
// every read, each a Go program's start on the host's CPU; the API pays one
// relay process per host per run, or none through the socket, then
// pipelines its requests on the open stream (see [Engine.State]). Fewer
// round trips follow too: an exec session costs a channel open and an exec
// request before its output, a pipelined write on an open stream costs one
// exchange. The socket comes first because it starts nothing on the host:
// connecting and reading 10 hosts took 345-470 ms against 510-700 ms with
// the relay, and a third less CPU on the machine. The relay stays for
// sudo, for a user without access to the socket, for sshd with
// AllowStreamLocalForwarding no, and for an engine elsewhere than
// /var/run/docker.sock; it also explains a missing engine better.
//
// The API also takes what the CLI cannot take safely: environment values in
// a request body rather than on a command line or in a file on the host,
// registry credentials in a header for one pull rather than in a config
// file, and it answers in JSON.
//
// An Engine reuses its streams: an idle one serves the next request.
type Engine struct {
	c *Conn

	mu   sync.Mutex
	idle []*apiConn
	// seen holds, per project, the containers of the last state read: the
	// next read asks for their documents in its first exchange.
	seen map[string][]string
	// relayOnly is set once the engine's socket could not be used: every
	// stream is then a relay.
	relayOnly bool
}

// Engine returns the Docker engine of the connection's host.
func (c *Conn) Engine() *Engine {
	c.engineOnce.Do(func() { c.engine = &Engine{c: c} })
	return c.engine
}

// maxIdle bounds the engine streams kept open per host: each holds a
// session slot and a docker process on the host.
const maxIdle = 2

// apiConn is one engine stream with its reader.
type apiConn struct {
	st *stream
	br *bufio.Reader
	// wantFigures is set on a fresh stream that prints the host's figures
	// before the API begins; figures holds them once read.
	wantFigures bool
	figures     []byte
}

// engineSocket is where a Docker engine listens unless configured
// otherwise.
const engineSocket = "/var/run/docker.sock"

// dial opens a new engine stream: the engine's socket forwarded by sshd
// when the login user may use it, which starts no process on the host;
// otherwise `docker system dial-stdio`, through sudo when the target says
// so. With figures, a relay first prints the host's memory and disk figures
// (figuresPreamble), so that a state read on a connection without an open
// stream starts one process, not two; a socket never prints them
// (wantFigures is false) and the figures come from the host's files.
func (e *Engine) dial(ctx context.Context, figures bool) (*apiConn, error) {
	e.mu.Lock()
	relayOnly := e.relayOnly
	e.mu.Unlock()
	if !relayOnly {
		st, err := e.c.openSocket(ctx, engineSocket)
		if err == nil {
			return &apiConn{st: st, br: bufio.NewReaderSize(st, apiReadBuffer)}, nil
		}
		if ctx.Err() != nil || e.c.dead() {
			return nil, err
		}
		// Forbidden, not there, or no engine answering: the relay goes by
		// the user's own docker configuration and explains what is wrong.
		e.mu.Lock()
		e.relayOnly = true
		e.mu.Unlock()
	}
	relay := []string{"docker", "system", "dial-stdio"}
	if e.c.target.sudo() {
		relay = append([]string{"sudo", "-n", "--"}, relay...)
	}
	args := relay
	if figures {
		// The figures need no privilege: only the relay runs through sudo.
		args = append([]string{"sh", "-c", figuresPreamble, "fleet-figures"}, relay...)
	}
	st, err := e.c.openStream(ctx, Cmd{Args: args})
	if err != nil {
		return nil, err
	}
	return &apiConn{st: st, br: bufio.NewReaderSize(st, apiReadBuffer), wantFigures: figures}, nil
}

// apiReadBuffer is what an engine connection buffers of its answers. An
// answer longer than it is read in several pieces, each from the SSH
// channel's own buffer, not the network; kept per connection for the
// run, 64 KiB was 64 MiB of a thousand-host run's memory.
const apiReadBuffer = 8 << 10

func (e *Engine) get(ctx context.Context) (*apiConn, error) {
	e.mu.Lock()
	if n := len(e.idle); n > 0 {
		ac := e.idle[n-1]
		e.idle = e.idle[:n-1]
		e.mu.Unlock()
		return ac, nil
	}
	e.mu.Unlock()
	return e.dial(ctx, false)
}

func (e *Engine) put(ac *apiConn) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.idle) < maxIdle && !e.c.dead() && !ac.st.closed.Load() {
		e.idle = append(e.idle, ac)
		return
	}
	ac.st.Close()
}

// request is one Engine API call.
type request struct {
	method string
	path   string // with query
	body   any    // JSON-encoded when not nil and not an io.Reader
	header http.Header
}

// response is an answer read whole.
type response struct {
	status int
	body   []byte
	// apiVersion and server are the engine's Api-Version and Server
	// headers, which come with every answer.
	apiVersion, server string
}

// dockerVersion is the engine's version, from its Server header
// ("Docker/20.10.24+dfsg1 (linux)").
func (r response) dockerVersion() string {
	v, _ := strings.CutPrefix(r.server, "Docker/")
	v, _, _ = strings.Cut(v, " ")
	return v
}

// pipeline writes every request at once on ac and reads the answers in
// order: the engine's HTTP server answers pipelined requests one after the
// other, so n requests cost one exchange over the network, not n.
func (e *Engine) pipeline(ctx context.Context, ac *apiConn, reqs []request) ([]response, error) {
	stop := context.AfterFunc(ctx, func() { ac.st.Close() })
	defer stop()
	var buf bytes.Buffer
	hreqs := make([]*http.Request, len(reqs))
	for i, r := range reqs {
		hr, err := r.http()
		if err != nil {
			return nil, err
		}
		if err := hr.Write(&buf); err != nil {
			return nil, err
		}
		hreqs[i] = hr
	}
	write := make(chan error, 1)
	go func() {
		_, err := ac.st.Write(buf.Bytes())
		write <- err
	}()
	if ac.wantFigures {
		line, err := ac.br.ReadBytes('\n')
		if err != nil {
			return nil, e.streamErr(ctx, ac, err)
		}
		ac.figures, ac.wantFigures = line, false
	}
	out := make([]response, len(reqs))
	for i, hr := range hreqs {
		resp, err := http.ReadResponse(ac.br, hr)
		if err != nil {
			return nil, e.streamErr(ctx, ac, err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return nil, e.streamErr(ctx, ac, err)
		}
		out[i] = response{status: resp.StatusCode, body: body, apiVersion: resp.Header.Get("Api-Version"), server: resp.Header.Get("Server")}
	}
	if err := <-write; err != nil {
		return nil, e.streamErr(ctx, ac, err)
	}
	return out, nil
}

// streamErr explains a failed engine stream: the relay's own complaint
// (no engine, sudo wants a password) says more than a broken pipe.
func (e *Engine) streamErr(ctx context.Context, ac *apiConn, err error) error {
	ac.st.Close()
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if dead := e.c.err(); dead != nil {
		return dead
	}
	// The relay's standard error arrives just after its output ends.
	waited := make(chan struct{})
	go func() { ac.st.wait(); close(waited) }()
	select {
	case <-waited:
	case <-time.After(time.Second):
	}
	if msg := strings.TrimSpace(ac.st.Stderr()); msg != "" {
		if e.c.target.sudo() && sudoWantsPassword(msg) {
			return fmt.Errorf("%w: %s", ErrSudoPassword, msg)
		}
		if down := engineDown(e.c.target.Name, msg); down != nil {
			return down
		}
		return fmt.Errorf("docker engine: %s", msg)
	}
	return fmt.Errorf("docker engine stream: %w", err)
}

func (r request) http() (*http.Request, error) {
	var body io.Reader
	var length int64 = -1
	switch b := r.body.(type) {
	case nil:
		length = 0
	case io.Reader:
		body = b
	default:
		j, err := json.Marshal(b)
		if err != nil {
			return nil, err
		}
		body, length = bytes.NewReader(j), int64(len(j))
	}
	// Unversioned paths get the engine's own API version: every engine
	// since Docker 20.10 (API 1.41) serves the fields used here.
	hr, err := http.NewRequest(r.method, "http://docker"+r.path, body)
	if err != nil {
		return nil, err
	}
	hr.ContentLength = length
	if length == 0 {
		hr.Body = nil
	}
	for k, v := range r.header {
		hr.Header[k] = v
	}
	if r.body != nil {
		if _, ok := r.body.(io.Reader); ok {
			hr.Header.Set("Content-Type", "application/x-tar")
		} else {
			hr.Header.Set("Content-Type", "application/json")
		}
	}
	return hr, nil
}

// EngineError is an error answer of the engine.
type EngineError struct {
	// Status is the HTTP status of the answer; 0 for an error that came in
	// the stream of a long answer (a pull's progress, say) after a 200.
	Status  int
	Message string
}

func (e *EngineError) Error() string {
	if e.Status == 0 {
		// An error message in the middle of a streamed answer.
		return "docker engine: " + e.Message
	}
	return fmt.Sprintf("docker engine: %s (HTTP %d)", e.Message, e.Status)
}

// ErrNotFound matches an engine answer that the container, image, network
// or volume does not exist.
var ErrNotFound = errors.New("not found")

func (e *EngineError) Is(target error) bool {
	return target == ErrNotFound && e.Status == http.StatusNotFound
}

func (r response) err() error {
	if r.status < 300 {
		return nil
	}
	var m struct{ Message string }
	if json.Unmarshal(r.body, &m) != nil || m.Message == "" {
		m.Message = strings.TrimSpace(string(r.body))
	}
	ee := &EngineError{Status: r.status, Message: m.Message}
	if saysDiskFull(m.Message) {
		return &DiskFullError{Detail: ee.Error(), Err: ee}
	}
	return ee
}

// call runs requests pipelined on an idle stream and fails on the first
// error answer.
func (e *Engine) call(ctx context.Context, op string, reqs ...request) ([]response, error) {
	if err := ctx.Err(); err != nil {
		// An idle stream would carry the request all the same.
		return nil, e.c.fail(op, err)
	}
	ac, err := e.get(ctx)
	if err != nil {
		return nil, e.c.fail(op, err)
	}
	resps, err := e.pipeline(ctx, ac, reqs)
	if err != nil {
		return nil, e.c.fail(op, err)
	}
	e.put(ac)
	for _, r := range resps {
		if err := r.err(); err != nil {
			return resps, e.c.fail(op, err)
		}
	}
	return resps, nil
}

func (e *Engine) callJSON(ctx context.Context, op string, r request, v any) error {
	resps, err := e.call(ctx, op, r)
	if err != nil {
		return err
	}
	if v == nil {
		return nil
	}
	if err := json.Unmarshal(resps[0].body, v); err != nil {
		return e.c.fail(op, fmt.Errorf("decoding the engine's answer: %w", err))
	}
	return nil
}

// State reads the host's facts and every container of project, with its
// full configuration and state.
//
// It costs one exchange with the host, and starts no process there once
// the connection is in use: the engine's facts, the container list and the
// full document of every container the previous read found are asked in
// one pipelined write on an open engine stream, while the memory and disk
// figures are read from the host's files (over SFTP where sshd offers it,
// which starts no process either). Only containers that are new since the
// previous read (all of them, on the first read) take a second pipelined
// exchange: no Engine API call returns full documents in bulk, and the
// list lacks env, command, restart policy and limits.
func (e *Engine) State(ctx context.Context, project string) (*HostState, error) {
	return e.readState(ctx, project, true)
}

// StateOnly is State without the host's figures: its Facts give no CPUs,
// memory or free disk. Over SFTP those are three more chains of requests
// per host, which a plan needs only to place replicas.
func (e *Engine) StateOnly(ctx context.Context, project string) (*HostState, error) {
	return e.readState(ctx, project, false)
}

func (e *Engine) readState(ctx context.Context, project string, withFigures bool) (*HostState, error) {
	const op = "reading state"
	e.mu.Lock()
	var ac *apiConn
	if n := len(e.idle); n > 0 {
		ac, e.idle = e.idle[n-1], e.idle[:n-1]
	}
	e.mu.Unlock()
	if ac == nil {
		var err error
		if ac, err = e.dial(ctx, true); err != nil {
			return nil, e.c.fail(op, err)
		}
	}
	// A fresh stream over the shell prints them first, wanted or not (see
	// state); otherwise they are read beside the state.
	var figures chan figuresResult
	if withFigures && !ac.wantFigures {
		figures = make(chan figuresResult, 1)
		go func() { figures <- e.c.figures(ctx) }()
	}
	hs, preamble, err := e.state(ctx, ac, project)
	var fig figuresResult
	if figures != nil {
		fig = <-figures
	} else if err == nil && withFigures {
		fig = parseFigures(preamble)
	}
	if err != nil {
		return nil, e.c.fail(op, err)
	}
	if fig.err != nil {
		return nil, e.c.fail(op, fig.err)
	}
	hs.Facts.CPUs, hs.Facts.MemTotal, hs.Facts.MemAvailable, hs.Facts.DiskFree = fig.cpus, fig.memTotal, fig.memAvailable, fig.diskFree
	return hs, nil
}

// state reads the engine's part of a host's state on ac, and returns the
// figures ac printed first, if it was fresh.
func (e *Engine) state(ctx context.Context, ac *apiConn, project string) (*HostState, []byte, error) {
	filters, _ := json.Marshal(map[string][]string{"label": {LabelProject + "=" + project}})
	// Neither /version nor /info: the engine runs runc and docker-init to
	// answer them; every answer carries the engine's version in headers,
	// and the host's figures come from its own files (see figures).
	reqs := []request{
		{method: "GET", path: "/containers/json?all=1&filters=" + url.QueryEscape(string(filters))},
	}
	e.mu.Lock()
	// The documents of the containers the last read found are asked for
	// with the list: a host that did not change is read in one exchange.
	guessed := e.seen[project]
	e.mu.Unlock()
	// The images, so that a tag that now names another image is seen.
	images := len(reqs)
	reqs = append(reqs, request{method: "GET", path: "/images/json"})
	fixed := len(reqs)
	for _, id := range guessed {
		reqs = append(reqs, inspectRequest(id))
	}
	first, err := e.pipeline(ctx, ac, reqs)
	if err != nil {
		return nil, nil, err
	}
	preamble := ac.figures
	// The stream is in a clean state between exchanges whatever the answers
	// say: give it back whenever it was read to the end.
	defer e.put(ac)
	for _, r := range first[:fixed] {
		if err := r.err(); err != nil {
			return nil, nil, err
		}
	}
	hs := &HostState{Host: e.c.target.Name, Containers: []Container{}, Images: map[string]string{},
		Facts: Facts{DockerVersion: first[0].dockerVersion(), APIVersion: first[0].apiVersion}}
	var imageList []struct {
		ID       string   `json:"Id"`
		RepoTags []string `json:"RepoTags"`
	}
	if err := json.Unmarshal(first[images].body, &imageList); err != nil {
		return nil, nil, fmt.Errorf("decoding the image list: %w", err)
	}
	for _, img := range imageList {
		for _, tag := range img.RepoTags {
			if tag != "<none>:<none>" {
				hs.Images[tag] = img.ID
			}
		}
	}
	var list []struct {
		ID string `json:"Id"`
	}
	if err := json.Unmarshal(first[0].body, &list); err != nil {
		return nil, nil, fmt.Errorf("decoding the container list: %w", err)
	}
	docs := map[string]response{}
	for i, id := range guessed {
		docs[id] = first[fixed+i]
	}
	var missing []string
	var more []request
	for _, c := range list {
		if _, ok := docs[c.ID]; !ok {
			missing = append(missing, c.ID)
			more = append(more, inspectRequest(c.ID))
		}
	}
	if len(missing) > 0 {
		answers, err := e.pipeline(ctx, ac, more)
		if err != nil {
			return nil, nil, err
		}
		for i, id := range missing {
			docs[id] = answers[i]
		}
	}
	ids := make([]string, 0, len(list))
	for _, c := range list {
		d := docs[c.ID]
		if d.status == http.StatusNotFound {
			continue // removed between the list and the inspection
		}
		if err := d.err(); err != nil {
			return nil, nil, err
		}
		ctr, err := parseContainer(d.body)
		if err != nil {
			return nil, nil, err
		}
		hs.Containers = append(hs.Containers, ctr)
		ids = append(ids, c.ID)
	}
	e.mu.Lock()
	if e.seen == nil {
		e.seen = map[string][]string{}
	}
	e.seen[project] = ids
	e.mu.Unlock()
	return hs, preamble, nil
}

func inspectRequest(id string) request {
	return request{method: "GET", path: "/containers/" + url.PathEscape(id) + "/json"}
}
