package executor

import (
	"encoding/json"
	"time"
)

// LabelProject marks the containers fleet manages, with the project's name
// as value. Containers without it are never touched.
const LabelProject = "fleet.project"

// ContainerSpec is a container to create: what fleet sets, nothing more.
type ContainerSpec struct {
	Name   string
	Image  string
	Labels map[string]string
	// Env reaches the engine inside the SSH connection, in the body of the
	// create request: it is never on a command line, in a file on the host
	// or in any output.
	Env map[string]string
	// Command and Entrypoint replace the image's when not nil.
	Command    []string
	Entrypoint []string
	Ports      []Port
	Volumes    []Mount
	Networks   []string
	// Restart is no, always, unless-stopped, on-failure or on-failure:N.
	Restart string
	User    string
	Workdir string
	// CPUs (fractions allowed) and Memory (bytes) limit the container; zero
	// means no limit.
	CPUs   float64
	Memory int64
	// StopGrace is how long a stop waits before killing; zero keeps the
	// engine's default of 10s.
	StopGrace time.Duration
}

// Port publishes a container port on the host.
type Port struct {
	HostIP        string `json:"host_ip,omitempty"`
	HostPort      int    `json:"host_port"`
	ContainerPort int    `json:"container_port"`
	Protocol      string `json:"protocol"` // tcp or udp
}

// Mount is a named volume (Source is a name) or a bind mount (Source is an
// absolute path).
type Mount struct {
	Source   string `json:"source"`
	Target   string `json:"target"`
	ReadOnly bool   `json:"read_only,omitempty"`
}

// Container is a container as the engine reports it: its configuration and
// its state.
type Container struct {
	ID         string            `json:"id"`
	Name       string            `json:"name"`
	Image      string            `json:"image"`    // as asked for at creation
	ImageID    string            `json:"image_id"` // what it runs
	Labels     map[string]string `json:"labels"`
	Env        map[string]string `json:"env"` // the image's defaults included
	Command    []string          `json:"command"`
	Entrypoint []string          `json:"entrypoint"`
	Ports      []Port            `json:"ports"`
	Volumes    []Mount           `json:"volumes"`
	// Networks maps each network the container is attached to to its
	// address there.
	Networks  map[string]string `json:"networks"`
	Restart   string            `json:"restart"`
	User      string            `json:"user"`
	Workdir   string            `json:"workdir"`
	CPUs      float64           `json:"cpus"`
	Memory    int64             `json:"memory"`
	StopGrace time.Duration     `json:"stop_grace"`

	Created      time.Time `json:"created"`
	Status       string    `json:"status"` // created, running, paused, restarting, removing, exited, dead
	Running      bool      `json:"running"`
	ExitCode     int       `json:"exit_code"`
	StartedAt    time.Time `json:"started_at"`
	FinishedAt   time.Time `json:"finished_at"`
	Health       string    `json:"health,omitempty"` // starting, healthy, unhealthy; empty without a health check
	RestartCount int       `json:"restart_count"`

	// Raw is the engine's whole inspect document, for what the fields above
	// leave out.
	Raw json.RawMessage `json:"-"`
}

// Facts describe a host, for placement and for `fleet hosts`.
type Facts struct {
	DockerVersion string `json:"docker_version"`
	APIVersion    string `json:"api_version"`
	CPUs          int    `json:"cpus"`          // online
	MemTotal      int64  `json:"mem_total"`     // bytes
	MemAvailable  int64  `json:"mem_available"` // bytes
	// DiskFree is the space available on the filesystem of
	// /var/lib/docker (of / on a host without it), in bytes.
	DiskFree int64 `json:"disk_free"`
}

// HostState is everything fleet reads from a host to plan: its facts and
// every container of one project.
type HostState struct {
	Host       string      `json:"host"`
	Facts      Facts       `json:"facts"`
	Containers []Container `json:"containers"`
	// Images maps every tag on the host (repository:tag) to its image ID.
	Images map[string]string `json:"images"`
}

// Image is an image present on a host.
type Image struct {
	ID       string            `json:"id"`
	RepoTags []string          `json:"repo_tags"`
	Created  time.Time         `json:"created"`
	Size     int64             `json:"size"`
	Labels   map[string]string `json:"labels"`
	// Layers are the image's layers by their diff IDs (the digests of
	// their uncompressed tars), base first.
	Layers []string `json:"layers"`
	// Platform is os/architecture, with /variant where it has one.
	Platform string `json:"platform"`
}

// RegistryAuth is a registry login handed to the engine for one pull. It
// travels in a request header and is never stored on the host.
type RegistryAuth struct {
	Username      string `json:"username,omitempty"`
	Password      string `json:"password,omitempty"`
	ServerAddress string `json:"serveraddress,omitempty"`
}

// LogOptions choose the log lines of a container.
type LogOptions struct {
	Follow     bool
	Tail       int // lines from the end; 0 means all
	Since      time.Time
	Until      time.Time
	Timestamps bool
}
