// Package floorserver is the review floor of the benchmark: the least an admission webhook must do, to compare
// the injector with. test/bench/floor serves it as a process (make bench); test/bench/inprocess runs it in the
// same binary as the injector's handler chain. It serves every path over TLS 1.3 and HTTP/1.1 keep-alive (no
// HTTP/2), reads the AdmissionReview with encoding/json and answers allowed with a fixed one-operation JSON patch.
package floorserver

import (
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Patch is the floor's answer to every pod: one add operation.
var Patch = []byte(`[{"op":"add","path":"/metadata/annotations/floor.bench.sidecar.dev~1seen","value":"true"}]`)

// maxBody bounds the request body as controller-runtime's webhook does (7 MiB).
const maxBody = 7 << 20

// NewServer returns an HTTP/1.1-only server with TLS 1.3 and cert.
func NewServer(h http.Handler, cert tls.Certificate) *http.Server {
	return &http.Server{
		Handler: h,
		TLSConfig: &tls.Config{
			MinVersion:   tls.VersionTLS13,
			Certificates: []tls.Certificate{cert},
			NextProtos:   []string{"http/1.1"},
		},
		// A non-nil empty map turns HTTP/2 off.
		TLSNextProto:      map[string]func(*http.Server, *tls.Conn, http.Handler){},
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          log.New(io.Discard, "", 0),
	}
}

// Handler answers AdmissionReviews.
type Handler struct {
	decodePod bool
}

// NewHandler returns the handler of mode "review" or "pod".
func NewHandler(mode string) (*Handler, error) {
	switch mode {
	case "review":
		return &Handler{}, nil
	case "pod":
		return &Handler{decodePod: true}, nil
	}
	return nil, fmt.Errorf("-mode=%q: want review or pod", mode)
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		http.Error(w, "POST an AdmissionReview", http.StatusMethodNotAllowed)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var review admissionv1.AdmissionReview
	if err := json.Unmarshal(body, &review); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if review.Request == nil {
		http.Error(w, "the AdmissionReview has no request", http.StatusBadRequest)
		return
	}
	if h.decodePod {
		var pod corev1.Pod
		if err := json.Unmarshal(review.Request.Object.Raw, &pod); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
	}
	pt := admissionv1.PatchTypeJSONPatch
	out, err := json.Marshal(admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Response: &admissionv1.AdmissionResponse{UID: review.Request.UID, Allowed: true, PatchType: &pt, Patch: Patch},
	})
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(out)
}
