package main

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Times are the simulated engine's: how long its operations take.
type Times struct {
	Start   time.Duration // a container start, as runc and the network set-up take
	Stop    time.Duration // a container stop: the process's exit and the engine's clean-up
	Pull    time.Duration // an image pull
	Healthy time.Duration // from a start to the image's HEALTHCHECK reporting healthy
}

// engine is one host's Docker engine, in memory: its containers, images,
// networks and volumes, answering the part of the Engine API that fleet
// speaks, with the same paths, status codes and JSON fields as dockerd.
// Anything else is answered 404 with a body that says so, and counted.
type engine struct {
	times *Times
	stats *Stats
	trace func(string)

	mu         sync.Mutex
	containers map[string]*container // by ID
	images     map[string]*image     // by ID
	tags       map[string]string     // repository:tag → image ID
	networks   map[string]bool
	volumes    map[string]bool
	nextIP     int
}

type container struct {
	ID         string
	Name       string
	ImageID    string
	Created    time.Time
	Config     createConfig
	Host       createHost
	Networks   map[string]string
	Running    bool
	Status     string
	ExitCode   int
	StartedAt  time.Time
	FinishedAt time.Time
	busy       bool // a start, stop or removal is under way

	// doc is the last inspect document, valid while its state is docState:
	// health checks ask for it many times over while nothing changes, and
	// encoding it anew each time is CPU that real hosts would spend on
	// their own machines, not on fleet's.
	doc      []byte
	docState string
}

type image struct {
	ID       string
	RepoTags []string
	Created  time.Time
}

// createConfig and createHost are the fields of a create request that the
// engine keeps and shows again in the container's document.
type createConfig struct {
	Image        string
	Labels       map[string]string
	Env          []string
	Cmd          []string
	Entrypoint   []string
	User         string
	WorkingDir   string
	StopTimeout  *int
	ExposedPorts map[string]struct{}
	HostConfig   createHost
}

type createHost struct {
	PortBindings  map[string][]struct{ HostIP, HostPort string }
	RestartPolicy struct {
		Name              string
		MaximumRetryCount int
	}
	NanoCpus    int64
	Memory      int64
	NetworkMode string
	Mounts      []struct {
		Type     string
		Source   string
		Target   string
		ReadOnly bool
	}
}

func newEngine(times *Times, stats *Stats) *engine {
	return &engine{times: times, stats: stats, containers: map[string]*container{}, images: map[string]*image{},
		tags: map[string]string{}, networks: map[string]bool{"bridge": true, "host": true, "none": true}, volumes: map[string]bool{}}
}

// answer is one HTTP answer of the engine.
type answer struct {
	status int
	body   []byte
}

func jsonAnswer(status int, v any) answer {
	b, _ := json.Marshal(v)
	return answer{status, b}
}

func errAnswer(status int, format string, args ...any) answer {
	return jsonAnswer(status, map[string]string{"message": fmt.Sprintf(format, args...)})
}

// serve answers the HTTP/1.1 requests read from rw one after the other,
// as dockerd's server does with pipelined requests, until rw ends.
func (e *engine) serve(rw io.ReadWriter) {
	br := bufio.NewReaderSize(rw, 32<<10)
	bw := bufio.NewWriterSize(rw, 32<<10)
	for {
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		body, err := io.ReadAll(req.Body)
		req.Body.Close()
		if err != nil {
			return
		}
		a := e.handle(req, body)
		fmt.Fprintf(bw, "HTTP/1.1 %d %s\r\nApi-Version: 1.43\r\nContent-Type: application/json\r\nServer: Docker/24.0.7 (linux)\r\nContent-Length: %d\r\n\r\n",
			a.status, http.StatusText(a.status), len(a.body))
		bw.Write(a.body)
		// Answers to requests already read wait for the last of a
		// pipelined write, as one flush: one packet, as dockerd sends.
		if br.Buffered() == 0 {
			if err := bw.Flush(); err != nil {
				return
			}
		}
	}
}

