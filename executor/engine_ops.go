package executor

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"
)

// inspectDoc is the part of the engine's container document fleet reads.
type inspectDoc struct {
	ID      string
	Name    string
	Image   string
	Created time.Time
	State   struct {
		Status     string
		Running    bool
		ExitCode   int
		StartedAt  time.Time
		FinishedAt time.Time
		Health     *struct{ Status string }
	}
	RestartCount int
	Config       struct {
		Image       string
		Labels      map[string]string
		Env         []string
		Cmd         []string
		Entrypoint  []string
		User        string
		WorkingDir  string
		StopTimeout *int
	}
	HostConfig struct {
		PortBindings  map[string][]struct{ HostIP, HostPort string }
		RestartPolicy struct {
			Name              string
			MaximumRetryCount int
		}
		NanoCPUs int64
		Memory   int64
	}
	Mounts []struct {
		Type        string
		Name        string
		Source      string
		Destination string
		RW          bool
	}
	NetworkSettings struct {
		Networks map[string]struct{ IPAddress string }
	}
}

func parseContainer(raw []byte) (Container, error) {
	var d inspectDoc
	if err := json.Unmarshal(raw, &d); err != nil {
		return Container{}, fmt.Errorf("decoding a container document: %w", err)
	}
	c := Container{
		ID: d.ID, Name: strings.TrimPrefix(d.Name, "/"), Image: d.Config.Image, ImageID: d.Image,
		Labels: d.Config.Labels, Env: map[string]string{}, Command: d.Config.Cmd, Entrypoint: d.Config.Entrypoint,
		Networks: map[string]string{}, User: d.Config.User, Workdir: d.Config.WorkingDir,
		CPUs: float64(d.HostConfig.NanoCPUs) / 1e9, Memory: d.HostConfig.Memory,
		Created: d.Created, Status: d.State.Status, Running: d.State.Running, ExitCode: d.State.ExitCode,
		StartedAt: d.State.StartedAt, FinishedAt: d.State.FinishedAt, RestartCount: d.RestartCount,
		Raw: json.RawMessage(raw),
	}
	if c.Labels == nil {
		c.Labels = map[string]string{}
	}
	for _, kv := range d.Config.Env {
		k, v, _ := strings.Cut(kv, "=")
		c.Env[k] = v
	}
	if d.State.Health != nil {
		c.Health = d.State.Health.Status
	}
	if d.Config.StopTimeout != nil {
		c.StopGrace = time.Duration(*d.Config.StopTimeout) * time.Second
	}
	c.Restart = d.HostConfig.RestartPolicy.Name
	if c.Restart == "on-failure" && d.HostConfig.RestartPolicy.MaximumRetryCount > 0 {
		c.Restart += ":" + strconv.Itoa(d.HostConfig.RestartPolicy.MaximumRetryCount)
	}
	if c.Restart == "" {
		c.Restart = "no"
	}
	for cport, bindings := range d.HostConfig.PortBindings {
		num, proto, _ := strings.Cut(cport, "/")
		n, _ := strconv.Atoi(num)
		for _, b := range bindings {
			hp, _ := strconv.Atoi(b.HostPort)
			c.Ports = append(c.Ports, Port{HostIP: b.HostIP, HostPort: hp, ContainerPort: n, Protocol: proto})
		}
	}
	sort.Slice(c.Ports, func(i, j int) bool {
		if c.Ports[i].ContainerPort != c.Ports[j].ContainerPort {
			return c.Ports[i].ContainerPort < c.Ports[j].ContainerPort
		}
		return c.Ports[i].HostPort < c.Ports[j].HostPort
	})
	for _, m := range d.Mounts {
		src := m.Source
		if m.Type == "volume" {
			src = m.Name
		}
		c.Volumes = append(c.Volumes, Mount{Source: src, Target: m.Destination, ReadOnly: !m.RW})
	}
	for name, n := range d.NetworkSettings.Networks {
		c.Networks[name] = n.IPAddress
	}
	return c, nil
}

