package inject

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/sidecar-dev/sidecar-injector/internal/patchtest"
)

var update = flag.Bool("update", false, "rewrite the expected files of the golden cases (testdata/golden/*/{patch,pod,decisions}.json)")

const goldenDir = "testdata/golden"

// goldenRequest is request.yaml: everything of the Request but the pod and the templates.
type goldenRequest struct {
	Namespace         string            `json:"namespace,omitempty"`
	NamespaceLabels   map[string]string `json:"namespaceLabels,omitempty"`
	InjectorNamespace string            `json:"injectorNamespace,omitempty"`
}

// goldenOutcome is decisions.json.
type goldenOutcome struct {
	Decisions     []Decision `json:"decisions"`
	Warnings      []string   `json:"warnings"`
	Denied        bool       `json:"denied"`
	DenyMessage   string     `json:"denyMessage,omitempty"`
	PodSkipReason Reason     `json:"podSkipReason,omitempty"`
}

type goldenCase struct {
	name string
	dir  string
	pod  []byte // raw input, JSON
	req  Request
}

func loadGoldenCases(t testing.TB) []goldenCase {
	t.Helper()
	entries, err := os.ReadDir(goldenDir)
	if err != nil {
		t.Fatalf("reading %s: %v", goldenDir, err)
	}
	var cases []goldenCase
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		dir := filepath.Join(goldenDir, e.Name())
		podYAML, err := os.ReadFile(filepath.Join(dir, "pod.yaml"))
		if err != nil {
			t.Fatalf("%s: %v", e.Name(), err)
		}
		pod := podJSON(t, string(podYAML))
		tmplYAML, err := os.ReadFile(filepath.Join(dir, "templates.yaml"))
		if err != nil {
			t.Fatalf("%s: %v", e.Name(), err)
		}
		var gr goldenRequest
		if b, err := os.ReadFile(filepath.Join(dir, "request.yaml")); err == nil {
			if err := yaml.UnmarshalStrict(b, &gr); err != nil {
				t.Fatalf("%s/request.yaml: %v", e.Name(), err)
			}
		} else if !os.IsNotExist(err) {
			t.Fatalf("%s: %v", e.Name(), err)
		}
		if gr.Namespace == "" {
			if ns, ok := lookup(mustDecodeAny(t, pod), "metadata", "namespace"); ok {
				gr.Namespace, _ = ns.(string)
			}
		}
		if gr.Namespace == "" {
			gr.Namespace = defaultNamespace
		}
		if gr.InjectorNamespace == "" {
			gr.InjectorNamespace = injectorNS
		}
		cases = append(cases, goldenCase{
			name: e.Name(),
			dir:  dir,
			pod:  pod,
			req: Request{
				Pod:               pod,
				Namespace:         gr.Namespace,
				NamespaceLabels:   gr.NamespaceLabels,
				InjectorNamespace: gr.InjectorNamespace,
				Templates:         compileAll(parseTemplates(t, tmplYAML), gr.InjectorNamespace),
			},
		})
	}
	if len(cases) < 25 {
		t.Errorf("only %d golden cases; the suite promises at least 25", len(cases))
	}
	return cases
}

func indentJSON(t testing.TB, b []byte) []byte {
	t.Helper()
	if len(b) == 0 {
		return []byte("[]\n")
	}
	var buf bytes.Buffer
	if err := json.Indent(&buf, b, "", "  "); err != nil {
		t.Fatalf("indenting %q: %v", truncate(string(b), 200), err)
	}
	buf.WriteByte('\n')
	return buf.Bytes()
}

func marshalIndent(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return append(b, '\n')
}

func outcomeOf(r *Result) goldenOutcome {
	o := goldenOutcome{Decisions: r.Decisions, Warnings: r.Warnings, Denied: r.Denied, DenyMessage: r.DenyMessage, PodSkipReason: r.PodSkipReason}
	if o.Decisions == nil {
		o.Decisions = []Decision{}
	}
	if o.Warnings == nil {
		o.Warnings = []string{}
	}
	return o
}

// compareJSONFile compares got with the file semantically (decoded values, arrays in order).
func compareJSONFile(t *testing.T, file string, got []byte) {
	t.Helper()
	if *update {
		if err := os.WriteFile(file, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(file)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	w, err := patchtest.Decode(want)
	if err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	g := mustDecodeAny(t, got)
	if !reflect.DeepEqual(w, g) {
		t.Errorf("%s differs.\n--- want\n%s\n--- got\n%s", file, want, got)
	}
}

// TestGolden runs every case under testdata/golden and compares the patch, the patched pod and the decisions
// with the expected files. Every golden patch must apply to its raw input with evanphx/json-patch and give a pod
// that decodes strictly (planted unknown fields aside), and must keep every original value.
func TestGolden(t *testing.T) {
	for _, c := range loadGoldenCases(t) {
		t.Run(c.name, func(t *testing.T) {
			r, err := Inject(c.req)
			if err != nil {
				t.Fatalf("Inject: %v", err)
			}
			patch := mustPatchJSON(t, r)
			patched := verifyPatch(t, c.pod, r)
			compareJSONFile(t, filepath.Join(c.dir, "patch.json"), indentJSON(t, patch))
			compareJSONFile(t, filepath.Join(c.dir, "pod.json"), indentJSON(t, patched))
			compareJSONFile(t, filepath.Join(c.dir, "decisions.json"), marshalIndent(t, outcomeOf(r)))
		})
	}
}

// TestGoldenExpectedPatchesApply applies every expected patch.json (not the engine's output) to its raw input:
// a golden patch that cannot apply, or whose result differs from pod.json, is itself wrong.
func TestGoldenExpectedPatchesApply(t *testing.T) {
	if *update {
		t.Skip("expected files are being rewritten")
	}
	for _, c := range loadGoldenCases(t) {
		t.Run(c.name, func(t *testing.T) {
			patch, err := os.ReadFile(filepath.Join(c.dir, "patch.json"))
			if err != nil {
				t.Fatal(err)
			}
			var ops []map[string]any
			if err := json.Unmarshal(patch, &ops); err != nil {
				t.Fatalf("patch.json: %v", err)
			}
			var compact []byte
			if len(ops) > 0 {
				var buf bytes.Buffer
				if err := json.Compact(&buf, patch); err != nil {
					t.Fatal(err)
				}
				compact = buf.Bytes()
			}
			patched, err := patchtest.Apply(c.pod, compact)
			if err != nil {
				t.Fatalf("patch.json does not apply to pod.yaml: %v", err)
			}
			if _, err := strictDecodePod(patched); err != nil {
				t.Errorf("pod.yaml + patch.json does not decode strictly as a Pod: %v", err)
			}
			want, err := os.ReadFile(filepath.Join(c.dir, "pod.json"))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(mustDecodeAny(t, want), mustDecodeAny(t, patched)) {
				t.Errorf("pod.yaml + patch.json != pod.json")
			}
			for _, op := range ops {
				if op["op"] != "add" && !(op["op"] == "replace" && op["path"] == statusPath) {
					t.Errorf("patch.json has a %v op at %v", op["op"], op["path"])
				}
			}
			// decisions.json is a valid outcome document
			var o goldenOutcome
			b, err := os.ReadFile(filepath.Join(c.dir, "decisions.json"))
			if err != nil {
				t.Fatal(err)
			}
			d := json.NewDecoder(bytes.NewReader(b))
			d.DisallowUnknownFields()
			if err := d.Decode(&o); err != nil {
				t.Errorf("decisions.json: %v", err)
			}
			if o.Denied && len(ops) > 0 {
				t.Errorf("a denied case has a patch")
			}
		})
	}
}
