package plan

import (
	"time"

	"github.com/fleetdeploy/fleet/internal/diag"
	"github.com/fleetdeploy/fleet/inventory"
)

// Project is the desired state: what fleet.yaml asks for, decoded,
// defaulted and checked.
type Project struct {
	File       string
	Name       string
	Services   []*Service // in file order
	Registries map[string]Registry
	Networks   []string
	Volumes    []string
	// ProxyImage is the reverse proxy run on the hosts of proxied
	// services.
	ProxyImage string
	Hooks      Hooks
}

// Hooks are local commands, each an argument vector run without a shell
// in fleet.yaml's directory, around an apply that changes something.
type Hooks struct {
	// PreApply runs once the plan is known and the deploy lock taken;
	// failing, it stops the run before anything changes.
	PreApply []string
	// PostApply runs after a run that changed everything it planned.
	PostApply []string
	// OnFailure runs after a run that failed, was rolled back, or was
	// interrupted, once PreApply let it begin.
	OnFailure []string
}

// Service returns the service called name, or nil.
func (p *Project) Service(name string) *Service {
	for _, s := range p.Services {
		if s.Name == name {
			return s
		}
	}
	return nil
}

// Service is a container template plus where and how its instances run.
type Service struct {
	Name  string
	Pos   diag.Pos
	Image string
	Pull  string // missing, always or never
	// Hosts selects the hosts the service may run on; nil means all.
	Hosts *inventory.Selector
	// Replicas is the number of instances; 0 with ReplicasSet false means
	// one on every selected host.
	Replicas    int
	ReplicasSet bool
	MaxPerHost  int
	Spread      string
	Command     []string // nil: the image's own
	Entrypoint  []string // nil: the image's own
	Env         map[string]string
	Secrets     map[string]SecretRef
	Ports       []Port
	Volumes     []Mount
	Networks    []string
	Resources   Resources
	Restart     Restart
	User        string
	Workdir     string
	Labels      map[string]string
	StopGrace   time.Duration
	// PreStop runs in a container before fleet stops it (a drain hook),
	// for at most StopGrace; it is not part of the template, so changing
	// it replaces no container.
	PreStop     []string
	Healthcheck *Healthcheck // nil: running counts as healthy
	Update      UpdatePolicy
	History     int
	DependsOn   []string
	Proxy       *Proxy
	// ImageDelivery is pull (hosts pull from the registry) or push (fleet
	// copies the local image over SSH).
	ImageDelivery string

	// where each key was written, for errors found after decoding
	pos   map[string]diag.Pos
	hosts hostsRef
}

// hostsRef remembers how "hosts:" was written, to place selector errors
// at their column, or at the list item.
type hostsRef struct {
	pos    diag.Pos   // the value's first character
	quoted bool       // a quoted scalar: offsets start one column later
	items  []diag.Pos // for a list of host names
	bad    bool       // unreadable: the service's placement is not checked
}

// SecretRef says where a secret's value comes from; the value itself is
// read only when it is needed, and never stored.
type SecretRef struct {
	Source string // env, file or cmd
	Ref    string // variable name, path or command
}

func (r SecretRef) String() string { return r.Source + ":" + r.Ref }

// Port is a published port.
type Port struct {
	HostIP    string `json:"host_ip,omitempty"` // "" for every address
	Host      int    `json:"host"`
	Container int    `json:"container"`
	Proto     string `json:"proto"` // tcp or udp
}

// Mount is a volume or bind mount.
type Mount struct {
	Source   string `json:"source"` // a declared volume's name, or an absolute host path
	Target   string `json:"target"`
	ReadOnly bool   `json:"read_only,omitempty"`
	Named    bool   `json:"named,omitempty"`
}

// Resources are the container's limits; zero means none.
type Resources struct {
	CPUs   float64
	Memory int64 // bytes
}

// Restart is Docker's restart policy.
type Restart struct {
	Policy     string // no, always, on-failure, unless-stopped
	MaxRetries int    // for on-failure:N
}

func (r Restart) String() string {
	if r.Policy == "on-failure" && r.MaxRetries > 0 {
		return "on-failure:" + itoa(r.MaxRetries)
	}
	return r.Policy
}

// Healthcheck gates every rollout step. Exactly one of HTTP, TCP, Cmd and
// Docker is set.
type Healthcheck struct {
	HTTP        string // path to GET; 2xx and 3xx pass
	TCP         int    // port to connect to
	Cmd         []string
	Docker      bool // the image's own HEALTHCHECK
	Port        int  // container port for HTTP
	Interval    time.Duration
	Timeout     time.Duration
	Retries     int
	StartPeriod time.Duration
}

// UpdatePolicy is how a changed service rolls out.
type UpdatePolicy struct {
	Parallelism     Parallelism
	Order           string // stop-first or start-first
	Monitor         time.Duration
	FailureAction   string // rollback, pause or continue
	MaxFailureRatio float64
	HealthyDeadline time.Duration
}

// Parallelism is how many instances change at once: a list of waves, the
// last repeating ("parallelism: 2" is one wave of 2, repeated).
type Parallelism struct {
	Waves []Wave
}

// Wave is a step size: a count, or a percentage of the changed instances.
type Wave struct {
	Count   int
	Percent float64 // when > 0, Count is unused
}

// Proxy routes a host name and path to the service through the hosts'
// reverse proxy.
type Proxy struct {
	Host string
	Path string
	Port int
	TLS  TLS
	// DrainTimeout bounds how long an old instance, out of the route, may
	// finish the requests it has in flight before it is stopped.
	DrainTimeout time.Duration
}

// TLS is how the proxy serves a route.
type TLS string

const (
	// TLSOff serves plain HTTP (tls: false).
	TLSOff TLS = ""
	// TLSPublic serves HTTPS with a certificate from a public ACME CA,
	// Let's Encrypt first (tls: true); HTTP redirects to it.
	TLSPublic TLS = "true"
	// TLSInternal serves HTTPS with a certificate from the proxy's own
	// CA (tls: internal); HTTP redirects to it.
	TLSInternal TLS = "internal"
)

// Scheme is the URL scheme the route is served with.
func (t TLS) Scheme() string {
	if t == TLSOff {
		return "http"
	}
	return "https"
}

// DefaultProxyImage is proxy_image when fleet.yaml leaves it out.
const DefaultProxyImage = "caddy:2"

// DefaultDrainTimeout is proxy.drain_timeout when fleet.yaml leaves it out.
const DefaultDrainTimeout = 30 * time.Second

// Registry holds the credentials given to hosts for each pull.
type Registry struct {
	Username string
	Password SecretRef
}

// Defaults that fleet.yaml may leave out.
const (
	DefaultHistory         = 10
	DefaultStopGrace       = 10 * time.Second
	DefaultMonitor         = 5 * time.Second
	DefaultHealthyDeadline = 2 * time.Minute
	DefaultInterval        = 1 * time.Second
	DefaultTimeout         = 2 * time.Second
	DefaultRetries         = 3
)
