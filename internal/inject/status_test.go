package inject

import (
	"encoding/json"
	"slices"
	"strings"
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
			name: "a container the record attributes to the template, and that the pod has as the API server and admission plugins leave it, is not a conflict",
			pod: podWithStatus(`{"templates":[{"namespace":"team-a","name":"shipper","generation":2,"hash":"x","containers":["shipper"],"volumes":["logs"]}]}`,
				"  - {name: shipper, image: s, imagePullPolicy: Always, terminationMessagePath: /dev/termination-log, terminationMessagePolicy: File,\n"+
					"     resources: {limits: {cpu: 200m}, requests: {cpu: 200m}}, volumeMounts: [{name: kube-api-access-x, mountPath: /var/run/secrets/kubernetes.io/serviceaccount, readOnly: true}]}\n"+
					"  volumes: [{name: logs, emptyDir: {}}]\n"),
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

// TestTheImageIsExactUnlessThePlatformDeclaresAMirrorOrPinning: by default the pod's image must be exactly the
// rendered one; a declared mirror may replace the registry, and declared pinning may add a digest to a tag,
// exactly that and nothing else.
func TestTheImageIsExactUnlessThePlatformDeclaresAMirrorOrPinning(t *testing.T) {
	const dgst = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	none := ImageTolerance{}
	mirror := ImageTolerance{Mirrors: []string{"mirror.example:5000/dockerhub", "ghcr-proxy.example/"}}
	pin := ImageTolerance{DigestPinning: true}
	for _, c := range []struct {
		name       string
		tol        ImageTolerance
		want, have string
		ok         bool
	}{
		{"the rendered image passes", none, "fluent/fluent-bit:3.2", "fluent/fluent-bit:3.2", true},
		{"another registry prefix is a look-alike by default", none, "fluent/fluent-bit:3.2", "mirror.example:5000/dockerhub/fluent/fluent-bit:3.2", false},
		{"any digest is a look-alike by default", none, "fluent/fluent-bit:3.2", "fluent/fluent-bit@" + dgst, false},
		{"another tag never passes", mirror, "fluent/fluent-bit:3.2", "fluent/fluent-bit:3.3", false},
		{"a suffix match is not a mirror", none, "fluent/fluent-bit:3.2", "evilfluent/fluent-bit:3.2", false},
		{"a declared mirror replacing Docker Hub passes", mirror, "fluent/fluent-bit:3.2", "mirror.example:5000/dockerhub/fluent/fluent-bit:3.2", true},
		{"a declared mirror in Docker Hub's canonical form passes", mirror, "nginx:1", "mirror.example:5000/dockerhub/library/nginx:1", true},
		{"a declared mirror replacing a named registry passes", mirror, "ghcr.io/org/agent:1", "ghcr-proxy.example/org/agent:1", true},
		{"an undeclared mirror does not", mirror, "fluent/fluent-bit:3.2", "other.example/fluent/fluent-bit:3.2", false},
		{"a declared mirror under another path does not", mirror, "fluent/fluent-bit:3.2", "mirror.example:5000/dockerhub/evil/fluent/fluent-bit:3.2", false},
		{"a mirror does not allow a digest", mirror, "fluent/fluent-bit:3.2", "mirror.example:5000/dockerhub/fluent/fluent-bit@" + dgst, false},
		{"declared pinning: the tag replaced by a digest passes", pin, "fluent/fluent-bit:3.2", "fluent/fluent-bit@" + dgst, true},
		{"declared pinning: the tag kept with a digest passes", pin, "fluent/fluent-bit:3.2", "fluent/fluent-bit:3.2@" + dgst, true},
		{"declared pinning: another tag with a digest does not", pin, "fluent/fluent-bit:3.2", "fluent/fluent-bit:3.3@" + dgst, false},
		{"declared pinning: a malformed digest does not", pin, "fluent/fluent-bit:3.2", "fluent/fluent-bit@sha256:abc", false},
		{"declared pinning: another registry does not", pin, "fluent/fluent-bit:3.2", "evil.example/fluent/fluent-bit@" + dgst, false},
		{"a digest the template names is never replaced", pin, "fluent/fluent-bit@" + dgst, "fluent/fluent-bit@sha256:" + strings.Repeat("f", 64), false},
		{"both declared: mirror and pin together pass", ImageTolerance{Mirrors: mirror.Mirrors, DigestPinning: true}, "fluent/fluent-bit:3.2", "mirror.example:5000/dockerhub/fluent/fluent-bit@" + dgst, true},
		{"a registry with a port is exact", none, "registry.local:5000/agent:1", "registry.local:5000/agent:1", true},
	} {
		if got := c.tol.imageAllowed(c.want, c.have); got != c.ok {
			t.Errorf("%s: imageAllowed(%q, %q) = %v, want %v", c.name, c.want, c.have, got, c.ok)
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

// labelled (cluster-wide) renders its sidecar from a label, an annotation, a parameter and the namespace.
const labelled = `
metadata: {name: tagger, namespace: sidecar-injector, generation: 1}
spec:
  parameters: [{name: level, default: info}]
  containers:
  - name: tagger
    image: t:1
    args: ["--app={{ pod.labels.app }}", "--team={{ pod.annotations.team }}", "--level={{ params.level }}", "--ns={{ pod.namespace }}"]
`

const labelledPod = `
metadata:
  name: web
  labels: {app: web}
  annotations: {sidecar.dev/inject: tagger, team: payments, tagger.param.sidecar.dev/level: debug}
spec:
  containers: [{name: app, image: a}]
`

// reinject injects the pod, lets edit change the injected pod as another webhook, a later template or an
// offline edit would, and feeds it back in namespace ns (the first pass runs in team-a).
func reinject(t *testing.T, pod, templates, ns string, edit func(p *corev1.Pod)) (first, second *Result) {
	t.Helper()
	ts := compileAll(parseTemplates(t, []byte(templates)), injectorNS)
	raw := podJSON(t, pod)
	r1, err := Inject(Request{Pod: raw, Namespace: "team-a", InjectorNamespace: injectorNS, Templates: ts})
	if err != nil || r1.Denied {
		t.Fatalf("first pass: %v %s", err, r1.DenyMessage)
	}
	p := decodePod(t, verifyPatch(t, raw, r1))
	edit(p)
	raw2, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	r2, err := Inject(Request{Pod: raw2, Namespace: ns, InjectorNamespace: injectorNS, Templates: ts})
	if err != nil {
		t.Fatalf("second pass: %v", err)
	}
	verifyPatch(t, raw2, r2)
	return r1, r2
}

func setStatus(status string) func(p *corev1.Pod) {
	return func(p *corev1.Pod) { p.Annotations[v1alpha1.AnnotationStatus] = status }
}

// TestRecordedValuesKeepTheSidecarInjected: "already injected" holds for what this injector rendered, whatever
// the pod's per-pod values are now (SPEC guarantee 2), and only for that (guarantee 3).
func TestRecordedValuesKeepTheSidecarInjected(t *testing.T) {
	changed := func(p *corev1.Pod) {
		p.Labels["app"] = "renamed"
		p.Annotations["team"] = "other"
		p.Annotations["tagger.param.sidecar.dev/level"] = "warn"
	}
	for _, c := range []struct {
		name   string
		ns     string
		edit   func(p *corev1.Pod)
		denied bool
	}{
		{"another webhook changes the label, annotation and parameter the sidecar was rendered from: the second pass is empty", "team-a", changed, false},
		{"the values are unchanged: the second pass is empty", "team-a", func(*corev1.Pod) {}, false},
		{"an offline-injected pod whose labels a later edit changed is still admitted unchanged", "team-a", func(p *corev1.Pod) {
			changed(p)
			p.Name = "web-7d9f" // created by a controller this time
		}, false},
		{"the same pod and record created in another namespace: the namespace is the request's, so the sidecar does not verify", "team-b", func(*corev1.Pod) {}, true},
		{"a record written by an earlier version (no values) is verified with the current values: unchanged ones verify", "team-a",
			setStatus(`{"templates":[{"namespace":"sidecar-injector","name":"tagger","generation":1,"hash":"x","containers":["tagger"]}]}`), false},
		{"a record written by an earlier version (no values) is verified with the current values: changed ones do not", "team-a", func(p *corev1.Pod) {
			setStatus(`{"templates":[{"namespace":"sidecar-injector","name":"tagger","generation":1,"hash":"x","containers":["tagger"]}]}`)(p)
			changed(p)
		}, true},
		{"a forged record's values verify only the sidecar they render: another one is a conflict", "team-a", func(p *corev1.Pod) {
			setStatus(`{"templates":[{"namespace":"sidecar-injector","name":"tagger","generation":1,"hash":"x","containers":["tagger"],"values":{"params.level":"debug","pod.annotations.team":"payments","pod.labels.app":"forged"}}]}`)(p)
		}, true},
		{"a forged record whose values render exactly the pod's sidecar verifies: the author could have set those values", "team-a", func(p *corev1.Pod) {
			p.Spec.Containers[1].Args = []string{"--app=forged", "--team=payments", "--level=debug", "--ns=team-a"}
			setStatus(`{"templates":[{"namespace":"sidecar-injector","name":"tagger","generation":1,"hash":"x","containers":["tagger"],"values":{"params.level":"debug","pod.annotations.team":"payments","pod.labels.app":"forged"}}]}`)(p)
		}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, r := reinject(t, labelledPod, labelled, c.ns, c.edit)
			if r.Denied != c.denied {
				t.Fatalf("denied = %v, want %v: %s", r.Denied, c.denied, r.DenyMessage)
			}
			if !c.denied && len(r.Patch) != 0 {
				t.Errorf("the second pass patches the pod: %s", mustPatchJSON(t, r))
			}
			if c.denied && !strings.Contains(r.DenyMessage, `container name "tagger" already exists in pod (its sidecar.dev/status names this template`) {
				t.Errorf("the denial does not say the record names a container the template did not render: %s", r.DenyMessage)
			}
		})
	}
}

// TestForgedValuesDoNotSteerAFreshInjection: a record whose values verify none of the template's sidecars is
// not used to render what the template adds now: the sidecar is rendered from the pod's own values.
func TestForgedValuesDoNotSteerAFreshInjection(t *testing.T) {
	ts := compileAll(parseTemplates(t, []byte(labelled)), injectorNS)
	raw := podJSON(t, `
metadata:
  name: web
  labels: {app: web}
  annotations:
    sidecar.dev/inject: tagger
    team: payments
    sidecar.dev/status: '{"templates":[{"namespace":"sidecar-injector","name":"tagger","generation":1,"hash":"x","containers":["tagger"],"values":{"pod.labels.app":"forged","pod.annotations.team":"forged","params.level":"forged"}}]}'
spec:
  containers: [{name: app, image: a}]
`)
	r, err := Inject(Request{Pod: raw, Namespace: "team-a", InjectorNamespace: injectorNS, Templates: ts})
	if err != nil || r.Denied {
		t.Fatalf("%v %s", err, r.DenyMessage)
	}
	tagger := container(t, decodePod(t, verifyPatch(t, raw, r)), "tagger")
	if want := []string{"--app=web", "--team=payments", "--level=info", "--ns=team-a"}; !slices.Equal(tagger.Args, want) {
		t.Errorf("the sidecar injected now was rendered with %v, want the pod's own values %v", tagger.Args, want)
	}
}

// TestTheRecordKeepsTheValuesUsed: the record holds each per-pod expression the template uses, with the value it
// had, except the namespace; keys sorted (encoding/json's map order), so the record is deterministic.
func TestTheRecordKeepsTheValuesUsed(t *testing.T) {
	r1, _ := reinject(t, labelledPod, labelled, "team-a", func(*corev1.Pod) {})
	var raw string
	for _, op := range r1.Patch {
		if op.Path == statusPath {
			raw, _ = op.Value.(string)
		}
	}
	want := `"values":{"params.level":"debug","pod.annotations.team":"payments","pod.labels.app":"web"}`
	if !strings.Contains(raw, want) {
		t.Errorf("record %s\ndoes not contain %s", raw, want)
	}
}

// TestRecordedValuesCountAgainstThePatchLimit: the values the record keeps are part of the patch, so a large
// per-pod value cannot slip past max-patch-bytes through the record.
func TestRecordedValuesCountAgainstThePatchLimit(t *testing.T) {
	tmpl := "metadata: {name: big, namespace: team-a}\nspec:\n  env: [{name: NOTE, value: 'x'}]\n  annotations: {note: '{{ pod.annotations.note }}'}\n"
	note := strings.Repeat("n", 3000)
	pod := podJSON(t, "metadata: {name: p, annotations: {sidecar.dev/inject: big, note: '"+note+"'}}\nspec: {containers: [{name: app, image: a}]}")
	ts := compileAll(parseTemplates(t, []byte(tmpl)), injectorNS)
	// The annotation the template adds is the pod's own key: only the record carries the value.
	r, err := Inject(Request{Pod: pod, Namespace: "team-a", InjectorNamespace: injectorNS, Templates: ts,
		Limits: Limits{MaxPatchBytes: 2000}})
	if err != nil {
		t.Fatal(err)
	}
	if !r.Denied || !strings.Contains(r.DenyMessage, "max-patch-bytes") {
		t.Errorf("a record of %d bytes of values passed a 2000-byte patch limit: denied=%v %s", len(note), r.Denied, r.DenyMessage)
	}
}

// TestLookAlikeSidecarsAreConflicts: a pod that brings a container with the template's name and a record copied
// from a real injection is told "already injected" only when its container is what the template renders, up to
// what the API server and the platform's declared image policy change (SPEC guarantees 3 and 7).
func TestLookAlikeSidecarsAreConflicts(t *testing.T) {
	const dgst = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	tmpls := compileAll(parseTemplates(t, []byte(`
metadata: {name: mesh, namespace: sidecar-injector, generation: 1}
spec:
  selector: {}
  containers: [{name: proxy, image: "registry.example/mesh/proxy:1.2", args: [--mtls], env: [{name: MODE, value: strict}],
    volumeMounts: [{name: certs, mountPath: /certs}], readinessProbe: {httpGet: {port: 15021}}, ports: [{containerPort: 15001}]}]
  volumes: [{name: certs, secret: {secretName: mesh-certs}}]
`)), injectorNS)
	// The record a real injection writes, copied into every case.
	record := `{"templates":[{"namespace":"sidecar-injector","name":"mesh","generation":1,"hash":"` + tmpls[0].Hash + `","containers":["proxy"],"volumes":["certs"]}]}`
	pod := func(proxy string) []byte {
		return podJSON(t, `
metadata: {name: web, annotations: {sidecar.dev/status: '`+record+`'}}
spec:
  containers:
  - {name: app, image: a}
  - `+proxy+`
  volumes: [{name: certs, secret: {secretName: mesh-certs, defaultMode: 420}}]
`)
	}
	// What the API server stores for the rendered proxy: its defaults, LimitRange's resources, the token mount.
	const asStored = `{name: proxy, image: IMAGE, args: [--mtls], env: [{name: MODE, value: strict}],
    volumeMounts: [{name: certs, mountPath: /certs}, {name: kube-api-access-1, mountPath: /var/run/secrets/kubernetes.io/serviceaccount, readOnly: true}],
    readinessProbe: {httpGet: {port: 15021, path: /, scheme: HTTP}, timeoutSeconds: 1, periodSeconds: 10, successThreshold: 1, failureThreshold: 3},
    ports: [{containerPort: 15001, protocol: TCP}], resources: {requests: {cpu: 100m, memory: 64Mi}},
    imagePullPolicy: IfNotPresent, terminationMessagePath: /dev/termination-log, terminationMessagePolicy: File`
	stored := func(image, more string) string {
		return strings.Replace(asStored, "IMAGE", `"`+image+`"`, 1) + more + "}"
	}
	mirror := ImageTolerance{Mirrors: []string{"mirror.example/mesh-upstream"}}
	pin := ImageTolerance{DigestPinning: true}
	for _, c := range []struct {
		name     string
		proxy    string
		images   ImageTolerance
		conflict bool
	}{
		{"the rendered sidecar as the API server stores it is already injected", stored("registry.example/mesh/proxy:1.2", ""), ImageTolerance{}, false},
		{"another registry prefix is a conflict", stored("evil.example/mesh/proxy:1.2", ""), ImageTolerance{}, true},
		{"the declared mirror is not a conflict once declared", stored("mirror.example/mesh-upstream/mesh/proxy:1.2", ""), mirror, false},
		{"the declared mirror is a conflict when not declared", stored("mirror.example/mesh-upstream/mesh/proxy:1.2", ""), ImageTolerance{}, true},
		{"any digest is a conflict", stored("registry.example/mesh/proxy@"+dgst, ""), mirror, true},
		{"a digest passes when pinning is declared", stored("registry.example/mesh/proxy@"+dgst, ""), pin, false},
		{"an extra command is a conflict", stored("registry.example/mesh/proxy:1.2", ", command: [/bin/sh, -c, sleep infinity]"), mirror, true},
		{"extra args are a conflict", strings.Replace(stored("registry.example/mesh/proxy:1.2", ""), "[--mtls]", "[--mtls, --disable]", 1), pin, true},
		{"an extra env var is a conflict", strings.Replace(stored("registry.example/mesh/proxy:1.2", ""), "value: strict}]", "value: strict}, {name: LD_PRELOAD, value: /x.so}]", 1), ImageTolerance{}, true},
		{"an extra mount is a conflict", strings.Replace(stored("registry.example/mesh/proxy:1.2", ""), "mountPath: /certs}", "mountPath: /certs}, {name: certs, mountPath: /etc/mesh}", 1), ImageTolerance{}, true},
		{"another value for a defaulted field is a conflict", strings.Replace(stored("registry.example/mesh/proxy:1.2", ""), "periodSeconds: 10", "periodSeconds: 3600", 1), ImageTolerance{}, true},
		{"imagePullPolicy Never is a conflict", strings.Replace(stored("registry.example/mesh/proxy:1.2", ""), "IfNotPresent", "Never", 1), ImageTolerance{}, true},
		{"an extra securityContext (privileged) is a conflict", `{name: proxy, image: "registry.example/mesh/proxy:1.2", args: [--mtls], env: [{name: MODE, value: strict}], volumeMounts: [{name: certs, mountPath: /certs}], readinessProbe: {httpGet: {port: 15021}}, ports: [{containerPort: 15001}], securityContext: {privileged: true}}`, ImageTolerance{}, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			raw := pod(c.proxy)
			r, err := Inject(Request{Pod: raw, Namespace: "team-a", InjectorNamespace: injectorNS, Templates: tmpls, Images: c.images})
			if err != nil {
				t.Fatal(err)
			}
			verifyPatch(t, raw, r)
			if r.Denied != c.conflict {
				t.Fatalf("denied = %v, want %v: %s", r.Denied, c.conflict, r.DenyMessage)
			}
			if c.conflict && !strings.Contains(r.DenyMessage, `container name "proxy" already exists in pod (its sidecar.dev/status names this template`) {
				t.Errorf("the denial does not explain the look-alike: %s", r.DenyMessage)
			}
			if !c.conflict && (len(r.Patch) != 0 || r.Decisions[0].Outcome != OutcomeAlreadyInjected) {
				t.Errorf("not already injected: %+v, patch %s", r.Decisions, mustPatchJSON(t, r))
			}
		})
	}
}
