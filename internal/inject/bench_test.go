package inject

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"

	"github.com/sidecar-dev/sidecar-injector/internal/fixtures"
	"github.com/sidecar-dev/sidecar-injector/internal/patchtest"
)

func ptr[T any](v T) *T { return &v }

// benchPod builds the small, realistic and large pods. All request the first n bench templates by annotation.
func benchPod(size string, n int) []byte {
	var names []string
	for i := range n {
		names = append(names, fmt.Sprintf("bench-%02d", i))
	}
	pod, err := fixtures.PodObject(size, strings.Join(names, ", "))
	if err != nil {
		panic(err)
	}
	return mustMarshal(pod)
}

// benchTemplates: n templates, each requested by the pod, each adding a sidecar, a volume, a mount and env (the
// first one also a native sidecar with per-pod values).
func benchTemplates(b *testing.B, n int) []*Template {
	var sb strings.Builder
	for i := range n {
		fmt.Fprintf(&sb, `---
metadata: {name: bench-%02d, namespace: team-a, generation: 1}
spec:
  order: %d
  containers:
  - name: side-%02d
    image: fluent/fluent-bit:3.2
    args: ["--pod={{ pod.name }}", "--app={{ pod.labels.app.kubernetes.io/name }}"]
    resources: {requests: {cpu: 10m, memory: 32Mi}}
    volumeMounts: [{name: vol-%02d, mountPath: /var/log/side-%02d}]
  volumes: [{name: vol-%02d, emptyDir: {}}]
  volumeMounts: [{name: vol-%02d, mountPath: /var/log/side-%02d}]
  env: [{name: SIDE_%02d, value: "on"}]
  annotations: {side-%02d.example.com/enabled: "true"}
`, i, i, i, i, i, i, i, i, i, i)
	}
	// cluster-wide templates that do not apply, so that the engine also has to dismiss some
	sb.WriteString("---\nmetadata: {name: unused, namespace: sidecar-injector}\nspec: {selector: {matchLabels: {app: nope}}, labels: {x: 'y'}}\n")
	ts := compileAll(parseTemplates(b, []byte(sb.String())), injectorNS)
	for _, t := range ts {
		if t.Err != nil {
			b.Fatalf("%s: %v", t.Key(), t.Err)
		}
	}
	return ts
}

func mustMarshal(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

var benchSizes = []string{"small", "realistic", "large"}

// BenchmarkInject measures the engine alone on pods of three sizes with 1, 2 and 10 matching templates.
func BenchmarkInject(b *testing.B) {
	for _, size := range benchSizes {
		for _, n := range []int{1, 2, 10} {
			pod := benchPod(size, n)
			ts := benchTemplates(b, n)
			req := Request{Pod: pod, Namespace: "team-a", InjectorNamespace: injectorNS, Templates: ts}
			// sanity: every template is injected and the patch applies
			r, err := Inject(req)
			if err != nil || r.Denied || len(r.Injected()) != n {
				b.Fatalf("%s/%d: err=%v denied=%v injected=%d", size, n, err, r != nil && r.Denied, len(r.Injected()))
			}
			if _, err := patchtest.Apply(pod, mustPatchJSON(b, r)); err != nil {
				b.Fatalf("%s/%d: patch does not apply: %v", size, n, err)
			}
			b.Run(fmt.Sprintf("%s-%dB/templates=%d", size, len(pod), n), func(b *testing.B) {
				b.ReportAllocs()
				b.SetBytes(int64(len(pod)))
				for b.Loop() {
					r, err := Inject(req)
					if err != nil {
						b.Fatal(err)
					}
					if _, err := r.PatchJSON(); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkDecodeAdmissionReview is the floor: decoding the AdmissionReview that wraps the same pod with
// encoding/json into the k8s.io/api/admission/v1 types, and nothing else.
func BenchmarkDecodeAdmissionReview(b *testing.B) {
	for _, size := range benchSizes {
		pod := benchPod(size, 2)
		review := mustMarshal(admissionv1.AdmissionReview{
			TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
			Request: &admissionv1.AdmissionRequest{
				UID:       types.UID("705ab4f5-6393-11e8-b7cc-42010a800002"),
				Kind:      metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
				Resource:  metav1.GroupVersionResource{Version: "v1", Resource: "pods"},
				Namespace: "team-a",
				Operation: admissionv1.Create,
				UserInfo:  authUser(),
				Object:    runtime.RawExtension{Raw: pod},
				DryRun:    ptr(false),
				Options:   runtime.RawExtension{Raw: []byte(`{"kind":"CreateOptions","apiVersion":"meta.k8s.io/v1"}`)},
			},
		})
		b.Run(fmt.Sprintf("%s-%dB", size, len(pod)), func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(review)))
			for b.Loop() {
				var ar admissionv1.AdmissionReview
				if err := json.Unmarshal(review, &ar); err != nil {
					b.Fatal(err)
				}
				if ar.Request == nil || len(ar.Request.Object.Raw) == 0 {
					b.Fatal("empty request")
				}
			}
		})
	}
}

func authUser() authenticationv1.UserInfo {
	return authenticationv1.UserInfo{Username: "system:serviceaccount:kube-system:replicaset-controller", UID: "b1c2", Groups: []string{"system:serviceaccounts", "system:serviceaccounts:kube-system", "system:authenticated"}}
}
