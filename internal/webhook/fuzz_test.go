package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"github.com/prometheus/client_golang/prometheus"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
	sigsjson "sigs.k8s.io/json"

	"github.com/sidecar-dev/sidecar-injector/internal/api/v1alpha1"
	"github.com/sidecar-dev/sidecar-injector/internal/inject"
	"github.com/sidecar-dev/sidecar-injector/internal/metrics"
	"github.com/sidecar-dev/sidecar-injector/internal/patchtest"
)

// fuzzMetrics count what the fuzz targets send, on a registry of their own.
var fuzzMetrics = must(metrics.New(prometheus.NewRegistry()))

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

var updateCorpus = flag.Bool("update-corpus", false, "rewrite testdata/fuzz/{FuzzAdmissionReview,FuzzTemplates} seed files")

// statusPointer is the one path a patch may replace (README: "The record").
const statusPointer = "/metadata/annotations/sidecar.dev~1status"

// capturing remembers the request the Handler was given, so that the fuzz targets check the patch against the
// exact object the webhook decoded (not against their own reading of the body).
type capturing struct {
	h      *handler
	called bool
	req    admission.Request
}

func (c *capturing) Handle(ctx context.Context, req admission.Request) admission.Response {
	c.called, c.req = true, req
	return c.h.Handle(ctx, req)
}

// FuzzAdmissionReview sends arbitrary bytes as the HTTP body through controller-runtime's admission.Webhook
// (decoding, size limit, uid echo) and the Handler with the real compiled test templates. Panic recovery is
// off here, so a panic anywhere fails the target. Every answer is HTTP 200 with a valid AdmissionReview whose
// response echoes the uid; a patch only adds (but the status record), applies to request.object,
// gives a Pod when request.object is one, and keeps every value of request.object.
func FuzzAdmissionReview(f *testing.F) {
	tpls := fakeTemplates(compiledTemplates(f))
	for _, seed := range admissionReviewSeeds() {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		cfg := Config{Templates: tpls, Namespaces: namespaces, InjectorNamespace: injectorNS, Metrics: fuzzMetrics, Engine: inject.Inject}
		c := &capturing{h: &handler{Config: cfg}}
		rec := httptest.NewRecorder()
		r := httptest.NewRequest(http.MethodPost, Path, bytes.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		newServer(c, cfg, nil, false).ServeHTTP(rec, r) // no panic recovery: a panic must crash the target

		if rec.Code != http.StatusOK {
			// Every answer is an AdmissionReview with HTTP 200 (see server): an HTTP error would be a failure to
			// call the webhook for the API server, subject to failurePolicy, instead of a denial.
			t.Fatalf("HTTP %d; every answer must be HTTP 200 with an AdmissionReview: %q", rec.Code, rec.Body.String())
		}
		var out admissionv1.AdmissionReview
		if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
			t.Fatalf("HTTP %d with a body that is not an AdmissionReview: %v\n%q", rec.Code, err, rec.Body.String())
		}
		if out.Response == nil {
			t.Fatalf("AdmissionReview without a response: %s", rec.Body.String())
		}
		resp := out.Response
		if !resp.Allowed && (resp.Result == nil || strings.TrimSpace(resp.Result.Message) == "") {
			t.Fatalf("refused without a message: %s", rec.Body.String())
		}
		if !c.called {
			return // refused by the decoding layer
		}
		if c.req.UID != "" && resp.UID != c.req.UID {
			t.Fatalf("uid %q not echoed (answer has %q)", c.req.UID, resp.UID)
		}
		checkPatch(t, c.req.Object.Raw, resp)
	})
}

// checkPatch asserts the guarantees of a patch answer against the object it was computed for.
func checkPatch(t *testing.T, object []byte, resp *admissionv1.AdmissionResponse) []byte {
	t.Helper()
	if len(resp.Patch) == 0 {
		if resp.PatchType != nil {
			t.Fatalf("patchType %v without a patch", *resp.PatchType)
		}
		return nil
	}
	if !resp.Allowed {
		t.Fatalf("a refused answer carries a patch: %s", resp.Patch)
	}
	if resp.PatchType == nil || *resp.PatchType != admissionv1.PatchTypeJSONPatch {
		t.Fatalf("patchType = %v, want JSONPatch", resp.PatchType)
	}
	var ops []struct {
		Op   string `json:"op"`
		Path string `json:"path"`
	}
	if err := json.Unmarshal(resp.Patch, &ops); err != nil {
		t.Fatalf("the patch is not a JSON array of operations: %v\n%s", err, resp.Patch)
	}
	for i, op := range ops {
		if op.Op != "add" && !(op.Op == "replace" && op.Path == statusPointer) {
			t.Errorf("op %d is %q %s: only add (and replace of %s) is allowed", i, op.Op, op.Path, statusPointer)
		}
	}
	patched, err := patchtest.Apply(object, resp.Patch)
	if err != nil {
		t.Fatalf("the patch does not apply to request.object: %v\nobject: %.2000s\npatch: %s", err, object, resp.Patch)
	}
	var in, outPod corev1.Pod
	if sigsjson.UnmarshalCaseSensitivePreserveInts(object, &in) == nil {
		if err := sigsjson.UnmarshalCaseSensitivePreserveInts(patched, &outPod); err != nil {
			t.Fatalf("the patched pod does not decode as a Pod: %v\nobject: %.2000s\npatch: %s", err, object, resp.Patch)
		}
	}
	orig, err1 := patchtest.Decode(object)
	after, err2 := patchtest.Decode(patched)
	if err1 == nil && err2 == nil {
		if lost := kept("", orig, after); len(lost) > 0 {
			t.Fatalf("the patch loses values of request.object:\n%s\nobject: %.2000s\npatch: %s", strings.Join(lost, "\n"), object, resp.Patch)
		}
	}
	return patched
}