// createBody is the engine's container-create request for spec.
func createBody(spec ContainerSpec) (map[string]any, error) {
	if spec.Image == "" {
		return nil, errors.New("no image")
	}
	if what := notText(spec); what != "" {
		// encoding/json would send it with each bad byte replaced by
		// U+FFFD: the container would get another value than the one
		// given, and every later plan would see it changed.
		return nil, fmt.Errorf("%s is not UTF-8 text, which the engine's JSON cannot carry as it is", what)
	}
	env := make([]string, 0, len(spec.Env))
	for _, k := range slices.Sorted(maps.Keys(spec.Env)) {
		v := spec.Env[k]
		if k == "" || strings.ContainsAny(k, "=\x00") || strings.IndexByte(v, 0) >= 0 {
			return nil, fmt.Errorf("env %q: names cannot be empty or hold '=' or NUL, values cannot hold NUL", k)
		}
		env = append(env, k+"="+v)
	}
	config := map[string]any{
		"Image":  spec.Image,
		"Labels": spec.Labels,
		"Env":    env,
	}
	if spec.Command != nil {
		config["Cmd"] = spec.Command
	}
	if spec.Entrypoint != nil {
		config["Entrypoint"] = spec.Entrypoint
	}
	if spec.User != "" {
		config["User"] = spec.User
	}
	if spec.Workdir != "" {
		config["WorkingDir"] = spec.Workdir
	}
	if spec.StopGrace > 0 {
		config["StopTimeout"] = int(spec.StopGrace.Round(time.Second) / time.Second)
	}
	host := map[string]any{}
	exposed := map[string]any{}
	bindings := map[string][]map[string]string{}
	for _, p := range spec.Ports {
		proto := p.Protocol
		if proto == "" {
			proto = "tcp"
		}
		key := strconv.Itoa(p.ContainerPort) + "/" + proto
		exposed[key] = map[string]any{}
		bindings[key] = append(bindings[key], map[string]string{"HostIp": p.HostIP, "HostPort": strconv.Itoa(p.HostPort)})
	}
	if len(spec.Ports) > 0 {
		config["ExposedPorts"] = exposed
		host["PortBindings"] = bindings
	}
	var mounts []map[string]any
	for _, m := range spec.Volumes {
		typ := "volume"
		if strings.HasPrefix(m.Source, "/") {
			typ = "bind"
		}
		mounts = append(mounts, map[string]any{"Type": typ, "Source": m.Source, "Target": m.Target, "ReadOnly": m.ReadOnly})
	}
	if mounts != nil {
		host["Mounts"] = mounts
	}
	if spec.Restart != "" {
		name, n, _ := strings.Cut(spec.Restart, ":")
		rp := map[string]any{"Name": name}
		if n != "" {
			count, err := strconv.Atoi(n)
			if err != nil || name != "on-failure" {
				return nil, fmt.Errorf("restart policy %q: want no, always, unless-stopped, on-failure or on-failure:N", spec.Restart)
			}
			rp["MaximumRetryCount"] = count
		}
		host["RestartPolicy"] = rp
	}
	if spec.CPUs > 0 {
		host["NanoCpus"] = int64(spec.CPUs * 1e9)
	}
	if spec.Memory > 0 {
		host["Memory"] = spec.Memory
	}
	body := map[string]any{}
	for k, v := range config {
		body[k] = v
	}
	body["HostConfig"] = host
	if len(spec.Networks) > 0 {
		// The first network is given at creation, the others are connected
		// afterwards: the engine takes one endpoint in a create request.
		host["NetworkMode"] = spec.Networks[0]
		body["NetworkingConfig"] = map[string]any{"EndpointsConfig": map[string]any{spec.Networks[0]: map[string]any{}}}
	}
	return body, nil
}

// notText names the first value of spec, in the create request, that is
// not valid UTF-8, or returns "". Values are not shown: an env value may
// be a secret.
func notText(spec ContainerSpec) string {
	type value struct{ what, s string }
	values := []value{{"the image", spec.Image}, {"the user", spec.User}, {"the workdir", spec.Workdir}, {"the restart policy", spec.Restart}}
	for i, a := range spec.Command {
		values = append(values, value{fmt.Sprintf("command[%d]", i), a})
	}
	for i, a := range spec.Entrypoint {
		values = append(values, value{fmt.Sprintf("entrypoint[%d]", i), a})
	}
	for _, k := range slices.Sorted(maps.Keys(spec.Env)) {
		values = append(values, value{fmt.Sprintf("env %q", k), k}, value{fmt.Sprintf("env %q", k), spec.Env[k]})
	}
	for _, k := range slices.Sorted(maps.Keys(spec.Labels)) {
		values = append(values, value{fmt.Sprintf("label %q", k), k}, value{fmt.Sprintf("label %q", k), spec.Labels[k]})
	}
	for i, m := range spec.Volumes {
		values = append(values, value{fmt.Sprintf("volume[%d]", i), m.Source}, value{fmt.Sprintf("volume[%d]", i), m.Target})
	}
	for i, p := range spec.Ports {
		values = append(values, value{fmt.Sprintf("port[%d]", i), p.HostIP}, value{fmt.Sprintf("port[%d]", i), p.Protocol})
	}
	for i, n := range spec.Networks {
		values = append(values, value{fmt.Sprintf("network[%d]", i), n})
	}
	for _, v := range values {
		if !utf8.ValidString(v.s) {
			return v.what
		}
	}
	return ""
}

