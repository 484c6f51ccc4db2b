package webhook

import (
	"bytes"
	"encoding/json"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
)

// encodingJSON is what the answer was before appendReview, and what it must stay byte for byte.
func encodingJSON(t testing.TB, tm metav1.TypeMeta, resp *admissionv1.AdmissionResponse) []byte {
	var b bytes.Buffer
	if err := json.NewEncoder(&b).Encode(admissionv1.AdmissionReview{TypeMeta: tm, Response: resp}); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// odd strings: HTML characters, every short escape, other control characters, invalid UTF-8, the line and
// paragraph separators, multi-byte runes, a NUL.
var oddStrings = []string{
	"", "plain", `quote " backslash \ slash /`, "<script>&amp;</script>", "\b\f\n\r\t", "\x00\x01\x1f\x7f",
	"bad \xff utf-8 \xc3", "line\u2028para\u2029", "ünïcødé 日本 🚀", "\xed\xa0\x80 surrogate",
}

var v1 = metav1.TypeMeta{APIVersion: reviewV1, Kind: reviewKind}

func TestAnswerEncoding(t *testing.T) {
	jsonPatch := admissionv1.PatchTypeJSONPatch
	cases := []struct {
		name string
		tm   metav1.TypeMeta
		resp admissionv1.AdmissionResponse
	}{
		{"an allowed answer, as Complete leaves it", v1, admissionv1.AdmissionResponse{UID: "u-1", Allowed: true, Result: &metav1.Status{Code: 200}}},
		{"a v1beta1 answer", metav1.TypeMeta{APIVersion: reviewV1beta1, Kind: reviewKind}, admissionv1.AdmissionResponse{UID: "u", Allowed: true}},
		{"an answer without TypeMeta", metav1.TypeMeta{}, admissionv1.AdmissionResponse{UID: "u"}},
		{"an answer of only a kind", metav1.TypeMeta{Kind: "K"}, admissionv1.AdmissionResponse{UID: "u"}},
		{"a patch", v1, admissionv1.AdmissionResponse{UID: "u", Allowed: true, PatchType: &jsonPatch, Result: &metav1.Status{Code: 200},
			Patch: []byte(`[{"op":"add","path":"/metadata/labels/a~1b","value":"<&>"}]`)}},
		{"a patch of every length modulo 3", v1, admissionv1.AdmissionResponse{UID: "u", Allowed: true, Patch: []byte("ab")}},
		{"a denial", v1, admissionv1.AdmissionResponse{UID: "u", Result: &metav1.Status{Code: 403, Reason: metav1.StatusReasonForbidden,
			Message: `sidecar template "log-shipper": container name "app" already exists in pod`}}},
		{"a bad pod", v1, admissionv1.AdmissionResponse{UID: "u", Result: &metav1.Status{Status: metav1.StatusFailure, Code: 400,
			Reason: metav1.StatusReasonBadRequest, Message: ReadPodErrorPrefix + "spec.containers: want an array"}}},
		{"a negative code", v1, admissionv1.AdmissionResponse{UID: "u", Result: &metav1.Status{Code: -1}}},
		{"warnings", v1, admissionv1.AdmissionResponse{UID: "u", Allowed: true, Warnings: []string{"one", "two <b>"}}},
		{"an empty warning list", v1, admissionv1.AdmissionResponse{UID: "u", Allowed: true, Warnings: []string{}}},
		{"an empty patch", v1, admissionv1.AdmissionResponse{UID: "u", Allowed: true, Patch: []byte{}}},
		{"audit annotations (encoding/json writes them)", v1, admissionv1.AdmissionResponse{UID: "u", AuditAnnotations: map[string]string{"b": "2", "a": "<1>"}}},
		{"status details (encoding/json writes them)", v1, admissionv1.AdmissionResponse{UID: "u", Result: &metav1.Status{Code: 400, Details: &metav1.StatusDetails{Name: "x"}}}},
		{"a status with list metadata (encoding/json writes it)", v1, admissionv1.AdmissionResponse{UID: "u", Result: &metav1.Status{ListMeta: metav1.ListMeta{RemainingItemCount: ptr.To[int64](3)}}}},
		{"a status with its own kind (encoding/json writes it)", v1, admissionv1.AdmissionResponse{UID: "u", Result: &metav1.Status{TypeMeta: metav1.TypeMeta{Kind: "Status"}}}},
	}
	for _, s := range oddStrings {
		cases = append(cases, struct {
			name string
			tm   metav1.TypeMeta
			resp admissionv1.AdmissionResponse
		}{"odd string " + s, metav1.TypeMeta{APIVersion: s, Kind: s}, admissionv1.AdmissionResponse{UID: types.UID(s), Allowed: true,
			Result: &metav1.Status{Status: s, Message: s, Reason: metav1.StatusReason(s), Code: 200},
			Patch:  []byte(s), PatchType: (*admissionv1.PatchType)(&s), Warnings: []string{s, s}}})
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			want := encodingJSON(t, c.tm, &c.resp)
			if got := appendReview([]byte("kept"), c.tm, &c.resp); !bytes.Equal(got, append([]byte("kept"), want...)) {
				t.Errorf("appendReview wrote\n%s\nencoding/json\n%s", got, want)
			}
		})
	}
}

// FuzzAnswerEncoding: appendReview writes what encoding/json writes, whatever the strings and bytes.
func FuzzAnswerEncoding(f *testing.F) {
	for _, s := range oddStrings {
		f.Add(s, s, []byte(s), s, int32(400), true)
	}
	f.Fuzz(func(t *testing.T, uid, msg string, patch []byte, warning string, code int32, allowed bool) {
		pt := admissionv1.PatchTypeJSONPatch
		resp := admissionv1.AdmissionResponse{UID: types.UID(uid), Allowed: allowed, Patch: patch, PatchType: &pt,
			Result: &metav1.Status{Message: msg, Code: code, Reason: metav1.StatusReason(warning)}, Warnings: []string{warning}}
		want := encodingJSON(t, v1, &resp)
		if got := appendReview(nil, v1, &resp); !bytes.Equal(got, want) {
			t.Fatalf("appendReview wrote\n%q\nencoding/json\n%q", got, want)
		}
	})
}

// BenchmarkAnswerEncoding: an injected pod's answer (a 3 KB patch, a warning) by appendReview and by
// encoding/json's Encoder, as writeReview wrote it before.
func BenchmarkAnswerEncoding(b *testing.B) {
	pt := admissionv1.PatchTypeJSONPatch
	resp := &admissionv1.AdmissionResponse{UID: "0b3a7c1e-7f4e-4f52-9a4c-2d1f6e8b9c0a", Allowed: true, PatchType: &pt,
		Result: &metav1.Status{Code: 200}, Patch: bytes.Repeat([]byte(`{"op":"add","path":"/spec/containers/-","value":{}}`), 60),
		Warnings: []string{`sidecar template "metrics": jobPolicy Keep adds a regular container`}}
	b.Run("appendReview", func(b *testing.B) {
		b.ReportAllocs()
		var buf []byte
		for b.Loop() {
			buf = appendReview(buf[:0], v1, resp)
		}
	})
	b.Run("encoding-json", func(b *testing.B) {
		b.ReportAllocs()
		var buf bytes.Buffer
		for b.Loop() {
			buf.Reset()
			if err := json.NewEncoder(&buf).Encode(admissionv1.AdmissionReview{TypeMeta: v1, Response: resp}); err != nil {
				b.Fatal(err)
			}
		}
	})
}