func (e *engine) handle(req *http.Request, body []byte) answer {
	e.stats.EngineRequests.Add(1)
	if e.trace != nil {
		e.trace("engine " + req.Method + " " + req.URL.Path)
	}
	p := req.URL.Path
	// A versioned path (/v1.43/...) is the same call.
	if rest, ok := strings.CutPrefix(p, "/v1."); ok {
		if i := strings.IndexByte(rest, '/'); i >= 0 {
			p = rest[i:]
		}
	}
	q := req.URL.Query()
	seg := strings.Split(strings.TrimPrefix(p, "/"), "/")
	m := req.Method
	switch {
	case m == "GET" && p == "/_ping":
		return answer{200, []byte("OK")}
	case m == "GET" && p == "/version":
		return jsonAnswer(200, map[string]string{"Version": "24.0.7", "ApiVersion": "1.43", "Os": "linux", "Arch": "amd64"})
	case m == "GET" && p == "/containers/json":
		return e.list(q)
	case m == "POST" && p == "/containers/create":
		return e.create(q.Get("name"), body)
	case len(seg) == 3 && seg[0] == "containers" && m == "GET" && seg[2] == "json":
		return e.inspect(seg[1])
	case len(seg) == 3 && seg[0] == "containers" && m == "POST" && seg[2] == "start":
		return e.start(seg[1])
	case len(seg) == 3 && seg[0] == "containers" && m == "POST" && seg[2] == "stop":
		return e.stop(seg[1])
	case len(seg) == 3 && seg[0] == "containers" && m == "POST" && seg[2] == "rename":
		return e.rename(seg[1], q.Get("name"))
	case len(seg) == 2 && seg[0] == "containers" && m == "DELETE":
		return e.remove(seg[1], q.Get("force") == "true" || q.Get("force") == "1")
	case m == "GET" && p == "/images/json":
		return e.imageList()
	case m == "POST" && p == "/images/create":
		return e.pull(q.Get("fromImage"), q.Get("tag"))
	case seg[0] == "images" && m == "GET" && len(seg) >= 3 && seg[len(seg)-1] == "json":
		return e.imageInspect(strings.Join(seg[1:len(seg)-1], "/"))
	case seg[0] == "images" && m == "DELETE" && len(seg) >= 2:
		return e.imageRemove(strings.Join(seg[1:], "/"))
	case len(seg) == 2 && seg[0] == "networks" && m == "GET":
		return e.exists(e.networks, "network", seg[1])
	case m == "POST" && p == "/networks/create":
		return e.make(e.networks, "network", body)
	case len(seg) == 2 && seg[0] == "volumes" && m == "GET":
		return e.exists(e.volumes, "volume", seg[1])
	case m == "POST" && p == "/volumes/create":
		return e.make(e.volumes, "volume", body)
	}
	e.stats.unknown(m + " " + p)
	return errAnswer(404, "the fleet scale simulator does not serve %s %s", m, p)
}

