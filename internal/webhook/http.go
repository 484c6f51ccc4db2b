package webhook

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"time"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/sidecar-dev/sidecar-injector/internal/metrics"
)

// MaxRequestBytes bounds the body of an admission request, as controller-runtime does.
const MaxRequestBytes = 7 * 1024 * 1024

const (
	reviewKind    = "AdmissionReview"
	reviewV1      = "admission.k8s.io/v1"
	reviewV1beta1 = "admission.k8s.io/v1beta1"
)

// server is the HTTP side of New's handler. It does what controller-runtime's admission.Webhook.ServeHTTP does
// (an empty body, a body over MaxRequestBytes and a Content-Type other than application/json are refused; v1 and
// v1beta1 reviews are answered in their own version), but reads the review once, where controller-runtime's
// decoder parses the body three times (to find its kind, to validate it, to decode it). The review is decoded
// as jsontext tokens (decodeReview in review.go; json v2 for any shape the API server does not send):
// case-sensitive like the API server, in a single pass; request.object is kept as raw bytes for the engine.
// Duplicate member names are not looked for: the API server never sends them, and tracking every name of a
// pod's managedFields costs an allocation each.
//
// Every answer is HTTP 200 with an AdmissionReview, bad input included: the refusal is in response.allowed=false
// with response.status.code 400 (413 for a body over MaxRequestBytes, 500 for a recovered panic) and a message.
// That is what the API server turns into a denial of the request, with our code and message, whatever the
// webhook's failurePolicy (k8s.io/apiserver's mutating dispatcher: ErrWebhookRejection). An HTTP 4xx/5xx would
// instead be a failure to call the webhook (ErrCallingWebhook): under failurePolicy Fail the user gets an
// internal error without our message, and under Ignore the pod is admitted without its sidecars, so a pod that
// the injector cannot read would slip past a mandatory template. test/hardening's
// TestBadInputIsADenialWhateverTheFailurePolicy checks both through a real API server.
type server struct {
	wh         *admission.Webhook
	metrics    *metrics.Metrics
	clientErrs *ClientErrorLog
}

type admissionReview struct {
	metav1.TypeMeta `json:",inline"`
	Request         *reviewRequest `json:"request,omitempty"`
}

// reviewRequest is the part of an admissionv1.AdmissionRequest that the handler and the Recorder read, with the
// same JSON names. The rest (userInfo, options, oldObject, requestKind, requestResource, requestSubResource) is
// skipped by the decoder, checked for JSON syntax only, instead of allocated per request: nothing here reads it.
type reviewRequest struct {
	UID         types.UID                   `json:"uid"`
	Kind        metav1.GroupVersionKind     `json:"kind"`
	Resource    metav1.GroupVersionResource `json:"resource"`
	SubResource string                      `json:"subResource,omitempty"`
	Name        string                      `json:"name,omitempty"`
	Namespace   string                      `json:"namespace,omitempty"`
	Operation   admissionv1.Operation       `json:"operation"`
	Object      runtime.RawExtension        `json:"object,omitempty"`
	DryRun      *bool                       `json:"dryRun,omitempty"`
}

func (r *reviewRequest) admissionRequest() admissionv1.AdmissionRequest {
	return admissionv1.AdmissionRequest{UID: r.UID, Kind: r.Kind, Resource: r.Resource, SubResource: r.SubResource,
		Name: r.Name, Namespace: r.Namespace, Operation: r.Operation, Object: r.Object, DryRun: r.DryRun}
}

func (s *server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	code := http.StatusOK
	defer func() { s.metrics.ObserveRequest(code, time.Since(start)) }()
	var rev admissionReview
	fail := func(status int32, err error) {
		code = int(status)
		resp := admission.Errored(status, err)
		if rev.Request != nil {
			resp.UID = rev.Request.UID // whatever could be read of the request, the answer names it
		}
		s.clientErrs.Log("admission: bad request", err, "result", "error", "uid", resp.UID)
		s.writeReview(w, metav1.TypeMeta{}, &resp.AdmissionResponse)
	}
	if r.Body == nil || r.Body == http.NoBody {
		fail(http.StatusBadRequest, errors.New("request body is empty"))
		return
	}
	defer r.Body.Close()
	buf := bodyBuffers.Get().(*[]byte)
	defer putBody(buf)
	body, err := readBody(r, *buf)
	*buf = body[:0]
	switch {
	case err != nil:
		fail(http.StatusBadRequest, fmt.Errorf("cannot read the request body: %w", err))
		return
	case len(body) > MaxRequestBytes:
		fail(http.StatusRequestEntityTooLarge, fmt.Errorf("request entity is too large; limit is %d bytes", MaxRequestBytes))
		return
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/json" {
		fail(http.StatusBadRequest, fmt.Errorf("contentType=%s, expected application/json", ct))
		return
	}
	if err := decodeReview(body, &rev); err != nil {
		fail(http.StatusBadRequest, fmt.Errorf("the body is not an AdmissionReview: %w", err))
		return
	}
	if rev.Kind != reviewKind || (rev.APIVersion != reviewV1 && rev.APIVersion != reviewV1beta1) {
		fail(http.StatusBadRequest, fmt.Errorf("the body is not an AdmissionReview request: it is a %q of %q; want an %s of %s or %s",
			rev.Kind, rev.APIVersion, reviewKind, reviewV1, reviewV1beta1))
		return
	}
	var req admission.Request
	if rev.Request != nil {
		req.AdmissionRequest = rev.Request.admissionRequest()
	}
	resp := s.wh.Handle(r.Context(), req)
	if resp.Result != nil && resp.Result.Code >= 400 && !resp.Allowed && resp.Result.Reason != metav1.StatusReasonForbidden {
		code = int(resp.Result.Code) // an error answer (bad request, recovered panic), not a denial
	}
	s.writeReview(w, rev.TypeMeta, &resp.AdmissionResponse)
	recyclePatch(resp.Patch)
}

