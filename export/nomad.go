package export

import (
	"fmt"
	"math"
	"regexp"
	"strings"
	"time"

	"github.com/fleetdeploy/fleet/inventory"
	"github.com/fleetdeploy/fleet/plan"
)

// Nomad writes p as one Nomad job: a group per service with one Docker
// task, an update block from the service's update policy (auto_revert for
// failure_action rollback, canaries for start-first), constraints from
// its hosts selector, and secrets templated from Nomad variables.
func Nomad(p *plan.Project, inv *inventory.Inventory) ([]byte, error) {
	if err := checkMetaNames(p, inv); err != nil {
		return nil, err
	}
	job := newBlock("job", p.Name)
	job.attr("datacenters", hclList([]string{"*"}))
	job.attr("type", hclString("service"))
	varPath := "nomad/jobs/" + p.Name
	secrets := map[string]plan.SecretRef{}
	for _, s := range p.Services {
		nomadGroup(p, s, inv, job, varPath, secrets)
	}
	header := []string{
		"Nomad job exported by fleet from project " + p.Name + ".",
		"Run with: nomad job run FILE",
		"Each comment says what fleet does that this job cannot, or does differently.",
	}
	if len(secrets) > 0 {
		cmd := "nomad var put " + varPath
		for _, k := range sortedKeys(secrets) {
			cmd += " \\\n    " + k + "=" + secretValue(secrets[k])
		}
		header = append(header, "The secrets are read from the Nomad variable "+varPath+", which this job does not contain; create it first:\n  "+cmd)
	}
	header = append(header, projectNotes(p, "give the Docker driver its credentials on the clients (plugin \"docker\" { config { auth { config = ... } } }).")...)
	var sb strings.Builder
	sb.WriteString(commentBlock(header...))
	job.write(&sb, "")
	return []byte(sb.String()), nil
}

