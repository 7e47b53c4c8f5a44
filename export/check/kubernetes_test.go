package check

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// manifests are decoded Kubernetes objects, by kind and name.
type manifests struct {
	workloads []workload
	services  map[string]*corev1.Service
	claims    map[string]*corev1.PersistentVolumeClaim
	ingresses []*networkingv1.Ingress
}

type workload struct {
	kind     string
	meta     metav1.ObjectMeta
	selector *metav1.LabelSelector
	template corev1.PodTemplateSpec
	surge    *intstr.IntOrString
	unavail  *intstr.IntOrString
}

// decodeManifests reads every document strictly into its k8s.io/api type:
// a field the type lacks, or a value of the wrong type, is an error.
func decodeManifests(data []byte) (*manifests, error) {
	m := &manifests{services: map[string]*corev1.Service{}, claims: map[string]*corev1.PersistentVolumeClaim{}}
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	for i := 1; ; i++ {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		var tm metav1.TypeMeta
		if err := yaml.Unmarshal(doc, &tm); err != nil {
			return nil, fmt.Errorf("document %d: %w", i, err)
		}
		var obj any
		switch tm.APIVersion + " " + tm.Kind {
		case "apps/v1 Deployment":
			obj = &appsv1.Deployment{}
		case "apps/v1 DaemonSet":
			obj = &appsv1.DaemonSet{}
		case "v1 Service":
			obj = &corev1.Service{}
		case "v1 PersistentVolumeClaim":
			obj = &corev1.PersistentVolumeClaim{}
		case "networking.k8s.io/v1 Ingress":
			obj = &networkingv1.Ingress{}
		default:
			return nil, fmt.Errorf("document %d: unexpected %s %s", i, tm.APIVersion, tm.Kind)
		}
		if err := yaml.UnmarshalStrict(doc, obj); err != nil {
			return nil, fmt.Errorf("document %d (%s): %w", i, tm.Kind, err)
		}
		switch o := obj.(type) {
		case *appsv1.Deployment:
			w := workload{kind: "Deployment", meta: o.ObjectMeta, selector: o.Spec.Selector, template: o.Spec.Template}
			if ru := o.Spec.Strategy.RollingUpdate; ru != nil {
				w.surge, w.unavail = ru.MaxSurge, ru.MaxUnavailable
			}
			if o.Spec.ProgressDeadlineSeconds != nil && *o.Spec.ProgressDeadlineSeconds <= o.Spec.MinReadySeconds {
				return nil, fmt.Errorf("deployment %s: progressDeadlineSeconds must be greater than minReadySeconds", o.Name)
			}
			m.workloads = append(m.workloads, w)
		case *appsv1.DaemonSet:
			w := workload{kind: "DaemonSet", meta: o.ObjectMeta, selector: o.Spec.Selector, template: o.Spec.Template}
			if ru := o.Spec.UpdateStrategy.RollingUpdate; ru != nil {
				w.surge, w.unavail = ru.MaxSurge, ru.MaxUnavailable
			}
			m.workloads = append(m.workloads, w)
		case *corev1.Service:
			m.services[o.Name] = o
		case *corev1.PersistentVolumeClaim:
			m.claims[o.Name] = o
		case *networkingv1.Ingress:
			m.ingresses = append(m.ingresses, o)
		}
	}
	return m, nil
}

