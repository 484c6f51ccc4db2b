// Package events turns the injector's decisions into Kubernetes Events (events.k8s.io/v1) that the people who
// own the objects can see with `kubectl describe` / `kubectl events`:
//
//   - on a pod's controller (its ReplicaSet, Job, StatefulSet, ...) when a template the pod requested or that
//     selected it was Skipped (failurePolicy Ignore) or Denied (failurePolicy Fail), or when a namespaced template
//     replaced the cluster-wide one of its name for the pod (reason Shadowed, type Normal), rate-limited so that
//     a controller re-creating pods in a loop cannot flood etcd;
//   - on a SidecarTemplate when its Ready condition changes, and for each step of its rolling restart.
//
// Pods themselves get no Event: at admission a controller's pod has no name yet, and a denied pod never exists.
package events

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"
	"unicode/utf8"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	k8sevents "k8s.io/client-go/tools/events"
	"k8s.io/utils/lru"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/sidecar-dev/sidecar-injector/internal/api/v1alpha1"
	"github.com/sidecar-dev/sidecar-injector/internal/inject"
)

// Actions of the Events (events.k8s.io/v1 requires one).
const (
	ActionInject    = "Inject"
	ActionReconcile = "Reconcile"
	ActionRestart   = "Restart"
)

// ReasonReady is the Event reason when a template becomes Ready.
const ReasonReady = "Ready"

// MaxNoteBytes is the longest note the API server accepts on an events.k8s.io/v1 Event; longer messages are
// cut (on a rune boundary) and end with "...".
const MaxNoteBytes = 1024

// Defaults of the pod-owner rate limit.
const (
	DefaultInterval = time.Minute
	DefaultMaxKeys  = 4096
)

// Recorder emits the injector's Events. It is safe for concurrent use.
type Recorder struct {
	rec      k8sevents.EventRecorder
	interval time.Duration
	maxKeys  int
	now      func() time.Time

	// last holds when each (owner, template, reason) last emitted, the least recently emitted evicted beyond
	// maxKeys; it locks itself.
	last *lru.Cache
}

type limitKey struct {
	owner    types.UID
	template string // namespace/name
	reason   inject.Reason
}

// Option configures a Recorder.
type Option func(*Recorder)

// WithInterval sets the least time between two Events for the same (owner uid, template, reason); default one
// minute. Zero or less disables the limit.
func WithInterval(d time.Duration) Option { return func(r *Recorder) { r.interval = d } }

// WithMaxKeys bounds the rate limiter's memory: beyond n (owner, template, reason) keys the least recently
// emitted is forgotten (it may then emit again before its interval is over). Default 4096.
func WithMaxKeys(n int) Option { return func(r *Recorder) { r.maxKeys = n } }

// WithClock replaces time.Now, for tests.
func WithClock(now func() time.Time) Option { return func(r *Recorder) { r.now = now } }

// NewRecorder returns a Recorder writing through rec, e.g. mgr.GetEventRecorder("sidecar-injector").
func NewRecorder(rec k8sevents.EventRecorder, opts ...Option) *Recorder {
	r := &Recorder{rec: rec, interval: DefaultInterval, maxKeys: DefaultMaxKeys, now: time.Now}
	for _, o := range opts {
		o(r)
	}
	r.maxKeys = max(r.maxKeys, 1)
	r.last = lru.New(r.maxKeys)
	return r
}

// ControllerOf returns the owner reference with controller: true, or nil.
func ControllerOf(owners []metav1.OwnerReference) *metav1.OwnerReference {
	for i := range owners {
		if c := owners[i].Controller; c != nil && *c {
			return &owners[i]
		}
	}
	return nil
}

// PodDecisions reports, on the controller of a pod being created in namespace, every template that the pod
// requested or that selected it and that was Skipped or Denied: a Warning Event whose reason is the decision's
// reason (Conflict, MissingParameter, Invalid, NotFound) and whose note is the decision's message and what
// happened to the pod. Templates skipped only because another one denied the pod (PodDenied) get none. Nothing is
// emitted for a dry run, for a pod without a controller, or for a (owner, template, reason) that had an Event
// less than the interval ago.
func (r *Recorder) PodDecisions(namespace string, owners []metav1.OwnerReference, dryRun bool, res *inject.Result) {
	if dryRun || res == nil || r == nil || r.rec == nil {
		return
	}
	if !slices.ContainsFunc(res.Decisions, notable) {
		return
	}
	owner := ControllerOf(owners)
	if owner == nil {
		return
	}
	ref := &corev1.ObjectReference{APIVersion: owner.APIVersion, Kind: owner.Kind, Name: owner.Name,
		UID: owner.UID, Namespace: namespace}
	for i := range res.Decisions {
		d := &res.Decisions[i]
		if d.Reason == inject.ReasonPodDenied {
			continue // not this template's failure: the Event of the template that denied the pod says why
		}
		var note string
		eventType := corev1.EventTypeWarning
		switch {
		case d.Outcome == inject.OutcomeSkipped:
			note = d.Message + ": the pod was admitted without this template (failurePolicy Ignore)"
		case d.Outcome == inject.OutcomeDenied && d.Reason == inject.ReasonOutdated:
			note = d.Message + ": the pod was denied (spec.updatePolicy.stalePods Deny)"
		case d.Outcome == inject.OutcomeDenied:
			note = d.Message + ": the pod was denied (failurePolicy Fail)"
		case d.Reason == inject.ReasonShadowed:
			eventType = corev1.EventTypeNormal
			note = fmt.Sprintf("the cluster-wide sidecar template %s/%s was replaced by the template %s/%s of the pod's namespace (its spec.namespaceOverride is Allow)",
				d.Namespace, d.Name, namespace, d.Name)
		default:
			continue
		}
		key := limitKey{owner: owner.UID, template: d.Namespace + "/" + d.Name, reason: d.Reason}
		if !r.allow(key) {
			continue
		}
		r.rec.Eventf(ref, nil, eventType, string(d.Reason), ActionInject, "%s", truncate(note))
	}
}