func nomadGroup(p *plan.Project, s *plan.Service, inv *inventory.Inventory, job *hclBlock, varPath string, secrets map[string]plan.SecretRef) {
	notes := serviceNotes(s)
	hosts := selectedHosts(s, inv)
	g := newBlock("group", s.Name)
	job.add(g, notes...)
	count := s.Replicas
	if s.ReplicasSet {
		g.attr("count", fmt.Sprint(count))
	} else {
		count = max(1, len(hosts))
		g.attr("count", fmt.Sprint(count), fmt.Sprintf("fleet runs one instance on every selected host (%s): a count of the inventory's hosts, one per node. A system job does this by itself, but a job has one type.", strings.Join(hosts, ", ")))
	}

	// Placement.
	reqs := placement(s, inv)
	for i, r := range reqs {
		var comments []string
		if i == 0 {
			comments = append(comments, "fleet's hosts selector "+hclSafe(s.Hosts.Text)+"; node names are the inventory's host names.")
			if cmds := labelCommands(reqs, s, inv, func(h, k, v string) string {
				return "  " + h + ": client { meta { " + metaName(k) + " = " + hclString(v) + " } }"
			}); len(cmds) > 0 {
				comments = append(comments, "the clients need the inventory's labels as meta:\n"+strings.Join(cmds, "\n"))
			}
		}
		for j, c := range nomadConstraints(r) {
			if j > 0 {
				comments = nil
			}
			g.add(c, comments...)
		}
	}
	if !s.ReplicasSet || s.MaxPerHost == 1 {
		c := newBlock("constraint")
		c.attr("operator", hclString("distinct_hosts"))
		c.attr("value", hclString("true"))
		g.add(c)
	} else if s.MaxPerHost > 1 {
		c := newBlock("constraint")
		c.attr("operator", hclString("distinct_property"))
		c.attr("attribute", hclInterpolation("${node.unique.name}"))
		c.attr("value", hclString(fmt.Sprint(s.MaxPerHost)))
		g.add(c, fmt.Sprintf("max_per_host %d.", s.MaxPerHost))
	}
	if s.Spread != "" {
		sp := newBlock("spread")
		sp.attr("attribute", hclInterpolation("${meta."+metaName(s.Spread)+"}"))
		g.add(sp)
	}

	// Update policy.
	order, _ := effectiveOrder(s)
	w := firstWave(s)
	par := w.Count
	if w.Percent > 0 {
		par = max(1, int(float64(count)*w.Percent/100))
	}
	u := newBlock("update")
	u.attr("max_parallel", fmt.Sprint(par))
	if s.Healthcheck != nil && !s.Healthcheck.Docker {
		u.attr("health_check", hclString("checks"))
	} else {
		u.attr("health_check", hclString("task_states"))
	}
	u.attr("min_healthy_time", hclString(plan.DurationText(s.Update.Monitor)))
	u.attr("healthy_deadline", hclString(plan.DurationText(s.Update.HealthyDeadline)))
	progress := 10 * time.Minute
	if s.Update.HealthyDeadline >= progress {
		progress = s.Update.HealthyDeadline + time.Minute
	}
	u.attr("progress_deadline", hclString(plan.DurationText(progress)))
	var revertNote []string
	switch s.Update.FailureAction {
	case "pause":
		revertNote = append(revertNote, "update.failure_action pause: the failed deployment stops where it is, without reverting.")
	case "continue":
		revertNote = append(revertNote, "update.failure_action continue: not exported; a Nomad deployment stops at the first unhealthy allocation.")
	}
	u.attr("auto_revert", fmt.Sprint(s.Update.FailureAction == "rollback"), revertNote...)
	if order == "start-first" {
		u.attr("canary", fmt.Sprint(par), "update.order start-first: new allocations start beside the old as canaries and are promoted once healthy.")
		u.attr("auto_promote", "true")
	}
	var uNotes []string
	if w.Percent > 0 {
		uNotes = append(uNotes, fmt.Sprintf("update.parallelism %s: Nomad takes a count, %d of %d here.", waveText(w), par, count))
	}
	if order == "stop-first" {
		uNotes = append(uNotes, "update.order stop-first: Nomad stops an old allocation before placing its replacement.")
	}
	if s.Update.MaxFailureRatio > 0 {
		uNotes = append(uNotes, fmt.Sprintf("update.max_failure_ratio %g: not exported; one unhealthy allocation fails the deployment.", s.Update.MaxFailureRatio))
	}
	g.add(u, uNotes...)

	switch s.Restart.Policy {
	case "no", "on-failure":
		r := newBlock("restart")
		r.attr("attempts", fmt.Sprint(s.Restart.MaxRetries))
		r.attr("mode", hclString("fail"))
		g.add(r, "restart "+s.Restart.String()+".")
	}

	// Ports: a label per published port and per port a check or the
	// proxy needs.
	net := newBlock("network")
	var portLabels []string
	label := func(container int) string {
		return fmt.Sprintf("p%d", container)
	}
	seen := map[string]bool{}
	for _, pt := range s.Ports {
		l := label(pt.Container)
		if seen[l] {
			continue
		}
		seen[l] = true
		pb := newBlock("port", l)
		pb.attr("static", fmt.Sprint(pt.Host))
		pb.attr("to", fmt.Sprint(pt.Container))
		var c []string
		if pt.HostIP != "" {
			c = append(c, "bound to "+pt.HostIP+" by fleet: not exported; choose the address with the client's host_network.")
		}
		if pt.Proto == "udp" {
			c = append(c, "udp: Nomad maps the port for TCP and UDP alike.")
		}
		net.add(pb, c...)
		portLabels = append(portLabels, l)
	}
	dynamic := func(port int) string {
		l := label(port)
		if !seen[l] {
			seen[l] = true
			pb := newBlock("port", l)
			pb.attr("to", fmt.Sprint(port))
			net.add(pb)
			portLabels = append(portLabels, l)
		}
		return l
	}
	if s.Healthcheck != nil && s.Healthcheck.HTTP != "" {
		dynamic(s.Healthcheck.Port)
	}
	if s.Healthcheck != nil && s.Healthcheck.TCP != 0 {
		dynamic(s.Healthcheck.TCP)
	}
	if s.Proxy != nil {
		dynamic(s.Proxy.Port)
	}
	if len(net.items) > 0 {
		g.add(net)
	}

	// Named volumes are the client's host volumes.
	for _, v := range s.Volumes {
		if !v.Named {
			continue
		}
		vb := newBlock("volume", v.Source)
		vb.attr("type", hclString("host"))
		vb.attr("source", hclString(v.Source))
		if v.ReadOnly {
			vb.attr("read_only", "true")
		}
		g.add(vb, "volume "+v.Source+": a host volume each client must declare (client { host_volume \""+v.Source+"\" { path = ... } }), or change it to a CSI volume.")
	}

	t := g.child("task", s.Name)
	t.attr("driver", hclString("docker"))
	if s.User != "" {
		t.attr("user", hclString(s.User))
	}
	if s.StopGrace > 0 {
		t.attr("kill_timeout", hclString(plan.DurationText(s.StopGrace)))
	}
	cfg := t.child("config")
	cfg.attr("image", hclString(s.Image))
	if s.Pull == "always" {
		cfg.attr("force_pull", "true")
	}
	if s.Entrypoint != nil {
		cfg.attr("entrypoint", hclList(s.Entrypoint))
	}
	if len(s.Command) > 0 {
		cfg.attr("command", hclString(s.Command[0]))
		if len(s.Command) > 1 {
			cfg.attr("args", hclList(s.Command[1:]))
		}
	}
	if len(portLabels) > 0 {
		cfg.attr("ports", hclList(portLabels))
	}
	if s.Workdir != "" {
		cfg.attr("work_dir", hclString(s.Workdir))
	}
	if len(s.Labels) > 0 {
		cfg.attr("labels", hclMap(s.Labels))
	}
	for _, v := range s.Volumes {
		if v.Named {
			continue
		}
		m := newBlock("mount")
		m.attr("type", hclString("bind"))
		m.attr("source", hclString(v.Source))
		m.attr("target", hclString(v.Target))
		m.attr("readonly", fmt.Sprint(v.ReadOnly))
		cfg.add(m, "a bind mount of "+v.Source+": the Docker driver allows it when the client enables volumes; the path must exist on each client.")
	}
	if s.Pull == "never" {
		cfg.comment("pull never: not exported; the Docker driver pulls a missing image.")
	}
	if len(s.Networks) > 0 {
		cfg.comment("networks [" + strings.Join(s.Networks, ", ") + "]: not exported; the allocations reach each other through the ports above (or Consul Connect).")
	}

	if len(s.Env) > 0 {
		env := t.child("env")
		for _, k := range sortedKeys(s.Env) {
			if identifierRE.MatchString(k) {
				if strings.Contains(s.Env[k], "${") {
					// HCL reads it back literally; the client then
					// interpolates the task's environment when it starts.
					env.comment("env " + k + ": Nomad replaces each ${...} in it that names one of its variables (NOMAD_*, attr.*, meta.*, node.*, an env var) when the task starts; fleet passes it as written.")
				}
				env.attr(k, hclString(s.Env[k]))
			} else {
				env.comment("env " + k + ": not exported; the name is no HCL identifier.")
			}
		}
	}
	for _, v := range s.Volumes {
		if !v.Named {
			continue
		}
		vm := t.child("volume_mount")
		vm.attr("volume", hclString(v.Source))
		vm.attr("destination", hclString(v.Target))
		vm.attr("read_only", fmt.Sprint(v.ReadOnly))
	}
	if len(s.Secrets) > 0 {
		var data strings.Builder
		data.WriteString("{{ with nomadVar \"" + varPath + "\" }}\n")
		var from []string
		for _, k := range sortedKeys(s.Secrets) {
			ref := s.Secrets[k]
			name := secretName(s, k, ref)
			secrets[name] = ref
			fmt.Fprintf(&data, "%s={{ index . %q | toJSON }}\n", k, name)
			from = append(from, k+" from "+ref.String()+" as "+name)
		}
		data.WriteString("{{ end }}\n")
		tpl := newBlock("template")
		tpl.attr("data", hclString(data.String()))
		tpl.attr("destination", hclString("secrets/fleet.env"))
		tpl.attr("env", "true")
		t.add(tpl, "secrets ("+strings.Join(from, ", ")+") from the Nomad variable "+varPath+" (see the top of this file).")
	}
	res := newBlock("resources")
	var resNotes []string
	if s.Resources.CPUs > 0 {
		res.attr("cpu", fmt.Sprint(int(math.Round(s.Resources.CPUs*1000))))
		resNotes = append(resNotes, fmt.Sprintf("resources.cpus %g: Nomad reserves CPU in MHz; 1000 MHz a core is assumed.", s.Resources.CPUs))
	}
	if s.Resources.Memory > 0 {
		res.attr("memory", fmt.Sprint(int64(math.Ceil(float64(s.Resources.Memory)/(1<<20)))))
	}
	if len(res.items) > 0 {
		t.add(res, resNotes...)
	} else {
		t.comment("no resources in fleet.yaml: Nomad reserves its defaults (100 MHz, 300 MB).")
	}
	nomadService(p, s, t, label)
	if len(s.PreStop) > 0 {
		t.comment("pre_stop [" + strings.Join(s.PreStop, " ") + "]: not exported; Nomad runs nothing in a task before stopping it (shutdown_delay only waits).")
	}
	if s.Proxy != nil {
		t.comment(fmt.Sprintf("proxy %s%s (tls %s): not exported; route it with the cluster's ingress (Traefik or Fabio reading the service above).", s.Proxy.Host, s.Proxy.Path, tlsText(s.Proxy.TLS)))
	}
}

