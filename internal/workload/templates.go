package workload

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	sigsjson "sigs.k8s.io/json"

	"github.com/sidecar-dev/sidecar-injector/internal/api/v1alpha1"
)

// Template is a SidecarTemplate read from a stream, and where it was read.
type Template struct {
	// Where is `FILE: document N (SidecarTemplate "name")`, followed by ` item I (...)` for an item of a List.
	Where  string
	Object *v1alpha1.SidecarTemplate
}

// ReadTemplates reads the SidecarTemplates of a YAML or JSON stream (documents, objects, and Lists or
// SidecarTemplateLists of them, as `kubectl get` writes them) as strictly as the API server would take them:
// an unknown or duplicated field, a value of the wrong type (`value: yes` where a string is expected), another
// kind, or one template defined twice is an error. Every error names the file, the document (and item) and the
// field; the returned error joins them all (errors.Join), and a stream with any is not to be used. A template
// without metadata.namespace is in defaultNamespace; one without metadata.generation gets 1, as the API server
// gives a new object. `inject --templates` and `explain --templates` both read through here.
func ReadTemplates(r io.Reader, file, defaultNamespace string) ([]Template, error) {
	docs, err := Split(r)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", file, err)
	}
	rd := templateReader{file: file, defaultNamespace: defaultNamespace, where: map[types.NamespacedName]string{}}
	for _, doc := range docs {
		at := doc.Name(file)
		if doc.Err != nil {
			rd.fail("%s: %v", at, doc.Err)
			continue
		}
		apiVersion, _ := doc.Object["apiVersion"].(string)
		kind, _ := doc.Object["kind"].(string)
		if (kind == "List" && apiVersion == "v1") || (kind == "SidecarTemplateList" && apiVersion == v1alpha1.GroupVersion.String()) {
			rd.list(at, doc.Object["items"])
			continue
		}
		rd.add(at, doc.Object)
	}
	return rd.out, errors.Join(rd.errs...)
}

type templateReader struct {
	file, defaultNamespace string
	out                    []Template
	errs                   []error
	where                  map[types.NamespacedName]string // where each template was defined
}

func (rd *templateReader) fail(format string, args ...any) {
	rd.errs = append(rd.errs, fmt.Errorf(format, args...))
}

func (rd *templateReader) list(at string, items any) {
	list, ok := items.([]any)
	if !ok && items != nil {
		rd.fail("%s: items is not a list", at)
		return
	}
	for i, it := range list {
		item, ok := it.(map[string]any)
		if !ok {
			rd.fail("%s item %d: not an object", at, i+1)
			continue
		}
		rd.add(fmt.Sprintf("%s item %d (%s)", at, i+1, Describe(item)), item)
	}
}

func (rd *templateReader) add(at string, obj map[string]any) {
	st, err := decodeTemplate(obj)
	if err != nil {
		rd.fail("%s: %v", at, err)
		return
	}
	if st.Namespace == "" {
		st.Namespace = rd.defaultNamespace
	}
	if st.Generation == 0 {
		st.Generation = 1
	}
	key := types.NamespacedName{Namespace: st.Namespace, Name: st.Name}
	if prev, dup := rd.where[key]; dup {
		rd.fail("%s: SidecarTemplate %q in namespace %q is also defined at %s", at, st.Name, st.Namespace, prev)
		return
	}
	rd.where[key] = strings.TrimPrefix(at, rd.file+": ")
	rd.out = append(rd.out, Template{Where: at, Object: st})
}

// decodeTemplate decodes one SidecarTemplate strictly: unknown and duplicated fields, and values of the wrong
// type, are errors that name the field by its path.
func decodeTemplate(obj map[string]any) (*v1alpha1.SidecarTemplate, error) {
	apiVersion, _ := obj["apiVersion"].(string)
	kind, _ := obj["kind"].(string)
	if kind != "SidecarTemplate" || apiVersion != v1alpha1.GroupVersion.String() {
		return nil, fmt.Errorf("kind %q (apiVersion %q) is not a SidecarTemplate (apiVersion %s), a List or a SidecarTemplateList",
			kind, apiVersion, v1alpha1.GroupVersion.String())
	}
	js, typed, err := withoutTypedPlaceholders(obj)
	if err != nil {
		return nil, err
	}
	var plain plainTemplate
	strict, err := sigsjson.UnmarshalStrict(js, &plain, sigsjson.DisallowDuplicateFields, sigsjson.DisallowUnknownFields)
	if err != nil {
		return nil, err
	}
	st := &v1alpha1.SidecarTemplate{TypeMeta: metav1.TypeMeta{APIVersion: plain.APIVersion, Kind: plain.Kind},
		ObjectMeta: plain.Metadata, Spec: v1alpha1.SidecarTemplateSpec(plain.Spec), Status: plain.Status}
	st.Spec.TypedPlaceholders = typed
	if len(strict) > 0 {
		msgs := make([]string, len(strict))
		for i, e := range strict {
			msgs[i] = e.Error()
		}
		return nil, errors.New(strings.Join(msgs, "; "))
	}
	if st.Name == "" {
		return nil, errors.New("metadata.name is required")
	}
	return st, nil
}

// plainTemplate is a SidecarTemplate whose spec decodes field by field: the spec's own UnmarshalJSON, which sets
// typed placeholders aside, would hide the fields inside the spec from the strict decoder.
// Its fields are named, not embedded, so that controller-gen does not take it for an API type.
type plainTemplate struct {
	APIVersion string                         `json:"apiVersion"`
	Kind       string                         `json:"kind"`
	Metadata   metav1.ObjectMeta              `json:"metadata,omitempty"`
	Spec       v1alpha1.PlainSpec             `json:"spec"`
	Status     v1alpha1.SidecarTemplateStatus `json:"status,omitempty"`
}

// withoutTypedPlaceholders encodes a template with its typed placeholders taken out of the spec (see
// v1alpha1.SplitTypedPlaceholders), and returns them.
func withoutTypedPlaceholders(obj map[string]any) ([]byte, map[string]string, error) {
	spec, ok := obj["spec"]
	if !ok {
		js, err := json.Marshal(obj)
		return js, nil, err
	}
	specJS, err := json.Marshal(spec)
	if err != nil {
		return nil, nil, err
	}
	rest, typed, err := v1alpha1.SplitTypedPlaceholders(specJS)
	if err != nil {
		return nil, nil, err
	}
	copied := maps.Clone(obj)
	copied["spec"] = json.RawMessage(rest)
	js, err := json.Marshal(copied)
	return js, typed, err
}

// Name is `FILE: document N (Kind "name")`, or `FILE: document N (starting on line L)` for a document that could
// not be decoded (the decoder's line numbers count from there).
func (d Document) Name(file string) string {
	name := fmt.Sprintf("%s: document %d", file, d.Index)
	if d.Object != nil {
		return name + " (" + Describe(d.Object) + ")"
	}
	return fmt.Sprintf("%s (starting on line %d)", name, d.Line)
}

// Open opens file for reading, or returns stdin for "-"; close releases it.
func Open(file string, stdin io.Reader) (r io.Reader, close func(), err error) {
	if file == "-" {
		return stdin, func() {}, nil
	}
	f, err := os.Open(file)
	if err != nil {
		return nil, nil, err
	}
	return f, func() { _ = f.Close() }, nil
}
