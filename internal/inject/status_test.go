package inject

import (
	"encoding/json"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sidecar-dev/sidecar-injector/internal/api/v1alpha1"
)

// shipper adds a sidecar, a volume, and env + a mount for the application containers.
const shipper = `
metadata: {name: shipper, namespace: team-a, generation: 2}
spec:
  containers: [{name: shipper, image: s}]
  volumes: [{name: logs, emptyDir: {}}]
  volumeMounts: [{name: logs, mountPath: /logs}]
  env: [{name: LOG_DIR, value: /logs}]
`

func podWithStatus(status string, extraContainers string) string {
	return `
metadata:
  name: web
  namespace: team-a
  annotations:
    sidecar.dev/inject: shipper
    sidecar.dev/status: '` + status + `'
spec:
  containers:
  - {name: app, image: a}
` + extraContainers
}

// appGetsShipperEnv checks that the application container "app" received what the template gives application
// containers: a forged record must not turn the pod's own container into a "sidecar".
func appGetsShipperEnv(t *testing.T, _ *Result, p *corev1.Pod) {
	t.Helper()
	app := container(t, p, "app")
	if _, ok := envValue(app, "LOG_DIR"); !ok {
		t.Errorf("the application container did not receive LOG_DIR: %+v", app.Env)
	}
	if _, ok := mountAt(app, "/logs"); !ok {
		t.Errorf("the application container did not receive the /logs mount: %+v", app.VolumeMounts)
	}
}

// statusNamesOnly checks that the written record names exactly these templates.
func statusNamesOnly(keys ...string) func(t *testing.T, r *Result, p *corev1.Pod) {
	return func(t *testing.T, _ *Result, p *corev1.Pod) {
		t.Helper()
		st := readStatus(t, p)
		if st == nil {
			t.Fatalf("no status annotation")
		}
		var got []string
		for _, e := range st.Templates {
			got = append(got, e.Namespace+"/"+e.Name)
		}
		slices.Sort(got)
		slices.Sort(keys)
		if !slices.Equal(got, keys) {
			t.Errorf("the record names %v, want exactly %v", got, keys)
		}
	}
}

func both(fs ...func(t *testing.T, r *Result, p *corev1.Pod)) func(t *testing.T, r *Result, p *corev1.Pod) {
	return func(t *testing.T, r *Result, p *corev1.Pod) {
		t.Helper()
		for _, f := range fs {
			f(t, r, p)
		}
	}
}

func TestStatusRecord(t *testing.T) {
	runTable(t, []tableCase{
		{
			name:      "a record claiming the template although the pod lacks its names: the template is injected, the record replaced",
			pod:       podWithStatus(`{"templates":[{"namespace":"team-a","name":"shipper","generation":2,"hash":"x","containers":["shipper"],"volumes":["logs"]}]}`, ""),
			templates: shipper,
			decisions: []want{{"team-a", "shipper", I, ReasonRequested}},
			check:     both(appGetsShipperEnv, expectContainers("app", "shipper"), statusNamesOnly("team-a/shipper")),
		},
		{
			name:      "a malformed record is replaced and the template injected",
			pod:       podWithStatus(`not json`, ""),
			templates: shipper,
			decisions: []want{{"team-a", "shipper", I, ReasonRequested}},
			check:     both(appGetsShipperEnv, statusNamesOnly("team-a/shipper")),
		},
		{
			name:      "an empty record on a pod that receives nothing is left alone (no patch)",
			pod:       "metadata: {name: w, namespace: team-a, annotations: {sidecar.dev/status: '{\"templates\":[]}'}}\nspec: {containers: [{name: app, image: a}]}",
			templates: shipper,
			noPatch:   true,
		},
		{
			name:      "a wrong record on a pod that receives nothing is left as it is: the record is only rewritten with an injection",
			pod:       "metadata: {name: w, namespace: team-a, annotations: {sidecar.dev/status: '{\"templates\":[{\"namespace\":\"team-b\",\"name\":\"ghost\",\"containers\":[\"ghost\"]}]}'}}\nspec: {containers: [{name: app, image: a}]}",
			templates: shipper,
			noPatch:   true,
		},
		{
			name:      "a record the webhook rewrites always has a templates list, never null",
			pod:       podWithStatus(`{"templates":null}`, ""),
			templates: shipper,
			check: func(t *testing.T, _ *Result, p *corev1.Pod) {
				raw := p.Annotations["sidecar.dev/status"]
				var m map[string]any
				if err := json.Unmarshal([]byte(raw), &m); err != nil {
					t.Fatalf("record %q: %v", raw, err)
				}
				if _, ok := m["templates"].([]any); !ok {
					t.Errorf("record %q: templates is not a list", raw)
				}
			},
		},
		{
			name:      "a forged record attributing the pod's own container to an unknown template does not make it a sidecar",
			pod:       podWithStatus(`{"templates":[{"namespace":"team-b","name":"ghost","containers":["app"]}]}`, ""),
			templates: shipper,
			decisions: []want{{"team-a", "shipper", I, ReasonRequested}},
			check:     appGetsShipperEnv,
		},
		{
			name:      "a forged record attributing the pod's own container to the template itself does not make it a sidecar",
			pod:       podWithStatus(`{"templates":[{"namespace":"team-a","name":"shipper","containers":["app"]}]}`, ""),
			templates: shipper,
			decisions: []want{{"team-a", "shipper", I, ReasonRequested}},
			check:     appGetsShipperEnv,
		},
		{
			name:      "the rewritten record names only templates injected into this pod, not a forged out-of-scope one",
			pod:       podWithStatus(`{"templates":[{"namespace":"team-b","name":"ghost","containers":["app"]}]}`, ""),
			templates: shipper,
			check:     statusNamesOnly("team-a/shipper"),
		},
		{
			name:        "a container the record attributes to the template, and that the pod has, is not a conflict",
			pod:         podWithStatus(`{"templates":[{"namespace":"team-a","name":"shipper","generation":2,"hash":"x","containers":["shipper"],"volumes":["logs"]}]}`, "  - {name: shipper, image: s, env: [{name: X, value: x}]}\n  volumes: [{name: logs, emptyDir: {}}]\n"),
			templates:   shipper,
			notInjected: nil,
			check:       both(appGetsShipperEnv, expectContainers("app", "shipper"), statusNamesOnly("team-a/shipper")),
		},
		{
			name:      "a container the pod has that the record does not attribute to the template is a conflict",
			pod:       podWithStatus(`{"templates":[]}`, "  - {name: shipper, image: s}\n"),
			templates: shipper,
			decisions: []want{{"team-a", "shipper", DN, ReasonConflict}},
			denied:    true,
		},
	})
}

