package inject

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"testing"

	"gomodules.xyz/jsonpatch/v2"
	corev1 "k8s.io/api/core/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	sigsjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"

	"github.com/sidecar-dev/sidecar-injector/internal/api/v1alpha1"
	"github.com/sidecar-dev/sidecar-injector/internal/patchtest"
)

// Test pods plant fields that this build's k8s.io/api does not know, to check that the patch never touches
// them. Every such key starts with unknownPrefix, so that a strict decode can tell them from typos.
const unknownPrefix = "futureField"

const (
	defaultNamespace = "team-a"
	injectorNS       = "sidecar-injector"
	statusPath       = "/metadata/annotations/sidecar.dev~1status"
)

// parseTemplates reads multi-document YAML SidecarTemplates strictly (a typo in a test template is an error,
// not a silently ignored field).
func parseTemplates(t testing.TB, data []byte) []*v1alpha1.SidecarTemplate {
	t.Helper()
	var out []*v1alpha1.SidecarTemplate
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("reading templates: %v", err)
		}
		if len(bytes.TrimSpace(doc)) == 0 || strings.TrimSpace(string(doc)) == "---" {
			continue
		}
		var st v1alpha1.SidecarTemplate
		if err := yaml.UnmarshalStrict(doc, &st); err != nil {
			t.Fatalf("template document %q: %v", doc, err)
		}
		strictSpec(t, doc)
		if st.Name == "" {
			continue
		}
		out = append(out, &st)
	}
	return out
}

func compileAll(sts []*v1alpha1.SidecarTemplate, injectorNamespace string) []*Template {
	out := make([]*Template, 0, len(sts))
	for _, st := range sts {
		out = append(out, Compile(st, injectorNamespace))
	}
	return out
}

// podJSON converts a YAML pod to the JSON bytes the engine receives.
func podJSON(t testing.TB, y string) []byte {
	t.Helper()
	b, err := yaml.YAMLToJSON([]byte(y))
	if err != nil {
		t.Fatalf("pod YAML: %v", err)
	}
	return b
}

func mustPatchJSON(t testing.TB, r *Result) []byte {
	t.Helper()
	b, err := r.PatchJSON()
	if err != nil {
		t.Fatalf("PatchJSON: %v", err)
	}
	return b
}

func mustDecodeAny(t testing.TB, b []byte) any {
	t.Helper()
	v, err := patchtest.Decode(b)
	if err != nil {
		t.Fatalf("decoding %q: %v", truncate(string(b), 300), err)
	}
	return v
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// stripUnknown removes the deliberately planted unknown fields (keys starting with unknownPrefix).
func stripUnknown(v any) any {
	switch x := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			if strings.HasPrefix(k, unknownPrefix) {
				continue
			}
			out[k] = stripUnknown(e)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = stripUnknown(e)
		}
		return out
	default:
		return v
	}
}

// strictDecodePod decodes a pod as the API server would (case-sensitive), refusing unknown and duplicate
// fields except the ones planted on purpose.
func strictDecodePod(b []byte) (*corev1.Pod, error) {
	v, err := patchtest.Decode(b)
	if err != nil {
		return nil, err
	}
	clean, err := json.Marshal(stripUnknown(v))
	if err != nil {
		return nil, err
	}
	var pod corev1.Pod
	strict, err := sigsjson.UnmarshalStrict(clean, &pod)
	if err != nil {
		return nil, err
	}
	if len(strict) > 0 {
		return nil, fmt.Errorf("strict decoding: %v", strict)
	}
	return &pod, nil
}

// checkOps checks that a patch only adds, the one exception being a replace of the status annotation, and that
// every path is a well-formed JSON pointer without negative or leading-zero indices.
func checkOps(ops []jsonpatch.Operation) []string {
	var errs []string
	for i, op := range ops {
		switch {
		case op.Operation == "add":
		case op.Operation == "replace" && op.Path == statusPath:
		default:
			errs = append(errs, fmt.Sprintf("op %d is %q %s; only add (and replace of %s) is allowed", i, op.Operation, op.Path, statusPath))
		}
		if !strings.HasPrefix(op.Path, "/") {
			errs = append(errs, fmt.Sprintf("op %d path %q is not a JSON pointer", i, op.Path))
		}
		for _, seg := range strings.Split(op.Path, "/")[1:] {
			if strings.Contains(strings.ReplaceAll(strings.ReplaceAll(seg, "~0", ""), "~1", ""), "~") {
				errs = append(errs, fmt.Sprintf("op %d path %q has a bad escape in %q", i, op.Path, seg))
			}
		}
	}
	return errs
}