// kept lists every value of orig that is not in patched at its place. Arrays may grow: the elements of orig must
// appear in patched in order (a subsequence), each kept in its match. The status record may change.
func kept(path string, orig, patched any) []string {
	if path == statusPointer {
		return nil
	}
	switch o := orig.(type) {
	case map[string]any:
		p, ok := patched.(map[string]any)
		if !ok {
			return []string{path + ": no longer an object"}
		}
		keys := make([]string, 0, len(o))
		for k := range o {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		var lost []string
		for _, k := range keys {
			sub := path + "/" + strings.ReplaceAll(strings.ReplaceAll(k, "~", "~0"), "/", "~1")
			pv, ok := p[k]
			if !ok {
				lost = append(lost, sub+": removed")
				continue
			}
			lost = append(lost, kept(sub, o[k], pv)...)
		}
		return lost
	case []any:
		p, ok := patched.([]any)
		if !ok {
			return []string{path + ": no longer an array"}
		}
		j := 0
		for i := range o {
			found := false
			for ; j < len(p); j++ {
				if len(kept("", o[i], p[j])) == 0 {
					found = true
					j++
					break
				}
			}
			if !found {
				return []string{fmt.Sprintf("%s/%d: not found, in order, in the patched array", path, i)}
			}
		}
		return nil
	default:
		if !reflect.DeepEqual(orig, patched) {
			return []string{fmt.Sprintf("%s: was %v, now %v", path, orig, patched)}
		}
		return nil
	}
}

// FuzzTemplates fuzzes the templates as well as the pod (FuzzInject in internal/inject only uses a fixed set of
// templates): a template spec decoded from arbitrary JSON, with an arbitrary name, in its pod's namespace or
// cluster-wide, served next to the fixed test templates, and a pod that is either arbitrary JSON or built to
// request that template and carry the fuzzed labels. The Handler must never panic, must answer with a clear
// message when it refuses, and a patch must keep the guarantees of FuzzAdmissionReview; it must be
// deterministic, and feeding the patched pod back must give no patch (idempotence).
func FuzzTemplates(f *testing.F) {
	fixed := compiledTemplates(f)
	for _, s := range templateSeeds() {
		f.Add(s.spec, s.name, s.clusterWide, s.labelKey, s.labelValue, s.pod)
	}
	f.Fuzz(func(t *testing.T, spec []byte, name string, clusterWide bool, labelKey, labelValue string, podJSON []byte) {
		var st v1alpha1.SidecarTemplate
		if json.Unmarshal(spec, &st.Spec) != nil {
			return
		}
		st.Name, st.Namespace, st.Generation = name, "team-a", 1
		if clusterWide {
			st.Namespace = injectorNS
		}
		tpl := inject.Compile(&st, injectorNS)
		h := &handler{Config: Config{Templates: fakeTemplates(append([]*inject.Template{tpl}, fixed...)), Namespaces: namespaces,
			InjectorNamespace: injectorNS, Metrics: fuzzMetrics, Engine: inject.Inject}}

		object := podJSON
		if _, err := patchtest.Decode(podJSON); err != nil || len(podJSON) == 0 {
			p := map[string]any{
				"apiVersion": "v1", "kind": "Pod",
				"metadata": map[string]any{
					"name": "web-1", "namespace": "team-a",
					"labels":      map[string]string{labelKey: labelValue, "app": "web"},
					"annotations": map[string]string{v1alpha1.AnnotationInject: name, name + v1alpha1.ParamAnnotationSuffix + "level": labelValue},
				},
				"spec": map[string]any{"containers": []any{map[string]any{"name": "app", "image": "example.com/web:1"}}, "futureField": map[string]any{"kept": true}},
			}
			object, _ = json.Marshal(p)
		}
		admit := func(obj []byte, uid string) *admissionv1.AdmissionResponse {
			req := admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{
				UID:       types.UID(uid),
				Kind:      metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
				Resource:  metav1.GroupVersionResource{Version: "v1", Resource: "pods"},
				Namespace: "team-a", Operation: admissionv1.Create,
			}}
			req.Object.Raw = obj
			resp := h.Handle(context.Background(), req)
			// as admission.Webhook does before writing the answer
			if err := resp.Complete(req); err != nil {
				t.Fatalf("Complete: %v", err)
			}
			return &resp.AdmissionResponse
		}
		first := admit(object, "first")
		if !first.Allowed && (first.Result == nil || strings.TrimSpace(first.Result.Message) == "") {
			t.Fatalf("refused without a message: %+v", first.Result)
		}
		patched := checkPatch(t, object, first)
		if again := admit(object, "first"); !bytes.Equal(again.Patch, first.Patch) || again.Allowed != first.Allowed {
			t.Fatalf("not deterministic: %s then %s", first.Patch, again.Patch)
		}
		if patched == nil {
			return
		}
		var p corev1.Pod
		if sigsjson.UnmarshalCaseSensitivePreserveInts(patched, &p) != nil {
			return
		}
		if second := admit(patched, "second"); len(second.Patch) != 0 {
			t.Fatalf("not idempotent: the patched pod gets another patch %s\nfirst patch: %s\nobject: %.2000s", second.Patch, first.Patch, object)
		}
	})
}

