package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"

	jsonpatchv5 "github.com/evanphx/json-patch/v5"
	"github.com/go-logr/logr/funcr"
	"github.com/prometheus/client_golang/prometheus"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
	"sigs.k8s.io/yaml"

	"github.com/sidecar-dev/sidecar-injector/internal/api/v1alpha1"
	"github.com/sidecar-dev/sidecar-injector/internal/inject"
	"github.com/sidecar-dev/sidecar-injector/internal/metrics"
)

const injectorNS = "sidecar-injector"

// The templates every test serves: three in team-a, one cluster-wide.
const templatesYAML = `
metadata: {name: log-shipper, namespace: team-a, generation: 3}
spec:
  containers:
  - {name: log-shipper, image: "example.com/shipper:1"}
  volumes:
  - {name: app-logs, emptyDir: {}}
  volumeMounts:
  - {name: app-logs, mountPath: /var/log/app}
---
metadata: {name: optional-cache, namespace: team-a, generation: 1}
spec:
  failurePolicy: Ignore
  containers:
  - {name: cache-warmer, image: "example.com/warmer:1"}
  volumes:
  - {name: cache, emptyDir: {}}
---
metadata: {name: env-for-ghost, namespace: team-a, generation: 1}
spec:
  targetContainers: [ghost]
  env:
  - {name: TRACING, value: "on"}
---
metadata: {name: metrics, namespace: sidecar-injector, generation: 1}
spec:
  containers:
  - {name: metrics-exporter, image: "example.com/exporter:1"}
`

func compiledTemplates(t testing.TB) []*inject.Template {
	t.Helper()
	var out []*inject.Template
	for _, doc := range strings.Split(templatesYAML, "\n---\n") {
		var st v1alpha1.SidecarTemplate
		if err := yaml.UnmarshalStrict([]byte(doc), &st); err != nil {
			t.Fatalf("test template %q: %v", doc, err)
		}
		c := inject.Compile(&st, injectorNS)
		if c.Err != nil {
			t.Fatalf("test template %s is invalid: %v", c.Key(), c.Err)
		}
		out = append(out, c)
	}
	return out
}

// fakeTemplates serves the pod namespace's templates and the injector namespace's, like the store.
type fakeTemplates []*inject.Template

func (f fakeTemplates) Index(namespace string) *inject.Index {
	var out []*inject.Template
	for _, t := range f {
		if t.Namespace == namespace || t.Namespace == injectorNS {
			out = append(out, t)
		}
	}
	return inject.NewIndex(namespace, injectorNS, out)
}

// fakeNamespaces knows the labels of a few namespaces.
type fakeNamespaces map[string]map[string]string

func (f fakeNamespaces) NamespaceLabels(name string) (map[string]string, bool) {
	l, ok := f[name]
	return l, ok
}

var namespaces = fakeNamespaces{
	"team-a":      {"kubernetes.io/metadata.name": "team-a"},
	"quiet":       {v1alpha1.LabelInjection: v1alpha1.LabelInjectionDisabled},
	"kube-system": {},
	injectorNS:    {},
}

// recorder remembers the uids of the admissions it was told about.
type recorder struct {
	mu   sync.Mutex
	uids []string
}

func (r *recorder) Record(_ context.Context, req admission.Request, _ *inject.Result) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.uids = append(r.uids, string(req.UID))
}

func (r *recorder) recorded() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.uids)
}

// review is one AdmissionReview request, written as raw JSON by its json method.
type review struct {
	uid         string
	operation   string // CREATE when empty
	group       string
	resource    string // pods when empty
	kind        string // Pod when empty
	subResource string
	namespace   string // team-a when empty
	dryRun      bool
	object      string // raw JSON of request.object
}

func (r review) json() string {
	or := func(v, def string) string {
		if v == "" {
			return def
		}
		return v
	}
	object := or(r.object, "null")
	return fmt.Sprintf(`{
  "apiVersion": "admission.k8s.io/v1",
  "kind": "AdmissionReview",
  "request": {
    "uid": %q,
    "kind": {"group": %q, "version": "v1", "kind": %q},
    "resource": {"group": %q, "version": "v1", "resource": %q},
    "subResource": %q,
    "requestKind": {"group": %q, "version": "v1", "kind": %q},
    "requestResource": {"group": %q, "version": "v1", "resource": %q},
    "namespace": %q,
    "operation": %q,
    "userInfo": {"username": "alice", "groups": ["system:authenticated"]},
    "object": %s,
    "oldObject": null,
    "dryRun": %t,
    "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"}
  }
}`, or(r.uid, "uid-1"), r.group, or(r.kind, "Pod"), r.group, or(r.resource, "pods"), r.subResource,
		r.group, or(r.kind, "Pod"), r.group, or(r.resource, "pods"), or(r.namespace, "team-a"),
		or(r.operation, "CREATE"), object, r.dryRun)
}