// containsOriginal reports every value of orig that is not present, unchanged, at its place in patched.
// Arrays may have grown: elements that have a "name" are matched by name, other elements must appear in the
// same order (as a subsequence), each contained in its match. skip lists JSON pointers whose value may change
// (the status annotation).
func containsOriginal(path string, orig, patched any, skip map[string]bool) []string {
	if skip[path] {
		return nil
	}
	switch o := orig.(type) {
	case map[string]any:
		p, ok := patched.(map[string]any)
		if !ok {
			return []string{fmt.Sprintf("%s: was an object, now %s", pathOrRoot(path), typeName(patched))}
		}
		var errs []string
		keys := make([]string, 0, len(o))
		for k := range o {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			sub := path + "/" + escapePointer(k)
			pv, ok := p[k]
			if !ok {
				errs = append(errs, fmt.Sprintf("%s: removed", sub))
				continue
			}
			errs = append(errs, containsOriginal(sub, o[k], pv, skip)...)
		}
		return errs
	case []any:
		p, ok := patched.([]any)
		if !ok {
			return []string{fmt.Sprintf("%s: was an array, now %s", pathOrRoot(path), typeName(patched))}
		}
		if len(p) < len(o) {
			return []string{fmt.Sprintf("%s: array shrank from %d to %d elements", path, len(o), len(p))}
		}
		if byName, ok := namesOf(o); ok {
			pn, _ := namesOf(p)
			var errs []string
			last := -1
			for i, name := range byName {
				j := indexOfName(pn, name)
				if j < 0 {
					errs = append(errs, fmt.Sprintf("%s/%d (name %q): removed", path, i, name))
					continue
				}
				if j < last {
					errs = append(errs, fmt.Sprintf("%s: element %q moved before a preceding original element", path, name))
				}
				last = j
				errs = append(errs, containsOriginal(fmt.Sprintf("%s/%d", path, i), o[i], p[j], skip)...)
			}
			return errs
		}
		// ordered subsequence, greedy
		j := 0
		for i := range o {
			found := false
			for ; j < len(p); j++ {
				if len(containsOriginal("", o[i], p[j], nil)) == 0 {
					found = true
					j++
					break
				}
			}
			if !found {
				return []string{fmt.Sprintf("%s/%d: element %s not found (in order) in the patched array", path, i, truncate(mustJSON(o[i]), 200))}
			}
		}
		return nil
	default:
		if !reflect.DeepEqual(orig, patched) {
			return []string{fmt.Sprintf("%s: was %s, now %s", pathOrRoot(path), truncate(mustJSON(orig), 100), truncate(mustJSON(patched), 100))}
		}
		return nil
	}
}

func pathOrRoot(p string) string {
	if p == "" {
		return "(root)"
	}
	return p
}

func typeName(v any) string {
	switch v.(type) {
	case map[string]any:
		return "an object"
	case []any:
		return "an array"
	case nil:
		return "null/absent"
	default:
		return fmt.Sprintf("%T", v)
	}
}

// namesOf returns the "name" of every element when all elements are objects with a distinct string name.
func namesOf(a []any) ([]string, bool) {
	if len(a) == 0 {
		return nil, false
	}
	names := make([]string, len(a))
	seen := map[string]bool{}
	for i, e := range a {
		m, ok := e.(map[string]any)
		if !ok {
			return nil, false
		}
		n, ok := m["name"].(string)
		if !ok || seen[n] {
			return nil, false
		}
		seen[n] = true
		names[i] = n
	}
	return names, true
}

func indexOfName(names []string, n string) int {
	for i, x := range names {
		if x == n {
			return i
		}
	}
	return -1
}

