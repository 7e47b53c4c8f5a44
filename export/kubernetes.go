package export

import (
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/fleetdeploy/fleet/inventory"
	"github.com/fleetdeploy/fleet/plan"
)

// Kubernetes writes p as Kubernetes manifests: per service a Deployment
// (a DaemonSet when fleet runs one instance on every selected host), a
// Service for its ports and an Ingress for its proxy route; a
// PersistentVolumeClaim per named volume. Secrets are references to one
// Secret the user creates; its values are never written.
func Kubernetes(p *plan.Project, inv *inventory.Inventory) ([]byte, error) {
	if err := checkNodeLabels(p, inv); err != nil {
		return nil, err
	}
	var docs []*yaml.Node
	secretObject := dnsName(p.Name) + "-secrets"
	secrets := map[string]plan.SecretRef{}
	for _, v := range p.Volumes {
		docs = append(docs, k8sClaim(p, v))
	}
	for _, s := range p.Services {
		docs = append(docs, k8sWorkload(p, s, inv, secretObject, secrets))
		if svc := k8sService(p, s); svc != nil {
			docs = append(docs, svc)
		}
		if s.Proxy != nil {
			docs = append(docs, k8sIngress(p, s))
		}
	}
	header := []string{
		"Kubernetes manifests exported by fleet from project " + p.Name + ".",
		"Apply with: kubectl apply -f FILE (into the namespace of your choice).",
		"Each comment says what fleet does that these manifests cannot, or do differently.",
	}
	if len(secrets) > 0 {
		cmd := "kubectl create secret generic " + secretObject
		for _, k := range sortedKeys(secrets) {
			cmd += " \\\n    --from-literal=" + k + "=" + secretValue(secrets[k])
		}
		header = append(header, "The secrets are read from Secret "+secretObject+", which these manifests do not contain; create it first:\n  "+cmd)
	}
	for _, r := range sortedKeys(p.Registries) {
		header = append(header, fmt.Sprintf("Registry %s: pods pull with imagePullSecrets %s; create it:\n  kubectl create secret docker-registry %s --docker-server=%s --docker-username=%s --docker-password=%s",
			r, pullSecretName(r), pullSecretName(r), r, shellQuote(p.Registries[r].Username), secretValue(p.Registries[r].Password)))
	}
	if len(p.Hooks.PreApply)+len(p.Hooks.PostApply)+len(p.Hooks.OnFailure) > 0 {
		header = append(header, projectNotes(&plan.Project{Hooks: p.Hooks}, "")...)
	}
	return encode(commentBlock(header...), docs...)
}

// dnsName makes a fleet name (lower case, digits, "-" and "_") a
// Kubernetes object name, which has no "_".
func dnsName(s string) string { return strings.ReplaceAll(s, "_", "-") }

// serviceName is the name of a fleet service's Kubernetes Service, which
// must begin with a letter (RFC 1035), where fleet's names may begin with
// a digit.
func serviceName(s *plan.Service) string {
	if n := dnsName(s.Name); n[0] >= 'a' && n[0] <= 'z' {
		return n
	}
	return "svc-" + dnsName(s.Name)
}

func pullSecretName(registry string) string {
	r := strings.NewReplacer(".", "-", ":", "-", "_", "-")
	return "regcred-" + strings.ToLower(r.Replace(registry))
}

// k8sEscape keeps Kubernetes from expanding $(VAR) in a command, its
// arguments or an environment value: "$(" is written "$$(".
func k8sEscape(s string) string { return strings.ReplaceAll(s, "$(", "$$(") }

func object(apiVersion, kind, name string, labels *yaml.Node) (*yaml.Node, *yaml.Node) {
	doc := mapping()
	set(doc, "apiVersion", str(apiVersion))
	set(doc, "kind", str(kind))
	meta := mapping()
	set(meta, "name", str(name))
	if labels != nil {
		set(meta, "labels", labels)
	}
	set(doc, "metadata", meta)
	return doc, meta
}

func appLabels(p *plan.Project, s *plan.Service) *yaml.Node {
	l := mapping()
	set(l, "app.kubernetes.io/name", str(dnsName(s.Name)))
	set(l, "app.kubernetes.io/part-of", str(dnsName(p.Name)))
	return l
}

