package check

import (
	"encoding/json"
	"testing"

	"github.com/fleetdeploy/fleet/export"
	"github.com/fleetdeploy/fleet/inventory"
	"github.com/fleetdeploy/fleet/plan"
)

// The projects every checker reads: the example project, and the
// export package's own test projects, which set every key and a hostile
// value.
func projects(t *testing.T) map[string][2]any {
	t.Helper()
	out := map[string][2]any{}
	inv, err := inventory.Load("../../examples/shop/inventory.yaml", inventory.Options{SSHConfig: "none"})
	if err != nil {
		t.Fatal(err)
	}
	p, err := plan.LoadProject("../../examples/shop/fleet.yaml", inv)
	if err != nil {
		t.Fatal(err)
	}
	out["shop"] = [2]any{p, inv}
	out["full"] = parse(t, fullProject, fullInventory)
	h, _ := json.Marshal(hostile)
	out["hostile"] = parse(t, "project: x\nservices:\n  a:\n    image: nginx\n    replicas: 1\n    command: [sh, -c, "+string(h)+"]\n    env: {X: "+string(h)+"}\n    labels: {l: "+string(h)+"}\n    secrets: {S: env:S}\n", "hosts:\n  h1: {}\n")
	// Inventory labels that each format names its own way: a prefix, a
	// leading digit, '_' and '.' (node labels for Swarm and Kubernetes,
	// client meta for Nomad).
	out["labels"] = parse(t, "project: labels\nservices:\n  a:\n    image: nginx\n    replicas: 2\n    spread: 1zone\n    hosts: 1zone in (a,b),example.com/tier=web_1.a\n",
		"hosts:\n  h1: {labels: {example.com/tier: web_1.a, 1zone: a}}\n  h2: {labels: {example.com/tier: web_1.a, 1zone: b}}\n")
	return out
}

func parse(t *testing.T, fleetYAML, invYAML string) [2]any {
	t.Helper()
	inv, err := inventory.Parse("inventory.yaml", []byte(invYAML), inventory.Options{SSHConfig: "none"})
	if err != nil {
		t.Fatal(err)
	}
	p, err := plan.ParseProject("fleet.yaml", []byte(fleetYAML), inv)
	if err != nil {
		t.Fatal(err)
	}
	return [2]any{p, inv}
}

func render(t *testing.T, format string, pi [2]any) []byte {
	t.Helper()
	out, err := export.Render(format, pi[0].(*plan.Project), pi[1].(*inventory.Inventory))
	if err != nil {
		t.Fatal(err)
	}
	return out
}

const hostile = "it's \"quoted\": #not a comment\n${HOME} $(id) %{ if x } \\ \t- [a, b] {c: d}"

const fullInventory = `hosts:
  web1: {address: 203.0.113.10, labels: {role: web, zone: a}}
  web2: {address: 203.0.113.11, labels: {role: web, zone: b, gpu: "yes"}}
  db1: {labels: {role: db}}
groups:
  front: [web1, web2]
`

const fullProject = `project: full
services:
  web:
    image: ghcr.io/acme/web:1.4.2
    pull: always
    hosts: role in (web,db),zone!=c
    replicas: 4
    max_per_host: 2
    spread: zone
    command: [bundle, exec, puma]
    entrypoint: [/bin/sh, -c]
    env: {RAILS_ENV: production}
    secrets:
      DATABASE_URL: env:DATABASE_URL
      API_KEY: file:/etc/api key
    volumes: ["data:/var/lib/app", "/srv/uploads:/uploads:ro"]
    networks: [backend]
    resources: {cpus: 1.5, memory: 512M}
    restart: on-failure:3
    user: "1000:1000"
    workdir: /app
    labels: {team: shop}
    stop_grace: 30s
    healthcheck: {http: /up, port: 8080, interval: 500ms, timeout: 2s, retries: 3, start_period: 5s}
    update: {parallelism: [1, "50%"], order: start-first, monitor: 5s, failure_action: continue, max_failure_ratio: 0.25, healthy_deadline: 15m}
    history: 5
    depends_on: [db]
    proxy: {host: shop.example.com, path: /, port: 8080, tls: true}
    pre_stop: [/app/drain]
    image_delivery: push
  api:
    image: ghcr.io/acme/api:1
    hosts: group=front
    replicas: 2
    update: {parallelism: "50%", order: start-first}
    healthcheck: {tcp: 9000}
    proxy: {host: api.example.com, path: /v1, port: 9000, tls: internal}
  db:
    image: postgres:16
    hosts: gpu
    user: postgres
    volumes: ["pgdata:/var/lib/postgresql/data"]
    healthcheck: {docker: true}
    restart: "no"
    ports: ["5432:5432", "127.0.0.1:9090:9090/udp"]
    update: {order: start-first}
hooks:
  pre_apply: ["true"]
registries:
  ghcr.io: {username: acme, password: env:GHCR_TOKEN}
networks:
  backend: {}
volumes:
  data: {}
  pgdata: {}
`