func TestSameImageToleratesMirrorsAndPinningButNotAnotherImage(t *testing.T) {
	for _, c := range []struct {
		want, have string
		same       bool
	}{
		{"fluent/fluent-bit:3.2", "fluent/fluent-bit:3.2", true},
		{"fluent/fluent-bit:3.2", "mirror.example/fluent/fluent-bit:3.2", true},
		{"fluent/fluent-bit:3.2", "mirror.example:5000/dockerhub/fluent/fluent-bit:3.2", true},
		{"fluent/fluent-bit:3.2", "fluent/fluent-bit@sha256:abc", true},
		{"nginx", "docker.io/library/nginx:latest", true},
		{"fluent/fluent-bit@sha256:abc", "fluent/fluent-bit@sha256:abc", true},
		{"fluent/fluent-bit:3.2", "fluent/fluent-bit:3.3", false},
		{"fluent/fluent-bit:3.2", "evil.example/not-the-sidecar:1", false},
		{"fluent/fluent-bit:3.2", "evilfluent/fluent-bit:3.2", false},
		{"fluent/fluent-bit@sha256:abc", "fluent/fluent-bit@sha256:def", false},
		{"fluent/fluent-bit@sha256:abc", "fluent/fluent-bit:3.2", false},
		{"registry.local:5000/agent:1", "registry.local:5000/agent:1", true},
	} {
		if got := sameImage(c.want, c.have); got != c.same {
			t.Errorf("sameImage(%q, %q) = %v, want %v", c.want, c.have, got, c.same)
		}
	}
}

// The record's hash says whether a pod carries what the template adds now. spec.mode only chooses the path that
// serves the template and spec.updatePolicy how a new version reaches running pods, so changing them must not
// make every pod look outdated; a field that changes what is added must change the hash.
func TestTheRecordedHashIgnoresOnlyTheServingModeAndTheUpdatePolicy(t *testing.T) {
	base := v1alpha1.SidecarTemplate{ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", Name: "t", Generation: 1},
		Spec: v1alpha1.SidecarTemplateSpec{Containers: []corev1.Container{{Name: "s", Image: "s:1"}}}}
	hash := func(edit func(*v1alpha1.SidecarTemplateSpec)) string {
		st := base.DeepCopy()
		edit(&st.Spec)
		return Compile(st, "sidecar-injector").Hash
	}
	unchanged := hash(func(*v1alpha1.SidecarTemplateSpec) {})
	for _, mode := range []v1alpha1.Mode{v1alpha1.ModeWebhook, v1alpha1.ModePolicy, v1alpha1.ModeAuto} {
		if got := hash(func(s *v1alpha1.SidecarTemplateSpec) { s.Mode = mode }); got != unchanged {
			t.Errorf("mode %s changed the hash: %s, want %s", mode, got, unchanged)
		}
	}
	rolling := &v1alpha1.UpdatePolicy{Restart: v1alpha1.RestartRolling, MaxConcurrent: ptr[int32](3)}
	if got := hash(func(s *v1alpha1.SidecarTemplateSpec) { s.UpdatePolicy = rolling }); got != unchanged {
		t.Errorf("updatePolicy changed the hash: %s, want %s", got, unchanged)
	}
	if got := hash(func(s *v1alpha1.SidecarTemplateSpec) { s.Containers[0].Image = "s:2" }); got == unchanged {
		t.Error("a new image left the hash unchanged")
	}
	if got := hash(func(s *v1alpha1.SidecarTemplateSpec) { s.JobPolicy = v1alpha1.JobPolicySkip }); got == unchanged {
		t.Error("a new jobPolicy left the hash unchanged")
	}
}
