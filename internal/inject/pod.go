package inject

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
	corev1 "k8s.io/api/core/v1"
)

// podView is the part of a pod the engine reads. The engine never re-encodes the pod: it reads this view and
// writes a patch against the raw bytes, so whatever the view does not name is untouched. Pointers, nil slices
// and nil maps mean "absent or null" (the patch then creates the field whole).
type podView struct {
	Metadata *struct {
		Name         string            `json:"name"`
		GenerateName string            `json:"generateName"`
		Namespace    string            `json:"namespace"`
		Labels       map[string]string `json:"labels"`
		Annotations  map[string]string `json:"annotations"`
		// OwnerReferences decide a pod's canary share (canaryKey): its owner's kind and name only.
		OwnerReferences []ownerView `json:"ownerReferences"`
	} `json:"metadata"`
	Spec *specView `json:"spec"`
}

// specView is the part of spec the engine reads.
type specView struct {
	Containers            viewList[*containerView] `json:"containers"`
	InitContainers        viewList[*containerView] `json:"initContainers"`
	Volumes               viewList[namedView]      `json:"volumes"`
	ImagePullSecrets      viewList[namedView]      `json:"imagePullSecrets"`
	ServiceAccountName    string                   `json:"serviceAccountName"`
	ServiceAccount        string                   `json:"serviceAccount"`
	RestartPolicy         string                   `json:"restartPolicy"`
	ShareProcessNamespace *bool                    `json:"shareProcessNamespace"`
	HostNetwork           *bool                    `json:"hostNetwork"`
	HostPID               *bool                    `json:"hostPID"`
	HostIPC               *bool                    `json:"hostIPC"`
	HostAliases           []*corev1.HostAlias      `json:"hostAliases"`
	DNSConfig             *corev1.PodDNSConfig     `json:"dnsConfig"`

	// AutomountServiceAccountToken false: the ServiceAccount admission plugin mounts no token (serviceaccount.go).
	AutomountServiceAccountToken *bool `json:"automountServiceAccountToken"`
}

type ownerView struct {
	Kind       string `json:"kind"`
	Name       string `json:"name"`
	Controller *bool  `json:"controller"`
}

type namedView struct {
	Name string `json:"name"`
}

type containerView struct {
	Name         string              `json:"name"`
	Env          viewList[namedView] `json:"env"`
	EnvFrom      []jsontext.Value    `json:"envFrom"` // decoded only when a template adds envFrom
	VolumeMounts viewList[mountView] `json:"volumeMounts"`
}

type mountView struct {
	MountPath string `json:"mountPath"`
}

// viewList is a list of the pod's that the engine reads. json v2 grows a slice one element at a time, doubling
// as it goes, which for a container's few dozen env vars allocated about three times what they hold (and
// readPod was then the largest part of what an admission allocates). This decodes the elements into a buffer on
// the stack and copies them out once, at their exact length. Errors are json v2's own: anything that is not a
// list, and each element, is decoded by json v2.
type viewList[T any] []T

// viewListBuffer is how many elements are decoded on the stack; a longer list spills to the heap once.
const viewListBuffer = 32

func (l *viewList[T]) UnmarshalJSONFrom(dec *jsontext.Decoder) error {
	if dec.PeekKind() != '[' {
		return jsonv2.UnmarshalDecode(dec, (*[]T)(l)) // null (nil), or json v2's error for what is not a list
	}
	if _, err := dec.ReadToken(); err != nil {
		return err
	}
	var buf [viewListBuffer]T
	elems := buf[:0]
	var e T // one variable for all elements: decoding into it moves it to the heap
	for dec.PeekKind() != ']' {
		var zero T
		e = zero // each element from scratch: json v2 merges into a non-zero value
		if err := jsonv2.UnmarshalDecode(dec, &e); err != nil {
			return err
		}
		elems = append(elems, e)
	}
	if _, err := dec.ReadToken(); err != nil {
		return err
	}
	*l = make([]T, len(elems)) // [] is an empty list, not an absent one: never nil
	copy(*l, elems)
	return nil
}

// PodError is returned for a pod the engine cannot read.
type PodError struct{ Err error }

func (e *PodError) Error() string { return "cannot read pod: " + e.Err.Error() }
func (e *PodError) Unwrap() error { return e.Err }

func readPod(raw []byte) (*podView, error) {
	trimmed := bytes.TrimSpace(raw)
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return nil, &PodError{fmt.Errorf("the object is not a JSON object")}
	}
	var p podView
	// json v2 reads in one pass (no separate validation scan, no reflection on skipped values) and matches
	// names case-sensitively, like the API server: encoding/json would read "Metadata" as metadata. It also
	// rejects duplicate names and invalid UTF-8, which no API server sends.
	if err := jsonv2.Unmarshal(trimmed, &p); err != nil {
		return nil, &PodError{describeJSONError(err)}
	}
	// The patch addresses these elements by index; a null one could not be patched, and no valid pod has one.
	if s := p.Spec; s != nil {
		if n := slices.Index(s.Containers, nil); n >= 0 {
			return nil, &PodError{fmt.Errorf("spec.containers[%d] is null", n)}
		}
		if n := slices.Index(s.InitContainers, nil); n >= 0 {
			return nil, &PodError{fmt.Errorf("spec.initContainers[%d] is null", n)}
		}
		if n := slices.Index(s.HostAliases, nil); n >= 0 {
			return nil, &PodError{fmt.Errorf("spec.hostAliases[%d] is null", n)}
		}
	}
	return &p, nil
}

// describeJSONError turns a decoding error into one that names the field (as a JSON pointer) and the JSON
// kinds involved, never the engine's Go types.
func describeJSONError(err error) error {
	var se *jsonv2.SemanticError
	if errors.As(err, &se) && se.GoType != nil {
		where := fieldPath(se.JSONPointer)
		found := "a JSON value"
		if se.JSONKind != 0 {
			found = "a JSON " + kindName(se.JSONKind)
		}
		return fmt.Errorf("field %s: expected %s, found %s", where, jsonKind(se.GoType), found)
	}
	var syn *jsontext.SyntacticError
	if errors.As(err, &syn) {
		return fmt.Errorf("invalid JSON at byte %d (in %s): %v", syn.ByteOffset, fieldPath(syn.JSONPointer), syn.Err)
	}
	return err
}

// fieldPath writes a JSON pointer the way Kubernetes names fields: /spec/containers/0/env -> spec.containers[0].env.
func fieldPath(p jsontext.Pointer) string {
	var b strings.Builder
	for tok := range p.Tokens() {
		if _, err := strconv.Atoi(tok); err == nil {
			b.WriteString("[" + tok + "]")
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('.')
		}
		b.WriteString(tok)
	}
	return cmp.Or(b.String(), "the pod")
}

func kindName(k jsontext.Kind) string {
	switch k {
	case '"':
		return "string"
	case '0':
		return "number"
	case 't', 'f':
		return "boolean"
	case 'n':
		return "null"
	case '{':
		return "object"
	case '[':
		return "list"
	}
	return "value"
}

func jsonKind(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Slice, reflect.Array:
		return "a list"
	case reflect.Struct, reflect.Map:
		return "an object"
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "a boolean"
	default:
		return "a number"
	}
}
