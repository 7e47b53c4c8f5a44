package executor

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestParseContainer(t *testing.T) {
	// testdata/container.json is what Docker 20.10 answers for
	//   docker run -d --name shop-web-1 --label fleet.project=shop ... \
	//     -e 'NASTY=$(x) '\''q' -e PORT=8080 -p 127.0.0.1:8081:8080/tcp \
	//     -p 9000:9000/udp -v fx-data:/data -v /srv:/srv:ro \
	//     --restart on-failure:3 --memory 64m --cpus 0.5 --stop-timeout 7 \
	//     --user 1000:1000 --workdir /app fleet-example/hello:1
	raw, err := os.ReadFile("testdata/container.json")
	if err != nil {
		t.Fatal(err)
	}
	c, err := parseContainer(raw)
	if err != nil {
		t.Fatal(err)
	}
	if c.Name != "shop-web-1" || c.Image != "fleet-example/hello:1" || !strings.HasPrefix(c.ImageID, "sha256:") {
		t.Errorf("name %q image %q id %q", c.Name, c.Image, c.ImageID)
	}
	if c.Labels["fleet.project"] != "shop" || c.Labels["fleet.slot"] != "1" {
		t.Errorf("labels %v", c.Labels)
	}
	if c.Env["NASTY"] != `$(x) 'q` || c.Env["PORT"] != "8080" {
		t.Errorf("env %v", c.Env)
	}
	wantPorts := []Port{{HostIP: "127.0.0.1", HostPort: 8081, ContainerPort: 8080, Protocol: "tcp"}, {HostPort: 9000, ContainerPort: 9000, Protocol: "udp"}}
	if !reflect.DeepEqual(c.Ports, wantPorts) {
		t.Errorf("ports %+v, want %+v", c.Ports, wantPorts)
	}
	vols := map[string]Mount{}
	for _, m := range c.Volumes {
		vols[m.Target] = m
	}
	if vols["/data"] != (Mount{Source: "fx-data", Target: "/data"}) || vols["/srv"] != (Mount{Source: "/srv", Target: "/srv", ReadOnly: true}) {
		t.Errorf("volumes %+v", c.Volumes)
	}
	if c.Restart != "on-failure:3" || c.Memory != 64<<20 || c.CPUs != 0.5 || c.StopGrace != 7*time.Second {
		t.Errorf("restart %q memory %d cpus %v grace %s", c.Restart, c.Memory, c.CPUs, c.StopGrace)
	}
	if c.User != "1000:1000" || c.Workdir != "/app" || c.Entrypoint[0] != "/hello" {
		t.Errorf("user %q workdir %q entrypoint %v", c.User, c.Workdir, c.Entrypoint)
	}
	if c.Status != "running" || !c.Running || c.StartedAt.IsZero() || c.Health == "" {
		t.Errorf("state %q running %v started %s health %q", c.Status, c.Running, c.StartedAt, c.Health)
	}
	if _, ok := c.Networks["bridge"]; !ok {
		t.Errorf("networks %v", c.Networks)
	}
}

