package export

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/fleetdeploy/fleet/inventory"
	"github.com/fleetdeploy/fleet/plan"
	"gopkg.in/yaml.v3"
)

// Swarm writes p as a Compose file for "docker stack deploy": one Swarm
// service per fleet service, published ports in host mode as fleet
// publishes them, volumes local to each node, secrets as external Swarm
// secrets.
func Swarm(p *plan.Project, inv *inventory.Inventory) ([]byte, error) {
	root := mapping()
	set(root, "version", str("3.8"))
	services := child(root, "services")
	secrets := map[string]plan.SecretRef{}
	for _, s := range p.Services {
		svc := swarmService(p, s, inv, secrets)
		k := set(services, s.Name, svc.node)
		note(k, svc.notes...)
	}
	if len(p.Networks) > 0 {
		nets := child(root, "networks")
		for _, n := range p.Networks {
			m := mapping()
			set(m, "driver", str("overlay"))
			set(nets, n, m)
		}
	}
	if len(p.Volumes) > 0 {
		vols := child(root, "volumes")
		for _, v := range p.Volumes {
			set(vols, v, mapping())
		}
		note(keyOf(root, "volumes"), "A Swarm volume lives on one node: its data does not follow a task that moves. Pin such a service to a node (fleet's host selector is exported as a placement constraint) or give the volume a driver that shares it.")
	}
	if len(secrets) > 0 {
		sec := child(root, "secrets")
		for _, name := range sortedKeys(secrets) {
			m := mapping()
			set(m, "external", boolean(true))
			k := set(sec, name, m)
			note(k, "create it before deploying: printf %s "+secretValue(secrets[name])+" | docker secret create "+name+" -")
		}
	}
	header := commentBlock(
		"Docker Swarm stack exported by fleet from project "+p.Name+".",
		"Deploy with: docker stack deploy --with-registry-auth -c FILE "+p.Name,
		"Each comment says what fleet does that this file cannot, or does differently.",
	)
	if notes := projectNotes(p, "log in on the manager (docker login) and deploy with --with-registry-auth."); len(notes) > 0 {
		header += commentBlock(notes...)
	}
	return encode(header, root)
}

// keyOf is the key node of key in a mapping.
func keyOf(m *yaml.Node, key string) *yaml.Node {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i]
		}
	}
	return nil
}

type noted struct {
	node  *yaml.Node
	notes []string
}

// composeEscape keeps Compose from interpolating a value: "$" is written
// "$$".
func composeEscape(s string) string { return strings.ReplaceAll(s, "$", "$$") }