// patchBuffers recycles the encoded patches of answers (a few KB each, the largest allocation an injected pod's
// answer makes): the handler encodes the patch into one, and ServeHTTP gives it back once the answer is written,
// when nothing refers to it any more. An answer handled without ServeHTTP (tests calling Handle) simply leaves
// its buffer to the garbage collector.
var patchBuffers = sync.Pool{New: func() any { b := make([]byte, 0, 8<<10); return &b }}

func patchBuffer() []byte { return (*patchBuffers.Get().(*[]byte))[:0] }

func recyclePatch(b []byte) {
	if cap(b) > 0 && cap(b) <= 1<<20 { // a rare huge patch is not kept alive
		b = b[:0]
		patchBuffers.Put(&b)
	}
}

// decodeOptions decode a review: duplicate names not tracked (see server), and request.object and
// request.oldObject left where they are in the body instead of copied (a pod is most of a review). They alias the
// body, which lives until the answer is written:
// nothing may keep them beyond Handle (the engine and the Recorder read them and return).
var decodeOptions = jsonv2.JoinOptions(
	jsontext.AllowDuplicateNames(true),
	jsonv2.WithUnmarshalers(jsonv2.UnmarshalFromFunc(func(dec *jsontext.Decoder, re *runtime.RawExtension) error {
		v, err := dec.ReadValue() // from jsonv2.Unmarshal's buffered decoder: a slice of the body itself
		if err != nil {
			return err
		}
		if v.Kind() != 'n' { // null leaves it empty, as RawExtension.UnmarshalJSON does
			re.Raw = v[:len(v):len(v)]
		}
		return nil
	})),
)

// bodyBuffers recycles request bodies: the decoder copies what it keeps but request.object, which is used only
// while the request is answered, so a body is garbage once the answer is written; a recycled buffer also spares
// the repeated growth of io.ReadAll's.
var bodyBuffers = sync.Pool{New: func() any { b := make([]byte, 0, 16<<10); return &b }}

func putBody(b *[]byte) {
	if cap(*b) <= 1<<20 { // a rare huge body is not kept alive
		bodyBuffers.Put(b)
	}
}

// readBody reads at most MaxRequestBytes+1 bytes into buf, sized from Content-Length when the client sent one.
func readBody(r *http.Request, buf []byte) ([]byte, error) {
	if n := r.ContentLength; n > 0 && n <= MaxRequestBytes && int(n) > cap(buf) {
		buf = make([]byte, 0, n+1)
	}
	limited := &io.LimitedReader{R: r.Body, N: MaxRequestBytes + 1}
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := limited.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
}

// jsonContentType is every answer's Content-Type value, shared instead of allocated per answer (Header.Set
// makes a slice each time): net/http copies the values of the handler's header when it writes it
// (Header.Clone), and nothing appends to this one (an Add would reallocate it: its capacity is its length).
var jsonContentType = []string{"application/json"}

// writeReview answers with an AdmissionReview of the request's version (v1 when unknown), encoded by
// appendReview into a recycled buffer and written at once with its Content-Length: an answer over net/http's
// 2 KB of buffering (an injected pod's patch) would otherwise go out chunked, in more writes.
func (s *server) writeReview(w http.ResponseWriter, tm metav1.TypeMeta, resp *admissionv1.AdmissionResponse) {
	if tm.APIVersion == "" {
		tm = metav1.TypeMeta{APIVersion: reviewV1, Kind: reviewKind}
	}
	buf := answerBuffers.Get().(*[]byte)
	out := appendReview((*buf)[:0], tm, resp)
	h := w.Header()
	h["Content-Type"] = jsonContentType
	h["Content-Length"] = []string{strconv.Itoa(len(out))}
	if _, err := w.Write(out); err != nil {
		s.clientErrs.Log("admission: cannot write the response", err, "uid", resp.UID) // the client went away
	}
	if cap(out) <= 1<<20 { // a rare huge answer is not kept alive
		*buf = out[:0]
		answerBuffers.Put(buf)
	}
}