// validate checks what the API server's validation would refuse and a
// strict decode cannot see, with apimachinery's own validation helpers:
// names, labels, selectors, ports, references between the objects.
func (m *manifests) validate() []string {
	var errs []string
	bad := func(format string, args ...any) { errs = append(errs, fmt.Sprintf(format, args...)) }
	name := func(what, n string) {
		for _, e := range validation.IsDNS1123Subdomain(n) {
			bad("%s name %q: %s", what, n, e)
		}
	}
	labelSet := func(what string, l map[string]string) {
		for k, v := range l {
			for _, e := range validation.IsQualifiedName(k) {
				bad("%s label key %q: %s", what, k, e)
			}
			for _, e := range validation.IsValidLabelValue(v) {
				bad("%s label %s=%q: %s", what, k, v, e)
			}
		}
	}
	for _, w := range m.workloads {
		what := w.kind + " " + w.meta.Name
		name(what, w.meta.Name)
		labelSet(what, w.meta.Labels)
		labelSet(what+" template", w.template.Labels)
		for k := range w.template.Annotations {
			for _, e := range validation.IsQualifiedName(k) {
				bad("%s annotation %q: %s", what, k, e)
			}
		}
		sel, err := metav1.LabelSelectorAsSelector(w.selector)
		if err != nil || w.selector == nil {
			bad("%s: selector: %v", what, err)
		} else if !sel.Matches(labels.Set(w.template.Labels)) {
			bad("%s: the selector does not match the template's labels", what)
		}
		if isZero(w.surge) && isZero(w.unavail) {
			bad("%s: maxSurge and maxUnavailable are both 0", what)
		}
		pod := w.template.Spec
		vols := map[string]bool{}
		for _, v := range pod.Volumes {
			for _, e := range validation.IsDNS1123Label(v.Name) {
				bad("%s volume %q: %s", what, v.Name, e)
			}
			vols[v.Name] = true
			if c := v.PersistentVolumeClaim; c != nil && m.claims[c.ClaimName] == nil {
				bad("%s volume %q: no PersistentVolumeClaim %q", what, v.Name, c.ClaimName)
			}
			if (v.PersistentVolumeClaim == nil) == (v.HostPath == nil) {
				bad("%s volume %q: want one source", what, v.Name)
			}
		}
		if len(pod.Containers) == 0 {
			bad("%s: no container", what)
		}
		for _, c := range pod.Containers {
			cw := what + " container " + c.Name
			for _, e := range validation.IsDNS1123Label(c.Name) {
				bad("%s: %s", cw, e)
			}
			if c.Image == "" {
				bad("%s: no image", cw)
			}
			for _, e := range c.Env {
				for _, msg := range validation.IsEnvVarName(e.Name) {
					bad("%s env %q: %s", cw, e.Name, msg)
				}
				if e.ValueFrom != nil && e.Value != "" {
					bad("%s env %q: value and valueFrom", cw, e.Name)
				}
				if r := e.ValueFrom; r != nil && r.SecretKeyRef != nil {
					name(cw+" secret", r.SecretKeyRef.Name)
					for _, msg := range validation.IsConfigMapKey(r.SecretKeyRef.Key) {
						bad("%s secret key %q: %s", cw, r.SecretKeyRef.Key, msg)
					}
				}
			}
			for _, p := range c.Ports {
				for _, msg := range validation.IsValidPortNum(int(p.ContainerPort)) {
					bad("%s port: %s", cw, msg)
				}
				if p.HostPort != 0 {
					for _, msg := range validation.IsValidPortNum(int(p.HostPort)) {
						bad("%s hostPort: %s", cw, msg)
					}
				}
				if p.Protocol != corev1.ProtocolTCP && p.Protocol != corev1.ProtocolUDP {
					bad("%s port protocol %q", cw, p.Protocol)
				}
			}
			for _, vm := range c.VolumeMounts {
				if !vols[vm.Name] {
					bad("%s: volumeMount %q names no volume", cw, vm.Name)
				}
				if !strings.HasPrefix(vm.MountPath, "/") {
					bad("%s: mountPath %q is not absolute", cw, vm.MountPath)
				}
			}
			for _, q := range []corev1.ResourceList{c.Resources.Limits, c.Resources.Requests} {
				for k, v := range q {
					if v.Sign() <= 0 {
						bad("%s: resource %s %s", cw, k, v.String())
					}
				}
			}
			for pn, p := range map[string]*corev1.Probe{"readiness": c.ReadinessProbe, "liveness": c.LivenessProbe, "startup": c.StartupProbe} {
				if p == nil {
					continue
				}
				n := 0
				if p.HTTPGet != nil {
					n++
				}
				if p.TCPSocket != nil {
					n++
				}
				if p.Exec != nil {
					n++
				}
				if n != 1 {
					bad("%s %sProbe: %d handlers, want 1", cw, pn, n)
				}
				if p.PeriodSeconds < 1 || p.TimeoutSeconds < 1 || p.FailureThreshold < 1 {
					bad("%s %sProbe: periodSeconds, timeoutSeconds and failureThreshold must be at least 1", cw, pn)
				}
			}
		}
	}
	for n, s := range m.services {
		name("Service", n)
		for _, e := range validation.IsDNS1035Label(n) {
			bad("Service %q: %s", n, e)
		}
		seen := map[string]bool{}
		for _, p := range s.Spec.Ports {
			for _, e := range validation.IsValidPortName(p.Name) {
				bad("Service %s port name %q: %s", n, p.Name, e)
			}
			if seen[p.Name] {
				bad("Service %s: port name %q twice", n, p.Name)
			}
			seen[p.Name] = true
		}
	}
	for n, c := range m.claims {
		name("PersistentVolumeClaim", n)
		if q, ok := c.Spec.Resources.Requests[corev1.ResourceStorage]; !ok || q.Cmp(resource.MustParse("1")) < 0 {
			bad("PersistentVolumeClaim %s: no storage request", n)
		}
	}
	for _, ing := range m.ingresses {
		name("Ingress", ing.Name)
		for _, r := range ing.Spec.Rules {
			for _, p := range r.HTTP.Paths {
				if !strings.HasPrefix(p.Path, "/") {
					bad("Ingress %s: path %q", ing.Name, p.Path)
				}
				b := p.Backend.Service
				svc := m.services[b.Name]
				found := false
				if svc != nil {
					for _, sp := range svc.Spec.Ports {
						found = found || sp.Port == b.Port.Number
					}
				}
				if !found {
					bad("Ingress %s: no Service %s with port %d", ing.Name, b.Name, b.Port.Number)
				}
			}
		}
	}
	return errs
}