// ShortID is a container ID as docker ps shows it, the first 12 of its 64
// hex digits, so that a message stays readable; names stay whole.
func ShortID(id string) string {
	if len(id) == 64 && strings.Trim(id, "0123456789abcdef") == "" {
		return id[:12]
	}
	return id
}

// Create creates a container from spec and returns its ID. It does not
// start it.
func (e *Engine) Create(ctx context.Context, spec ContainerSpec) (string, error) {
	op := "creating container " + spec.Name
	body, err := createBody(spec)
	if err != nil {
		return "", e.c.fail(op, err)
	}
	path := "/containers/create"
	if spec.Name != "" {
		path += "?name=" + url.QueryEscape(spec.Name)
	}
	var created struct {
		ID string `json:"Id"`
	}
	if err := e.callJSON(ctx, op, request{method: "POST", path: path, body: body}, &created); err != nil {
		return "", err
	}
	for _, n := range spec.Networks[min(1, len(spec.Networks)):] {
		if _, err := e.call(ctx, op, request{method: "POST", path: "/networks/" + url.PathEscape(n) + "/connect",
			body: map[string]any{"Container": created.ID}}); err != nil {
			return created.ID, err
		}
	}
	return created.ID, nil
}

// Start starts a created or stopped container.
func (e *Engine) Start(ctx context.Context, id string) error {
	_, err := e.call(ctx, "starting container "+ShortID(id), request{method: "POST", path: "/containers/" + url.PathEscape(id) + "/start"})
	if isNotModified(err) {
		return nil
	}
	return err
}

// Rename gives a container another name, running or not.
func (e *Engine) Rename(ctx context.Context, id, name string) error {
	_, err := e.call(ctx, "renaming container "+ShortID(id), request{method: "POST", path: "/containers/" + url.PathEscape(id) + "/rename?name=" + url.QueryEscape(name)})
	return err
}

// Stop stops a container, giving it grace to exit before it is killed
// (zero: the container's own stop timeout). Stopping a stopped container
// is not an error.
func (e *Engine) Stop(ctx context.Context, id string, grace time.Duration) error {
	path := "/containers/" + url.PathEscape(id) + "/stop"
	if grace > 0 {
		path += "?t=" + strconv.Itoa(int(grace.Round(time.Second)/time.Second))
	}
	_, err := e.call(ctx, "stopping container "+ShortID(id), request{method: "POST", path: path})
	if isNotModified(err) {
		return nil
	}
	return err
}

// Remove removes a container; with force, a running one too. Its anonymous
// volumes go with it.
func (e *Engine) Remove(ctx context.Context, id string, force bool) error {
	path := "/containers/" + url.PathEscape(id) + "?v=1&force=" + strconv.FormatBool(force)
	_, err := e.call(ctx, "removing container "+ShortID(id), request{method: "DELETE", path: path})
	var ee *EngineError
	if errors.As(err, &ee) && ee.Status == http.StatusConflict && strings.Contains(ee.Message, "already in progress") {
		// A removal asked for by a run that was stopped at once goes
		// on in the engine: this one is done when that one is.
		for err = nil; err == nil; {
			select {
			case <-ctx.Done():
				return e.c.fail("removing container "+ShortID(id), ctx.Err())
			case <-time.After(100 * time.Millisecond):
			}
			_, err = e.Inspect(ctx, id)
		}
		if errors.Is(err, ErrNotFound) {
			return nil
		}
	}
	return err
}

