package executor

import (
	"fmt"
	"strings"
)

// ImageRegistry is the registry an image reference pulls from: its first
// component when that is a host (it holds a dot or a port, or is
// localhost), docker.io otherwise, as the engine decides.
func ImageRegistry(ref string) string {
	first, _, found := strings.Cut(ref, "/")
	if !found || !strings.ContainsAny(first, ".:") && first != "localhost" {
		return "docker.io"
	}
	return first
}

// PullCause is the likely reason a pull failed, read from the engine's
// answer.
type PullCause string

const (
	// PullNotFound: the registry has no such repository or tag.
	PullNotFound PullCause = "not found"
	// PullDenied: the registry will not say whether the image exists
	// (Docker Hub's "pull access denied"): a wrong name, or a private
	// image without the right credentials.
	PullDenied PullCause = "denied"
	// PullUnauthorized: the registry wants credentials, or refused the
	// ones given.
	PullUnauthorized PullCause = "unauthorized"
	// PullUnreachable: the host could not reach the registry.
	PullUnreachable PullCause = "registry unreachable"
	// PullPlainHTTP: the registry speaks plain HTTP and the engine wants
	// TLS.
	PullPlainHTTP PullCause = "plain http"
	// PullCertificate: the host does not trust the registry's certificate.
	PullCertificate PullCause = "certificate"
	// PullRateLimited: the registry refuses more pulls for now.
	PullRateLimited PullCause = "rate limited"
	// PullPlatform: the image has no variant for the host's platform.
	PullPlatform PullCause = "platform"
	// PullDiskFull: the host ran out of disk space.
	PullDiskFull PullCause = "disk full"
	// PullOther: none of the above.
	PullOther PullCause = "other"
)

// PullError is a pull that the engine refused or could not carry out. It
// says which image, which registry and the likely cause, with what to do,
// and ends with the engine's own words. It names no host: the
// [HostError] around it does.
type PullError struct {
	Image    string // as asked for
	Registry string // docker.io for images without a registry
	Cause    PullCause
	// Credentials is set when credentials were given for the pull.
	Credentials bool
	// Err is the engine's answer.
	Err *EngineError
}

func (e *PullError) Error() string {
	img, reg := e.Image, e.Registry
	var s string
	switch e.Cause {
	case PullNotFound:
		s = fmt.Sprintf("image %s not found on registry %s: check the name and the tag", img, reg)
	case PullDenied:
		s = fmt.Sprintf("image %s not found on registry %s, or private: check the name and the tag, or the credentials for %s under `registries:` in fleet.yaml", img, reg, reg)
	case PullUnauthorized:
		if e.Credentials {
			s = fmt.Sprintf("registry %s refused the credentials for image %s: check `registries:` in fleet.yaml", reg, img)
		} else {
			s = fmt.Sprintf("registry %s wants credentials for image %s: give them under `registries:` in fleet.yaml", reg, img)
		}
	case PullUnreachable:
		s = fmt.Sprintf("registry %s not reachable from the host, pulling %s: check the registry's name and port, and the host's DNS and outbound network", reg, img)
	case PullPlainHTTP:
		s = fmt.Sprintf("registry %s answers in plain HTTP, pulling %s: serve it over TLS, or list it in insecure-registries in the host engine's daemon.json", reg, img)
	case PullCertificate:
		s = fmt.Sprintf("registry %s presents a certificate the host does not trust, pulling %s: install its CA in /etc/docker/certs.d/%s/ on the host", reg, img, reg)
	case PullRateLimited:
		s = fmt.Sprintf("registry %s refuses more pulls for now (rate limit), pulling %s: wait, or give credentials under `registries:` in fleet.yaml", reg, img)
	case PullPlatform:
		s = fmt.Sprintf("image %s on registry %s has no variant for the host's platform", img, reg)
	case PullDiskFull:
		s = fmt.Sprintf("the disk is full, pulling %s: %s", img, diskFullHint)
	default:
		return fmt.Sprintf("pulling %s from registry %s failed: %s", img, reg, e.engineText())
	}
	return s + " (" + e.engineText() + ")"
}

func (e *PullError) Unwrap() error { return e.Err }

func (e *PullError) Is(target error) bool { return target == ErrDiskFull && e.Cause == PullDiskFull }

// engineText is the engine's message for the end of the error, without the
// parts that repeat the image already named: "manifest for web:9 not
// found: manifest unknown: manifest unknown" is "engine: manifest
// unknown".
func (e *PullError) engineText() string {
	msg := strings.TrimSpace(e.Err.Message)
	name, _ := SplitRef(e.Image)
	if reg, rest, ok := strings.Cut(name, "/"); ok && reg == e.Registry {
		name = rest
	}
	parts := strings.Split(msg, ": ")
	for i := len(parts) - 1; i > 0; i-- {
		if containsName(parts[i-1], name) {
			parts = parts[i:]
			break
		}
	}
	// Registries repeat their error code as its message.
	var kept []string
	for _, p := range parts {
		if len(kept) == 0 || kept[len(kept)-1] != p {
			kept = append(kept, p)
		}
	}
	return "engine: " + strings.Join(kept, ": ")
}

// newPullError reads the likely cause of a failed pull of ref from the
// engine's answer.
func newPullError(ref string, credentials bool, ee *EngineError) *PullError {
	return &PullError{Image: ref, Registry: ImageRegistry(ref), Cause: pullCause(ee.Message), Credentials: credentials, Err: ee}
}

func pullCause(msg string) PullCause {
	m := strings.ToLower(msg)
	has := func(subs ...string) bool {
		for _, s := range subs {
			if strings.Contains(m, s) {
				return true
			}
		}
		return false
	}
	switch {
	case has("no matching manifest for"):
		return PullPlatform
	case has("manifest unknown", "name unknown", "repository name not known", "not found: manifest", "no such image"),
		strings.HasPrefix(m, "manifest for ") && strings.Contains(m, " not found"):
		return PullNotFound
	case has("pull access denied", "requested access to the resource is denied"):
		return PullDenied
	case has("toomanyrequests", "too many requests", "rate limit"):
		return PullRateLimited
	case has("unauthorized", "no basic auth credentials", "authentication required", "incorrect username or password"):
		return PullUnauthorized
	case has("server gave http response to https client"):
		return PullPlainHTTP
	case has("x509:", "certificate signed by unknown authority", "certificate is not valid"):
		return PullCertificate
	case has("no space left on device"):
		return PullDiskFull
	case has("dial tcp", "lookup ", "i/o timeout", "connection refused", "no route to host", "network is unreachable",
		"tls handshake timeout", "client.timeout exceeded", "context deadline exceeded", "connection reset"):
		return PullUnreachable
	}
	return PullOther
}

// containsName reports whether s holds name as a whole word of an image
// reference, not inside a longer one.
func containsName(s, name string) bool {
	word := func(b byte) bool {
		return b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9' || b == '-' || b == '_'
	}
	if name == "" {
		return false
	}
	for i := 0; ; {
		j := strings.Index(s[i:], name)
		if j < 0 {
			return false
		}
		start, end := i+j, i+j+len(name)
		if (start == 0 || !word(s[start-1])) && (end == len(s) || !word(s[end])) {
			return true
		}
		i = start + 1
	}
}
