package rollout

import "testing"

// familiar writes references as the engine lists tags, so that fleet's
// pulls are told from the tags others gave the same image.
func TestFamiliar(t *testing.T) {
	for ref, want := range map[string]string{
		"nginx":                               "nginx:latest",
		"docker.io/library/nginx:1.27":        "nginx:1.27",
		"index.docker.io/user/app:2":          "user/app:2",
		"127.0.0.1:5000/app":                  "127.0.0.1:5000/app:latest",
		"127.0.0.1:5000/app:3":                "127.0.0.1:5000/app:3",
		"ghcr.io/o/app@sha256:0123456789abcd": "ghcr.io/o/app@sha256:0123456789abcd",
	} {
		if got := familiar(ref); got != want {
			t.Errorf("familiar(%q) = %q, want %q", ref, got, want)
		}
	}
}