func k8sClaim(p *plan.Project, v string) *yaml.Node {
	doc, _ := object("v1", "PersistentVolumeClaim", dnsName(v), nil)
	spec := child(doc, "spec")
	set(spec, "accessModes", strs([]string{"ReadWriteOnce"}, same))
	req := child(child(spec, "resources"), "requests")
	k := set(req, "storage", str("10Gi"))
	note(k, "fleet's volume "+v+" has no size (a Docker volume grows on its host's disk): choose one.")
	return doc
}

func same(s string) string { return s }

func k8sWorkload(p *plan.Project, s *plan.Service, inv *inventory.Inventory, secretObject string, secrets map[string]plan.SecretRef) *yaml.Node {
	kind := "Deployment"
	if !s.ReplicasSet {
		kind = "DaemonSet"
	}
	doc, _ := object("apps/v1", kind, dnsName(s.Name), appLabels(p, s))
	notes := serviceNotes(s)
	if !s.ReplicasSet {
		notes = append(notes, "a DaemonSet: fleet runs one instance on every selected host when replicas is not set.")
	}
	spec := child(doc, "spec")
	if s.ReplicasSet {
		set(spec, "replicas", num(s.Replicas))
	}
	sel := mapping()
	set(sel, "matchLabels", appLabels(p, s))
	set(spec, "selector", sel)
	set(spec, "revisionHistoryLimit", num(s.History))
	set(spec, "minReadySeconds", num(seconds(s.Update.Monitor, 0)))

	order, _ := effectiveOrder(s)
	w := firstWave(s)
	step := intOrPercent(w)
	ru := mapping()
	if order == "start-first" {
		set(ru, "maxSurge", step)
		set(ru, "maxUnavailable", num(0))
	} else {
		set(ru, "maxSurge", num(0))
		set(ru, "maxUnavailable", step)
	}
	strategy := mapping()
	set(strategy, "type", str("RollingUpdate"))
	set(strategy, "rollingUpdate", ru)
	rollNotes := []string{"update.order " + order + ", parallelism " + waveText(w) + ": maxSurge and maxUnavailable."}
	switch s.Update.FailureAction {
	case "rollback":
		stuck := "A rollout that makes no progress within progressDeadlineSeconds is marked failed"
		if kind == "DaemonSet" {
			stuck = "A rollout whose pods do not become ready stays stuck"
		}
		rollNotes = append(rollNotes, "update.failure_action rollback: not exported; Kubernetes does not roll back by itself. "+stuck+"; undo it with kubectl rollout undo "+strings.ToLower(kind)+"/"+dnsName(s.Name)+".")
	case "continue":
		rollNotes = append(rollNotes, "update.failure_action continue: Kubernetes waits for each new pod to be ready before going on.")
	}
	if s.Update.MaxFailureRatio > 0 {
		rollNotes = append(rollNotes, fmt.Sprintf("update.max_failure_ratio %g: not exported; any pod that is not ready holds the rollout.", s.Update.MaxFailureRatio))
	}
	if kind == "Deployment" {
		note(set(spec, "strategy", strategy), rollNotes...)
		note(set(spec, "progressDeadlineSeconds", num(seconds(s.Update.HealthyDeadline, seconds(s.Update.Monitor, 0)+1))),
			"update.healthy_deadline "+plan.DurationText(s.Update.HealthyDeadline)+".")
	} else {
		note(set(spec, "updateStrategy", strategy), append(rollNotes, "update.healthy_deadline "+plan.DurationText(s.Update.HealthyDeadline)+": not exported; a DaemonSet has no progress deadline.")...)
	}

	tmpl := child(spec, "template")
	tmeta := child(tmpl, "metadata")
	set(tmeta, "labels", appLabels(p, s))
	if len(s.Labels) > 0 {
		note(set(tmeta, "annotations", strMap(s.Labels, same)), "fleet's container labels, as annotations: their values need not be valid Kubernetes labels.")
	}
	pod := child(tmpl, "spec")
	pod.Content = append(pod.Content, str("containers"), seq(k8sContainer(p, s, secretObject, secrets)))
	if s.StopGrace > 0 {
		set(pod, "terminationGracePeriodSeconds", num(seconds(s.StopGrace, 0)))
	}
	if len(s.Volumes) > 0 {
		vols := seq()
		for i, v := range s.Volumes {
			m := mapping()
			set(m, "name", str(volumeName(i, v)))
			if v.Named {
				c := mapping()
				set(c, "claimName", str(dnsName(v.Source)))
				set(m, "persistentVolumeClaim", c)
				if (!s.ReplicasSet && len(selectedHosts(s, inv)) > 1) || s.Replicas > 1 {
					note(m.Content[0], "fleet gives each instance the volume "+v.Source+" of its own host; here every pod mounts one claim, which a ReadWriteOnce volume allows on one node only. A StatefulSet's volumeClaimTemplates give each pod its own.")
				}
			} else {
				hp := mapping()
				set(hp, "path", str(v.Source))
				set(m, "hostPath", hp)
				note(m.Content[0], "a bind mount of "+v.Source+": a hostPath on whichever node runs the pod; it must hold the same files on each.")
			}
			vols.Content = append(vols.Content, m)
		}
		set(pod, "volumes", vols)
	}
	for _, r := range sortedKeys(p.Registries) {
		if strings.HasPrefix(s.Image, r+"/") {
			ps := mapping()
			set(ps, "name", str(pullSecretName(r)))
			set(pod, "imagePullSecrets", seq(ps))
		}
	}
	if len(s.Networks) > 0 {
		notes = append(notes, "networks ["+strings.Join(s.Networks, ", ")+"]: not exported; every pod reaches every other on the cluster's network (restrict it with NetworkPolicies).")
	}
	switch s.Restart.Policy {
	case "no", "on-failure":
		notes = append(notes, "restart "+s.Restart.String()+": not exported; a Deployment's pods always restart.")
	}
	k8sPlacement(p, s, inv, pod)
	k := doc.Content[0]
	note(k, notes...)
	return doc
}