func admissionReviewSeeds() [][]byte {
	withObject := func(r review) []byte { return []byte(r.json()) }
	seeds := [][]byte{
		nil,
		[]byte(`{}`),
		[]byte(`null`),
		[]byte(`[]`),
		[]byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}`),
		[]byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{}}`),
		[]byte(`{"apiVersion":"admission.k8s.io/v1beta1","kind":"AdmissionReview","request":{"uid":"b1","kind":{"version":"v1","kind":"Pod"},"resource":{"version":"v1","resource":"pods"},"operation":"CREATE","namespace":"team-a","object":{"metadata":{"annotations":{"sidecar.dev/inject":"log-shipper"}},"spec":{"containers":[{"name":"app"}]}}}}`),
		[]byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","object":{"spec":{"containers":[{"name":"app"`),
		withObject(review{uid: "seed-1", object: pod("log-shipper")}),
		withObject(review{uid: "seed-2", object: pod("log-shipper, optional-cache, metrics, env-for-ghost")}),
		withObject(review{uid: "seed-3", object: pod("nope")}),
		withObject(review{uid: "seed-4", object: pod("")}),
		withObject(review{uid: "seed-5", namespace: "quiet", object: pod("log-shipper")}),
		withObject(review{uid: "seed-6", kind: "Deployment", object: pod("log-shipper")}),
		withObject(review{uid: "seed-7", object: `{"metadata":{"annotations":{"sidecar.dev/inject":"log-shipper","sidecar.dev/status":"{\"templates\":[{\"namespace\":\"team-a\",\"name\":\"log-shipper\",\"containers\":[\"log-shipper\"]}]}"}},"spec":{"containers":[{"name":"app"}]}}`}),
		withObject(review{uid: "seed-8", object: `{"metadata":{"annotations":{"sidecar.dev/inject":"log-shipper"}},"spec":{"containers":null,"volumes":{"x":1}}}`}),
		withObject(review{uid: "seed-9", object: `"a string"`}),
		withObject(review{uid: "seed-10", object: `{"metadata":{"annotations":{"sidecar.dev/inject":7}},"spec":{"containers":[{"name":"app"}]}}`}),
		withObject(review{uid: "seed-11", dryRun: true, object: pod("log-shipper")}),
		withObject(review{uid: "seed-12", operation: "UPDATE", object: pod("log-shipper")}),
	}
	return seeds
}

type templateSeed struct {
	spec                 []byte
	name                 string
	clusterWide          bool
	labelKey, labelValue string
	pod                  []byte
}