func TestCreateBody(t *testing.T) {
	spec := ContainerSpec{
		Name: "shop-web-1", Image: "hello:1",
		Labels:   map[string]string{LabelProject: "shop"},
		Env:      map[string]string{"B": "2", "A": "$(x)"},
		Ports:    []Port{{HostPort: 80, ContainerPort: 8080}},
		Volumes:  []Mount{{Source: "data", Target: "/data"}, {Source: "/srv", Target: "/srv", ReadOnly: true}},
		Networks: []string{"front", "back"},
		Restart:  "on-failure:5", CPUs: 1.5, Memory: 512 << 20, StopGrace: 30 * time.Second,
	}
	body, err := createBody(spec)
	if err != nil {
		t.Fatal(err)
	}
	j, _ := json.Marshal(body)
	var got struct {
		Env          []string
		ExposedPorts map[string]any
		StopTimeout  int
		HostConfig   struct {
			PortBindings  map[string][]map[string]string
			Mounts        []map[string]any
			RestartPolicy struct {
				Name              string
				MaximumRetryCount int
			}
			NanoCpus    int64
			Memory      int64
			NetworkMode string
		}
		NetworkingConfig struct{ EndpointsConfig map[string]any }
	}
	if err := json.Unmarshal(j, &got); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got.Env, []string{"A=$(x)", "B=2"}) {
		t.Errorf("env %v", got.Env)
	}
	if _, ok := got.ExposedPorts["8080/tcp"]; !ok || got.HostConfig.PortBindings["8080/tcp"][0]["HostPort"] != "80" {
		t.Errorf("ports %v %v", got.ExposedPorts, got.HostConfig.PortBindings)
	}
	if got.HostConfig.Mounts[0]["Type"] != "volume" || got.HostConfig.Mounts[1]["Type"] != "bind" || got.HostConfig.Mounts[1]["ReadOnly"] != true {
		t.Errorf("mounts %v", got.HostConfig.Mounts)
	}
	if got.HostConfig.RestartPolicy.Name != "on-failure" || got.HostConfig.RestartPolicy.MaximumRetryCount != 5 {
		t.Errorf("restart %+v", got.HostConfig.RestartPolicy)
	}
	if got.HostConfig.NanoCpus != 1.5e9 || got.HostConfig.Memory != 512<<20 || got.StopTimeout != 30 {
		t.Errorf("limits %d %d %d", got.HostConfig.NanoCpus, got.HostConfig.Memory, got.StopTimeout)
	}
	if _, ok := got.NetworkingConfig.EndpointsConfig["front"]; !ok || got.HostConfig.NetworkMode != "front" || len(got.NetworkingConfig.EndpointsConfig) != 1 {
		t.Errorf("networks %v %q", got.NetworkingConfig.EndpointsConfig, got.HostConfig.NetworkMode)
	}

	for _, bad := range []ContainerSpec{
		{Image: "x", Env: map[string]string{"A": "a\x00b"}},
		{Image: "x", Env: map[string]string{"A=B": "c"}},
		{Image: "x", Restart: "always:3"},
		{Name: "no-image"},
	} {
		if _, err := createBody(bad); err == nil {
			t.Errorf("createBody(%+v) accepted it", bad)
		}
	}
}

func TestDemux(t *testing.T) {
	var stream bytes.Buffer
	frame := func(kind byte, s string) {
		hdr := [8]byte{kind}
		binary.BigEndian.PutUint32(hdr[4:], uint32(len(s)))
		stream.Write(hdr[:])
		stream.WriteString(s)
	}
	frame(1, "out 1\n")
	frame(2, "err 1\n")
	frame(1, "out 2\n")
	var out, errs bytes.Buffer
	if err := demux(&stream, &out, &errs); err != nil {
		t.Fatal(err)
	}
	if out.String() != "out 1\nout 2\n" || errs.String() != "err 1\n" {
		t.Errorf("stdout %q stderr %q", out.String(), errs.String())
	}
	if err := demux(bytes.NewReader([]byte{1, 0, 0, 0, 0, 0, 0, 9, 'x'}), &out, &errs); err == nil {
		t.Error("a cut frame was not an error")
	}
}

func TestSplitRef(t *testing.T) {
	for _, tc := range []struct{ ref, name, tag string }{
		{"hello", "hello", ""},
		{"hello:1", "hello", "1"},
		{"registry:5000/team/app", "registry:5000/team/app", ""},
		{"registry:5000/team/app:2.1", "registry:5000/team/app", "2.1"},
		{"app@sha256:abc", "app", "sha256:abc"},
	} {
		if n, tag := SplitRef(tc.ref); n != tc.name || tag != tc.tag {
			t.Errorf("SplitRef(%q) = %q, %q; want %q, %q", tc.ref, n, tag, tc.name, tc.tag)
		}
	}
}

func TestParseMeminfo(t *testing.T) {
	total, avail, err := parseMeminfo([]byte("MemTotal:       24684084 kB\nMemFree:        1000 kB\nMemAvailable:   23567104 kB\n"))
	if err != nil || total != 24684084*1024 || avail != 23567104*1024 {
		t.Errorf("parseMeminfo = %d, %d, %v", total, avail, err)
	}
	if _, _, err := parseMeminfo([]byte("MemTotal: 1 kB\n")); err == nil {
		t.Error("no MemAvailable: no error")
	}
	if _, _, err := parseMeminfo([]byte("MemTotal: x kB\nMemAvailable: 1 kB\n")); err == nil {
		t.Error("MemTotal x: no error")
	}
}