func volumeName(i int, v plan.Mount) string {
	if v.Named {
		return dnsName(v.Source)
	}
	return fmt.Sprintf("bind-%d", i)
}

func intOrPercent(w plan.Wave) *yaml.Node {
	if w.Percent > 0 {
		return str(waveText(w))
	}
	return num(w.Count)
}

func k8sContainer(p *plan.Project, s *plan.Service, secretObject string, secrets map[string]plan.SecretRef) *yaml.Node {
	c := mapping()
	set(c, "name", str(dnsName(s.Name)))
	set(c, "image", str(s.Image))
	pull := map[string]string{"always": "Always", "never": "Never"}[s.Pull]
	if pull == "" {
		pull = "IfNotPresent"
	}
	set(c, "imagePullPolicy", str(pull))
	if s.Entrypoint != nil {
		set(c, "command", strs(s.Entrypoint, k8sEscape))
	}
	if s.Command != nil {
		set(c, "args", strs(s.Command, k8sEscape))
	}
	if len(s.Env)+len(s.Secrets) > 0 {
		env := seq()
		for _, k := range sortedKeys(s.Env) {
			m := mapping()
			set(m, "name", str(k))
			set(m, "value", str(k8sEscape(s.Env[k])))
			env.Content = append(env.Content, m)
		}
		for _, k := range sortedKeys(s.Secrets) {
			ref := s.Secrets[k]
			name := secretName(s, k, ref)
			secrets[name] = ref
			m := mapping()
			set(m, "name", str(k))
			skr := mapping()
			set(skr, "name", str(secretObject))
			set(skr, "key", str(name))
			vf := mapping()
			set(vf, "secretKeyRef", skr)
			set(m, "valueFrom", vf)
			note(m.Content[0], "from "+ref.String()+" in fleet: key "+name+" of Secret "+secretObject+" (see the top of this file).")
			env.Content = append(env.Content, m)
		}
		set(c, "env", env)
	}
	ports := containerPorts(s)
	if len(ports) > 0 {
		list := seq()
		for _, pt := range ports {
			m := mapping()
			set(m, "containerPort", num(pt.Container))
			set(m, "protocol", str(strings.ToUpper(pt.Proto)))
			if pt.Host != 0 {
				set(m, "hostPort", num(pt.Host))
				if pt.HostIP != "" {
					set(m, "hostIP", str(pt.HostIP))
				}
			}
			list.Content = append(list.Content, m)
		}
		k := set(c, "ports", list)
		if len(s.Ports) > 0 {
			note(k, "hostPort publishes on the node, as fleet does; within the cluster, use the Service.")
		}
	}
	if len(s.Volumes) > 0 {
		list := seq()
		for i, v := range s.Volumes {
			m := mapping()
			set(m, "name", str(volumeName(i, v)))
			set(m, "mountPath", str(v.Target))
			if v.ReadOnly {
				set(m, "readOnly", boolean(true))
			}
			list.Content = append(list.Content, m)
		}
		set(c, "volumeMounts", list)
	}
	if s.Resources.CPUs > 0 || s.Resources.Memory > 0 {
		lim := mapping()
		if s.Resources.CPUs > 0 {
			set(lim, "cpu", str(fmt.Sprintf("%dm", int(math.Round(s.Resources.CPUs*1000)))))
		}
		if s.Resources.Memory > 0 {
			set(lim, "memory", str(fmt.Sprint(s.Resources.Memory)))
		}
		set(child(c, "resources"), "limits", lim)
	}
	if s.Workdir != "" {
		set(c, "workingDir", str(s.Workdir))
	}
	if s.User != "" {
		uid, gid, hasGid := strings.Cut(s.User, ":")
		sc := mapping()
		u, errU := strconv.ParseInt(uid, 10, 64)
		g, errG := strconv.ParseInt(gid, 10, 64)
		if errU == nil && (!hasGid || errG == nil) {
			set(sc, "runAsUser", num(u))
			if hasGid {
				set(sc, "runAsGroup", num(g))
			}
			set(c, "securityContext", sc)
		} else {
			note(c.Content[0], "user "+s.User+": not exported; Kubernetes takes numeric IDs only (securityContext.runAsUser).")
		}
	}
	if len(s.PreStop) > 0 {
		ex := mapping()
		set(ex, "command", strs(s.PreStop, same))
		ps := mapping()
		set(ps, "exec", ex)
		set(child(c, "lifecycle"), "preStop", ps)
	}
	if s.Healthcheck != nil {
		if s.Healthcheck.Docker {
			note(c.Content[0], "healthcheck docker: not exported; Kubernetes ignores the image's HEALTHCHECK: write a probe.")
		} else {
			h := s.Healthcheck
			probe := func(failures int) *yaml.Node {
				pr := mapping()
				switch {
				case h.HTTP != "":
					hg := mapping()
					set(hg, "path", str(h.HTTP))
					set(hg, "port", num(h.Port))
					set(pr, "httpGet", hg)
				case h.TCP != 0:
					ts := mapping()
					set(ts, "port", num(h.TCP))
					set(pr, "tcpSocket", ts)
				default:
					ex := mapping()
					set(ex, "command", strs(h.Cmd, same))
					set(pr, "exec", ex)
				}
				set(pr, "periodSeconds", num(seconds(h.Interval, 1)))
				set(pr, "timeoutSeconds", num(seconds(h.Timeout, 1)))
				set(pr, "failureThreshold", num(failures))
				return pr
			}
			k := set(c, "readinessProbe", probe(h.Retries))
			var hn []string
			if h.Interval%1e9 != 0 || h.Timeout%1e9 != 0 {
				hn = append(hn, "healthcheck interval "+plan.DurationText(h.Interval)+", timeout "+plan.DurationText(h.Timeout)+": rounded up to whole seconds.")
			}
			note(k, hn...)
			note(set(c, "livenessProbe", probe(h.Retries)), "fleet restarts no container for failing its health check after a rollout (it fails the rollout); Kubernetes restarts it: drop this probe to keep fleet's behaviour.")
			if h.StartPeriod > 0 {
				sp := probe(int(math.Ceil(float64(h.StartPeriod)/float64(h.Interval))) + h.Retries)
				note(set(c, "startupProbe", sp), "healthcheck start_period "+plan.DurationText(h.StartPeriod)+": the probes above wait until this one passes.")
			}
		}
	}
	return c
}

