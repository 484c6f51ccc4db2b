package inject

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sidecar-dev/sidecar-injector/internal/api/v1alpha1"
)

// What the API server would refuse — the template as the CRD checks it, or the pod it would produce — is caught
// by the engine and reported Invalid, naming the template and the key, instead of a later generic refusal.
func TestWhatTheAPIServerWouldRefuseIsInvalid(t *testing.T) {
	requested := simplePod("{app: web}", `{sidecar.dev/inject: t, t.param.sidecar.dev/k: "sidecar.dev/inject"}`)
	invalid := func(msg string) []string { return []string{`sidecar template "t" is invalid: ` + msg} }
	runTable(t, []tableCase{
		{
			name:      "an env name given twice in one template (the CRD's list-map key) makes it invalid",
			pod:       requested,
			templates: tmpl("team-a", "t", "  env: [{name: A, value: x}, {name: A, value: y}]"),
			denied:    true,
			denyHas:   invalid(`spec.env[1].name "A" is also spec.env[0].name`),
		},
		{
			name:      "so does a mountPath given twice",
			pod:       requested,
			templates: tmpl("team-a", "t", "  volumes: [{name: v, emptyDir: {}}]\n  volumeMounts: [{name: v, mountPath: /m}, {name: v, mountPath: /m}]"),
			denied:    true,
			denyHas:   invalid(`spec.volumeMounts[1].mountPath "/m" is also spec.volumeMounts[0].mountPath`),
		},
		{
			name:      "a dnsConfig option named twice (contradictory values) makes the template invalid, naming the option",
			pod:       requested,
			templates: tmpl("team-a", "t", "  dnsConfig: {options: [{name: ndots, value: '2'}, {name: edns0}, {name: ndots, value: '5'}]}"),
			denied:    true,
			denyHas:   invalid(`spec.dnsConfig.options[0] and spec.dnsConfig.options[2] both name the option "ndots"`),
		},
		{
			name:      "so does one named twice with the same value",
			pod:       requested,
			templates: tmpl("team-a", "t", "  dnsConfig: {options: [{name: edns0}, {name: edns0}]}"),
			denied:    true,
			denyHas:   invalid(`spec.dnsConfig.options[0] and spec.dnsConfig.options[1] both name the option "edns0"`),
		},
		{
			name:      "an annotation key the API server refuses on every pod makes the template invalid, naming the key",
			pod:       requested,
			templates: tmpl("team-a", "t", `  annotations: {"a~b": x}`),
			denied:    true,
			denyHas:   invalid(`spec.annotations["a~b"]: not a valid annotation key`),
		},
		{
			name:      "so does a label value that no label may have",
			pod:       requested,
			templates: tmpl("team-a", "t", `  labels: {tier: "not a value"}`),
			denied:    true,
			denyHas:   invalid(`spec.labels["tier"]: "not a value" is not a valid label value`),
		},
		{
			name:      "a key that a parameter renders under sidecar.dev/ is refused after substitution: the reservation cannot be dodged",
			pod:       requested,
			templates: tmpl("team-a", "t", "  parameters: [{name: k}]\n  annotations: {'{{ params.k }}': 'false'}"),
			denied:    true,
			denyHas:   []string{`sidecar template "t": spec.annotations["{{ params.k }}"] renders to "sidecar.dev/inject": keys under sidecar.dev/ are reserved for the injector`},
			decisions: []want{{"team-a", "t", OutcomeDenied, ReasonInvalid}},
		},
		{
			name:      "a label key rendered from a pod label is checked the same way",
			pod:       simplePod("{key: 'sidecar.dev/x'}", `{sidecar.dev/inject: t}`),
			templates: tmpl("team-a", "t", "  labels: {'{{ pod.labels.key }}': v}"),
			denied:    true,
			denyHas:   []string{`renders to "sidecar.dev/x": keys under sidecar.dev/ are reserved`},
		},
		{
			name:      "two keys that render to one are refused, not resolved by chance",
			pod:       simplePod("{a: same, b: same}", `{sidecar.dev/inject: t}`),
			templates: tmpl("team-a", "t", "  annotations: {'x.example/{{ pod.labels.a }}': one, 'x.example/{{ pod.labels.b }}': two}"),
			denied:    true,
			denyHas:   []string{`both render to "x.example/same" for this pod`},
		},
		{
			name:      "a rendered key that is valid is added",
			pod:       simplePod("{team: blue}", `{sidecar.dev/inject: t}`),
			templates: tmpl("team-a", "t", "  annotations: {'{{ pod.labels.team }}.example.com/owner': ops}"),
			decisions: []want{{"team-a", "t", I, ReasonRequested}},
			check: func(t *testing.T, _ *Result, p *corev1.Pod) {
				if p.Annotations["blue.example.com/owner"] != "ops" {
					t.Errorf("annotations %v", p.Annotations)
				}
			},
		},
	})
}

// A template's message is the same every time it is compiled (it becomes its status condition, which would
// otherwise change on every reconcile): the host namespace fields are named in field order, not map order.
func TestCompileMessagesAreDeterministic(t *testing.T) {
	st := &v1alpha1.SidecarTemplate{ObjectMeta: metav1.ObjectMeta{Name: "t", Namespace: "team-a"},
		Spec: v1alpha1.SidecarTemplateSpec{HostNetwork: ptr(true), HostPID: ptr(true), HostIPC: ptr(true),
			Containers: []corev1.Container{{Name: "c", Image: "i"}}}}
	first := Compile(st, injectorNS).Err.Error()
	if i, j, k := strings.Index(first, "hostNetwork"), strings.Index(first, "hostPID"), strings.Index(first, "hostIPC"); !(0 <= i && i < j && j < k) {
		t.Fatalf("not in field order: %s", first)
	}
	for range 50 {
		if again := Compile(st, injectorNS).Err.Error(); again != first {
			t.Fatalf("the message changed between compiles:\n%s\n%s", first, again)
		}
	}
}