// pod returns the JSON of a pod in team-a with one container "app", annotated sidecar.dev/inject: inject
// (no annotation when inject is empty).
func pod(inject string) string {
	annotations := ""
	if inject != "" {
		annotations = fmt.Sprintf(`, "annotations": {"sidecar.dev/inject": %q}`, inject)
	}
	return fmt.Sprintf(`{"apiVersion": "v1", "kind": "Pod",
  "metadata": {"generateName": "web-", "namespace": "team-a", "labels": {"app": "web"}%s},
  "spec": {"containers": [{"name": "app", "image": "example.com/web:1"}], "futureField": {"kept": true}}}`, annotations)
}

// fixture is a webhook server around a Handler with the test templates and namespaces.
type fixture struct {
	t        *testing.T
	url      string
	metrics  *prometheus.Registry // the registry of the handler's metrics
	recorder *recorder
}

func newFixture(t *testing.T, configure ...func(*Config)) *fixture {
	reg := prometheus.NewRegistry()
	m, err := metrics.New(reg)
	if err != nil {
		t.Fatal(err)
	}
	c := Config{
		Templates:         fakeTemplates(compiledTemplates(t)),
		Namespaces:        namespaces,
		InjectorNamespace: injectorNS,
		Metrics:           m,
		Recorder:          &recorder{},
	}
	for _, configure := range configure {
		configure(&c)
	}
	h, err := New(c)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	f := &fixture{t: t, url: srv.URL, metrics: reg, recorder: &recorder{}}
	if r, ok := c.Recorder.(*recorder); ok {
		f.recorder = r
	}
	return f
}

func newMetrics(t *testing.T) *metrics.Metrics {
	t.Helper()
	m, err := metrics.New(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// post sends body with the given content type and decodes the AdmissionReview answer.
func (f *fixture) post(contentType string, body []byte) *admissionv1.AdmissionResponse {
	f.t.Helper()
	resp, err := http.Post(f.url+Path, contentType, bytes.NewReader(body))
	if err != nil {
		f.t.Fatalf("POST: %v", err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		f.t.Fatalf("reading the answer: %v", err)
	}
	var out admissionv1.AdmissionReview
	if err := json.Unmarshal(data, &out); err != nil {
		f.t.Fatalf("the answer is not an AdmissionReview: %v\n%s", err, data)
	}
	if out.Response == nil {
		f.t.Fatalf("the answer has no response: %s", data)
	}
	return out.Response
}

func (f *fixture) admit(r review) *admissionv1.AdmissionResponse {
	f.t.Helper()
	return f.post("application/json", []byte(r.json()))
}

// applied applies the response's patch to object and returns the resulting pod.
func applied(t *testing.T, object string, resp *admissionv1.AdmissionResponse) *corev1.Pod {
	t.Helper()
	if resp.PatchType == nil || *resp.PatchType != admissionv1.PatchTypeJSONPatch {
		t.Fatalf("patchType = %v, want JSONPatch", resp.PatchType)
	}
	patch, err := jsonpatchv5.DecodePatch(resp.Patch)
	if err != nil {
		t.Fatalf("the patch is not an RFC 6902 patch: %v\n%s", err, resp.Patch)
	}
	out, err := patch.Apply([]byte(object))
	if err != nil {
		t.Fatalf("the patch does not apply to the request's object: %v\n%s", err, resp.Patch)
	}
	if !strings.Contains(string(out), `"futureField":{"kept":true}`) {
		t.Errorf("the patched pod lost a field unknown to k8s.io/api: %s", out)
	}
	var p corev1.Pod
	if err := json.Unmarshal(out, &p); err != nil {
		t.Fatalf("the patched object is not a pod: %v", err)
	}
	return &p
}

func containerNames(cs []corev1.Container) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.Name)
	}
	return out
}