// containerPorts are the service's published ports, plus its proxy's
// port when that is not one of them.
func containerPorts(s *plan.Service) []plan.Port {
	ports := append([]plan.Port(nil), s.Ports...)
	if s.Proxy != nil {
		for _, pt := range ports {
			if pt.Container == s.Proxy.Port && pt.Proto == "tcp" {
				return ports
			}
		}
		ports = append(ports, plan.Port{Container: s.Proxy.Port, Proto: "tcp"})
	}
	return ports
}

func k8sPlacement(p *plan.Project, s *plan.Service, inv *inventory.Inventory, pod *yaml.Node) {
	reqs := placement(s, inv)
	aff := mapping()
	if len(reqs) > 0 {
		exprs := seq()
		for _, r := range reqs {
			m := mapping()
			key := r.Key
			if r.Hostname {
				key = "kubernetes.io/hostname"
			}
			set(m, "key", str(key))
			op := map[inventory.Op]string{inventory.Exists: "Exists", inventory.NotExists: "DoesNotExist", inventory.Equal: "In", inventory.In: "In", inventory.NotEqual: "NotIn", inventory.NotIn: "NotIn"}[r.Op]
			set(m, "operator", str(op))
			if len(r.Values) > 0 {
				set(m, "values", strs(r.Values, same))
			}
			exprs.Content = append(exprs.Content, m)
		}
		term := mapping()
		set(term, "matchExpressions", exprs)
		req := mapping()
		set(req, "nodeSelectorTerms", seq(term))
		na := mapping()
		k := set(na, "requiredDuringSchedulingIgnoredDuringExecution", req)
		lines := []string{"fleet's hosts selector " + strconv.Quote(s.Hosts.Text) + "; node names are the inventory's host names."}
		if cmds := labelCommands(reqs, s, inv, func(h, k, v string) string {
			return "  kubectl label node " + h + " " + shellQuote(k+"="+v)
		}); len(cmds) > 0 {
			lines = append(lines, "the nodes need the inventory's labels:\n"+strings.Join(cmds, "\n"))
		}
		note(k, lines...)
		set(aff, "nodeAffinity", na)
	}
	if s.ReplicasSet && s.MaxPerHost == 1 {
		ls := mapping()
		set(ls, "matchLabels", appLabels(p, s))
		t := mapping()
		set(t, "labelSelector", ls)
		set(t, "topologyKey", str("kubernetes.io/hostname"))
		pa := mapping()
		note(set(pa, "requiredDuringSchedulingIgnoredDuringExecution", seq(t)), "max_per_host 1.")
		set(aff, "podAntiAffinity", pa)
	}
	if len(aff.Content) > 0 {
		set(pod, "affinity", aff)
	}
	if s.ReplicasSet && s.MaxPerHost > 1 {
		note(pod.Content[0], fmt.Sprintf("max_per_host %d: not exported; Kubernetes caps pods per node at one (pod anti-affinity) or not at all.", s.MaxPerHost))
	}
	if s.Spread != "" && s.ReplicasSet {
		ls := mapping()
		set(ls, "matchLabels", appLabels(p, s))
		t := mapping()
		set(t, "maxSkew", num(1))
		set(t, "topologyKey", str(s.Spread))
		set(t, "whenUnsatisfiable", str("ScheduleAnyway"))
		set(t, "labelSelector", ls)
		note(set(pod, "topologySpreadConstraints", seq(t)), "spread "+s.Spread+": the nodes need the label "+s.Spread+", as the inventory's hosts have it.")
	}
}