// hclSafe keeps a value that goes into a comment on one line.
func hclSafe(s string) string { return fmt.Sprintf("%q", s) }

func nomadService(p *plan.Project, s *plan.Service, t *hclBlock, label func(int) string) {
	h := s.Healthcheck
	if h == nil && s.Proxy == nil {
		return
	}
	svc := newBlock("service")
	svc.attr("name", hclString(dnsName(p.Name+"-"+s.Name)))
	if s.Proxy != nil {
		svc.attr("port", hclString(label(s.Proxy.Port)))
	}
	t.add(svc)
	if h == nil {
		return
	}
	if h.Docker {
		svc.comment("healthcheck docker: not exported; Nomad does not read the image's HEALTHCHECK: write a check.")
		return
	}
	c := newBlock("check")
	switch {
	case h.HTTP != "":
		c.attr("type", hclString("http"))
		c.attr("path", hclString(h.HTTP))
		c.attr("port", hclString(label(h.Port)))
	case h.TCP != 0:
		c.attr("type", hclString("tcp"))
		c.attr("port", hclString(label(h.TCP)))
	default:
		c.attr("type", hclString("script"))
		c.attr("command", hclString(h.Cmd[0]))
		if len(h.Cmd) > 1 {
			c.attr("args", hclList(h.Cmd[1:]))
		}
	}
	c.attr("interval", hclString(plan.DurationText(h.Interval)))
	c.attr("timeout", hclString(plan.DurationText(h.Timeout)))
	c.attr("failures_before_critical", fmt.Sprint(h.Retries))
	var notes []string
	if h.StartPeriod > 0 {
		notes = append(notes, "healthcheck start_period "+plan.DurationText(h.StartPeriod)+": not exported; Nomad counts failures from the start (check_restart's grace restarts the task, which fleet does not).")
	}
	svc.add(c, notes...)
}