func assertUnchanged(t *testing.T, resp *admissionv1.AdmissionResponse, uid string) {
	t.Helper()
	if resp.UID != types.UID(uid) {
		t.Errorf("uid = %q, want %q echoed", resp.UID, uid)
	}
	if !resp.Allowed {
		t.Errorf("not allowed: %+v", resp.Result)
	}
	if resp.PatchType != nil || len(resp.Patch) != 0 {
		t.Errorf("patchType = %v, patch = %s; want neither", resp.PatchType, resp.Patch)
	}
	if resp.Result != nil && resp.Result.Code != http.StatusOK {
		t.Errorf("status code = %d, want 200", resp.Result.Code)
	}
}

func TestAPodThatRequestsATemplateIsPatchedIntoTheInjectedPod(t *testing.T) {
	f := newFixture(t)
	object := pod("log-shipper")
	resp := f.admit(review{uid: "uid-patch", object: object})

	if resp.UID != "uid-patch" || !resp.Allowed {
		t.Fatalf("uid %q, allowed %v (%+v); want uid-patch, true", resp.UID, resp.Allowed, resp.Result)
	}
	got := applied(t, object, resp)
	if names := containerNames(got.Spec.Containers); !slices.Equal(names, []string{"app", "log-shipper"}) {
		t.Errorf("containers = %v, want app followed by log-shipper", names)
	}
	if !slices.ContainsFunc(got.Spec.Volumes, func(v corev1.Volume) bool { return v.Name == "app-logs" }) {
		t.Errorf("volumes = %+v, want app-logs added", got.Spec.Volumes)
	}
	if m := got.Spec.Containers[0].VolumeMounts; len(m) != 1 || m[0].MountPath != "/var/log/app" {
		t.Errorf("app's mounts = %+v, want /var/log/app", m)
	}
	var status inject.Status
	if err := json.Unmarshal([]byte(got.Annotations[v1alpha1.AnnotationStatus]), &status); err != nil {
		t.Fatalf("%s is not the status record: %v", v1alpha1.AnnotationStatus, err)
	}
	if len(status.Templates) != 1 || status.Templates[0].Name != "log-shipper" || status.Templates[0].Generation != 3 {
		t.Errorf("status record = %+v, want log-shipper generation 3", status)
	}
	if rec := f.recorder.recorded(); !slices.Equal(rec, []string{"uid-patch"}) {
		t.Errorf("recorder saw %v, want the one admission", rec)
	}
}

func TestFeedingThePatchedPodBackGivesNoPatch(t *testing.T) {
	f := newFixture(t)
	object := pod("log-shipper")
	patched, err := json.Marshal(applied(t, object, f.admit(review{object: object})))
	if err != nil {
		t.Fatal(err)
	}
	assertUnchanged(t, f.admit(review{uid: "again", object: string(patched)}), "again")
}

func TestAPodThatRequestsNothingIsAllowedWithoutAPatchType(t *testing.T) {
	f := newFixture(t)
	resp := f.admit(review{uid: "uid-plain", object: pod("")})
	assertUnchanged(t, resp, "uid-plain")
	if len(resp.Warnings) != 0 {
		t.Errorf("warnings = %q, want none", resp.Warnings)
	}
}

func TestAConflictUnderFailDeniesThePodNamingTheTemplate(t *testing.T) {
	f := newFixture(t)
	object := strings.Replace(pod("log-shipper"), `"name": "app"`, `"name": "log-shipper"`, 1)
	resp := f.admit(review{uid: "uid-deny", object: object})

	if resp.UID != "uid-deny" || resp.Allowed {
		t.Fatalf("uid %q, allowed %v; want uid-deny, false", resp.UID, resp.Allowed)
	}
	if resp.Result == nil || resp.Result.Code != http.StatusForbidden {
		t.Fatalf("result = %+v, want code 403", resp.Result)
	}
	want := `sidecar template "log-shipper": container name "log-shipper" already exists in pod`
	if !strings.Contains(resp.Result.Message, want) {
		t.Errorf("message = %q, want it to contain %q", resp.Result.Message, want)
	}
	if resp.PatchType != nil || len(resp.Patch) != 0 {
		t.Errorf("a denied pod got a patch: %s", resp.Patch)
	}
}