func k8sService(p *plan.Project, s *plan.Service) *yaml.Node {
	ports := containerPorts(s)
	if len(ports) == 0 {
		return nil
	}
	doc, _ := object("v1", "Service", serviceName(s), appLabels(p, s))
	spec := child(doc, "spec")
	set(spec, "selector", appLabels(p, s))
	list := seq()
	seen := map[string]bool{}
	for _, pt := range ports {
		name := fmt.Sprintf("%s-%d", pt.Proto, pt.Container)
		if seen[name] {
			continue
		}
		seen[name] = true
		m := mapping()
		set(m, "name", str(name))
		set(m, "port", num(pt.Container))
		set(m, "targetPort", num(pt.Container))
		set(m, "protocol", str(strings.ToUpper(pt.Proto)))
		list.Content = append(list.Content, m)
	}
	set(spec, "ports", list)
	return doc
}

func k8sIngress(p *plan.Project, s *plan.Service) *yaml.Node {
	px := s.Proxy
	doc, _ := object("networking.k8s.io/v1", "Ingress", dnsName(s.Name), appLabels(p, s))
	spec := child(doc, "spec")
	port := mapping()
	set(port, "number", num(px.Port))
	backend := mapping()
	set(backend, "name", str(serviceName(s)))
	set(backend, "port", port)
	b := mapping()
	set(b, "service", backend)
	path := mapping()
	set(path, "path", str(px.Path))
	set(path, "pathType", str("Prefix"))
	set(path, "backend", b)
	http := mapping()
	set(http, "paths", seq(path))
	rule := mapping()
	set(rule, "host", str(px.Host))
	set(rule, "http", http)
	note(set(spec, "rules", seq(rule)), "proxy.drain_timeout "+plan.DurationText(px.DrainTimeout)+": not exported; how long a terminating pod keeps its connections is the ingress controller's (and terminationGracePeriodSeconds').")
	if px.TLS != plan.TLSOff {
		t := mapping()
		set(t, "hosts", strs([]string{px.Host}, same))
		set(t, "secretName", str(dnsName(s.Name)+"-tls"))
		how := "a certificate from Let's Encrypt: with cert-manager, annotate this Ingress with cert-manager.io/cluster-issuer."
		if px.TLS == plan.TLSInternal {
			how = "a certificate from a private CA: with cert-manager, a CA issuer."
		}
		note(set(spec, "tls", seq(t)), "proxy.tls "+tlsText(px.TLS)+": fleet's proxy gets "+how+" The certificate is read from Secret "+dnsName(s.Name)+"-tls.")
	}
	return doc
}