func TestCountCPUs(t *testing.T) {
	for list, want := range map[string]int{"0\n": 1, "0-1\n": 2, "0-3,8,10-11": 7, "2-2": 1} {
		if got, err := countCPUs(list); err != nil || got != want {
			t.Errorf("countCPUs(%q) = %d, %v; want %d", list, got, err, want)
		}
	}
	for _, bad := range []string{"", "a-b", "3-1", "0,,1", "-1"} {
		if n, err := countCPUs(bad); err == nil {
			t.Errorf("countCPUs(%q) = %d without an error", bad, n)
		}
	}
}

func TestParseFiguresOfThePreamble(t *testing.T) {
	r := parseFigures([]byte(`{"mem_total_kb":2048,"mem_available_kb":1024,"cpus":"0-3","disk":[10,4096]}` + "\n"))
	if r.err != nil || r.cpus != 4 || r.memTotal != 2048*1024 || r.memAvailable != 1024*1024 || r.diskFree != 10*4096 {
		t.Errorf("parseFigures = %+v", r)
	}
	if r := parseFigures([]byte(`{"mem_total_kb":1,"mem_available_kb":1,"cpus":"0","disk":[]}`)); r.err == nil {
		t.Error("no disk figures: no error")
	}
}

func TestEngineErrorNotFound(t *testing.T) {
	err := error(&HostError{Host: "web1", Op: "inspecting container x", Err: response{status: 404, body: []byte(`{"message":"No such container: x"}`)}.err()})
	if !errors.Is(err, ErrNotFound) {
		t.Errorf("%v does not match ErrNotFound", err)
	}
	if want := "host web1: inspecting container x: docker engine: No such container: x (HTTP 404)"; err.Error() != want {
		t.Errorf("error %q, want %q", err, want)
	}
	if errors.Is(response{status: 409, body: []byte(`{"message":"conflict"}`)}.err(), ErrNotFound) {
		t.Error("409 matches ErrNotFound")
	}
}

// TestEngineErrorDiskFull: the engine's ENOSPC, in whatever call, is said
// as a full disk with what to do, and is still the engine's error.
func TestEngineErrorDiskFull(t *testing.T) {
	err := error(&HostError{Host: "web1", Op: "creating container x", Err: response{status: 500,
		body: []byte(`{"message":"write /var/lib/docker/containers/1/.tmp-config.v2.json2: no space left on device"}`)}.err()})
	want := "host web1: creating container x: the disk is full (docker engine: write /var/lib/docker/containers/1/.tmp-config.v2.json2: no space left on device (HTTP 500)): " +
		"free space on the host (`fleet prune` removes the images fleet pulled that no kept revision needs), then run fleet again"
	if err.Error() != want {
		t.Errorf("error %q, want %q", err, want)
	}
	var ee *EngineError
	if !errors.Is(err, ErrDiskFull) || !errors.As(err, &ee) || ee.Status != 500 {
		t.Errorf("%v: not ErrDiskFull around the engine's answer", err)
	}
	pull := newPullError("web:1", false, &EngineError{Message: "failed to register layer: no space left on device"})
	if !errors.Is(pull, ErrDiskFull) {
		t.Errorf("%v does not match ErrDiskFull", pull)
	}
	if errors.Is(response{status: 500, body: []byte(`{"message":"oci runtime error"}`)}.err(), ErrDiskFull) {
		t.Error("another engine error matches ErrDiskFull")
	}
}

func TestShortID(t *testing.T) {
	id := "c2eaf61a9eb1b0c6608a0242d0dae6689b5ab1722362290c164227b0736a6abc"
	for in, want := range map[string]string{id: "c2eaf61a9eb1", "shop-web-1-r2-abc123": "shop-web-1-r2-abc123", id[:20]: id[:20]} {
		if got := ShortID(in); got != want {
			t.Errorf("ShortID(%q) = %q, want %q", in, got, want)
		}
	}
}