// Inspect reads one container. A missing one is an error matching
// ErrNotFound.
func (e *Engine) Inspect(ctx context.Context, id string) (*Container, error) {
	op := "inspecting container " + ShortID(id)
	resps, err := e.call(ctx, op, request{method: "GET", path: "/containers/" + url.PathEscape(id) + "/json"})
	if err != nil {
		return nil, err
	}
	c, err := parseContainer(resps[0].body)
	if err != nil {
		return nil, e.c.fail(op, err)
	}
	return &c, nil
}

// List reads every container, running or not, that carries all of
// labels: the list and then each one's document, pipelined in one
// exchange. A container removed between the two is left out.
func (e *Engine) List(ctx context.Context, labels map[string]string) ([]Container, error) {
	const op = "listing containers"
	var want []string
	for k, v := range labels {
		want = append(want, k+"="+v)
	}
	sort.Strings(want)
	filters, _ := json.Marshal(map[string][]string{"label": want})
	var list []struct {
		ID string `json:"Id"`
	}
	if err := e.callJSON(ctx, op, request{method: "GET", path: "/containers/json?all=1&filters=" + url.QueryEscape(string(filters))}, &list); err != nil {
		return nil, err
	}
	out := []Container{}
	if len(list) == 0 {
		return out, nil
	}
	reqs := make([]request, len(list))
	for i, c := range list {
		reqs[i] = inspectRequest(c.ID)
	}
	ac, err := e.get(ctx)
	if err != nil {
		return nil, e.c.fail(op, err)
	}
	docs, err := e.pipeline(ctx, ac, reqs)
	if err != nil {
		return nil, e.c.fail(op, err)
	}
	e.put(ac)
	for _, d := range docs {
		if d.status == http.StatusNotFound {
			continue
		}
		if err := d.err(); err != nil {
			return nil, e.c.fail(op, err)
		}
		c, err := parseContainer(d.body)
		if err != nil {
			return nil, e.c.fail(op, err)
		}
		out = append(out, c)
	}
	return out, nil
}

// isNotModified reports an engine answer 304: the container was already in
// the state asked for.
func isNotModified(err error) bool {
	var ee *EngineError
	return errors.As(err, &ee) && ee.Status == http.StatusNotModified
}

// EnsureNetwork creates a bridge network called name unless one exists.
func (e *Engine) EnsureNetwork(ctx context.Context, name string, labels map[string]string) error {
	op := "ensuring network " + name
	resps, err := e.call(ctx, op, request{method: "GET", path: "/networks/" + url.PathEscape(name)})
	if err == nil && resps[0].status == http.StatusOK {
		return nil
	}
	if !errors.Is(err, ErrNotFound) {
		return err
	}
	_, err = e.call(ctx, op, request{method: "POST", path: "/networks/create",
		body: map[string]any{"Name": name, "Driver": "bridge", "CheckDuplicate": true, "Labels": labels}})
	if err != nil && isConflict(err) {
		return nil // created meanwhile by someone else
	}
	return err
}

// EnsureVolume creates a local volume called name unless one exists.
func (e *Engine) EnsureVolume(ctx context.Context, name string, labels map[string]string) error {
	op := "ensuring volume " + name
	resps, err := e.call(ctx, op, request{method: "GET", path: "/volumes/" + url.PathEscape(name)})
	if err == nil && resps[0].status == http.StatusOK {
		return nil
	}
	if !errors.Is(err, ErrNotFound) {
		return err
	}
	_, err = e.call(ctx, op, request{method: "POST", path: "/volumes/create",
		body: map[string]any{"Name": name, "Driver": "local", "Labels": labels}})
	return err
}

func isConflict(err error) bool {
	var ee *EngineError
	return errors.As(err, &ee) && ee.Status == http.StatusConflict
}

// ImageInspect reads an image on the host. A missing one is an error
// matching ErrNotFound.
func (e *Engine) ImageInspect(ctx context.Context, ref string) (*Image, error) {
	var d imageDoc
	if err := e.callJSON(ctx, "inspecting image "+ref, request{method: "GET", path: "/images/" + imagePath(ref) + "/json"}, &d); err != nil {
		return nil, err
	}
	return d.image(), nil
}

// imageDoc is the part of the engine's image document fleet reads.
type imageDoc struct {
	ID           string `json:"Id"`
	RepoTags     []string
	Created      time.Time
	Size         int64
	Config       struct{ Labels map[string]string }
	RootFS       struct{ Layers []string }
	Os           string
	Architecture string
	Variant      string
}

