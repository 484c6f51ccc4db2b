package integration

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/sidecar-dev/sidecar-injector/internal/api/v1alpha1"
)

// proxySpec has typed parameters standing alone in the sidecar's resources and port.
func proxySpec() v1alpha1.SidecarTemplateSpec {
	q := func(s string) *intstr.IntOrString { v := intstr.Parse(s); return &v }
	return v1alpha1.SidecarTemplateSpec{
		Parameters: []v1alpha1.TemplateParameter{
			{Name: "cpu", Type: v1alpha1.ParameterTypeQuantity, Default: ptrTo("100m"), Minimum: q("50m"), Maximum: q("2")},
			{Name: "memory", Type: v1alpha1.ParameterTypeQuantity, Default: ptrTo("64Mi")},
			{Name: "port", Type: v1alpha1.ParameterTypeInteger, Default: ptrTo("15001"), Minimum: q("1024"), Maximum: q("65535")},
		},
		Containers: []corev1.Container{{Name: "proxy", Image: "envoyproxy/envoy:v1.32.1",
			Ports: []corev1.ContainerPort{{Name: "proxy"}}}},
		TypedPlaceholders: map[string]string{
			"containers[0].resources.requests.cpu":    "{{ params.cpu }}",
			"containers[0].resources.requests.memory": "{{ params.memory }}",
			"containers[0].resources.limits.memory":   "{{ params.memory }}",
			"containers[0].ports[0].containerPort":    "{{ params.port }}",
		},
	}
}

func TestTypedParametersGiveEachPodTheResourcesAndPortItSetsAndRefuseAValueOutOfBounds(t *testing.T) {
	ns := createNamespace(t, "typed", nil)
	createTemplate(t, ns, "proxy", proxySpec())

	// The API server stores the placeholders where they stand, and a typed client reads them back aside.
	var stored v1alpha1.SidecarTemplate
	if err := k8s.Get(ctxFor(t), client.ObjectKey{Namespace: ns, Name: "proxy"}, &stored); err != nil {
		t.Fatal(err)
	}
	if got := stored.Spec.TypedPlaceholders["containers[0].ports[0].containerPort"]; got != "{{ params.port }}" {
		t.Fatalf("read back: typed placeholders %v", stored.Spec.TypedPlaceholders)
	}
	waitUntilServed(t, ns, ns, "proxy")

	got := createPod(t, newPod(ns, "sized", withInject("proxy"),
		withAnnotation("proxy.param.sidecar.dev/cpu", "0.5"), withAnnotation("proxy.param.sidecar.dev/memory", "256Mi"),
		withAnnotation("proxy.param.sidecar.dev/port", "9090")))
	proxy := findContainer(got.Spec.Containers, "proxy")
	if proxy == nil {
		t.Fatalf("no proxy container: %v", containerNames(got.Spec.Containers))
	}
	if r := proxy.Resources; r.Requests.Cpu().Cmp(resource.MustParse("500m")) != 0 ||
		r.Requests.Memory().Cmp(resource.MustParse("256Mi")) != 0 || r.Limits.Memory().Cmp(resource.MustParse("256Mi")) != 0 {
		t.Errorf("proxy resources %+v, want requests cpu 500m memory 256Mi, limits memory 256Mi", r)
	}
	if len(proxy.Ports) != 1 || proxy.Ports[0].ContainerPort != 9090 {
		t.Errorf("proxy ports %+v, want containerPort 9090", proxy.Ports)
	}

	defaults := createPod(t, newPod(ns, "defaults", withInject("proxy")))
	if p := findContainer(defaults.Spec.Containers, "proxy"); p == nil || p.Ports[0].ContainerPort != 15001 ||
		p.Resources.Requests.Cpu().Cmp(resource.MustParse("100m")) != 0 {
		t.Errorf("a pod that sets nothing: proxy %+v, want the defaults (cpu 100m, port 15001)", p)
	}

	pod := newPod(ns, "greedy", withInject("proxy"), withAnnotation("proxy.param.sidecar.dev/cpu", "4"))
	_, err := tryCreatePod(t, pod, false)
	expectDenied(t, pod, err, `sidecar template "proxy"`, `parameter "cpu"`, `"4" is above the maximum 2`)
}