func swarmService(p *plan.Project, s *plan.Service, inv *inventory.Inventory, secrets map[string]plan.SecretRef) noted {
	svc := mapping()
	notes := serviceNotes(s)
	set(svc, "image", str(composeEscape(s.Image)))
	if s.Pull == "never" {
		notes = append(notes, "pull: never: Swarm always resolves the image on the registry (docker stack deploy --resolve-image never comes closest).")
	}
	if s.Command != nil {
		set(svc, "command", strs(s.Command, composeEscape))
	}
	if s.Entrypoint != nil {
		set(svc, "entrypoint", strs(s.Entrypoint, composeEscape))
	}
	if len(s.Env) > 0 {
		set(svc, "environment", strMap(s.Env, composeEscape))
	}
	if len(s.Secrets) > 0 {
		list := seq()
		for _, env := range sortedKeys(s.Secrets) {
			ref := s.Secrets[env]
			name := secretName(s, env, ref)
			secrets[name] = ref
			m := mapping()
			set(m, "source", str(name))
			set(m, "target", str(env))
			list.Content = append(list.Content, m)
		}
		k := set(svc, "secrets", list)
		note(k, "Swarm gives a secret to the container as a file, /run/secrets/NAME, not as an environment variable as fleet does: the image must read it from there (many official images take NAME_FILE=/run/secrets/NAME).")
	}
	if len(s.Ports) > 0 {
		list := seq()
		for _, pt := range s.Ports {
			m := mapping()
			set(m, "target", num(pt.Container))
			published := set(m, "published", num(pt.Host))
			set(m, "protocol", str(pt.Proto))
			set(m, "mode", str("host"))
			if pt.HostIP != "" {
				note(published, fmt.Sprintf("bound to %s by fleet: Swarm publishes on every address of the node; firewall port %d.", pt.HostIP, pt.Host))
			}
			list.Content = append(list.Content, m)
		}
		note(set(svc, "ports", list), "mode host publishes on the node that runs the task, as fleet does; Swarm's routing mesh (mode ingress) would publish on every node.")
	}
	if len(s.Volumes) > 0 {
		list := seq()
		for _, v := range s.Volumes {
			m := mapping()
			typ := "bind"
			if v.Named {
				typ = "volume"
			}
			set(m, "type", str(typ))
			set(m, "source", str(composeEscape(v.Source)))
			set(m, "target", str(composeEscape(v.Target)))
			if v.ReadOnly {
				set(m, "read_only", boolean(true))
			}
			if !v.Named {
				note(m.Content[0], "a bind mount: "+v.Source+" must exist on every node the task may run on.")
			}
			list.Content = append(list.Content, m)
		}
		set(svc, "volumes", list)
	}
	if len(s.Networks) > 0 {
		set(svc, "networks", strs(s.Networks, composeEscape))
	}
	if s.User != "" {
		set(svc, "user", str(s.User))
	}
	if s.Workdir != "" {
		set(svc, "working_dir", str(composeEscape(s.Workdir)))
	}
	if len(s.Labels) > 0 {
		set(svc, "labels", strMap(s.Labels, composeEscape))
	}
	if s.StopGrace > 0 {
		set(svc, "stop_grace_period", str(plan.DurationText(s.StopGrace)))
	}
	if len(s.PreStop) > 0 {
		notes = append(notes, "pre_stop ["+strings.Join(s.PreStop, " ")+"]: not exported; Swarm runs nothing in a container before stopping it: the image must drain on SIGTERM, within stop_grace_period.")
	}
	if s.Proxy != nil {
		notes = append(notes, fmt.Sprintf("proxy %s%s -> port %d (tls %s): not exported; Swarm has no reverse proxy: run one as a service of the stack (Traefik or Caddy with Docker labels) and route %s to this service.", s.Proxy.Host, s.Proxy.Path, s.Proxy.Port, tlsText(s.Proxy.TLS), s.Proxy.Host))
	}
	if hc, hcNotes := swarmHealthcheck(s.Healthcheck); hc != nil {
		k := set(svc, "healthcheck", hc)
		note(k, hcNotes...)
	}
	svc.Content = append(svc.Content, str("deploy"), swarmDeploy(p, s, inv, &notes))
	return noted{svc, notes}
}

func tlsText(t plan.TLS) string {
	if t == plan.TLSOff {
		return "false"
	}
	return string(t)
}

func swarmHealthcheck(h *plan.Healthcheck) (*yaml.Node, []string) {
	if h == nil || h.Docker {
		return nil, nil
	}
	var notes []string
	hc := mapping()
	switch {
	case h.HTTP != "":
		url := fmt.Sprintf("http://127.0.0.1:%d%s", h.Port, h.HTTP)
		set(hc, "test", strs([]string{"CMD-SHELL", "curl -fsS -o /dev/null " + shellQuote(url) + " || exit 1"}, composeEscape))
		notes = append(notes, "fleet probes "+url+" from outside the container; Swarm runs the test inside it, so the image needs curl.")
	case h.TCP != 0:
		set(hc, "test", strs([]string{"CMD-SHELL", fmt.Sprintf("nc -z 127.0.0.1 %d || exit 1", h.TCP)}, composeEscape))
		notes = append(notes, fmt.Sprintf("fleet connects to port %d from outside the container; Swarm runs the test inside it, so the image needs nc.", h.TCP))
	default:
		set(hc, "test", strs(append([]string{"CMD"}, h.Cmd...), composeEscape))
	}
	set(hc, "interval", str(plan.DurationText(h.Interval)))
	set(hc, "timeout", str(plan.DurationText(h.Timeout)))
	set(hc, "retries", num(h.Retries))
	if h.StartPeriod > 0 {
		set(hc, "start_period", str(plan.DurationText(h.StartPeriod)))
	}
	return hc, notes
}