func (d *imageDoc) image() *Image {
	platform := d.Os + "/" + d.Architecture
	if d.Variant != "" {
		platform += "/" + d.Variant
	}
	return &Image{ID: d.ID, RepoTags: d.RepoTags, Created: d.Created, Size: d.Size, Labels: d.Config.Labels, Layers: d.RootFS.Layers, Platform: platform}
}

// Images reads every image on the host with its layers: the list, then
// every image's document, asked at once on one stream. An image removed
// in between is left out.
func (e *Engine) Images(ctx context.Context) ([]Image, error) {
	const op = "reading images"
	var list []struct {
		ID string `json:"Id"`
	}
	if err := e.callJSON(ctx, op, request{method: "GET", path: "/images/json"}, &list); err != nil {
		return nil, err
	}
	if len(list) == 0 {
		return nil, nil
	}
	reqs := make([]request, len(list))
	for i, img := range list {
		reqs[i] = request{method: "GET", path: "/images/" + url.PathEscape(img.ID) + "/json"}
	}
	resps, err := e.call(ctx, op, reqs...)
	if err != nil && resps == nil {
		return nil, err
	}
	var images []Image
	for _, r := range resps {
		if r.status == http.StatusNotFound {
			continue
		}
		if err := r.err(); err != nil {
			return nil, e.c.fail(op, err)
		}
		var d imageDoc
		if err := json.Unmarshal(r.body, &d); err != nil {
			return nil, e.c.fail(op, fmt.Errorf("decoding the engine's answer: %w", err))
		}
		images = append(images, *d.image())
	}
	return images, nil
}

// Platform is what the host's engine runs: os/architecture, as its
// /version says (amd64, arm64; the variant of an arm CPU is not said).
func (e *Engine) Platform(ctx context.Context) (string, error) {
	var v struct{ Os, Arch string }
	if err := e.callJSON(ctx, "reading the engine's version", request{method: "GET", path: "/version"}, &v); err != nil {
		return "", err
	}
	return v.Os + "/" + v.Arch, nil
}

// RemoveImage removes an image reference, as docker rmi does without
// force: a tag goes, and the image with it once nothing else names it;
// an image a container uses, or given by ID while several tags name it, is
// a conflict the engine refuses. A missing one matches ErrNotFound.
func (e *Engine) RemoveImage(ctx context.Context, ref string) error {
	_, err := e.call(ctx, "removing image "+ShortID(ref), request{method: "DELETE", path: "/images/" + imagePath(ref)})
	return err
}

// DiskUsage is what the engine's images take on its disk.
type DiskUsage struct {
	// Layers is the size of every layer, each counted once.
	Layers int64 `json:"layers"`
	// Images holds, by image ID, the bytes of its layers that no other
	// image shares: what removing it alone frees.
	Images map[string]int64 `json:"images"`
}

// DiskUsage asks the engine what its images take, as docker system df
// does. The engine works it out over every image and container, which
// takes a while on a host with many.
func (e *Engine) DiskUsage(ctx context.Context) (*DiskUsage, error) {
	var d struct {
		LayersSize int64
		Images     []struct {
			ID         string `json:"Id"`
			Size       int64
			SharedSize int64
		}
	}
	if err := e.callJSON(ctx, "reading disk usage", request{method: "GET", path: "/system/df"}, &d); err != nil {
		return nil, err
	}
	u := &DiskUsage{Layers: d.LayersSize, Images: map[string]int64{}}
	for _, img := range d.Images {
		own := img.Size
		if img.SharedSize > 0 {
			own -= img.SharedSize
		}
		u.Images[img.ID] = own
	}
	return u, nil
}

// imagePath escapes an image reference for a path, keeping its slashes,
// which the engine's router expects as they are.
func imagePath(ref string) string {
	parts := strings.Split(ref, "/")
	for i, p := range parts {
		parts[i] = url.PathEscape(p)
	}
	return strings.Join(parts, "/")
}