// notable reports whether a decision is worth an Event on the pod's controller: a template that failed for the
// pod, or a cluster-wide template that a namespaced one replaced for it.
func notable(d inject.Decision) bool {
	return d.Outcome == inject.OutcomeSkipped || d.Outcome == inject.OutcomeDenied || d.Reason == inject.ReasonShadowed
}

// Record implements the webhook's Recorder seam (internal/webhook.Recorder): it reads the pod's owner
// references from the request and calls PodDecisions. The pod is decoded only when a decision needs an Event.
func (r *Recorder) Record(_ context.Context, req admission.Request, res *inject.Result) {
	if res == nil || (req.DryRun != nil && *req.DryRun) {
		return
	}
	for i := range res.Decisions {
		if notable(res.Decisions[i]) {
			var pod struct {
				Metadata struct {
					OwnerReferences []metav1.OwnerReference `json:"ownerReferences"`
				} `json:"metadata"`
			}
			if err := json.Unmarshal(req.Object.Raw, &pod); err != nil {
				return // the engine read the pod, so this does not happen; no owner to tell anyway
			}
			r.PodDecisions(req.Namespace, pod.Metadata.OwnerReferences, false, res)
			return
		}
	}
}

// TemplateReadyChanged reports a change of a template's Ready condition on the template: a Normal Event with
// reason Ready when it became ready, else a Warning with the condition's reason and message. Not rate-limited:
// it follows changes of the template, which people make.
func (r *Recorder) TemplateReadyChanged(t *v1alpha1.SidecarTemplate, ready bool, reason, msg string) {
	if r == nil || r.rec == nil || t == nil {
		return
	}
	ref := &corev1.ObjectReference{APIVersion: v1alpha1.GroupVersion.String(), Kind: "SidecarTemplate",
		Name: t.Name, Namespace: t.Namespace, UID: t.UID, ResourceVersion: t.ResourceVersion}
	eventType := corev1.EventTypeWarning
	if ready {
		eventType = corev1.EventTypeNormal
	}
	if reason == "" {
		reason = ReasonReady
	}
	r.rec.Eventf(ref, nil, eventType, reason, ActionReconcile, "%s", truncate(msg))
}

// TemplateRestart reports a step of a template's rolling restart on the template: a workload restarted
// (Normal), or the restart stopped (Warning, with the condition's reason and message). Not rate-limited: there is
// one Event per workload restarted, and at most one per stop.
func (r *Recorder) TemplateRestart(t *v1alpha1.SidecarTemplate, warning bool, reason, msg string) {
	if r == nil || r.rec == nil || t == nil {
		return
	}
	ref := &corev1.ObjectReference{APIVersion: v1alpha1.GroupVersion.String(), Kind: "SidecarTemplate",
		Name: t.Name, Namespace: t.Namespace, UID: t.UID, ResourceVersion: t.ResourceVersion}
	eventType := corev1.EventTypeNormal
	if warning {
		eventType = corev1.EventTypeWarning
	}
	r.rec.Eventf(ref, nil, eventType, reason, ActionRestart, "%s", truncate(msg))
}

// allow reports whether an Event for key may be emitted now, and if so records it. Get and Add are two steps:
// two admissions of one owner at the same instant may both emit, which only costs one Event more.
func (r *Recorder) allow(key limitKey) bool {
	if r.interval <= 0 {
		return true
	}
	now := r.now()
	if last, ok := r.last.Get(key); ok && now.Sub(last.(time.Time)) < r.interval {
		return false
	}
	r.last.Add(key, now)
	return true
}

// tracked returns how many keys the limiter holds (tests).
func (r *Recorder) tracked() int { return r.last.Len() }

func truncate(s string) string {
	if len(s) <= MaxNoteBytes {
		return s
	}
	cut := MaxNoteBytes - len("...")
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "..."
}
