package integration

import (
	"encoding/json"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/sidecar-dev/sidecar-injector/internal/api/v1alpha1"
	"github.com/sidecar-dev/sidecar-injector/internal/inject"
)

// A sidecar must be exactly what its template renders, up to what the API server and admission plugins change
// (README "Security"). This checks that list against a real API server: the pod as stored — defaulted, with
// LimitRange's resources — and then with the label its sidecar was rendered from changed, fed back to the
// engine, is already injected and gets no patch.
func TestAStoredSidecarIsRecognisedAsTheAPIServerDefaultedIt(t *testing.T) {
	ns := createNamespace(t, "recognise", nil)
	lr := &corev1.LimitRange{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "defaults"}, Spec: corev1.LimitRangeSpec{
		Limits: []corev1.LimitRangeItem{{Type: corev1.LimitTypeContainer,
			Default:        corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("128Mi")},
			DefaultRequest: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("64Mi")}}}}}
	if err := k8s.Create(ctxFor(t), lr); err != nil {
		t.Fatal(err)
	}
	mode := int32(0o600)
	spec := v1alpha1.SidecarTemplateSpec{
		Containers: []corev1.Container{{
			Name: "agent", Image: "registry.example/agent:1.0", Args: []string{"--app={{ pod.labels.app }}"},
			Ports:          []corev1.ContainerPort{{ContainerPort: 9090}},
			ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Port: intstr.FromInt32(9090)}}},
			Env:            []corev1.EnvVar{{Name: "POD_IP", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "status.podIP"}}}},
			Resources:      corev1.ResourceRequirements{Limits: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("200m")}},
			VolumeMounts:   []corev1.VolumeMount{{Name: "agent-config", MountPath: "/etc/agent"}},
		}},
		InitContainers: []corev1.Container{{Name: "agent-init", Image: "registry.example/agent-init:1.0"}},
		Volumes: []corev1.Volume{
			{Name: "agent-config", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "agent"}}}},
			{Name: "agent-secret", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "agent", Items: []corev1.KeyToPath{{Key: "k", Path: "k", Mode: &mode}}}}},
			{Name: "agent-token", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{Sources: []corev1.VolumeProjection{
				{DownwardAPI: &corev1.DownwardAPIProjection{Items: []corev1.DownwardAPIVolumeFile{{Path: "labels", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.labels"}}}}}}}}},
			{Name: "agent-host", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/var/run/agent"}}},
		},
	}
	st := createTemplate(t, ns, "agent", spec)
	waitUntilServed(t, ns, ns, "agent")
	stored := createPod(t, newPod(ns, "web", withInject("agent"), withLabel("app", "web")))
	if findContainer(stored.Spec.Containers, "agent") == nil {
		t.Fatalf("the template was not injected: %v", containerNames(stored.Spec.Containers))
	}

	// What the API server changed, so that the check below is about something.
	agent := findContainer(stored.Spec.Containers, "agent")
	if agent.TerminationMessagePath == "" || agent.Ports[0].Protocol == "" || agent.ReadinessProbe.PeriodSeconds == 0 ||
		agent.Env[0].ValueFrom.FieldRef.APIVersion == "" || agent.Resources.Requests.Cpu().IsZero() {
		t.Errorf("the API server did not default the sidecar as expected: %+v", *agent)
	}
	if _, limited := agent.Resources.Requests[corev1.ResourceMemory]; !limited {
		t.Logf("this API server runs without LimitRanger: the LimitRange's resources are not checked here")
	}

	tmpl := inject.Compile(st, injectorNS)
	for _, edit := range []struct {
		name string
		edit func(p *corev1.Pod)
	}{
		{"as stored", func(*corev1.Pod) {}},
		{"its label changed since", func(p *corev1.Pod) { p.Labels["app"] = "renamed" }},
	} {
		t.Run(edit.name, func(t *testing.T) {
			p := stored.DeepCopy()
			edit.edit(p)
			raw, err := json.Marshal(p)
			if err != nil {
				t.Fatal(err)
			}
			res, err := inject.Inject(inject.Request{Pod: raw, Namespace: ns, InjectorNamespace: injectorNS, Templates: []*inject.Template{tmpl}})
			if err != nil {
				t.Fatal(err)
			}
			if res.Denied || len(res.Patch) > 0 || len(res.Decisions) != 1 || res.Decisions[0].Outcome != inject.OutcomeAlreadyInjected {
				t.Errorf("the stored pod fed back: denied=%v %s, decisions %+v, patch %d ops\nstored agent: %+v",
					res.Denied, res.DenyMessage, res.Decisions, len(res.Patch), *findContainer(stored.Spec.Containers, "agent"))
			}
		})
	}
}
