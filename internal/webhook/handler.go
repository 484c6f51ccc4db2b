// Package webhook answers admission requests for /mutate-v1-pod: New returns the HTTP handler, a thin layer
// between the AdmissionReview on the wire and the injection engine. It reads templates and namespace labels from
// memory (informer-fed stores), never from the API server, and its only side effects are the Recorder's.
package webhook

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/go-logr/logr"
	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/sidecar-dev/sidecar-injector/internal/inject"
	"github.com/sidecar-dev/sidecar-injector/internal/metrics"
)

// Path is where the handler is served on the webhook server.
const Path = "/mutate-v1-pod"

// ReadPodErrorPrefix starts the message of the answer to a pod that cannot be read.
const ReadPodErrorPrefix = "sidecar-injector: cannot read pod: "

// Templates gives the candidate templates for a pod's namespace (internal/store.Templates implements it).
type Templates interface {
	// Index returns the namespace's templates and the cluster-wide ones, indexed (inject.Index); read-only.
	Index(namespace string) *inject.Index
}

// Namespaces gives a namespace's labels (internal/store.Namespaces implements it).
type Namespaces interface {
	// NamespaceLabels returns the labels of the namespace and whether it is known; the map is read-only.
	NamespaceLabels(name string) (map[string]string, bool)
}

// Engine computes the injection for one pod; inject.Inject in production.
type Engine func(inject.Request) (*inject.Result, error)

// Recorder is told about every admission that is not a dry run, after the engine decided; it is the seam for
// side effects (Events, ...). Implementations must not block the admission for long, nor keep req.Object.Raw
// after they return: it is part of a request body that is recycled once the answer is written. req carries what
// the webhook reads of the AdmissionRequest (uid, kind, resource, subResource, name, namespace, operation, object,
// dryRun; see reviewRequest in http.go), not userInfo, options or oldObject.
type Recorder interface {
	Record(ctx context.Context, req admission.Request, res *inject.Result)
}

// Config is what the admission handler depends on; New checks it.
type Config struct {
	// Templates and Namespaces are the in-memory sources; both required.
	Templates  Templates
	Namespaces Namespaces
	// InjectorNamespace is the injector's own namespace (cluster-wide templates live there; its pods are never
	// injected); required.
	InjectorNamespace string
	// Limits bound one admission's work and output (zero fields: inject.DefaultLimits).
	Limits inject.Limits
	// Images is what the platform's image policy may do to a sidecar's image (serve's --image-mirrors and
	// --allow-digest-pinning); the zero value tolerates nothing.
	Images inject.ImageTolerance
	// Metrics receives every request and every admission; required.
	Metrics *metrics.Metrics
	// Recorder, when set, is called for every pod admission that the engine decided, unless the request is a
	// dry run.
	Recorder Recorder
	// Log receives the handler's lines: one per admission at V(1); what a client got wrong through a
	// ClientErrorLog (info level, rate-limited). The zero Logger discards.
	Log logr.Logger
	// Engine defaults to inject.Inject; tests replace it.
	Engine Engine
}

// New returns the HTTP handler to serve on Path. It answers every request with an AdmissionReview: see server
// (http.go) for how the body is read, and handler.Handle for what is decided.
func New(c Config) (http.Handler, error) {
	switch {
	case c.Templates == nil:
		return nil, errors.New("webhook: Config.Templates is required")
	case c.Namespaces == nil:
		return nil, errors.New("webhook: Config.Namespaces is required")
	case c.InjectorNamespace == "":
		return nil, errors.New("webhook: Config.InjectorNamespace is required")
	case c.Metrics == nil:
		return nil, errors.New("webhook: Config.Metrics is required")
	}
	if c.Engine == nil {
		c.Engine = inject.Inject
	}
	clientErrs := NewClientErrorLog(c.Log)
	return newServer(&handler{Config: c, clientErrs: clientErrs}, c, clientErrs, true), nil
}

// newServer puts h behind the HTTP layer. controller-runtime's admission.Webhook recovers a panic of Handle into
// a 500 answer (when recoverPanic; the fuzz targets want the crash) and completes the response (uid, status
// code). Its logger is replaced by ours: the default builds a logger carrying the request's identity for every
// admission, although only debug lines would use it.
func newServer(h admission.Handler, c Config, clientErrs *ClientErrorLog, recoverPanic bool) *server {
	wh := &admission.Webhook{Handler: h, LogConstructor: func(logr.Logger, *admission.Request) logr.Logger { return c.Log }}
	return &server{wh: wh.WithRecoverPanic(recoverPanic), metrics: c.Metrics, clientErrs: clientErrs}
}

// handler answers pod admission requests. Only CREATE of a v1 Pod (no subresource) is mutated; every other
// request is allowed unchanged.
type handler struct {
	Config
	clientErrs *ClientErrorLog // what the request got wrong: the client's doing, logged rate-limited
}

var _ admission.Handler = (*handler)(nil)

