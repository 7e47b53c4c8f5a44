// Command caddy is the Caddy that the integration tests run as the hosts'
// proxy: the test hosts have no internet to pull caddy:2 from, so the
// tests build it from source with the Go module proxy, with only the
// modules fleet drives (the HTTP server, the reverse proxy, TLS and its
// internal CA) to keep the build short. It is its own module so that the
// fleet module neither depends on Caddy nor builds it with ./...
package main

import (
	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	_ "github.com/caddyserver/caddy/v2/modules/caddyhttp"
	_ "github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"
	_ "github.com/caddyserver/caddy/v2/modules/caddypki"
	_ "github.com/caddyserver/caddy/v2/modules/caddytls"
	_ "github.com/caddyserver/caddy/v2/modules/filestorage"
)

func main() { caddycmd.Main() }
