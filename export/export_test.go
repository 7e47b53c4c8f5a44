package export

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/fleetdeploy/fleet/internal/golden"
	"github.com/fleetdeploy/fleet/inventory"
	"github.com/fleetdeploy/fleet/plan"
)

// load reads a project and its inventory as fleet validate does.
func load(t *testing.T, fleetFile, invFile string) (*plan.Project, *inventory.Inventory) {
	t.Helper()
	inv, err := inventory.Load(invFile, inventory.Options{SSHConfig: "none"})
	if err != nil {
		t.Fatal(err)
	}
	p, err := plan.LoadProject(fleetFile, inv)
	if err != nil {
		t.Fatal(err)
	}
	return p, inv
}

func parse(t *testing.T, fleetYAML, invYAML string) (*plan.Project, *inventory.Inventory) {
	t.Helper()
	inv, err := inventory.Parse("inventory.yaml", []byte(invYAML), inventory.Options{SSHConfig: "none"})
	if err != nil {
		t.Fatal(err)
	}
	p, err := plan.ParseProject("fleet.yaml", []byte(fleetYAML), inv)
	if err != nil {
		t.Fatal(err)
	}
	return p, inv
}

var extension = map[string]string{"swarm": "stack.yaml", "kubernetes": "k8s.yaml", "nomad": "nomad.hcl"}

// TestExportShopGolden keeps the example project's three exports byte
// for byte; the checkers (export_tools_test.go here, and the module in
// check/) read the same files. Refresh with go test ./export -update.
func TestExportShopGolden(t *testing.T) {
	p, inv := load(t, "../examples/shop/fleet.yaml", "../examples/shop/inventory.yaml")
	for _, format := range Formats {
		t.Run(format, func(t *testing.T) {
			out, err := Render(format, p, inv)
			if err != nil {
				t.Fatal(err)
			}
			again, _ := Render(format, p, inv)
			if string(again) != string(out) {
				t.Error("two exports of the same project differ")
			}
			golden.Check(t, filepath.Join("testdata", "shop."+extension[format]), string(out))
		})
	}
}

// full sets every setting fleet.yaml has, to see each mapped or noted.
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
    # no ports: a proxied service is reached through proxy.port
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

// TestExportEverySetting keeps an export of a project that sets every
// key, and checks that each setting that does not carry over is named in
// a comment.
func TestExportEverySetting(t *testing.T) {
	p, inv := parse(t, fullProject, fullInventory)
	mustNote := map[string][]string{
		"swarm":      {"depends_on", "pre_stop", "proxy shop.example.com/", "image_delivery: push", "healthy_deadline", "hooks", "registry ghcr.io", "bound to 127.0.0.1", "waves [1, 50%]", "exported as stop-first", "history 5", "docker node update --label-add fleet.full.web=true web1", "/run/secrets"},
		"kubernetes": {"depends_on", "failure_action continue", "max_failure_ratio", "networks [backend]", "max_per_host 2", "restart on-failure:3", "user postgres", "healthcheck docker", "rounded up", "drain_timeout", "cert-manager", "hostPath", "kubectl create secret generic full-secrets", "--from-literal=web_API_KEY=\"$(cat '/etc/api key')\"", "kubectl create secret docker-registry", "image_delivery: push", "hooks"},
		"nomad":      {"depends_on", "pre_stop", "proxy shop.example.com/", "failure_action continue", "max_failure_ratio", "networks [backend]", "host volume", "bind mount", "udp", "host_network", "healthcheck docker", "start_period", "as canaries", "1000 MHz", "nomad var put nomad/jobs/full", "registry ghcr.io", "hooks", "restart no"},
	}
	for _, format := range Formats {
		t.Run(format, func(t *testing.T) {
			out, err := Render(format, p, inv)
			if err != nil {
				t.Fatal(err)
			}
			golden.Check(t, filepath.Join("testdata", "full."+extension[format]), string(out))
			comments := commentsOf(string(out))
			for _, want := range mustNote[format] {
				if !strings.Contains(comments, want) {
					t.Errorf("no comment says %q", want)
				}
			}
		})
	}
}

// commentsOf is the text of every comment line.
func commentsOf(out string) string {
	var b strings.Builder
	for _, line := range strings.Split(out, "\n") {
		if i := strings.Index(line, "# "); i >= 0 && strings.TrimSpace(line[:i]) == "" || strings.Contains(line, "- # ") {
			b.WriteString(line[strings.Index(line, "# ")+2:] + "\n")
		}
	}
	return b.String()
}

// TestExportNeverWritesSecretValues: only the secrets' sources are named.
func TestExportNeverWritesSecretValues(t *testing.T) {
	t.Setenv("SHOP_DB_PASSWORD", "hunter2-db")
	t.Setenv("SHOP_MQ_PASSWORD", "hunter2-mq")
	p, inv := load(t, "../examples/shop/fleet.yaml", "../examples/shop/inventory.yaml")
	for _, format := range Formats {
		out, err := Render(format, p, inv)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(out), "hunter2") {
			t.Errorf("%s: a secret's value is in the output", format)
		}
	}
}