func isZero(v *intstr.IntOrString) bool {
	return v == nil || (v.Type == intstr.Int && v.IntVal == 0) || (v.Type == intstr.String && (v.StrVal == "0%" || v.StrVal == "0"))
}

func checkKubernetes(data []byte) error {
	m, err := decodeManifests(data)
	if err != nil {
		return err
	}
	if errs := m.validate(); len(errs) > 0 {
		return errors.New(strings.Join(errs, "\n"))
	}
	return nil
}

func TestKubernetesExportsDecodeStrictlyAndValidate(t *testing.T) {
	for name, pi := range projects(t) {
		t.Run(name, func(t *testing.T) {
			out := render(t, "kubernetes", pi)
			if err := checkKubernetes(out); err != nil {
				t.Errorf("%v\n%s", err, out)
			}
			if name != "hostile" {
				return
			}
			m, _ := decodeManifests(out)
			c := m.workloads[0].template.Spec.Containers[0]
			// Kubernetes reads "$$(" as a literal "$(": what the container
			// gets is the value in fleet.yaml.
			if got := strings.ReplaceAll(c.Env[0].Value, "$$(", "$("); got != hostile {
				t.Errorf("env value: %q", got)
			}
		})
	}
}

// TestKubernetesCheckerRejectsBrokenManifests shows that each half of the
// checker can fail.
func TestKubernetesCheckerRejectsBrokenManifests(t *testing.T) {
	out := string(render(t, "kubernetes", projects(t)["shop"]))
	for name, broken := range map[string]string{
		"unknown field":              strings.Replace(out, "minReadySeconds: 30", "minReadySecond: 30", 1),
		"wrong type":                 strings.Replace(out, "replicas: 3", "replicas: three", 1),
		"unknown kind":               strings.Replace(out, "kind: Service", "kind: Servise", 1),
		"selector mismatch":          strings.Replace(out, "  selector:\n    matchLabels:\n      app.kubernetes.io/name: orders", "  selector:\n    matchLabels:\n      app.kubernetes.io/name: order", 1),
		"missing claim":              strings.Replace(out, "claimName: pgdata", "claimName: pgdta", 1),
		"bad name":                   strings.Replace(out, "name: storefront\nspec:\n  ports", "name: Store_Front\nspec:\n  ports", 1),
		"bad quantity":               strings.Replace(out, `memory: "536870912"`, `memory: lots`, 1),
		"zero surge and unavailable": strings.Replace(out, "maxUnavailable: 1", "maxUnavailable: 0", 1),
	} {
		t.Run(name, func(t *testing.T) {
			if broken == out {
				t.Fatal("the test's edit found nothing to change")
			}
			if err := checkKubernetes([]byte(broken)); err == nil {
				t.Error("the checker accepted it")
			} else {
				t.Log(err)
			}
		})
	}
}
