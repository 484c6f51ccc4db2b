package webhook

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strconv"
	"sync"
	"unicode/utf8"

	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// appendReview appends the answer, an AdmissionReview of tm carrying resp, to dst: exactly the bytes that
// encoding/json's Encoder writes for admissionv1.AdmissionReview{TypeMeta: tm, Response: resp} (HTML-escaped
// strings, invalid UTF-8 as \ufffd, the patch in standard base64, a final newline). Hand-written because
// encoding/json's reflection over the review, its Status and the base64 patch took 11% of the handler's CPU
// for the small pod, this 5% (profiles of BenchmarkFixedCost in test/bench/inprocess; README "Benchmark"). It writes
// the fields the handler sets; for anything else (audit annotations, status details, a Status with its own
// TypeMeta or ListMeta), which the handler never sets, it falls back to encoding/json. TestAnswerEncoding and
// FuzzAnswerEncoding compare the two.
func appendReview(dst []byte, tm metav1.TypeMeta, resp *admissionv1.AdmissionResponse) []byte {
	if st := resp.Result; len(resp.AuditAnnotations) > 0 ||
		st != nil && (st.Details != nil || st.TypeMeta != (metav1.TypeMeta{}) || st.ListMeta != (metav1.ListMeta{})) {
		return appendReviewJSON(dst, tm, resp)
	}
	dst = append(dst, '{')
	if tm.Kind != "" {
		dst = appendString(append(dst, `"kind":`...), tm.Kind)
		dst = append(dst, ',')
	}
	if tm.APIVersion != "" {
		dst = appendString(append(dst, `"apiVersion":`...), tm.APIVersion)
		dst = append(dst, ',')
	}
	dst = appendString(append(dst, `"response":{"uid":`...), string(resp.UID))
	dst = strconv.AppendBool(append(dst, `,"allowed":`...), resp.Allowed)
	if st := resp.Result; st != nil {
		dst = append(dst, `,"status":{"metadata":{}`...) // ListMeta is a struct: omitempty never omits it
		if st.Status != "" {
			dst = appendString(append(dst, `,"status":`...), st.Status)
		}
		if st.Message != "" {
			dst = appendString(append(dst, `,"message":`...), st.Message)
		}
		if st.Reason != "" {
			dst = appendString(append(dst, `,"reason":`...), string(st.Reason))
		}
		if st.Code != 0 {
			dst = strconv.AppendInt(append(dst, `,"code":`...), int64(st.Code), 10)
		}
		dst = append(dst, '}')
	}
	if len(resp.Patch) > 0 {
		dst = append(dst, `,"patch":"`...)
		dst = base64.StdEncoding.AppendEncode(dst, resp.Patch)
		dst = append(dst, '"')
	}
	if resp.PatchType != nil {
		dst = appendString(append(dst, `,"patchType":`...), string(*resp.PatchType))
	}
	if len(resp.Warnings) > 0 {
		dst = append(dst, `,"warnings":[`...)
		for i, w := range resp.Warnings {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendString(dst, w)
		}
		dst = append(dst, ']')
	}
	return append(dst, "}}\n"...)
}

// appendReviewJSON is appendReview by encoding/json.
func appendReviewJSON(dst []byte, tm metav1.TypeMeta, resp *admissionv1.AdmissionResponse) []byte {
	out, err := json.Marshal(admissionv1.AdmissionReview{TypeMeta: tm, Response: resp})
	if err != nil { // only strings, bytes, numbers and maps of strings: does not happen; an error answer if it did
		return appendReview(dst, tm, &admissionv1.AdmissionResponse{UID: resp.UID, Result: &metav1.Status{
			Code: http.StatusInternalServerError, Message: "sidecar-injector: cannot encode the answer: " + err.Error()}})
	}
	return append(append(dst, out...), '\n')
}

// appendString appends s as a JSON string as encoding/json writes it: <, > and & escaped (HTML-safe), the
// control characters short (\n, \t, ...) where JSON has a short form, invalid UTF-8 as \ufffd, U+2028 and U+2029
// escaped.
func appendString(dst []byte, s string) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		b := s[i]
		if b < utf8.RuneSelf {
			if b >= 0x20 && b != '"' && b != '\\' && b != '<' && b != '>' && b != '&' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch b {
			case '"', '\\':
				dst = append(dst, '\\', b)
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hex[b>>4], hex[b&0xf])
			}
			i++
			start = i
			continue
		}
		c, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case c == utf8.RuneError && size == 1:
			dst = append(append(dst, s[start:i]...), `\ufffd`...)
		case c == '\u2028' || c == '\u2029':
			dst = append(append(dst, s[start:i]...), '\\', 'u', '2', '0', '2', hex[c&0xf])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	return append(append(dst, s[start:]...), '"')
}

// answerBuffers recycles encoded answers: once written to the connection, an answer is garbage.
var answerBuffers = sync.Pool{New: func() any { b := make([]byte, 0, 16<<10); return &b }}