func templateSeeds() []templateSeed {
	return []templateSeed{
		{[]byte(`{"containers":[{"name":"side","image":"x/{{ pod.name }}:{{ params.level }}"}],"parameters":[{"name":"level","default":"info"}]}`), "tpl", false, "app", "web", nil},
		{[]byte(`{"selector":{"matchLabels":{"tier":"front"}},"containers":[{"name":"side","image":"x"}],"volumes":[{"name":"v","emptyDir":{}}],"volumeMounts":[{"name":"v","mountPath":"/v"}]}`), "sel", false, "tier", "front", nil},
		{[]byte(`{"selector":{"matchExpressions":[{"key":"tier","operator":"In","values":["a","b"]}]},"env":[{"name":"POD","value":"{{ pod.labels.tier }}"}]}`), "expr", true, "tier", "a", nil},
		{[]byte(`{"selector":{"matchExpressions":[{"key":"tier","operator":"Bogus"}]},"containers":[{"name":"side"}]}`), "broken-selector", false, "tier", "a", nil},
		{[]byte(`{"namespaceSelector":{"matchLabels":{"kubernetes.io/metadata.name":"team-a"}},"initContainers":[{"name":"native","image":"x","restartPolicy":"Always"}],"initContainerPlacement":"First"}`), "ns-sel", true, "", "", nil},
		{[]byte(`{"hostNetwork":true,"containers":[{"name":"side"}]}`), "host-net", false, "a", "b", nil},
		{[]byte(`{"hostNetwork":true,"hostPID":true,"shareProcessNamespace":true,"dnsConfig":{"nameservers":["1.1.1.1"],"options":[{"name":"ndots","value":"2"}]},"hostAliases":[{"ip":"10.0.0.1","hostnames":["a"]}]}`), "host-cw", true, "a", "b", nil},
		{[]byte(`{"annotations":{"a/b~c":"{{ pod.annotations.x }}","sidecar.dev/status":"forged"},"labels":{"l":"{{ pod.namespace }}"},"imagePullSecrets":[{"name":"s"}]}`), "meta", false, "x", "y", nil},
		{[]byte(`{"containers":[{"name":"{{ pod.name }}"}]}`), "placeholder-name", false, "a", "b", nil},
		{[]byte(`{"containers":[{"name":"side","args":["{{ pod.bogus }}","{{ params.undeclared }}","{{ .Values.x }}"]}]}`), "bad-placeholders", false, "a", "b", nil},
		{[]byte(`{"containers":[{"name":"app"}],"failurePolicy":"Ignore"}`), "conflict-ignore", false, "a", "b", nil},
		{[]byte(`{"containers":[{"name":"side"}],"containerPlacement":"First","targetContainers":["app","ghost"],"envFrom":[{"configMapRef":{"name":"c"}}]}`), "first", false, "a", "b", nil},
		{[]byte(`{"parameters":[{"name":"level"}],"env":[{"name":"L","value":"{{params.level}}"}]}`), "required-param", false, "a", "b", nil},
		{[]byte(`{"containers":[{"name":"side"}]}`), "UPPER..bad/name", false, "a", "b", nil},
		{[]byte(`{"containers":[{"name":"side"}],"order":-5}`), "log-shipper", false, "a", "b", []byte(`{"metadata":{"annotations":{"sidecar.dev/inject":"log-shipper"}},"spec":{"containers":[{"name":"app"}]}}`)},
	}
}

// TestWriteFuzzSeedCorpus writes the seeds above into testdata/fuzz (run with -update-corpus); the files are
// checked in, so `go test` runs them as regression cases and the fuzzer starts from them.
func TestWriteFuzzSeedCorpus(t *testing.T) {
	if !*updateCorpus {
		t.Skip("run with -update-corpus to rewrite the seed corpus")
	}
	write := func(target, name, body string) {
		dir := filepath.Join("testdata", "fuzz", target)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte("go test fuzz v1\n"+body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for i, s := range admissionReviewSeeds() {
		write("FuzzAdmissionReview", fmt.Sprintf("seed-%02d", i), fmt.Sprintf("[]byte(%q)\n", s))
	}
	for i, s := range templateSeeds() {
		write("FuzzTemplates", fmt.Sprintf("seed-%02d", i), fmt.Sprintf("[]byte(%q)\nstring(%q)\nbool(%t)\nstring(%q)\nstring(%q)\n[]byte(%q)\n",
			s.spec, s.name, s.clusterWide, s.labelKey, s.labelValue, s.pod))
	}
}

// TestABodyWithAUidButNoResourceOrOperationIsRefused: found by the hardening suite (an object of another kind
// that carries request.uid was allowed). The API server always sets request.resource and request.operation.
func TestABodyWithAUidButNoResourceOrOperationIsRefused(t *testing.T) {
	f := newFixture(t)
	for _, body := range []string{
		`{"apiVersion":"admission.k8s.io/v1","kind":"Pod","request":{"uid":"k"}}`,
		`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"k","operation":"CREATE"}}`,
		`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"k","resource":{"version":"v1","resource":"pods"}}}`,
	} {
		resp := f.post("application/json", []byte(body))
		if resp.Allowed || resp.Result == nil || resp.Result.Code != http.StatusBadRequest || !strings.Contains(resp.Result.Message, "not an AdmissionReview request") {
			t.Errorf("%s: allowed %v, result %+v; want a 400 saying it is not an AdmissionReview request", body, resp.Allowed, resp.Result)
		}
		if resp.UID != "k" {
			t.Errorf("%s: uid %q not echoed", body, resp.UID)
		}
	}
}