func newID() string {
	b := make([]byte, 32)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// find finds a container by ID, unique ID prefix or name; e.mu is held.
func (e *engine) find(ref string) *container {
	if c, ok := e.containers[ref]; ok {
		return c
	}
	var found *container
	for _, c := range e.containers {
		if c.Name == strings.TrimPrefix(ref, "/") {
			return c
		}
		if len(ref) >= 4 && strings.HasPrefix(c.ID, ref) {
			if found != nil {
				return nil
			}
			found = c
		}
	}
	return found
}

func (e *engine) list(q url.Values) answer {
	var filters map[string][]string
	if f := q.Get("filters"); f != "" {
		if err := json.Unmarshal([]byte(f), &filters); err != nil {
			return errAnswer(400, "invalid filter: %v", err)
		}
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	out := []map[string]any{}
	for _, c := range e.sorted() {
		if !q.Has("all") && !c.Running {
			continue
		}
		ok := true
		for _, l := range filters["label"] {
			k, v, withValue := strings.Cut(l, "=")
			got, has := c.Config.Labels[k]
			if !has || withValue && got != v {
				ok = false
			}
		}
		if !ok {
			continue
		}
		out = append(out, map[string]any{"Id": c.ID, "Names": []string{"/" + c.Name}, "Image": c.Config.Image, "ImageID": c.ImageID,
			"Labels": c.Config.Labels, "State": c.Status, "Created": c.Created.Unix()})
	}
	return jsonAnswer(200, out)
}

// sorted is every container, newest first, as the engine lists them.
func (e *engine) sorted() []*container {
	cs := make([]*container, 0, len(e.containers))
	for _, c := range e.containers {
		cs = append(cs, c)
	}
	sort.Slice(cs, func(i, j int) bool { return cs[i].Created.After(cs[j].Created) })
	return cs
}

func (e *engine) create(name string, body []byte) answer {
	var cfg createConfig
	if err := json.Unmarshal(body, &cfg); err != nil {
		return errAnswer(400, "invalid JSON: %v", err)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	imgID, ok := e.tags[normalize(cfg.Image)]
	if !ok {
		if _, byID := e.images[cfg.Image]; !byID {
			return errAnswer(404, "No such image: %s", cfg.Image)
		}
		imgID = cfg.Image
	}
	if name == "" {
		name = "sim_" + newID()[:8]
	}
	if e.find(name) != nil {
		return errAnswer(409, `Conflict. The container name "/%s" is already in use`, name)
	}
	c := &container{ID: newID(), Name: name, ImageID: imgID, Created: time.Now().UTC(), Config: cfg, Host: cfg.HostConfig,
		Status: "created", Networks: map[string]string{}}
	mode := cfg.HostConfig.NetworkMode
	if mode == "" || mode == "default" {
		mode = "bridge"
	}
	if !e.networks[mode] {
		return errAnswer(404, "network %s not found", mode)
	}
	e.nextIP++
	c.Networks[mode] = fmt.Sprintf("172.17.%d.%d", e.nextIP/250, 2+e.nextIP%250)
	e.containers[c.ID] = c
	return jsonAnswer(201, map[string]any{"Id": c.ID, "Warnings": []string{}})
}

func (e *engine) inspect(ref string) answer {
	e.mu.Lock()
	defer e.mu.Unlock()
	c := e.find(ref)
	if c == nil {
		return errAnswer(404, "No such container: %s", ref)
	}
	health := ""
	if c.Running {
		health = "starting"
		if time.Since(c.StartedAt) >= e.times.Healthy {
			health = "healthy"
		}
	}
	key := fmt.Sprint(c.Status, c.Running, c.ExitCode, c.StartedAt.UnixNano(), c.FinishedAt.UnixNano(), health)
	if c.doc != nil && c.docState == key {
		return answer{200, c.doc}
	}
	state := map[string]any{"Status": c.Status, "Running": c.Running, "Paused": false, "Restarting": false,
		"ExitCode": c.ExitCode, "StartedAt": c.StartedAt, "FinishedAt": c.FinishedAt}
	if c.Running {
		state["Health"] = map[string]any{"Status": health, "FailingStreak": 0}
	}
	var mounts []map[string]any
	for _, m := range c.Host.Mounts {
		d := map[string]any{"Type": m.Type, "Destination": m.Target, "RW": !m.ReadOnly}
		if m.Type == "volume" {
			d["Name"], d["Source"] = m.Source, "/var/lib/docker/volumes/"+m.Source+"/_data"
		} else {
			d["Source"] = m.Source
		}
		mounts = append(mounts, d)
	}
	nets := map[string]any{}
	for n, ip := range c.Networks {
		nets[n] = map[string]any{"IPAddress": ip}
	}
	cfg := map[string]any{"Image": c.Config.Image, "Labels": c.Config.Labels, "Env": c.Config.Env, "Cmd": c.Config.Cmd,
		"Entrypoint": c.Config.Entrypoint, "User": c.Config.User, "WorkingDir": c.Config.WorkingDir, "ExposedPorts": c.Config.ExposedPorts}
	if c.Config.StopTimeout != nil {
		cfg["StopTimeout"] = *c.Config.StopTimeout
	}
	a := jsonAnswer(200, map[string]any{
		"Id": c.ID, "Name": "/" + c.Name, "Image": c.ImageID, "Created": c.Created, "State": state, "RestartCount": 0,
		"Config": cfg, "HostConfig": c.Host, "Mounts": mounts, "NetworkSettings": map[string]any{"Networks": nets},
	})
	c.doc, c.docState = a.body, key
	return a
}

// transition runs a start or stop: the container is busy for the engine's
// time, outside the engine's lock, as dockerd serves other calls meanwhile.
func (e *engine) transition(ref string, want bool, took time.Duration) answer {
	e.mu.Lock()
	c := e.find(ref)
	switch {
	case c == nil:
		e.mu.Unlock()
		return errAnswer(404, "No such container: %s", ref)
	case c.busy:
		e.mu.Unlock()
		return errAnswer(409, "container %s is busy", ref)
	case c.Running == want:
		e.mu.Unlock()
		return answer{304, nil}
	}
	c.busy = true
	e.mu.Unlock()
	time.Sleep(took)
	e.mu.Lock()
	defer e.mu.Unlock()
	c.busy = false
	c.Running = want
	if want {
		c.Status, c.StartedAt, c.ExitCode = "running", time.Now().UTC(), 0
		e.stats.Starts.Add(1)
	} else {
		c.Status, c.FinishedAt, c.ExitCode = "exited", time.Now().UTC(), 0
		e.stats.Stops.Add(1)
	}
	return answer{204, nil}
}

func (e *engine) start(ref string) answer { return e.transition(ref, true, e.times.Start) }
func (e *engine) stop(ref string) answer  { return e.transition(ref, false, e.times.Stop) }

func (e *engine) rename(ref, name string) answer {
	e.mu.Lock()
	defer e.mu.Unlock()
	c := e.find(ref)
	if c == nil {
		return errAnswer(404, "No such container: %s", ref)
	}
	if other := e.find(name); other != nil && other != c {
		return errAnswer(409, `Conflict. The container name "/%s" is already in use`, name)
	}
	c.Name, c.doc = name, nil
	return answer{204, nil}
}

func (e *engine) remove(ref string, force bool) answer {
	e.mu.Lock()
	defer e.mu.Unlock()
	c := e.find(ref)
	switch {
	case c == nil:
		return errAnswer(404, "No such container: %s", ref)
	case c.busy:
		return errAnswer(409, "removal of container %s is already in progress", ref)
	case c.Running && !force:
		return errAnswer(409, "You cannot remove a running container %s. Stop the container before attempting removal or force remove", c.ID)
	}
	delete(e.containers, c.ID)
	return answer{204, nil}
}

// normalize completes a reference as the engine does: a missing tag is
// latest.
func normalize(ref string) string {
	slash := strings.LastIndex(ref, "/")
	if strings.Contains(ref, "@") || strings.LastIndex(ref, ":") > slash {
		return ref
	}
	return ref + ":latest"
}

// imageIDOf is the ID every simulated host gives an image reference: one
// registry serves them all.
func imageIDOf(ref string) string {
	sum := sha256.Sum256([]byte(ref))
	return "sha256:" + hex.EncodeToString(sum[:])
}

func (e *engine) pull(name, tag string) answer {
	if tag == "" {
		tag = "latest"
	}
	ref := name + ":" + tag
	time.Sleep(e.times.Pull)
	e.mu.Lock()
	defer e.mu.Unlock()
	id := imageIDOf(ref)
	img, ok := e.images[id]
	if !ok {
		img = &image{ID: id, Created: time.Now().UTC()}
		e.images[id] = img
	}
	if old, ok := e.tags[ref]; ok && old != id {
		e.untag(old, ref)
	}
	if e.tags[ref] != id {
		img.RepoTags = append(img.RepoTags, ref)
		e.tags[ref] = id
	}
	e.stats.Pulls.Add(1)
	var b bytes.Buffer
	fmt.Fprintf(&b, "{\"status\":\"Pulling from %s\",\"id\":%q}\n", name, tag)
	fmt.Fprintf(&b, "{\"status\":\"Digest: %s\"}\n", id)
	fmt.Fprintf(&b, "{\"status\":\"Status: Downloaded newer image for %s\"}\n", ref)
	return answer{200, b.Bytes()}
}

// untag takes ref off image id; e.mu is held.
func (e *engine) untag(id, ref string) {
	img := e.images[id]
	if img == nil {
		return
	}
	for i, t := range img.RepoTags {
		if t == ref {
			img.RepoTags = append(img.RepoTags[:i], img.RepoTags[i+1:]...)
			break
		}
	}
}

func (e *engine) imageList() answer {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := []map[string]any{}
	for _, img := range e.images {
		tags := img.RepoTags
		if len(tags) == 0 {
			tags = []string{"<none>:<none>"}
		}
		out = append(out, map[string]any{"Id": img.ID, "RepoTags": tags, "Created": img.Created.Unix(), "Size": 10 << 20})
	}
	return jsonAnswer(200, out)
}

// findImage finds an image by ID, reference or ID prefix; e.mu is held.
func (e *engine) findImage(ref string) *image {
	if img, ok := e.images[ref]; ok {
		return img
	}
	if id, ok := e.tags[normalize(ref)]; ok {
		return e.images[id]
	}
	if img, ok := e.images["sha256:"+ref]; ok {
		return img
	}
	return nil
}

func (e *engine) imageInspect(ref string) answer {
	e.mu.Lock()
	defer e.mu.Unlock()
	img := e.findImage(ref)
	if img == nil {
		return errAnswer(404, "No such image: %s", ref)
	}
	return jsonAnswer(200, map[string]any{"Id": img.ID, "RepoTags": img.RepoTags, "Created": img.Created, "Size": 10 << 20,
		"Config": map[string]any{"Labels": map[string]string{}}, "RootFS": map[string]any{"Type": "layers", "Layers": []string{img.ID}},
		"Os": "linux", "Architecture": "amd64"})
}

func (e *engine) imageRemove(ref string) answer {
	e.mu.Lock()
	defer e.mu.Unlock()
	img := e.findImage(ref)
	if img == nil {
		return errAnswer(404, "No such image: %s", ref)
	}
	for _, c := range e.containers {
		if c.ImageID == img.ID {
			return errAnswer(409, "conflict: unable to remove repository reference %q (must force) - container %s is using its referenced image %s", ref, c.ID[:12], img.ID[7:19])
		}
	}
	for _, t := range img.RepoTags {
		delete(e.tags, t)
	}
	delete(e.images, img.ID)
	return jsonAnswer(200, []map[string]string{{"Deleted": img.ID}})
}

func (e *engine) exists(set map[string]bool, kind, name string) answer {
	e.mu.Lock()
	defer e.mu.Unlock()
	if !set[name] {
		return errAnswer(404, "%s %s not found", kind, name)
	}
	return jsonAnswer(200, map[string]any{"Name": name, "Driver": map[string]string{"network": "bridge", "volume": "local"}[kind]})
}

func (e *engine) make(set map[string]bool, kind string, body []byte) answer {
	var req struct{ Name string }
	if err := json.Unmarshal(body, &req); err != nil || req.Name == "" {
		return errAnswer(400, "a %s needs a name", kind)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if set[req.Name] && kind == "network" {
		return errAnswer(409, "network with name %s already exists", req.Name)
	}
	set[req.Name] = true
	return jsonAnswer(201, map[string]string{"Id": newID(), "Name": req.Name})
}

// Stats are what the simulated fleet counts, for the report.
type Stats struct {
	Handshakes     atomic.Int64
	Channels       atomic.Int64
	Sockets        atomic.Int64 // direct-streamlocal channels to the engine
	SFTP           atomic.Int64
	Execs          atomic.Int64 // exec requests, all refused
	EngineRequests atomic.Int64
	Starts, Stops  atomic.Int64
	Pulls          atomic.Int64

	mu       sync.Mutex
	unknowns map[string]int
}

func (s *Stats) unknown(what string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.unknowns == nil {
		s.unknowns = map[string]int{}
	}
	s.unknowns[what]++
}

// Unknown lists the requests the simulator could not answer, with counts.
func (s *Stats) Unknown() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for k, n := range s.unknowns {
		out = append(out, k+" ×"+strconv.Itoa(n))
	}
	sort.Strings(out)
	return out
}

// running reports, for the check at the end, the image of every running
// container of the project.
func (e *engine) running(project string) (images []string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, c := range e.containers {
		if c.Config.Labels["fleet.project"] == project && c.Running {
			images = append(images, c.Config.Image)
		}
	}
	sort.Strings(images)
	return images
}