// checkNodeLabels refuses a project whose placement uses an inventory
// label that Kubernetes would not take as a node label: kubectl would
// reject the manifests, or the nodes could not be given the label.
func checkNodeLabels(p *plan.Project, inv *inventory.Inventory) error {
	for _, s := range p.Services {
		reqs := placement(s, inv)
		for _, r := range reqs {
			if r.Hostname {
				continue
			}
			for _, v := range r.Values {
				if why := labelValueProblem(v); why != "" {
					return fmt.Errorf("service %s: its hosts selector compares %s with %q, which is not a Kubernetes label value (%s): change it, and the label in the inventory, to export to Kubernetes", s.Name, r.Key, v, why)
				}
			}
		}
		spread := ""
		if s.ReplicasSet {
			spread = s.Spread // a topology spread constraint only for replicas
		}
		for _, k := range labelKeys(reqs, spread) {
			if why := labelKeyProblem(k); why != "" {
				return fmt.Errorf("service %s: the inventory label %q is not a Kubernetes label key (%s): rename it in the inventory to export to Kubernetes", s.Name, k, why)
			}
		}
		var bad error
		labelCommands(reqs, s, inv, func(h, k, v string) string {
			if why := labelValueProblem(v); why != "" && bad == nil {
				bad = fmt.Errorf("service %s: host %s has the label %s=%q, which is not a Kubernetes label value (%s): change it in the inventory to export to Kubernetes", s.Name, h, k, v, why)
			}
			return ""
		})
		if bad != nil {
			return bad
		}
	}
	return nil
}

var (
	labelNameRE = regexp.MustCompile(`^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$`)
	dnsSubdomRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)
)

// labelKeyProblem says what keeps key from being a Kubernetes label key:
// a name of at most 63 letters, digits, '-', '_' and '.', beginning and
// ending with a letter or digit, after an optional DNS subdomain and '/'.
func labelKeyProblem(key string) string {
	name := key
	if prefix, rest, ok := strings.Cut(key, "/"); ok {
		if len(prefix) > 253 || !dnsSubdomRE.MatchString(prefix) {
			return "its prefix " + strconv.Quote(prefix) + " is not a DNS subdomain: lower-case letters, digits, '-' and '.'"
		}
		name = rest
	}
	switch {
	case len(name) > 63:
		return "its name is longer than 63 characters"
	case !labelNameRE.MatchString(name):
		return "the name after any prefix/ is letters, digits, '-', '_' and '.', beginning and ending with a letter or digit"
	}
	return ""
}

// labelValueProblem says what keeps v from being a Kubernetes label value:
// empty, or a name as in labelKeyProblem.
func labelValueProblem(v string) string {
	switch {
	case v == "":
		return ""
	case len(v) > 63:
		return "longer than 63 characters"
	case !labelNameRE.MatchString(v):
		return "letters, digits, '-', '_' and '.', beginning and ending with a letter or digit"
	}
	return ""
}
