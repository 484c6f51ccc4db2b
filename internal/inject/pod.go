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
		// ManagedFields is named only to be skipped without looking for duplicate names (skipped).
		ManagedFields skipped `json:"managedFields"`
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

func (v *namedView) UnmarshalJSONFrom(dec *jsontext.Decoder) error {
	return readKeyed(dec, "name", &v.Name, (*struct {
		Name string `json:"name"`
	})(v))
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

func (v *mountView) UnmarshalJSONFrom(dec *jsontext.Decoder) error {
	return readKeyed(dec, "mountPath", &v.MountPath, (*struct {
		MountPath string `json:"mountPath"`
	})(v))
}

// readKeyed reads an object of which the engine needs one string member, key, into dst: an env var, a volume, a
// mount, an image pull secret. A realistic pod has dozens (its env vars were a third of the realistic pod's engine
// time), and json v2 pays for each, through UnmarshalDecode and its struct decoding, a type lookup, a
// case-insensitive lookup and a duplicate set for every member it skips. Read here as tokens (and called by
// viewList directly), the realistic pod with 2 templates took about 6% less CPU (BenchmarkInject, CPU time per
// op over 30,000 ops, 6 interleaved runs: median 54 against 58 µs on a busy machine). What it does not handle
// itself goes to json v2, so that the value and the errors are json v2's own: anything but an object goes to
// plain, the same object as a struct without methods (null, or the error for a wrong kind), and a key whose value
// is not a string goes to json v2 as a string. Duplicate member names are still refused: the decoder checks the
// names of every object read token by token. TestKeyedObjectsReadAsJSONv2Does compares it with json v2.
func readKeyed(dec *jsontext.Decoder, key string, dst *string, plain any) error {
	if dec.PeekKind() != '{' {
		return jsonv2.UnmarshalDecode(dec, plain)
	}
	if _, err := dec.ReadToken(); err != nil {
		return err
	}
	for dec.PeekKind() != '}' {
		name, err := dec.ReadValue() // the quoted name; valid until the next read
		if err != nil {
			return err
		}
		if !quotedNameIs(name, key) {
			if _, err := dec.ReadValue(); err != nil { // skipped in one pass (SkipValue reads token by token)
				return err
			}
			continue
		}
		if err := readString(dec, dst); err != nil {
			return err
		}
	}
	_, err := dec.ReadToken()
	return err
}

// readContainer reads a container as readKeyed reads a keyed object: its name, env, envFrom and volumeMounts; the
// rest (image, ports, resources, probes, securityContext...) is skipped, each value in one pass (ReadValue, which
// still checks it, duplicate names included), where json v2's struct decoding reads what it skips token by
// token: 5-7% less CPU for the realistic pod (BenchmarkInject, CPU time per op, two sets of 6 interleaved runs:
// medians 52.5 against 56.5 and 51 against 54 µs). null is a nil container (readPod refuses it, naming it),
// and what is not an object goes to json v2 for its error. TestContainersReadAsJSONv2Does compares it with json
// v2.
func readContainer(dec *jsontext.Decoder, dst **containerView) error {
	if dec.PeekKind() != '{' {
		return jsonv2.UnmarshalDecode(dec, dst)
	}
	if _, err := dec.ReadToken(); err != nil {
		return err
	}
	c := new(containerView)
	*dst = c
	for dec.PeekKind() != '}' {
		name, err := dec.ReadValue() // the quoted name; valid until the next read
		if err != nil {
			return err
		}
		switch {
		case quotedNameIs(name, "name"):
			err = readString(dec, &c.Name)
		case quotedNameIs(name, "env"):
			err = c.Env.UnmarshalJSONFrom(dec)
		case quotedNameIs(name, "volumeMounts"):
			err = c.VolumeMounts.UnmarshalJSONFrom(dec)
		case quotedNameIs(name, "envFrom"):
			err = jsonv2.UnmarshalDecode(dec, &c.EnvFrom)
		default:
			_, err = dec.ReadValue()
		}
		if err != nil {
			return err
		}
	}
	_, err := dec.ReadToken()
	return err
}

// readString reads a string member's value into dst; any other kind goes to json v2 (null leaves dst empty; the
// rest is json v2's error, naming the member).
func readString(dec *jsontext.Decoder, dst *string) error {
	if dec.PeekKind() != '"' {
		return jsonv2.UnmarshalDecode(dec, dst)
	}
	val, err := dec.ReadValue()
	if err != nil {
		return err
	}
	*dst, err = unquoteString(val)
	return err
}

// quotedNameIs reports whether the quoted JSON name is key, whether it is written plainly or with escapes.
func quotedNameIs(quoted jsontext.Value, key string) bool {
	if len(quoted) == len(key)+2 && string(quoted[1:len(quoted)-1]) == key {
		return true
	}
	if bytes.IndexByte(quoted, '\\') < 0 {
		return false
	}
	var buf [64]byte
	unq, err := jsontext.AppendUnquote(buf[:0], quoted)
	return err == nil && string(unq) == key
}

// unquoteString returns the string a quoted JSON string (already checked by the decoder) stands for.
func unquoteString(quoted jsontext.Value) (string, error) {
	if bytes.IndexByte(quoted, '\\') < 0 {
		return string(quoted[1 : len(quoted)-1]), nil
	}
	unq, err := jsontext.AppendUnquote(nil, quoted)
	return string(unq), err
}

// viewList is a list of the pod's that the engine reads. json v2 grows a slice one element at a time, doubling
// as it goes, which for a container's few dozen env vars allocated about three times what they hold (and
// readPod was then the largest part of what an admission allocates). This decodes the elements into a buffer on
// the stack and copies them out once, at their exact length. Errors are json v2's own: anything that is not a
// list is decoded by json v2, and so is each element, but for the keyed objects and containers, which readKeyed
// and readContainer read as json v2 does.
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
		var err error
		switch p := any(&e).(type) { // the keyed objects directly: not through UnmarshalDecode (readKeyed)
		case *namedView:
			err = p.UnmarshalJSONFrom(dec)
		case *mountView:
			err = p.UnmarshalJSONFrom(dec)
		case **containerView:
			err = readContainer(dec, p)
		default:
			err = jsonv2.UnmarshalDecode(dec, &e)
		}
		if err != nil {
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

// skipped is a value the engine neither reads nor patches, and that may be most of a pod's bytes:
// metadata.managedFields (about 90% of the large benchmark pod). It is read as one JSON value, still checked to be
// valid JSON and valid UTF-8, but without looking for duplicate member names inside it: json v2 does that for
// every object it reads or skips, and for managedFields that was more than half of the large pod's engine time.
// A duplicate name there cannot change what the engine reads or writes. Everywhere else duplicates are still
// refused (see readPod).
type skipped struct{}

func (*skipped) UnmarshalJSONFrom(dec *jsontext.Decoder) error {
	// The option holds for this one value only (json v2 allows switching it before a value, not inside an object).
	return jsonv2.UnmarshalDecode(dec, &skippedValue{}, jsontext.AllowDuplicateNames(true))
}

// skippedValue reads the next value in one pass (ReadValue), instead of token by token as SkipValue does.
type skippedValue struct{}

func (*skippedValue) UnmarshalJSONFrom(dec *jsontext.Decoder) error {
	_, err := dec.ReadValue()
	return err
}

// PodError is returned for a pod the engine cannot read.
type PodError struct{ Err error }

func (e *PodError) Error() string { return "cannot read pod: " + e.Err.Error() }
func (e *PodError) Unwrap() error { return e.Err }

// jsonWhitespace is the whitespace JSON allows around a value (RFC 8259, section 2).
const jsonWhitespace = " \t\n\r"

func readPod(raw []byte) (*podView, error) {
	// Only JSON's own whitespace: bytes.TrimSpace would also drop a form feed or a no-break space, which JSON
	// does not allow, and accept as a pod what a patch tool then cannot apply the patch to.
	trimmed := bytes.Trim(raw, jsonWhitespace)
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return nil, &PodError{fmt.Errorf("the object is not a JSON object")}
	}
	var p podView
	// json v2 reads in one pass (no separate validation scan, no reflection on skipped values) and matches
	// names case-sensitively, like the API server: encoding/json would read "Metadata" as metadata. It also
	// rejects invalid UTF-8 and duplicate member names, which no API server sends: a pod that has them was not
	// written by one, and which of two values counts is then a guess (the engine's view and a patch tool's may
	// differ). Duplicates are refused in every object of the pod but inside metadata.managedFields (skipped),
	// which the engine neither reads nor patches.
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