func escapePointer(k string) string {
	return strings.ReplaceAll(strings.ReplaceAll(k, "~", "~0"), "/", "~1")
}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprintf("<%v>", err)
	}
	return string(b)
}

// verifyPatch runs the checks every patch must pass: it only adds, it applies to the exact input, the result
// decodes strictly as a Pod, and everything the input had is still there. It returns the patched pod.
func verifyPatch(t testing.TB, pod []byte, r *Result) []byte {
	t.Helper()
	patch := mustPatchJSON(t, r)
	for _, e := range checkOps(r.Patch) {
		t.Errorf("not add-only: %s", e)
	}
	if r.Denied && len(r.Patch) > 0 {
		t.Errorf("a denied result carries a patch of %d ops", len(r.Patch))
	}
	patched, err := patchtest.Apply(pod, patch)
	if err != nil {
		t.Fatalf("the patch does not apply to the input: %v\npatch: %s", err, patch)
	}
	if _, err := strictDecodePod(patched); err != nil {
		t.Errorf("the patched pod does not decode strictly as a Pod: %v\npatched: %s", err, truncate(string(patched), 2000))
	}
	orig := mustDecodeAny(t, pod)
	after := mustDecodeAny(t, patched)
	skip := map[string]bool{}
	for _, op := range r.Patch {
		if op.Operation == "replace" && op.Path == statusPath {
			skip[statusPath] = true
		}
	}
	for _, e := range containsOriginal("", orig, after, skip) {
		t.Errorf("the patch lost or changed an original value: %s", e)
	}
	if skip[statusPath] {
		// the replace is allowed only when the pod had a status annotation
		if _, ok := lookup(orig, "metadata", "annotations", v1alpha1.AnnotationStatus); !ok {
			t.Errorf("replace of %s but the pod had no such annotation", statusPath)
		}
	}
	return patched
}

// lookup walks objects by key.
func lookup(v any, keys ...string) (any, bool) {
	for _, k := range keys {
		m, ok := v.(map[string]any)
		if !ok {
			return nil, false
		}
		v, ok = m[k]
		if !ok {
			return nil, false
		}
	}
	return v, true
}

// decodePod decodes the patched pod into the API type for assertions (not strict: planted fields are allowed).
func decodePod(t testing.TB, b []byte) *corev1.Pod {
	t.Helper()
	var p corev1.Pod
	if err := json.Unmarshal(b, &p); err != nil {
		t.Fatalf("decoding pod: %v", err)
	}
	return &p
}

func containerNames(cs []corev1.Container) []string {
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = c.Name
	}
	return out
}

func readStatus(t testing.TB, p *corev1.Pod) *Status {
	t.Helper()
	s, ok := p.Annotations[v1alpha1.AnnotationStatus]
	if !ok {
		return nil
	}
	var st Status
	if err := json.Unmarshal([]byte(s), &st); err != nil {
		t.Fatalf("status annotation %q is not the documented JSON: %v", s, err)
	}
	return &st
}

func itoa(i int) string { return strconv.Itoa(i) }

// strictSpec fails on an unknown or duplicated field inside a template document's spec, which
// yaml.UnmarshalStrict cannot see past SidecarTemplateSpec's own UnmarshalJSON.
func strictSpec(t testing.TB, doc []byte) {
	t.Helper()
	var raw struct {
		Spec json.RawMessage `json:"spec"`
	}
	if err := yaml.Unmarshal(doc, &raw); err != nil || raw.Spec == nil {
		return // no spec: UnmarshalStrict has said what there is to say
	}
	rest, _, err := v1alpha1.SplitTypedPlaceholders(raw.Spec)
	if err != nil {
		t.Fatalf("template document %q: %v", doc, err)
	}
	var plain v1alpha1.PlainSpec
	strict, err := sigsjson.UnmarshalStrict(rest, &plain, sigsjson.DisallowDuplicateFields, sigsjson.DisallowUnknownFields)
	if err != nil || len(strict) > 0 {
		t.Fatalf("template document %q: spec: %v %v", doc, err, strict)
	}
}
