package e2e

import (
	"encoding/json"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sidecar-dev/sidecar-injector/internal/api/v1alpha1"
	"github.com/sidecar-dev/sidecar-injector/internal/inject"
)

// testStoredSidecarIsRecognised: a sidecar as a real cluster stores it — defaulted by the API server, with the
// service account token mount the ServiceAccount admission plugin adds — and then with the label it was
// rendered from changed, is recognised by the engine as already injected (README "Security": what is tolerated).
func testStoredSidecarIsRecognised(t *testing.T) {
	ns := namespace(t, "recognise")
	spec := v1alpha1.SidecarTemplateSpec{Containers: []corev1.Container{proxySidecar("{{ pod.labels.app }}")}}
	createTemplate(t, ns, "proxy", spec)
	stored := createPod(t, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "client", Labels: map[string]string{"app": "web"},
			Annotations: map[string]string{v1alpha1.AnnotationInject: "proxy"}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{container("app", appImage, "get", "-url", proxyURL, "-stay")}},
	})
	i := slices.IndexFunc(stored.Spec.Containers, func(c corev1.Container) bool { return c.Name == "proxy" })
	if i < 0 {
		t.Fatalf("the proxy was not injected: %v", containerNames(stored.Spec.Containers))
	}
	proxy := stored.Spec.Containers[i]
	if !slices.ContainsFunc(proxy.VolumeMounts, func(m corev1.VolumeMount) bool {
		return m.MountPath == "/var/run/secrets/kubernetes.io/serviceaccount"
	}) || proxy.TerminationMessagePath == "" {
		t.Errorf("the cluster did not add the token mount and defaults this story is about: %+v", proxy)
	}
	tmpl := inject.Compile(&v1alpha1.SidecarTemplate{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "proxy", Generation: 1}, Spec: spec}, injectorNS)
	for _, relabel := range []bool{false, true} {
		p := stored.DeepCopy()
		if relabel {
			p.Labels["app"] = "renamed"
		}
		raw, err := json.Marshal(p)
		if err != nil {
			t.Fatal(err)
		}
		res, err := inject.Inject(inject.Request{Pod: raw, Namespace: ns, InjectorNamespace: injectorNS, Templates: []*inject.Template{tmpl}})
		if err != nil {
			t.Fatal(err)
		}
		if res.Denied || len(res.Patch) > 0 || len(res.Decisions) != 1 || res.Decisions[0].Outcome != inject.OutcomeAlreadyInjected {
			t.Errorf("relabelled %v: the stored pod fed back is not already injected: denied=%v %s, decisions %+v, %d ops\nstored proxy: %+v",
				relabel, res.Denied, res.DenyMessage, res.Decisions, len(res.Patch), proxy)
		}
	}
	logf(t, "the stored proxy (token mount, API-server defaults) and a relabelled copy are already injected")
}