func TestUnknownFormatNamesTheThree(t *testing.T) {
	p, inv := parse(t, "project: x\nservices:\n  a: {image: nginx}\n", "hosts:\n  h1: {}\n")
	_, err := Render("compose", p, inv)
	if err == nil || err.Error() != `unknown export format "compose": want one of swarm, kubernetes, nomad` {
		t.Errorf("got %v", err)
	}
}

// hostile is a value that YAML, Compose, Kubernetes and HCL would each
// read as something else if it were written as it is.
const hostile = "it's \"quoted\": #not a comment\n${HOME} $(id) %{ if x } \\ \t- [a, b] {c: d}"

func hostileProject(t *testing.T) (*plan.Project, *inventory.Inventory) {
	t.Helper()
	// A JSON string is a YAML double-quoted scalar.
	y, _ := json.Marshal(hostile)
	env := string(y)
	return parse(t, "project: x\nservices:\n  a:\n    image: nginx\n    replicas: 1\n    command: [sh, -c, "+env+"]\n    env: {X: "+env+"}\n    labels: {l: "+env+"}\n",
		"hosts:\n  h1: {}\n")
}

// TestHostileValuesSurviveYAML reads the exports back and finds each
// value as the container would get it, after Compose's and Kubernetes'
// own expansion of "$" is undone by the escapes.
func TestHostileValuesSurviveYAML(t *testing.T) {
	p, inv := hostileProject(t)
	if p.Services[0].Env["X"] != hostile {
		t.Fatalf("the test's fleet.yaml did not carry the value: %q", p.Services[0].Env["X"])
	}
	swarm, err := Swarm(p, inv)
	if err != nil {
		t.Fatal(err)
	}
	var stack struct {
		Services map[string]struct {
			Command     []string
			Environment map[string]string
			Labels      map[string]string
		}
	}
	if err := yaml.Unmarshal(swarm, &stack); err != nil {
		t.Fatalf("%v\n%s", err, swarm)
	}
	a := stack.Services["a"]
	unCompose := func(s string) string { return strings.ReplaceAll(s, "$$", "$") }
	if got := unCompose(a.Environment["X"]); got != hostile {
		t.Errorf("swarm env: %q", got)
	}
	if got := unCompose(a.Command[2]); got != hostile {
		t.Errorf("swarm command: %q", got)
	}
	if got := unCompose(a.Labels["l"]); got != hostile {
		t.Errorf("swarm label: %q", got)
	}

	k8s, err := Kubernetes(p, inv)
	if err != nil {
		t.Fatal(err)
	}
	var dep struct {
		Spec struct {
			Template struct {
				Metadata struct{ Annotations map[string]string }
				Spec     struct {
					Containers []struct {
						Args []string
						Env  []struct{ Name, Value string }
					}
				}
			}
		}
	}
	if err := yaml.Unmarshal(k8s, &dep); err != nil {
		t.Fatalf("%v\n%s", err, k8s)
	}
	c := dep.Spec.Template.Spec.Containers[0]
	unK8s := func(s string) string { return strings.ReplaceAll(s, "$$(", "$(") }
	if got := unK8s(c.Env[0].Value); got != hostile {
		t.Errorf("kubernetes env: %q", got)
	}
	if got := unK8s(c.Args[2]); got != hostile {
		t.Errorf("kubernetes args: %q", got)
	}
	if got := dep.Spec.Template.Metadata.Annotations["l"]; got != hostile {
		t.Errorf("kubernetes annotation: %q", got)
	}
}

// TestNomadSaysItInterpolatesEnv: HCL keeps a literal "${", but the
// Nomad client then interpolates the task's environment, which the export
// says beside such a value, and only there.
func TestNomadSaysItInterpolatesEnv(t *testing.T) {
	p, inv := parse(t, "project: x\nservices:\n  a:\n    image: nginx\n    replicas: 1\n    env: {X: \"${HOME}/x\", Y: plain}\n", "hosts:\n  h1: {}\n")
	out, err := Nomad(p, inv)
	if err != nil {
		t.Fatal(err)
	}
	job := string(out)
	if !strings.Contains(job, "# env X: Nomad replaces each ${...} in it") || !strings.Contains(job, `X = "$${HOME}/x"`) {
		t.Errorf("the env value with ${...} is not written literally with its comment:\n%s", job)
	}
	if strings.Contains(job, "env Y:") {
		t.Errorf("a plain env value has a comment:\n%s", job)
	}
}

func TestHCLStringEscapes(t *testing.T) {
	for in, want := range map[string]string{
		`plain`:         `"plain"`,
		`a "b" \c`:      `"a \"b\" \\c"`,
		"line\nnext\t":  `"line\nnext\t"`,
		"${HOME}":       `"$${HOME}"`,
		"%{ if x }":     `"%%{ if x }"`,
		"$HOME 50% $ %": `"$HOME 50% $ %"`,
		"bell\a":        `"bell\u0007"`,
	} {
		if got := hclString(in); got != want {
			t.Errorf("hclString(%q) = %s, want %s", in, got, want)
		}
	}
}

