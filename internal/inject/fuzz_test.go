package inject

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	sigsjson "sigs.k8s.io/json"

	"github.com/sidecar-dev/sidecar-injector/internal/patchtest"
)

// fuzzTemplates selects templates from the fixed set with the low bits of sel; bit 15 makes the request's
// namespace the injector's own, bit 14 labels the namespace as disabled.
func fuzzRequest(pod []byte, sel uint16, ts []*Template) Request {
	req := Request{Pod: pod, Namespace: "team-a", InjectorNamespace: injectorNS}
	for i, t := range ts {
		if sel&(1<<uint(i)) != 0 {
			req.Templates = append(req.Templates, t)
		}
	}
	if sel&(1<<15) != 0 {
		req.Namespace = injectorNS
	}
	if sel&(1<<14) != 0 {
		req.NamespaceLabels = map[string]string{"sidecar.dev/injection": "disabled"}
	}
	return req
}

// FuzzInject feeds arbitrary bytes as the pod. The engine must never panic; an error must say something; a
// patch must only add, apply to the exact input, and give something that decodes as a Pod.
func FuzzInject(f *testing.F) {
	ts := fixedTemplates(f)
	// the seed corpus lives in testdata/fuzz/FuzzInject (golden pods and odd inputs); a few more inline:
	f.Add([]byte(`{"metadata":{"annotations":{"sidecar.dev/inject":"log-shipper"}},"spec":{"containers":[{"name":"app"}]}}`), uint16(0x3ff))
	f.Add([]byte(`{"Spec":{"Containers":[{"Name":"app"}]},"Metadata":{"Annotations":{"sidecar.dev/inject":"log-shipper"}}}`), uint16(0x3ff))
	f.Fuzz(func(t *testing.T, pod []byte, sel uint16) {
		req := fuzzRequest(pod, sel, ts)
		r, err := Inject(req)
		if err != nil {
			msg := err.Error()
			if strings.TrimSpace(msg) == "" || strings.Contains(msg, "runtime error") {
				t.Fatalf("unclear error %q", msg)
			}
			if r != nil && len(r.Patch) > 0 {
				t.Fatalf("an error and a patch")
			}
			return
		}
		if r == nil {
			t.Fatalf("nil result without an error")
		}
		if r.Denied && len(r.Patch) > 0 {
			t.Fatalf("a denied result with a patch")
		}
		if r.Denied && strings.TrimSpace(r.DenyMessage) == "" {
			t.Fatalf("denied without a message")
		}
		if len(r.Patch) == 0 {
			return
		}
		for _, e := range checkOps(r.Patch) {
			t.Errorf("not add-only: %s", e)
		}
		patch, err := r.PatchJSON()
		if err != nil {
			t.Fatalf("PatchJSON: %v", err)
		}
		patched, err := patchtest.Apply(pod, patch)
		if err != nil {
			t.Fatalf("the patch does not apply to the input: %v\ninput: %q\npatch: %s", err, truncate(string(pod), 2000), patch)
		}
		// A patch must not break a pod: when the input decodes as a Pod (as the API server decodes it), the
		// result must too. (An input that is not a Pod but still gets a patch is reported by inputNotAPod.)
		var in, p corev1.Pod
		if sigsjson.UnmarshalCaseSensitivePreserveInts(pod, &in) != nil {
			return
		}
		if err := sigsjson.UnmarshalCaseSensitivePreserveInts(patched, &p); err != nil {
			t.Fatalf("the patched pod does not decode as a Pod: %v\ninput: %q\npatch: %s", err, truncate(string(pod), 2000), patch)
		}
	})
}