// Handle implements admission.Handler.
func (h *handler) Handle(ctx context.Context, req admission.Request) admission.Response {
	log := h.Log
	if req.UID == "" {
		// The API server always sets it; without it the body was not an AdmissionReview request (controller-
		// runtime decodes any JSON object into an empty request).
		err := errors.New("sidecar-injector: the body is not an AdmissionReview with a request: request.uid is empty")
		h.clientErrs.Log("admission: bad request", err, "result", "error")
		return admission.Errored(http.StatusBadRequest, err)
	}
	if req.Resource.Resource == "" || req.Operation == "" {
		// The API server always sets both; a body that only has a uid (an object of another kind, a review
		// cut short) is not an admission request, and allowing it would answer a question nobody asked.
		err := errors.New("sidecar-injector: the body is not an AdmissionReview request: request.resource or request.operation is empty")
		h.clientErrs.Log("admission: bad request", err, "result", "error", "uid", req.UID)
		return admission.Errored(http.StatusBadRequest, err)
	}
	if !isPod(req.Resource) || req.SubResource != "" || req.Operation != admissionv1.Create {
		log.V(1).Info("admission", "result", "ignored", "reason", "not a pod create",
			"operation", req.Operation, "resource", req.Resource, "subResource", req.SubResource)
		return admission.Allowed("")
	}
	if req.Kind.Kind != "" && (req.Kind.Group != "" || req.Kind.Kind != "Pod") {
		err := fmt.Errorf("the request is for resource pods but carries a %s", kindString(req.Kind))
		return h.badPod(req.UID, err)
	}
	if len(req.Object.Raw) == 0 {
		return h.badPod(req.UID, errors.New("the request has no object"))
	}

	nsLabels, known := h.Namespaces.NamespaceLabels(req.Namespace)
	if !known {
		nsLabels = nil // unknown to the engine; the informer may not have seen a brand new namespace yet
	}
	start := time.Now()
	res, err := h.Engine(inject.Request{
		Pod:               req.Object.Raw,
		Namespace:         req.Namespace,
		NamespaceLabels:   nsLabels,
		InjectorNamespace: h.InjectorNamespace,
		Index:             h.Templates.Index(req.Namespace),
		OmitNotApplicable: true, // metrics, Events and logs read only the templates that apply
		Limits:            h.Limits,
		Images:            h.Images,
		Context:           ctx, // the engine stops between templates once the API server has given up
	})
	h.Metrics.ObserveAdmission(res, err, time.Since(start))
	if err != nil {
		return h.badPod(req.UID, err)
	}
	if !isDryRun(req) && h.Recorder != nil {
		h.Recorder.Record(ctx, req, res)
	}

	var resp admission.Response
	result := "unchanged"
	switch {
	case res.Denied:
		result = "denied"
		resp = admission.Denied(res.DenyMessage)
	case len(res.Patch) > 0:
		result = "patched"
		// The engine's own encoding, handed over as bytes: with Patches left empty, controller-runtime does not
		// encode the operations again (which validates and compacts every value once more).
		patch, err := res.AppendPatchJSON(patchBuffer())
		if err != nil {
			return h.badPod(req.UID, err)
		}
		pt := admissionv1.PatchTypeJSONPatch
		resp = admission.Response{AdmissionResponse: admissionv1.AdmissionResponse{Allowed: true, Patch: patch, PatchType: &pt}}
	default:
		resp = admission.Allowed("")
	}
	if len(res.Warnings) > 0 {
		resp = resp.WithWarnings(res.Warnings...)
	}
	if log.V(1).Enabled() {
		kv := []any{"uid", req.UID, "namespace", req.Namespace, "result", result, "templates", injectedKeys(res), "dryRun", isDryRun(req), "namespaceKnown", known}
		if req.Name == "" {
			kv = append(kv, "generateName", podGenerateName(req.Object.Raw))
		}
		if res.PodSkipReason != "" {
			kv = append(kv, "skipReason", res.PodSkipReason)
		}
		if res.Denied {
			kv = append(kv, "message", res.DenyMessage)
		}
		if len(res.Warnings) > 0 {
			kv = append(kv, "warnings", res.Warnings)
		}
		log.V(1).Info("admission", kv...)
	}
	return resp
}

// badPod answers a pod that cannot be read: not allowed, code 400, a message that says what is wrong.
func (h *handler) badPod(uid types.UID, err error) admission.Response {
	msg := ReadPodErrorPrefix + err.Error()
	if pe := (*inject.PodError)(nil); errors.As(err, &pe) {
		msg = ReadPodErrorPrefix + pe.Err.Error()
	}
	h.clientErrs.Log("admission: cannot read pod", err, "result", "error", "uid", uid)
	return admission.Response{AdmissionResponse: admissionv1.AdmissionResponse{
		Allowed: false,
		Result: &metav1.Status{
			Status:  metav1.StatusFailure,
			Code:    http.StatusBadRequest,
			Reason:  metav1.StatusReasonBadRequest,
			Message: msg,
		},
	}}
}

func isPod(r metav1.GroupVersionResource) bool { return r.Group == "" && r.Resource == "pods" }

func isDryRun(req admission.Request) bool { return req.DryRun != nil && *req.DryRun }

func kindString(k metav1.GroupVersionKind) string {
	if k.Group == "" {
		return k.Version + " " + k.Kind
	}
	return k.Group + "/" + k.Version + " " + k.Kind
}

// podGenerateName reads metadata.generateName from the pod, for the log line of a pod that has no name yet.
func podGenerateName(raw []byte) string {
	var p struct {
		Metadata struct {
			GenerateName string `json:"generateName"`
		} `json:"metadata"`
	}
	_ = json.Unmarshal(raw, &p) // the engine has read the pod already; this is for a log line only
	return p.Metadata.GenerateName
}

// injectedKeys names the templates injected by this admission, as namespace/name.
func injectedKeys(res *inject.Result) []string {
	var keys []string
	for _, d := range res.Decisions {
		if d.Outcome == inject.OutcomeInjected {
			keys = append(keys, d.Namespace+"/"+d.Name)
		}
	}
	return keys
}
