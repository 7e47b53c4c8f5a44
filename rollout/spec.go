package rollout

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strconv"

	"github.com/fleetdeploy/fleet/executor"
	"github.com/fleetdeploy/fleet/plan"
)

// hostName is what a volume or network of the project is called on a
// host: prefixed, so that two projects on one host never share one.
func hostName(project, name string) string { return project + "_" + name }

// containerSpec is the container for one instance of a service's
// revision: the template, the secrets' values in its environment, and the
// labels that let a later plan read it back.
func containerSpec(project string, s *plan.Service, sp *plan.ServicePlan, slot int, secrets map[string]string) executor.ContainerSpec {
	t := sp.Template
	labels := map[string]string{}
	for k, v := range t.Labels {
		labels[k] = v
	}
	replicas := ""
	if s.ReplicasSet {
		replicas = strconv.Itoa(s.Replicas)
	}
	labels[plan.LabelProject] = project
	labels[plan.LabelService] = s.Name
	labels[plan.LabelSlot] = strconv.Itoa(slot)
	labels[plan.LabelRevision] = strconv.Itoa(sp.Revision)
	labels[plan.LabelSpec] = sp.Spec
	labels[plan.LabelTemplate] = t.JSON()
	labels[plan.LabelReplicas] = replicas

	env := map[string]string{}
	for k, v := range t.Env {
		env[k] = v
	}
	for _, name := range t.Secrets {
		env[name] = secrets[name]
	}
	spec := executor.ContainerSpec{
		// A suffix of its own: during a start-first update, and while an old
		// container waits stopped for a possible rollback, two containers
		// of one slot exist.
		Name:       fmt.Sprintf("%s-%s-%d-r%d-%s", project, s.Name, slot, sp.Revision, suffix()),
		Image:      t.Image,
		Labels:     labels,
		Env:        env,
		Command:    t.Command,
		Entrypoint: t.Entrypoint,
		Restart:    sp.Restart.String(),
		User:       t.User,
		Workdir:    t.Workdir,
		CPUs:       sp.Resources.CPUs,
		Memory:     sp.Resources.Memory,
		StopGrace:  t.StopGrace,
	}
	for _, p := range t.Ports {
		spec.Ports = append(spec.Ports, executor.Port{HostIP: p.HostIP, HostPort: p.Host, ContainerPort: p.Container, Protocol: p.Proto})
	}
	for _, m := range t.Volumes {
		src := m.Source
		if m.Named {
			src = hostName(project, src)
		}
		spec.Volumes = append(spec.Volumes, executor.Mount{Source: src, Target: m.Target, ReadOnly: m.ReadOnly})
	}
	for _, n := range t.Networks {
		spec.Networks = append(spec.Networks, hostName(project, n))
	}
	return spec
}

func suffix() string {
	b := make([]byte, 3)
	rand.Read(b)
	return hex.EncodeToString(b)
}