// TestWriteFuzzCorpus regenerates testdata/fuzz/FuzzInject from the golden pods and odd inputs (with -update).
func TestWriteFuzzCorpus(t *testing.T) {
	if !*update {
		t.Skip("run with -update to regenerate the seed corpus")
	}
	dir := filepath.Join("testdata", "fuzz", "FuzzInject")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	write := func(name string, pod []byte, sel uint16) {
		body := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\nuint16(%d)\n", pod, sel)
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range loadGoldenCases(t) {
		write("golden-"+c.name, c.pod, 0x3ff)
	}
	deep := func(n int, open, close string) string {
		return strings.Repeat(open, n) + strings.Repeat(close, n)
	}
	odd := map[string]string{
		"null":                    `null`,
		"empty-array":             `[]`,
		"empty-object":            `{}`,
		"string":                  `"pod"`,
		"number":                  `12`,
		"spec-null":               `{"spec":null}`,
		"metadata-null":           `{"metadata":null,"spec":{"containers":[{"name":"app"}]}}`,
		"annotations-null":        `{"metadata":{"annotations":null,"labels":null},"spec":{"containers":null,"initContainers":null,"volumes":null}}`,
		"containers-object":       `{"spec":{"containers":{"name":"app"}}}`,
		"container-null":          `{"metadata":{"annotations":{"sidecar.dev/inject":"log-shipper"}},"spec":{"containers":[null]}}`,
		"env-null":                `{"metadata":{"annotations":{"sidecar.dev/inject":"log-shipper"}},"spec":{"containers":[{"name":"app","env":null,"volumeMounts":null,"envFrom":null}]}}`,
		"annotation-number":       `{"metadata":{"annotations":{"sidecar.dev/inject":1}},"spec":{"containers":[{"name":"app"}]}}`,
		"wrong-case-keys":         `{"Metadata":{"Annotations":{"sidecar.dev/inject":"log-shipper"}},"Spec":{"Containers":[{"Name":"app"}]}}`,
		"duplicate-keys":          `{"metadata":{"annotations":{"sidecar.dev/inject":"nope"}},"metadata":{"annotations":{"sidecar.dev/inject":"log-shipper"}},"spec":{"containers":[{"name":"app"}]}}`,
		"trailing-garbage":        `{"spec":{"containers":[{"name":"app"}]}} xx`,
		"truncated":               `{"spec":{"containers":[{"name":"app"`,
		"deep-unknown-5000":       `{"futureField":` + deep(5000, "[", "]") + `,"metadata":{"annotations":{"sidecar.dev/inject":"log-shipper"}},"spec":{"containers":[{"name":"app"}]}}`,
		"deep-unknown-20000":      `{"futureField":` + deep(20000, `{"a":`, "}") + `,"spec":{"containers":[{"name":"app"}]}}`,
		"huge-annotation":         `{"metadata":{"annotations":{"sidecar.dev/inject":"params","note":"` + strings.Repeat("x", 200000) + `"}},"spec":{"containers":[{"name":"app"}]}}`,
		"huge-inject-list":        `{"metadata":{"annotations":{"sidecar.dev/inject":"` + strings.Repeat("log-shipper,", 20000) + `"}},"spec":{"containers":[{"name":"app"}]}}`,
		"many-containers":         `{"metadata":{"labels":{"app":"web"}},"spec":{"containers":[` + strings.TrimSuffix(strings.Repeat(`{"name":"c"},`, 3000), ",") + `]}}`,
		"status-garbage":          `{"metadata":{"annotations":{"sidecar.dev/inject":"log-shipper","sidecar.dev/status":"{\"templates\":7}"}},"spec":{"containers":[{"name":"app"}]}}`,
		"unicode-keys":            `{"metadata":{"labels":{"app":"web","é/~":"\u2028"},"annotations":{"a/b~c":"\ud83d\ude00"}},"spec":{"containers":[{"name":"app"}]}}`,
		"invalid-utf8-annotation": "{\"metadata\":{\"annotations\":{\"sidecar.dev/inject\":\"params\",\"note\":\"\xff\xfe\"}},\"spec\":{\"containers\":[{\"name\":\"app\"}]}}",
		"numbers":                 `{"spec":{"containers":[{"name":"app","ports":[{"containerPort":1e3}]}],"priority":1.5e300,"terminationGracePeriodSeconds":-0}}`,
	}
	for name, pod := range odd {
		write("odd-"+name, []byte(pod), 0x3ff)
		write("odd-"+name+"-none", []byte(pod), 0)
	}
}
