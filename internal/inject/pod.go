package inject

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"

	corev1 "k8s.io/api/core/v1"
	kjson "sigs.k8s.io/json"
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
	} `json:"metadata"`
	Spec *specView `json:"spec"`
}

// specView is the part of spec the engine reads.
type specView struct {
	Containers            []*containerView     `json:"containers"`
	InitContainers        []*containerView     `json:"initContainers"`
	Volumes               []namedView          `json:"volumes"`
	ImagePullSecrets      []namedView          `json:"imagePullSecrets"`
	ServiceAccountName    string               `json:"serviceAccountName"`
	ServiceAccount        string               `json:"serviceAccount"`
	ShareProcessNamespace *bool                `json:"shareProcessNamespace"`
	HostNetwork           *bool                `json:"hostNetwork"`
	HostPID               *bool                `json:"hostPID"`
	HostIPC               *bool                `json:"hostIPC"`
	HostAliases           []*corev1.HostAlias  `json:"hostAliases"`
	DNSConfig             *corev1.PodDNSConfig `json:"dnsConfig"`
}

type namedView struct {
	Name string `json:"name"`
}

type containerView struct {
	Name         string                 `json:"name"`
	Env          []namedView            `json:"env"`
	EnvFrom      []corev1.EnvFromSource `json:"envFrom"`
	VolumeMounts []struct {
		MountPath string `json:"mountPath"`
	} `json:"volumeMounts"`
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
	// Case-sensitive, like the API server: encoding/json would read "Metadata" as metadata.
	if err := kjson.UnmarshalCaseSensitivePreserveInts(trimmed, &p); err != nil {
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

// describeJSONError turns a decoding error into one that names the field and the JSON kinds involved, never
// the engine's Go types.
func describeJSONError(err error) error {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) && te.Field != "" {
		return fmt.Errorf("field %s: expected %s, found a JSON %s", te.Field, jsonKind(te.Type), te.Value)
	}
	return err
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