func swarmDeploy(p *plan.Project, s *plan.Service, inv *inventory.Inventory, notes *[]string) *yaml.Node {
	d := mapping()
	if s.ReplicasSet {
		set(d, "mode", str("replicated"))
		set(d, "replicas", num(s.Replicas))
	} else {
		set(d, "mode", str("global"))
	}
	pl := mapping()
	var constraints []string
	fallback := false
	for _, r := range placement(s, inv) {
		c, ok := swarmConstraints(r)
		if !ok {
			fallback = true
			continue
		}
		constraints = append(constraints, c...)
	}
	var labelNote []string
	if fallback {
		label := "fleet." + p.Name + "." + s.Name
		constraints = append(constraints, "node.labels."+label+" == true")
		lines := []string{"Swarm constraints cannot say \"one of\" or \"has the label\": fleet's hosts selector " + strconv.Quote(s.Hosts.Text) + " is written as a label of its own; set it on the nodes the inventory selects:"}
		for _, h := range selectedHosts(s, inv) {
			lines = append(lines, "  docker node update --label-add "+label+"=true "+h)
		}
		labelNote = append(labelNote, strings.Join(lines, "\n"))
	}
	if cmds := labelCommands(placement(s, inv), s, inv, func(h, k, v string) string {
		return "  docker node update --label-add " + shellQuote(k+"="+v) + " " + h
	}); len(cmds) > 0 {
		labelNote = append(labelNote, "the nodes need the inventory's labels:\n"+strings.Join(cmds, "\n"))
	}
	if len(constraints) > 0 {
		note(set(pl, "constraints", strs(constraints, composeEscape)), labelNote...)
	} else if len(labelNote) > 0 {
		note(d.Content[0], labelNote...)
	}
	if s.Spread != "" {
		pref := mapping()
		set(pref, "spread", str("node.labels."+s.Spread))
		set(pl, "preferences", seq(pref))
	}
	if s.ReplicasSet && s.MaxPerHost > 0 {
		set(pl, "max_replicas_per_node", num(s.MaxPerHost))
	}
	if len(pl.Content) > 0 {
		set(d, "placement", pl)
	}
	if s.Resources.CPUs > 0 || s.Resources.Memory > 0 {
		lim := mapping()
		if s.Resources.CPUs > 0 {
			set(lim, "cpus", str(strconv.FormatFloat(s.Resources.CPUs, 'f', -1, 64)))
		}
		if s.Resources.Memory > 0 {
			set(lim, "memory", str(fmt.Sprint(s.Resources.Memory)))
		}
		set(child(d, "resources"), "limits", lim)
	}
	rp := mapping()
	switch s.Restart.Policy {
	case "no":
		set(rp, "condition", str("none"))
	case "on-failure":
		set(rp, "condition", str("on-failure"))
		if s.Restart.MaxRetries > 0 {
			set(rp, "max_attempts", num(s.Restart.MaxRetries))
		}
	default:
		set(rp, "condition", str("any"))
	}
	set(d, "restart_policy", rp)

	order, _ := effectiveOrder(s)
	w := firstWave(s)
	par := w.Count
	if w.Percent > 0 {
		n := s.Replicas
		if !s.ReplicasSet {
			n = len(selectedHosts(s, inv))
		}
		par = max(1, int(float64(n)*w.Percent/100))
	}
	uc := mapping()
	set(uc, "parallelism", num(par))
	set(uc, "order", str(order))
	set(uc, "monitor", str(plan.DurationText(s.Update.Monitor)))
	fa := set(uc, "failure_action", str(s.Update.FailureAction))
	set(uc, "max_failure_ratio", num(s.Update.MaxFailureRatio))
	if w.Percent > 0 {
		note(uc.Content[0], fmt.Sprintf("parallelism %s of the instances: Swarm takes a count, %d here.", waveText(w), par))
	}
	note(fa, "healthy_deadline "+plan.DurationText(s.Update.HealthyDeadline)+": not exported; Swarm waits for a task's health check without a deadline of its own.")
	set(d, "update_config", uc)
	rc := mapping()
	set(rc, "parallelism", num(par))
	set(rc, "order", str(order))
	set(d, "rollback_config", rc)
	return d
}

// swarmConstraints writes a requirement as Swarm constraints, which are
// ANDed equalities and inequalities: "one of several" and "has the label"
// have no constraint.
func swarmConstraints(r requirement) ([]string, bool) {
	attr := "node.labels." + r.Key
	if r.Hostname {
		attr = "node.hostname"
	}
	switch {
	case (r.Op == inventory.Equal || r.Op == inventory.In) && len(r.Values) == 1:
		return []string{attr + " == " + r.Values[0]}, true
	case r.Op == inventory.NotEqual || r.Op == inventory.NotIn:
		var out []string
		for _, v := range r.Values {
			out = append(out, attr+" != "+v)
		}
		return out, true
	}
	return nil, false
}