// TestKubernetesServiceNamesBeginWithALetter: fleet's names may begin
// with a digit, a Kubernetes Service's may not.
func TestKubernetesServiceNamesBeginWithALetter(t *testing.T) {
	p, inv := parse(t, "project: x\nservices:\n  2fa_api:\n    image: nginx\n    proxy: {host: x.example.com, port: 80}\n", "hosts:\n  h1: {}\n")
	out, err := Kubernetes(p, inv)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Count(string(out), "name: svc-2fa-api\n") != 2 {
		t.Errorf("the Ingress does not name the Service svc-2fa-api:\n%s", out)
	}
	if !strings.Contains(string(out), "kind: Service\nmetadata:\n  labels:\n    app.kubernetes.io/name: 2fa-api\n    app.kubernetes.io/part-of: x\n  name: svc-2fa-api\n") {
		t.Errorf("Service name:\n%s", out)
	}
}

// TestNomadMetaNamesAreIdentifiers: a label that begins with a digit, or
// holds '.' or '/', is named in ${meta.NAME} by an identifier, the same
// the comment tells the clients to set.
func TestNomadMetaNamesAreIdentifiers(t *testing.T) {
	p, inv := parse(t, "project: x\nservices:\n  a:\n    image: nginx\n    hosts: 1zone=a,example.com/tier=web\n",
		"hosts:\n  h1: {labels: {1zone: a, example.com/tier: web}}\n")
	out, err := Nomad(p, inv)
	if err != nil {
		t.Fatal(err)
	}
	job := string(out)
	for _, want := range []string{`attribute = "${meta._1zone}"`, `attribute = "${meta.example_com_tier}"`, `h1: client { meta { _1zone = "a" } }`, `h1: client { meta { example_com_tier = "web" } }`} {
		if !strings.Contains(job, want) {
			t.Errorf("no %s in:\n%s", want, job)
		}
	}
}

// TestNomadRefusesLabelsThatBecomeOneMeta: two labels that would be the
// same meta name are an error naming both, not a job that mixes them up.
func TestNomadRefusesLabelsThatBecomeOneMeta(t *testing.T) {
	p, inv := parse(t, "project: x\nservices:\n  a:\n    image: nginx\n    hosts: tier.x=web\n  b:\n    image: nginx\n    hosts: tier_x=db\n",
		"hosts:\n  h1: {labels: {tier.x: web}}\n  h2: {labels: {tier_x: db}}\n")
	_, err := Nomad(p, inv)
	if err == nil || !strings.Contains(err.Error(), `service b: the inventory labels "tier.x" and "tier_x" would both be the Nomad client meta tier_x`) || !strings.Contains(err.Error(), "rename one") {
		t.Errorf("got %v", err)
	}
	for _, format := range []string{"swarm", "kubernetes"} {
		if _, err := Render(format, p, inv); err != nil {
			t.Errorf("%s: %v", format, err)
		}
	}
}

// TestKubernetesRefusesLabelsItCannotTake: an inventory label that cannot
// be a node label is an error naming it and what Kubernetes wants, not
// manifests that kubectl rejects.
func TestKubernetesRefusesLabelsItCannotTake(t *testing.T) {
	long := strings.Repeat("x", 64)
	for _, c := range []struct{ selector, labels, want string }{
		{"Example.com/tier=web", "Example.com/tier: web", `the inventory label "Example.com/tier" is not a Kubernetes label key (its prefix "Example.com" is not a DNS subdomain`},
		{"a/b/c=web", "a/b/c: web", `the inventory label "a/b/c" is not a Kubernetes label key (the name after any prefix/ is letters`},
		{long + "=web", long + ": web", `the inventory label "` + long + `" is not a Kubernetes label key (its name is longer than 63 characters)`},
		{"tier", `tier: "x y"`, `host h1 has the label tier="x y", which is not a Kubernetes label value`},
	} {
		p, inv := parse(t, "project: x\nservices:\n  a:\n    image: nginx\n    hosts: "+c.selector+"\n", "hosts:\n  h1: {labels: {"+c.labels+"}}\n")
		_, err := Kubernetes(p, inv)
		if err == nil || !strings.Contains(err.Error(), "service a: "+c.want) || !strings.Contains(err.Error(), "to export to Kubernetes") {
			t.Errorf("hosts: %s: got %v, want %s", c.selector, err, c.want)
		}
	}
	// What Kubernetes takes passes: a prefix, a leading digit, '_' and '.'.
	p, inv := parse(t, "project: x\nservices:\n  a:\n    image: nginx\n    replicas: 2\n    spread: 1zone\n    hosts: example.com/tier=web_1.a\n",
		"hosts:\n  h1: {labels: {example.com/tier: web_1.a, 1zone: a}}\n  h2: {labels: {example.com/tier: web_1.a, 1zone: b}}\n")
	if _, err := Kubernetes(p, inv); err != nil {
		t.Error(err)
	}
}