// nomadConstraints writes a requirement as Nomad constraints.
func nomadConstraints(r requirement) []*hclBlock {
	attr := "${node.unique.name}"
	if !r.Hostname {
		attr = "${meta." + metaName(r.Key) + "}"
	}
	mk := func(op, value string) *hclBlock {
		c := newBlock("constraint")
		c.attr("attribute", hclInterpolation(attr))
		c.attr("operator", hclString(op))
		if value != "" || op == "=" || op == "!=" {
			c.attr("value", hclString(value))
		}
		return c
	}
	switch r.Op {
	case inventory.Exists:
		return []*hclBlock{mk("is_set", "")}
	case inventory.NotExists:
		return []*hclBlock{mk("is_not_set", "")}
	case inventory.Equal, inventory.In:
		if len(r.Values) == 1 {
			return []*hclBlock{mk("=", r.Values[0])}
		}
		q := make([]string, len(r.Values))
		for i, v := range r.Values {
			q[i] = regexp.QuoteMeta(v)
		}
		return []*hclBlock{mk("regexp", "^("+strings.Join(q, "|")+")$")}
	}
	var out []*hclBlock
	for _, v := range r.Values {
		out = append(out, mk("!=", v))
	}
	return out
}

// metaName is the Nomad client meta name for an inventory label. Jobs
// name it in ${meta.NAME}, where it must be an identifier, which a label
// such as example.com/tier or 1zone is not: '.' and '/' become '_', and a
// name that begins with a digit gets '_' before it.
func metaName(label string) string {
	name := strings.NewReplacer(".", "_", "/", "_").Replace(label)
	if name != "" && name[0] >= '0' && name[0] <= '9' {
		name = "_" + name
	}
	return name
}

// checkMetaNames refuses a project whose placement uses two labels that
// become one meta name: the job could not tell them apart.
func checkMetaNames(p *plan.Project, inv *inventory.Inventory) error {
	labelOf := map[string]string{}
	for _, s := range p.Services {
		for _, k := range labelKeys(placement(s, inv), s.Spread) {
			m := metaName(k)
			if other, ok := labelOf[m]; ok && other != k {
				return fmt.Errorf("service %s: the inventory labels %q and %q would both be the Nomad client meta %s, which cannot tell them apart: rename one of them in the inventory to export to Nomad", s.Name, other, k, m)
			}
			labelOf[m] = k
		}
	}
	return nil
}
