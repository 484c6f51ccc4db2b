package webhook

import (
	"bytes"
	"io"
	"sync"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// decodeReview decodes an AdmissionReview request body into rev, as jsonv2.Unmarshal(body, rev, decodeOptions)
// does. json v2's struct decoding (a type lookup and a name lookup for every member, and a token-by-token walk
// for each member it skips) took 3.1-4.0 µs for the small pod's 1 KB review, a sixth of the injector's handler;
// read as tokens here (reviewReader) it takes 2.1-2.3 µs, and the realistic pod's 9.5 µs against 11-13.5
// (BenchmarkDecodeReview; what is left is jsontext checking the pod's bytes, which both do). It is hand-written
// for that measured difference. It reads only the shape the API server sends: any other (a member of an unexpected
// kind, a null, an escaped or repeated name, a body that is not one object) is decoded again by json v2 from
// the start, so that the result and the error are json v2's own. TestReviewsDecodeAsJSONv2Does and
// FuzzDecodeReview compare the two.
func decodeReview(body []byte, rev *admissionReview) error {
	r := reviewReaders.Get().(*reviewReader)
	ok := r.read(body, rev)
	r.src = bytes.Buffer{} // the pooled decoder keeps no reference to the body
	r.dec.Reset(&r.src)
	reviewReaders.Put(r)
	if ok {
		return nil
	}
	*rev = admissionReview{}
	return jsonv2.Unmarshal(body, rev, decodeOptions)
}

// reviewReader is a jsontext.Decoder reading from a bytes.Buffer over the body: jsontext then reads the body in
// place (request.object is a slice of it, as decodeOptions make it for json v2) instead of copying it.
type reviewReader struct {
	src bytes.Buffer
	dec jsontext.Decoder
}

var reviewReaders = sync.Pool{New: func() any { return new(reviewReader) }}

// read reports whether it decoded body into rev; false leaves rev partly set.
func (r *reviewReader) read(body []byte, rev *admissionReview) bool {
	r.src = *bytes.NewBuffer(body)
	d := &r.dec
	d.Reset(&r.src, jsontext.AllowDuplicateNames(true))
	var seen members
	ok := readObject(d, func(name []byte) bool {
		switch string(name) {
		case `"kind"`:
			return seen.first(0) && readString(d, &rev.Kind)
		case `"apiVersion"`:
			return seen.first(1) && readString(d, &rev.APIVersion)
		case `"request"`:
			if !seen.first(2) || d.PeekKind() != '{' {
				return false
			}
			rev.Request = new(reviewRequest)
			return readRequest(d, rev.Request)
		}
		return skipValue(d, name)
	})
	if !ok {
		return false
	}
	_, err := d.ReadToken() // nothing may follow the review
	return err == io.EOF
}

func readRequest(d *jsontext.Decoder, req *reviewRequest) bool {
	var seen members
	return readObject(d, func(name []byte) bool {
		switch string(name) {
		case `"uid"`:
			var s string
			ok := seen.first(0) && readString(d, &s)
			req.UID = types.UID(s)
			return ok
		case `"kind"`:
			return seen.first(1) && readGVK(d, &req.Kind)
		case `"resource"`:
			return seen.first(2) && readGVR(d, &req.Resource)
		case `"subResource"`:
			return seen.first(3) && readString(d, &req.SubResource)
		case `"name"`:
			return seen.first(4) && readString(d, &req.Name)
		case `"namespace"`:
			return seen.first(5) && readString(d, &req.Namespace)
		case `"operation"`:
			var s string
			ok := seen.first(6) && readString(d, &s)
			req.Operation = admissionv1.Operation(s)
			return ok
		case `"object"`:
			if !seen.first(7) {
				return false
			}
			v, err := d.ReadValue() // a slice of the body itself, as decodeOptions keep it
			if err != nil {
				return false
			}
			if v.Kind() != 'n' {
				req.Object.Raw = v[:len(v):len(v)]
			}
			return true
		case `"dryRun"`:
			if !seen.first(8) {
				return false
			}
			switch d.PeekKind() {
			case 't', 'f':
				tok, err := d.ReadToken()
				if err != nil {
					return false
				}
				b := tok.Bool()
				req.DryRun = &b
				return true
			case 'n':
				_, err := d.ReadToken()
				return err == nil
			}
			return false
		}
		return skipValue(d, name)
	})
}

func readGVK(d *jsontext.Decoder, gvk *metav1.GroupVersionKind) bool {
	return readGroupVersionAnd(d, `"kind"`, &gvk.Group, &gvk.Version, &gvk.Kind)
}

func readGVR(d *jsontext.Decoder, gvr *metav1.GroupVersionResource) bool {
	return readGroupVersionAnd(d, `"resource"`, &gvr.Group, &gvr.Version, &gvr.Resource)
}

// readGroupVersionAnd reads an object of three strings, "group", "version" and the member named third (quoted).
func readGroupVersionAnd(d *jsontext.Decoder, third string, group, version, last *string) bool {
	if d.PeekKind() != '{' {
		return false
	}
	var seen members
	return readObject(d, func(name []byte) bool {
		switch string(name) {
		case `"group"`:
			return seen.first(0) && readString(d, group)
		case `"version"`:
			return seen.first(1) && readString(d, version)
		case third:
			return seen.first(2) && readString(d, last)
		}
		return skipValue(d, name)
	})
}

// readObject reads an object, calling member with each member's quoted name, positioned before its value.
func readObject(d *jsontext.Decoder, member func(name []byte) bool) bool {
	if d.PeekKind() != '{' {
		return false
	}
	if _, err := d.ReadToken(); err != nil {
		return false
	}
	for d.PeekKind() != '}' {
		name, err := d.ReadValue() // the quoted name; valid until the next read
		if err != nil || !member(name) {
			return false
		}
	}
	_, err := d.ReadToken()
	return err == nil
}

// skipValue skips the value of a member nothing reads, in one pass (ReadValue, which still checks it); a name
// written with escapes may be one of those read, so it is left to json v2.
func skipValue(d *jsontext.Decoder, quotedName []byte) bool {
	if bytes.IndexByte(quotedName, '\\') >= 0 {
		return false
	}
	_, err := d.ReadValue()
	return err == nil
}

// members records which members of an object were read: a repeated one is left to json v2 (which merges it).
type members uint16

func (m *members) first(i uint) bool {
	if *m&(1<<i) != 0 {
		return false
	}
	*m |= 1 << i
	return true
}

// readString reads a string without escapes; anything else (null, another kind, escapes) is left to json v2.
// The review's fixed words are not allocated again for every request (json v2 interned them in its decoder's
// cache).
func readString(d *jsontext.Decoder, dst *string) bool {
	if d.PeekKind() != '"' {
		return false
	}
	v, err := d.ReadValue()
	if err != nil || bytes.IndexByte(v, '\\') >= 0 {
		return false
	}
	*dst = wellKnown(v[1 : len(v)-1])
	return true
}

// wellKnown returns the words every review repeats as constants (the switch converts b without allocating),
// and any other string as a copy.
func wellKnown(b []byte) string {
	switch string(b) {
	case "":
		return ""
	case reviewKind:
		return reviewKind
	case reviewV1:
		return reviewV1
	case reviewV1beta1:
		return reviewV1beta1
	case "v1":
		return "v1"
	case "Pod":
		return "Pod"
	case "pods":
		return "pods"
	case string(admissionv1.Create):
		return string(admissionv1.Create)
	case string(admissionv1.Update):
		return string(admissionv1.Update)
	case string(admissionv1.Delete):
		return string(admissionv1.Delete)
	case string(admissionv1.Connect):
		return string(admissionv1.Connect)
	}
	return string(b)
}