// Pull pulls ref on the host. auth, when not nil, is handed to the engine
// for this pull alone, in a request header: it is not stored on the host.
// A pull the engine refuses or fails is a [*PullError] that names the
// image, its registry and the likely cause.
func (e *Engine) Pull(ctx context.Context, ref string, auth *RegistryAuth) error {
	op := "pulling " + ref
	name, tag := SplitRef(ref)
	q := url.Values{"fromImage": {name}}
	if tag != "" {
		q.Set("tag", tag)
	}
	r := request{method: "POST", path: "/images/create?" + q.Encode(), header: http.Header{}}
	if auth != nil {
		j, err := json.Marshal(auth)
		if err != nil {
			return e.c.fail(op, err)
		}
		r.header.Set("X-Registry-Auth", base64.URLEncoding.EncodeToString(j))
	}
	err := e.streamProgress(ctx, r, e.c.pullStall)
	if errors.Is(err, errStalled) {
		return e.c.fail(op, fmt.Errorf("no progress for %s: the pull stalled; is the registry %s answering? (--pull-stall-timeout waits longer on a slow link)", e.c.pullStall, ImageRegistry(ref)))
	}
	var ee *EngineError
	if errors.As(err, &ee) {
		// The pull error names the image itself: the host is all its
		// HostError needs to add.
		return e.c.fail("", newPullError(ref, auth != nil, ee))
	}
	if err != nil {
		return e.c.fail(op, err)
	}
	return nil
}

// SplitRef splits a reference into repository and tag or digest; a colon
// in the registry's host:port is not a tag.
func SplitRef(ref string) (name, tag string) {
	if i := strings.Index(ref, "@"); i >= 0 {
		return ref[:i], ref[i+1:]
	}
	slash := strings.LastIndex(ref, "/")
	if i := strings.LastIndex(ref, ":"); i > slash {
		return ref[:i], ref[i+1:]
	}
	return ref, ""
}

// Load loads images from a `docker save` tar stream, read from r as it is
// sent: nothing is staged on either side.
func (e *Engine) Load(ctx context.Context, r io.Reader) error {
	return e.progress(ctx, "loading images", request{method: "POST", path: "/images/load?quiet=1", body: r})
}

// progress runs a request whose answer is a stream of JSON progress
// messages, on a stream of its own, and fails on an error message in it.
func (e *Engine) progress(ctx context.Context, op string, r request) error {
	if err := e.streamProgress(ctx, r, 0); err != nil {
		return e.c.fail(op, err)
	}
	return nil
}

// errStalled is a progress stream that said nothing for its stall time.
var errStalled = errors.New("no progress")