func TestAConflictUnderIgnoreAdmitsThePodWithAWarning(t *testing.T) {
	f := newFixture(t)
	object := strings.Replace(pod("optional-cache"), `"futureField"`, `"volumes": [{"name": "cache", "emptyDir": {}}], "futureField"`, 1)
	resp := f.admit(review{uid: "uid-warn", object: object})

	if !resp.Allowed {
		t.Fatalf("not allowed: %+v", resp.Result)
	}
	if len(resp.Warnings) != 1 || !strings.Contains(resp.Warnings[0], `sidecar template "optional-cache": volume name "cache" already exists in pod`) {
		t.Errorf("warnings = %q, want one naming optional-cache and the volume", resp.Warnings)
	}
	if resp.PatchType != nil || len(resp.Patch) != 0 {
		t.Errorf("the skipped template still produced a patch: %s", resp.Patch)
	}
}

func TestWarningsAccompanyAPatch(t *testing.T) {
	f := newFixture(t)
	object := pod("env-for-ghost, log-shipper")
	resp := f.admit(review{object: object})
	applied(t, object, resp)
	if len(resp.Warnings) == 0 || !strings.Contains(strings.Join(resp.Warnings, "\n"), "ghost") {
		t.Errorf("warnings = %q, want one about the missing target container ghost", resp.Warnings)
	}
}

func TestRequestsOtherThanPodCreateAreAllowedUnchanged(t *testing.T) {
	for _, tc := range []struct {
		sentence string
		review   review
	}{
		{"a pod UPDATE that requests a template", review{operation: "UPDATE"}},
		{"a pod DELETE", review{operation: "DELETE"}},
		{"a pod CONNECT", review{operation: "CONNECT"}},
		{"the CREATE of a pods/binding subresource", review{subResource: "binding", kind: "Binding"}},
		{"the UPDATE of a pods/ephemeralcontainers subresource", review{operation: "UPDATE", subResource: "ephemeralcontainers"}},
		{"a Deployment CREATE", review{group: "apps", resource: "deployments", kind: "Deployment", object: `{"kind": "Deployment"}`}},
		{"a CREATE of a pods resource in another API group", review{group: "example.com", object: `{"kind": "Pod"}`}},
	} {
		t.Run(tc.sentence+" is allowed unchanged", func(t *testing.T) {
			f := newFixture(t)
			r := tc.review
			r.uid = "uid-other"
			if r.object == "" {
				r.object = pod("log-shipper")
			}
			assertUnchanged(t, f.admit(r), "uid-other")
			if rec := f.recorder.recorded(); len(rec) != 0 {
				t.Errorf("recorder was called for %v", rec)
			}
		})
	}
}

func TestPodsThatMustNotBeInjectedAreAllowedUnchanged(t *testing.T) {
	for _, tc := range []struct {
		sentence string
		review   review
	}{
		{"a pod in kube-system", review{namespace: "kube-system"}},
		{"a pod in kube-public, a namespace the informer has not seen", review{namespace: "kube-public"}},
		{"a pod in the injector's own namespace", review{namespace: injectorNS, object: pod("metrics")}},
		{"a pod in a namespace labelled sidecar.dev/injection=disabled", review{namespace: "quiet"}},
		{"a pod that opts out with sidecar.dev/inject: false", review{object: pod("false")}},
		{"a pod that would conflict, in kube-system", review{namespace: "kube-system",
			object: strings.Replace(pod("log-shipper"), `"name": "app"`, `"name": "log-shipper"`, 1)}},
		{"a pod in a disabled namespace whose object is not even a JSON object", review{namespace: "quiet", object: `"a string"`}},
	} {
		t.Run(tc.sentence+" is allowed unchanged", func(t *testing.T) {
			f := newFixture(t)
			r := tc.review
			r.uid = "uid-skip"
			if r.object == "" {
				r.object = pod("log-shipper")
			}
			resp := f.admit(r)
			assertUnchanged(t, resp, "uid-skip")
			if len(resp.Warnings) != 0 {
				t.Errorf("warnings = %q, want none", resp.Warnings)
			}
		})
	}
}

func TestADryRunGetsTheSamePatchAndNoSideEffect(t *testing.T) {
	f := newFixture(t)
	object := pod("log-shipper")
	real := f.admit(review{uid: "real", object: object})
	dry := f.admit(review{uid: "dry", object: object, dryRun: true})

	if !dry.Allowed || dry.UID != "dry" {
		t.Fatalf("dry run: uid %q, allowed %v; want dry, true", dry.UID, dry.Allowed)
	}
	if len(real.Patch) == 0 || !bytes.Equal(real.Patch, dry.Patch) {
		t.Errorf("dry-run patch differs:\nreal %s\ndry  %s", real.Patch, dry.Patch)
	}
	if rec := f.recorder.recorded(); !slices.Equal(rec, []string{"real"}) {
		t.Errorf("recorder saw %v, want only the real admission", rec)
	}
}

func TestAPodThatCannotBeReadIsRefusedWithAClearMessage(t *testing.T) {
	for _, tc := range []struct {
		sentence string
		review   review
		mentions string
	}{
		{"a pod whose containers are a string", review{object: `{"kind": "Pod", "spec": {"containers": "app"}}`}, "spec.containers"},
		{"a pod that is a JSON array", review{object: `[1, 2]`}, "not a JSON object"},
		{"a pod CREATE without an object", review{object: "null"}, ""},
		{"a pods CREATE that carries a Deployment", review{kind: "Deployment", object: pod("log-shipper")}, "Deployment"},
	} {
		t.Run(tc.sentence+" is refused with a clear message", func(t *testing.T) {
			f := newFixture(t)
			r := tc.review
			r.uid = "uid-bad"
			resp := f.admit(r)
			if resp.UID != "uid-bad" || resp.Allowed {
				t.Fatalf("uid %q, allowed %v; want uid-bad, false", resp.UID, resp.Allowed)
			}
			if resp.Result == nil || resp.Result.Code != http.StatusBadRequest {
				t.Fatalf("result = %+v, want code 400", resp.Result)
			}
			if msg := resp.Result.Message; !strings.HasPrefix(msg, ReadPodErrorPrefix) || strings.Contains(msg, "cannot read pod: cannot read pod") ||
				!strings.Contains(msg, tc.mentions) {
				t.Errorf("message = %q, want it to start with %q and mention %q", msg, ReadPodErrorPrefix, tc.mentions)
			}
		})
	}
}

func TestABodyThatIsNotAnAdmissionReviewGetsAnErrorStatus(t *testing.T) {
	for _, tc := range []struct {
		sentence    string
		contentType string
		body        []byte
		code        int32
	}{
		{"a body that is not JSON", "application/json", []byte("hello"), http.StatusBadRequest},
		{"a JSON body of another kind", "application/json", []byte(`{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}}`), http.StatusBadRequest},
		{"an AdmissionReview without a request", "application/json", []byte(`{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}`), http.StatusBadRequest},
		{"an empty body", "application/json", nil, http.StatusBadRequest},
		{"a body sent as text/plain", "text/plain", []byte(review{}.json()), http.StatusBadRequest},
		{"a body over 7 MiB", "application/json", bytes.Repeat([]byte(" "), 7<<20+1), http.StatusRequestEntityTooLarge},
	} {
		t.Run(tc.sentence+" gets an error status", func(t *testing.T) {
			f := newFixture(t)
			resp := f.post(tc.contentType, tc.body)
			if resp.Allowed || resp.Result == nil || resp.Result.Code != tc.code || resp.Result.Message == "" {
				t.Errorf("allowed %v, result %+v; want not allowed, code %d with a message", resp.Allowed, resp.Result, tc.code)
			}
			if rec := f.recorder.recorded(); len(rec) != 0 {
				t.Errorf("recorder was called for %v", rec)
			}
		})
	}
}

func TestAPanicIsAnsweredAndTheServerKeepsServing(t *testing.T) {
	calls := 0
	f := newFixture(t, func(h *Config) {
		h.Engine = func(req inject.Request) (*inject.Result, error) {
			calls++
			if calls == 1 {
				panic("engine exploded")
			}
			return inject.Inject(req)
		}
	})
	resp := f.admit(review{uid: "uid-panic", object: pod("log-shipper")})
	if resp.UID != "uid-panic" || resp.Allowed || resp.Result == nil || resp.Result.Code != http.StatusInternalServerError ||
		!strings.Contains(resp.Result.Message, "engine exploded") {
		t.Fatalf("uid %q, allowed %v, result %+v; want uid-panic, not allowed, 500 naming the panic", resp.UID, resp.Allowed, resp.Result)
	}
	object := pod("log-shipper")
	applied(t, object, f.admit(review{uid: "uid-after", object: object}))
}