// streamProgress is progress without the host: the engine's refusals,
// whether answered with an error status or in the middle of the stream,
// are an [*EngineError]. A stream that says nothing for stall (0: no
// limit) is ended, with errStalled; ending it ends the engine's work.
func (e *Engine) streamProgress(ctx context.Context, r request, stall time.Duration) (err error) {
	ac, err := e.dial(ctx, false)
	if err != nil {
		return err
	}
	defer ac.st.Close()
	stop := context.AfterFunc(ctx, func() { ac.st.Close() })
	defer stop()
	var stalled atomic.Bool
	heard := func() {}
	if stall > 0 {
		watchdog := time.AfterFunc(stall, func() {
			stalled.Store(true)
			ac.st.Close()
		})
		defer watchdog.Stop()
		heard = func() { watchdog.Reset(stall) }
	}
	defer func() {
		if stalled.Load() && ctx.Err() == nil {
			err = errStalled
		}
	}()
	hr, err := r.http()
	if err != nil {
		return err
	}
	write := make(chan error, 1)
	go func() { write <- hr.Write(ac.st) }()
	resp, err := http.ReadResponse(ac.br, hr)
	if err != nil {
		return e.streamErr(ctx, ac, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		body, _ := io.ReadAll(resp.Body)
		return response{status: resp.StatusCode, body: body}.err()
	}
	dec := json.NewDecoder(resp.Body)
	for {
		var m struct {
			Error       string
			ErrorDetail struct{ Message string }
		}
		if err := dec.Decode(&m); err == io.EOF {
			break
		} else if err != nil {
			return e.streamErr(ctx, ac, err)
		}
		heard()
		if m.Error == "" {
			m.Error = m.ErrorDetail.Message
		}
		if m.Error != "" {
			return &EngineError{Message: m.Error}
		}
	}
	return <-write
}

// Logs copies a container's log lines to stdout and stderr, as the
// container wrote them. With Follow, it returns when the container stops or
// ctx ends.
func (e *Engine) Logs(ctx context.Context, id string, opts LogOptions, stdout, stderr io.Writer) error {
	op := "reading logs of " + id
	q := url.Values{"stdout": {"1"}, "stderr": {"1"}}
	if opts.Follow {
		q.Set("follow", "1")
	}
	if opts.Tail > 0 {
		q.Set("tail", strconv.Itoa(opts.Tail))
	}
	// The engine takes seconds and nanoseconds.
	if !opts.Since.IsZero() {
		q.Set("since", fmt.Sprintf("%d.%09d", opts.Since.Unix(), opts.Since.Nanosecond()))
	}
	if !opts.Until.IsZero() {
		q.Set("until", fmt.Sprintf("%d.%09d", opts.Until.Unix(), opts.Until.Nanosecond()))
	}
	if opts.Timestamps {
		q.Set("timestamps", "1")
	}
	_, resp, done, err := e.stream(ctx, op, request{method: "GET", path: "/containers/" + url.PathEscape(id) + "/logs?" + q.Encode()})
	if err != nil {
		return err
	}
	defer done()
	if err := demux(resp.Body, stdout, stderr); err != nil {
		if ctx.Err() != nil && opts.Follow {
			return nil
		}
		return e.c.fail(op, err)
	}
	return nil
}

// demux splits the engine's multiplexed stream of a container without a
// TTY: frames of an 8-byte header (stream, 3 zero bytes, big-endian size)
// and the payload.
func demux(r io.Reader, stdout, stderr io.Writer) error {
	var hdr [8]byte
	for {
		if _, err := io.ReadFull(r, hdr[:]); err == io.EOF {
			return nil
		} else if err != nil {
			return err
		}
		w := stdout
		if hdr[0] == 2 {
			w = stderr
		}
		if w == nil {
			w = io.Discard
		}
		if _, err := io.CopyN(w, r, int64(binary.BigEndian.Uint32(hdr[4:]))); err != nil {
			return err
		}
	}
}

// createExec makes an exec instance of argv in container id, on a
// terminal (with its input attached) when tty, and returns its ID. A NUL
// in an argument is refused before anything is sent: the engine would cut
// the argument there.
func (e *Engine) createExec(ctx context.Context, op, id string, argv []string, tty bool) (string, error) {
	for _, a := range argv {
		if strings.IndexByte(a, 0) >= 0 {
			return "", e.c.fail(op, ErrNUL)
		}
	}
	var created struct {
		ID string `json:"Id"`
	}
	body := map[string]any{"Cmd": argv, "AttachStdout": true, "AttachStderr": true}
	if tty {
		body["AttachStdin"], body["Tty"] = true, true
	}
	if err := e.callJSON(ctx, op, request{method: "POST", path: "/containers/" + url.PathEscape(id) + "/exec", body: body}, &created); err != nil {
		return "", err
	}
	return created.ID, nil
}

// Exec runs argv in a running container, without a shell, and returns its
// exit code.
func (e *Engine) Exec(ctx context.Context, id string, argv []string, stdout, stderr io.Writer) (int, error) {
	op := "running " + strings.Join(argv, " ") + " in " + id
	execID, err := e.createExec(ctx, op, id, argv, false)
	if err != nil {
		return -1, err
	}
	_, resp, done, err := e.stream(ctx, op, request{method: "POST", path: "/exec/" + execID + "/start", body: map[string]any{"Detach": false, "Tty": false}})
	if err != nil {
		return -1, err
	}
	defer done()
	// The engine hijacks the connection: the output runs until the command
	// ends and the engine closes the stream.
	if err := demux(resp.Body, stdout, stderr); err != nil {
		return -1, e.c.fail(op, err)
	}
	var inspected struct{ ExitCode int }
	if err := e.callJSON(ctx, op, request{method: "GET", path: "/exec/" + execID + "/json"}, &inspected); err != nil {
		return -1, err
	}
	return inspected.ExitCode, nil
}

// stream sends r on a stream of its own, closed when ctx ends, and
// returns the stream and the engine's answer, a success (an upgrade
// included): its body runs for as long as the engine keeps it open, as
// it does for logs followed, events, and an exec's output. done closes
// the stream.
func (e *Engine) stream(ctx context.Context, op string, r request) (ac *apiConn, resp *http.Response, done func(), err error) {
	ac, err = e.dial(ctx, false)
	if err != nil {
		return nil, nil, nil, e.c.fail(op, err)
	}
	stop := context.AfterFunc(ctx, func() { ac.st.Close() })
	done = func() {
		stop()
		ac.st.Close()
	}
	fail := func(err error) (*apiConn, *http.Response, func(), error) {
		done()
		return nil, nil, nil, e.c.fail(op, err)
	}
	hr, err := r.http()
	if err != nil {
		return fail(err)
	}
	if err := hr.Write(ac.st); err != nil {
		return fail(e.streamErr(ctx, ac, err))
	}
	resp, err = http.ReadResponse(ac.br, hr)
	if err != nil {
		return fail(e.streamErr(ctx, ac, err))
	}
	if resp.StatusCode != http.StatusSwitchingProtocols && resp.StatusCode >= 300 {
		body, _ := io.ReadAll(resp.Body)
		return fail(response{status: resp.StatusCode, body: body}.err())
	}
	return ac, resp, done, nil
}

// Terminal is what an interactive command is given: its input, where its
// output goes, and the size of the user's terminal, read at the start and
// again on each value of Resized.
type Terminal struct {
	In      io.Reader
	Out     io.Writer
	Size    func() (width, height int)
	Resized <-chan struct{}
}

// ExecTerminal runs argv in a running container on a terminal of its own,
// without a shell, and returns its exit code: what is read from t.In goes
// to the command, what it writes (one stream, as a terminal has) goes to
// t.Out, and the terminal takes the size of the user's. It ends when the
// command does, or when ctx ends.
func (e *Engine) ExecTerminal(ctx context.Context, id string, argv []string, t Terminal) (int, error) {
	op := "running " + strings.Join(argv, " ") + " in " + id
	execID, err := e.createExec(ctx, op, id, argv, true)
	if err != nil {
		return -1, err
	}
	ac, _, done, err := e.stream(ctx, op, request{method: "POST", path: "/exec/" + execID + "/start", body: map[string]any{"Detach": false, "Tty": true},
		header: http.Header{"Connection": {"Upgrade"}, "Upgrade": {"tcp"}}})
	if err != nil {
		return -1, err
	}
	defer done()
	// From here the stream is the terminal's, both ways.
	resize := func() {
		if t.Size == nil {
			return
		}
		if w, h := t.Size(); w > 0 && h > 0 {
			q := url.Values{"w": {strconv.Itoa(w)}, "h": {strconv.Itoa(h)}}
			e.call(ctx, op, request{method: "POST", path: "/exec/" + execID + "/resize?" + q.Encode()})
		}
	}
	resize()
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case _, ok := <-t.Resized:
				if !ok {
					return
				}
				resize()
			}
		}
	}()
	if t.In != nil {
		go io.Copy(ac.st, t.In)
	}
	if _, err := io.Copy(t.Out, ac.br); err != nil && ctx.Err() == nil {
		return -1, e.c.fail(op, err)
	}
	if err := ctx.Err(); err != nil {
		return -1, e.c.fail(op, err)
	}
	var inspected struct {
		Running  bool
		ExitCode int
	}
	if err := e.callJSON(ctx, op, request{method: "GET", path: "/exec/" + execID + "/json"}, &inspected); err != nil {
		return -1, err
	}
	return inspected.ExitCode, nil
}

// Events calls changed for every change of state the engine reports of
// the containers that carry all of labels, as it happens, until ctx ends
// or the stream is lost (an error).
func (e *Engine) Events(ctx context.Context, labels map[string]string, changed func()) error {
	const op = "following the engine's events"
	var want []string
	for k, v := range labels {
		want = append(want, k+"="+v)
	}
	sort.Strings(want)
	// What changes a container's state: not an exec (a user's docker
	// exec, or fleet exec).
	events := []string{"create", "start", "die", "destroy", "rename", "pause", "unpause", "update", "health_status"}
	filters, _ := json.Marshal(map[string][]string{"type": {"container"}, "label": want, "event": events})
	_, resp, done, err := e.stream(ctx, op, request{method: "GET", path: "/events?filters=" + url.QueryEscape(string(filters))})
	if err != nil {
		return err
	}
	defer done()
	dec := json.NewDecoder(resp.Body)
	for {
		var ev struct{ Type, Action string }
		if err := dec.Decode(&ev); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return e.c.fail(op, err)
		}
		changed()
	}
}