func TestNewRefusesAMissingDependencyByName(t *testing.T) {
	full := Config{Templates: fakeTemplates(nil), Namespaces: namespaces, InjectorNamespace: injectorNS, Metrics: newMetrics(t)}
	for _, tc := range []struct {
		missing string
		drop    func(*Config)
	}{
		{"Templates", func(c *Config) { c.Templates = nil }},
		{"Namespaces", func(c *Config) { c.Namespaces = nil }},
		{"InjectorNamespace", func(c *Config) { c.InjectorNamespace = "" }},
		{"Metrics", func(c *Config) { c.Metrics = nil }},
	} {
		c := full
		tc.drop(&c)
		if _, err := New(c); err == nil || !strings.Contains(err.Error(), "Config."+tc.missing+" is required") {
			t.Errorf("without %s: New returned %v, want an error naming Config.%s", tc.missing, err, tc.missing)
		}
	}
	if _, err := New(full); err != nil {
		t.Errorf("with every dependency: %v", err)
	}
}

func TestTheEngineGetsTheRawPodTheNamespaceLabelsAndOnlyTheNamespacesCandidates(t *testing.T) {
	var got inject.Request
	f := newFixture(t, func(h *Config) {
		h.Engine = func(req inject.Request) (*inject.Result, error) { got = req; return &inject.Result{}, nil }
	})
	object := pod("log-shipper")
	assertUnchanged(t, f.admit(review{object: object}), "uid-1")
	if string(got.Pod) != object {
		t.Errorf("engine got pod %s, want the request's raw object", got.Pod)
	}
	if got.Namespace != "team-a" || got.InjectorNamespace != injectorNS || got.NamespaceLabels["kubernetes.io/metadata.name"] != "team-a" {
		t.Errorf("engine got namespace %q, injector namespace %q, labels %v", got.Namespace, got.InjectorNamespace, got.NamespaceLabels)
	}
	var keys []string
	for _, c := range got.Index.Templates() {
		keys = append(keys, c.Key())
	}
	slices.Sort(keys)
	want := []string{"sidecar-injector/metrics", "team-a/env-for-ghost", "team-a/log-shipper", "team-a/optional-cache"}
	if !slices.Equal(keys, want) {
		t.Errorf("engine got candidates %v, want %v", keys, want)
	}

	assertUnchanged(t, f.admit(review{namespace: "brand-new", object: pod("")}), "uid-1")
	if got.NamespaceLabels != nil {
		t.Errorf("for a namespace the informer has not seen, the engine got labels %v, want nil", got.NamespaceLabels)
	}
}

func TestEachAdmissionIsLoggedOnceAtV1WithWhatHappened(t *testing.T) {
	var mu sync.Mutex
	var lines []string
	logger := funcr.NewJSON(func(obj string) { mu.Lock(); lines = append(lines, obj); mu.Unlock() }, funcr.Options{Verbosity: 1})
	hook, err := New(Config{Templates: fakeTemplates(compiledTemplates(t)), Namespaces: namespaces, InjectorNamespace: injectorNS,
		Metrics: newMetrics(t), Log: logger})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(hook)
	defer srv.Close()
	f := &fixture{t: t, url: srv.URL, recorder: &recorder{}}

	f.admit(review{uid: "uid-log", object: pod("log-shipper")})

	mu.Lock()
	defer mu.Unlock()
	var admissions []map[string]any
	for _, l := range lines {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		if m["msg"] == "admission" {
			admissions = append(admissions, m)
		}
	}
	if len(admissions) != 1 {
		t.Fatalf("%d admission lines, want 1: %q", len(admissions), lines)
	}
	l := admissions[0]
	if l["level"] != float64(1) || l["result"] != "patched" || l["namespace"] != "team-a" || l["generateName"] != "web-" ||
		fmt.Sprint(l["templates"]) != "[team-a/log-shipper]" || l["uid"] != "uid-log" {
		t.Errorf("admission line = %v; want level=1, result=patched, namespace=team-a, generateName=web-, templates=[team-a/log-shipper], uid=uid-log", l)
	}
}
