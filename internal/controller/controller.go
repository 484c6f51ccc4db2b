// Package controller is the SidecarTemplate status controller: it runs in the injector's binary (on the
// leader) and keeps each template's status.observedGeneration and Ready condition up to date with what the API
// server's schema (CEL) cannot check, and counts the pods that carry each template (drift).
package controller

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"golang.org/x/time/rate"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/sidecar-dev/sidecar-injector/internal/api/v1alpha1"
	"github.com/sidecar-dev/sidecar-injector/internal/events"
	"github.com/sidecar-dev/sidecar-injector/internal/inject"
	"github.com/sidecar-dev/sidecar-injector/internal/metrics"
	"github.com/sidecar-dev/sidecar-injector/internal/store"
)

// Name is the controller's name (logs, metrics of controller-runtime).
const Name = "sidecartemplate-status"

// Reasons of the Ready condition.
const (
	// ReasonReady: the template can be injected.
	ReasonReady = "Ready"
	// ReasonInvalid: the template can never be injected; the message says what to change.
	ReasonInvalid = "Invalid"
	// ReasonNameClash: the template adds a name that another template selecting the same pods also adds.
	ReasonNameClash = "NameClash"
	// ReasonOverrideDenied: a namespaced template that a cluster-wide template of the same name keeps from
	// replacing it (namespaceOverride: Deny); it is never used in its namespace.
	ReasonOverrideDenied = "OverrideDenied"
)

// RBAC of the controller; the webhook's own markers (internal/webhook/markers.go) already grant most of it.
// +kubebuilder:rbac:groups=sidecar.dev,resources=sidecartemplates,verbs=get;list;watch
// +kubebuilder:rbac:groups=sidecar.dev,resources=sidecartemplates/status,verbs=get;update;patch
// +kubebuilder:rbac:groups="",resources=pods;namespaces,verbs=get;list;watch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// TemplateReconciler sets status.observedGeneration and the Ready condition of SidecarTemplates.
type TemplateReconciler struct {
	// Client reads from the manager's cache and writes status; mgr.GetClient().
	Client client.Client
	// InjectorNamespace is the injector's own namespace (its templates are cluster-wide).
	InjectorNamespace string
	// Templates, when set, is the webhook's store: its compiled templates and indexes are reused instead of
	// compiling every candidate on each reconcile, and its revisions read (it must be fed them:
	// RegisterRevisions). Nil: the candidates are listed and compiled here, the revisions listed.
	Templates *store.Templates
	// Events, when set, receives the Ready-changed Events.
	Events *events.Recorder
	// Metrics receives each template's readiness; required.
	Metrics *metrics.Metrics
	// Pace bounds the controller's work; the zero value means DefaultPace.
	Pace Pace
	// Pods is the pod watch, shared with the rolling-restart controller; nil: SetupWithManager makes one.
	Pods *PodWatch

	reconciles, writes *rate.Limiter
	// echoes are this controller's own status writes whose watch events are still to come (echo.go).
	echoes echoes
}

// Pace is how fast the status controller may work. It runs in the process that answers admissions, and Go has
// no goroutine priorities, so the controller is kept below admission work by bounding it: one worker, a token
// bucket on reconciles and a smaller one on status writes (each write costs the most: encoding, a round trip,
// and the watch event it brings back). After a start over 10,100 templates that is a backlog worked off at a
// steady few percent of one CPU instead of a burst that takes the whole CPU for seconds. Templates that people
// change are not held up behind that backlog: controller-runtime's priority queue (on by default) serves events
// of the informers' initial list last.
type Pace struct {
	// ReconcilesPerSecond and ReconcileBurst bound reconciles.
	ReconcilesPerSecond float64
	ReconcileBurst      int
	// WritesPerSecond and WriteBurst bound units of writing: what one reconcile writes, a template's new
	// revision and the status that numbers it, or the status alone (writeUnit).
	WritesPerSecond float64
	WriteBurst      int
}

// DefaultPace settles 10,100 templates without status in about 400 s after a start (a restart, with every
// status current, in about 70 s). Measured by TestStartAtScale at the benchmark's shape (10,000 templates in
// 1,000 namespaces and 100 cluster-wide), on a shared machine: a template's first reconcile creates its revision
// and writes its status, one unit of writing (writeUnit); the first start took 439 s and 32 CPU s (about 3 ms
// per template: both writes, their watch events, the store taking in the revision; the echo of the status
// write is not reconciled), the restart 73 s and 9.3 CPU s (about 0.9 ms per reconcile without a write). The
// controller stays near 7% of one core while it works off a start, and admissions keep more than 0.9 of it
// (README, "Template status"). Those figures predate the compact caches (templates and revisions held as JSON,
// decoded for each reconcile): one make bench-memory with them, on a busy machine, settled 427 s after a first
// start and 92 s after a restart; make bench, quiet, 348 s after a first start.
var DefaultPace = Pace{ReconcilesPerSecond: 150, ReconcileBurst: 30, WritesPerSecond: 25, WriteBurst: 10}

// Unlimited is a Pace that does not hold the controller back (tests).
var Unlimited = Pace{ReconcilesPerSecond: math.Inf(1), WritesPerSecond: math.Inf(1)}

func (p Pace) limiters() (reconciles, writes *rate.Limiter) {
	if p == (Pace{}) {
		p = DefaultPace
	}
	return rate.NewLimiter(rate.Limit(p.ReconcilesPerSecond), max(p.ReconcileBurst, 1)),
		rate.NewLimiter(rate.Limit(p.WritesPerSecond), max(p.WriteBurst, 1))
}

// podMeta is the metadata-only view of pods that the controller watches and indexes.
func podMeta() *metav1.PartialObjectMetadata {
	return &metav1.PartialObjectMetadata{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"}}
}

// SetupWithManager registers the controller. Pods and namespaces are watched as metadata only (the controller
// reads only annotations and labels), sharing informers with anything else in the manager that watches their
// metadata; the pods' informer and index only once the controller starts, on the leader (PodWatch).
func (r *TemplateReconciler) SetupWithManager(_ context.Context, mgr ctrl.Manager) error {
	if r.Metrics == nil {
		return errors.New("TemplateReconciler.Metrics is required")
	}
	if r.Pods == nil {
		r.Pods = NewPodWatch(mgr)
	}
	r.reconciles, r.writes = r.Pace.limiters()
	return ctrl.NewControllerManagedBy(mgr).
		Named(Name).
		// One worker: with the limiters, what keeps the controller below admission work (Pace).
		WithOptions(controller.Options{MaxConcurrentReconciles: 1}).
		// Every change of the template, its status included (a reconcile compares against the cached status,
		// which can be stale: the event of anyone else's change brings one more look at the fresh object), but
		// the echo of this controller's own status write, which is exactly what it wrote (echoes).
		// Revisions are not watched: the template's own events bring every look they need, and a look caused
		// by a revision's creation would race the status write with a stale status.
		For(&v1alpha1.SidecarTemplate{}, builder.WithPredicates(r.echoes.predicate())).
		// A template's change can create or resolve a clash in the templates it may meet.
		// Not for the informer's initial list: at a start every template is reconciled anyway, and a
		// cluster-wide template's neighbours are all templates (100 of them would enqueue 10,100 each).
		Watches(&v1alpha1.SidecarTemplate{}, handler.EnqueueRequestsFromMapFunc(r.neighbours),
			builder.WithPredicates(predicate.GenerationChangedPredicate{}, notInitialList())).
		// A pod's record names the templates whose counts it changes; nothing else is enqueued.
		WatchesRawSource(r.Pods.Source(recordChanged())).
		// A namespace's labels decide which cluster-wide templates its templates can clash with.
		WatchesMetadata(&corev1.Namespace{}, handler.EnqueueRequestsFromMapFunc(r.namespaceTemplates),
			builder.WithPredicates(predicate.LabelChangedPredicate{}, notInitialList())).
		Complete(r)
}

// wait takes a token from l; without a limiter (a reconciler not set up with a manager), at once.
func wait(ctx context.Context, l *rate.Limiter) error {
	if l == nil {
		return nil
	}
	return l.Wait(ctx)
}

// notInitialList drops the creations that the informer's initial list reports.
func notInitialList() predicate.Predicate {
	return predicate.Funcs{CreateFunc: func(e event.CreateEvent) bool { return !e.IsInInitialList }}
}

// podTemplates maps a pod to the templates its record names.
func podTemplates(_ context.Context, o client.Object) []reconcile.Request {
	keys := TemplateKeysOf(o.GetAnnotations())
	reqs := make([]reconcile.Request, 0, len(keys))
	for _, k := range keys {
		ns, name, _ := strings.Cut(k, "/")
		reqs = append(reqs, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: ns, Name: name}})
	}
	return reqs
}

// recordChanged lets through pod creations and deletions with a record, and updates that change the record or
// start the pod's deletion; pods' frequent status updates are dropped.
func recordChanged() predicate.Predicate {
	has := func(o client.Object) bool { _, ok := o.GetAnnotations()[v1alpha1.AnnotationStatus]; return ok }
	return predicate.Funcs{
		CreateFunc:  func(e event.CreateEvent) bool { return has(e.Object) },
		DeleteFunc:  func(e event.DeleteEvent) bool { return has(e.Object) },
		GenericFunc: func(e event.GenericEvent) bool { return has(e.Object) },
		UpdateFunc: func(e event.UpdateEvent) bool {
			if e.ObjectOld == nil || e.ObjectNew == nil {
				return false
			}
			oldRec, newRec := e.ObjectOld.GetAnnotations()[v1alpha1.AnnotationStatus], e.ObjectNew.GetAnnotations()[v1alpha1.AnnotationStatus]
			return oldRec != newRec || (e.ObjectOld.GetDeletionTimestamp() == nil) != (e.ObjectNew.GetDeletionTimestamp() == nil)
		},
	}
}

// neighbours maps a template to the other templates whose clashes it may change: those of its namespace, and
// every template when it is cluster-wide.
func (r *TemplateReconciler) neighbours(ctx context.Context, o client.Object) []reconcile.Request {
	var opts []client.ListOption
	if r.InjectorNamespace == "" || o.GetNamespace() != r.InjectorNamespace {
		opts = append(opts, client.InNamespace(o.GetNamespace()))
	}
	return r.templateRequests(ctx, o, opts...)
}

// namespaceTemplates maps a namespace to its templates.
func (r *TemplateReconciler) namespaceTemplates(ctx context.Context, o client.Object) []reconcile.Request {
	return r.templateRequests(ctx, nil, client.InNamespace(o.GetName()))
}

func (r *TemplateReconciler) templateRequests(ctx context.Context, except client.Object, opts ...client.ListOption) []reconcile.Request {
	var list v1alpha1.SidecarTemplateList
	// Only names are read: the cache's objects are not copied.
	if err := r.Client.List(ctx, &list, append(opts, client.UnsafeDisableDeepCopy)...); err != nil {
		logf.FromContext(ctx).Error(err, "list templates to re-check clashes")
		return nil
	}
	var reqs []reconcile.Request
	for i := range list.Items {
		t := &list.Items[i]
		if except != nil && t.Namespace == except.GetNamespace() && t.Name == except.GetName() {
			continue
		}
		reqs = append(reqs, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: t.Namespace, Name: t.Name}})
	}
	return reqs
}

// Reconcile implements reconcile.Reconciler.
func (r *TemplateReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	log := logf.FromContext(ctx)
	m := r.Metrics
	if err := wait(ctx, r.reconciles); err != nil {
		return ctrl.Result{}, err
	}
	var t v1alpha1.SidecarTemplate
	if err := r.Client.Get(ctx, req.NamespacedName, &t); err != nil {
		if apierrors.IsNotFound(err) {
			m.ForgetTemplate(req.Namespace, req.Name)
			return ctrl.Result{}, nil
		}
		return ctrl.Result{}, err
	}
	r.echoes.forget(req.NamespacedName) // the echo of an earlier write, if still to come, brings one more look
	compiled := r.compile(&t)
	cond, err := r.readiness(ctx, &t, compiled)
	if errors.Is(err, errStoreBehind) {
		return ctrl.Result{RequeueAfter: storeBehindRetry}, nil
	}
	if err != nil {
		return ctrl.Result{}, err
	}
	unit := &writeUnit{limiter: r.writes}
	history, err := r.syncRevisions(ctx, &t, compiled.Hash, unit)
	if errors.Is(err, errRevisionNotCached) {
		return ctrl.Result{RequeueAfter: time.Second}, nil
	}
	if err != nil {
		return ctrl.Result{}, err
	}
	drift, err := r.Drift(ctx, &t, compiled.Hash)
	if err != nil {
		return ctrl.Result{}, err
	}
	log.V(1).Info("template", "ready", cond.Status, "reason", cond.Reason, "generation", t.Generation,
		"hash", compiled.Hash, "revision", history.Current, "stableRevision", history.Stable, "injectedPods", drift.Injected, "outdatedPods", drift.Outdated)

	prev := meta.FindStatusCondition(t.Status.Conditions, v1alpha1.ConditionReady)
	// A first verdict of Ready is not news (and a start over 10,100 fresh templates would raise as many Events);
	// a first verdict that the template cannot be injected is.
	readyChanged := prev == nil && cond.Status != metav1.ConditionTrue || prev != nil && (prev.Status != cond.Status || prev.Reason != cond.Reason)
	orig := t.DeepCopy()
	t.Status.ObservedGeneration = t.Generation
	meta.SetStatusCondition(&t.Status.Conditions, cond)
	t.Status.InjectedPods, t.Status.OutdatedPods = drift.Injected, drift.Outdated
	t.Status.CurrentRevision, t.Status.StableRevision = history.Current, history.Stable
	t.Status.Revisions = PodsPerRevision(drift, history.ByHash)
	t.Status.PodsPerRevision = podsPerRevision(t.Status.Revisions)
	if !equality.Semantic.DeepEqual(orig.Status, t.Status) {
		if err := unit.wait(ctx); err != nil {
			return ctrl.Result{}, err
		}
		r.echoes.writing(&t)
		if err := r.Client.Status().Update(ctx, &t); err != nil {
			r.echoes.forget(req.NamespacedName)
			if apierrors.IsConflict(err) || apierrors.IsNotFound(err) {
				// Someone else changed the template (or deleted it) meanwhile: look again, with the new version.
				return ctrl.Result{RequeueAfter: time.Second}, nil
			}
			return ctrl.Result{}, fmt.Errorf("update status: %w", err)
		}
	}
	ready := cond.Status == metav1.ConditionTrue
	m.SetTemplateReady(t.Namespace, t.Name, ready)
	if readyChanged && r.Events != nil {
		r.Events.TemplateReadyChanged(&t, ready, cond.Reason, cond.Message)
	}
	return ctrl.Result{}, nil
}

// errStoreBehind: the store has not yet taken in every template change the cache holds (store.CaughtUp); the
// clash and override checks would read a template that changed or is gone. The store's handler is moments
// behind: the reconcile is retried after storeBehindRetry.
var errStoreBehind = errors.New("the template store has not yet taken in the cache's latest templates")

const storeBehindRetry = 100 * time.Millisecond

// readiness decides the Ready condition.
func (r *TemplateReconciler) readiness(ctx context.Context, t *v1alpha1.SidecarTemplate, compiled *inject.Template) (metav1.Condition, error) {
	cond := metav1.Condition{Type: v1alpha1.ConditionReady, ObservedGeneration: t.Generation}
	if compiled.Err != nil {
		cond.Status, cond.Reason, cond.Message = metav1.ConditionFalse, ReasonInvalid, compiled.Err.Error()
		return cond, nil
	}
	if compiled.Selector() != nil || !compiled.ClusterWide {
		offered, err := r.offered(ctx, compiled)
		if err != nil {
			return cond, err
		}
		// The engine's override rule (inject.OverrideOf, through Offered) leaves a namespaced template out when a
		// cluster-wide template of its name serves the namespace under namespaceOverride: Deny.
		if !compiled.ClusterWide && !slices.ContainsFunc(offered, func(o *inject.Template) bool {
			return o.Namespace == t.Namespace && o.Name == t.Name
		}) {
			cond.Status, cond.Reason = metav1.ConditionFalse, ReasonOverrideDenied
			cond.Message = inject.OverrideDeniedMessage(t.Name, r.InjectorNamespace)
			return cond, nil
		}
		if compiled.Selector() == nil {
			cond.Status, cond.Reason, cond.Message = metav1.ConditionTrue, ReasonReady, ReadyMessage(t)
			return cond, nil
		}
		if clashes := Clashes(compiled, offered); len(clashes) > 0 {
			cond.Status, cond.Reason, cond.Message = metav1.ConditionFalse, ReasonNameClash, strings.Join(clashes, "; ")
			return cond, nil
		}
	}
	cond.Status, cond.Reason, cond.Message = metav1.ConditionTrue, ReasonReady, ReadyMessage(t)
	return cond, nil
}

// compile returns t compiled: the store's copy when it has this very version, else compiled now (and kept by
// neither: the store keeps what admissions compiled).
func (r *TemplateReconciler) compile(t *v1alpha1.SidecarTemplate) *inject.Template {
	if r.Templates != nil {
		if c := r.Templates.PeekTemplate(t.Namespace, t.Name); c != nil && c.Generation == t.Generation && t.Generation != 0 {
			return c
		}
	}
	return inject.Compile(t, r.InjectorNamespace)
}

// offered returns the templates that may serve pods of t's namespace, by the engine's rule (Index.Offered):
// from the store (Peek: what admissions use, without making it keep more) when there is a store, else listed
// and compiled.
func (r *TemplateReconciler) offered(ctx context.Context, t *inject.Template) ([]*inject.Template, error) {
	nsLabels, err := r.namespaceLabels(ctx, t)
	if err != nil {
		return nil, err
	}
	if r.Templates != nil {
		namespace := t.Namespace
		if t.ClusterWide {
			namespace = r.InjectorNamespace
		}
		if !r.Templates.CaughtUp(namespace, r.InjectorNamespace) {
			return nil, errStoreBehind
		}
		return r.Templates.Peek(namespace).Offered(nsLabels), nil
	}
	candidates, err := r.candidates(ctx, t)
	if err != nil {
		return nil, err
	}
	all := make([]*inject.Template, len(candidates))
	for i := range candidates {
		all[i] = inject.Compile(&candidates[i], r.InjectorNamespace)
	}
	return offeredWith(t, all, r.InjectorNamespace, nsLabels), nil
}

// ReadyMessage is the message of a Ready=True condition; it names the parameters pods must set.
func ReadyMessage(t *v1alpha1.SidecarTemplate) string {
	var required []string
	for _, p := range t.Spec.Parameters {
		if p.Default == nil {
			required = append(required, fmt.Sprintf("%q (annotation %s%s%s)", p.Name, t.Name, v1alpha1.ParamAnnotationSuffix, p.Name))
		}
	}
	msg := "the template can be injected"
	if len(required) > 0 {
		msg += "; pods that receive it must set parameter " + strings.Join(required, ", ")
	}
	return msg
}

// candidates lists the templates t may meet in a pod: its namespace's and, for a namespaced template, the
// cluster-wide ones.
func (r *TemplateReconciler) candidates(ctx context.Context, t *inject.Template) ([]v1alpha1.SidecarTemplate, error) {
	var own v1alpha1.SidecarTemplateList
	if err := r.Client.List(ctx, &own, client.InNamespace(t.Namespace)); err != nil {
		return nil, fmt.Errorf("list templates in %s: %w", t.Namespace, err)
	}
	if r.InjectorNamespace == "" || t.ClusterWide {
		return own.Items, nil
	}
	var cluster v1alpha1.SidecarTemplateList
	if err := r.Client.List(ctx, &cluster, client.InNamespace(r.InjectorNamespace)); err != nil {
		return nil, fmt.Errorf("list cluster-wide templates: %w", err)
	}
	return append(own.Items, cluster.Items...), nil
}

// namespaceLabels returns the labels of a namespaced template's namespace; nil when unknown, or for a
// cluster-wide template.
func (r *TemplateReconciler) namespaceLabels(ctx context.Context, t *inject.Template) (map[string]string, error) {
	if r.InjectorNamespace == "" || t.ClusterWide {
		return nil, nil
	}
	ns := &metav1.PartialObjectMetadata{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Namespace"}}
	if err := r.Client.Get(ctx, types.NamespacedName{Name: t.Namespace}, ns); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("get namespace %s: %w", t.Namespace, err)
	}
	if ns.Labels == nil {
		return map[string]string{}, nil
	}
	return ns.Labels, nil
}

// Drift counts the pods that carry t, and those carrying another version than hash, from the cache's index: it
// never lists all pods, and only reads them (the cache's objects are not copied).
func (r *TemplateReconciler) Drift(ctx context.Context, t *v1alpha1.SidecarTemplate, hash string) (Drift, error) {
	pods := &metav1.PartialObjectMetadataList{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "PodList"}}
	opts := []client.ListOption{client.MatchingFields{PodTemplateIndex: TemplateKey(t.Namespace, t.Name)}, client.UnsafeDisableDeepCopy}
	if r.InjectorNamespace == "" || t.Namespace != r.InjectorNamespace {
		opts = append(opts, client.InNamespace(t.Namespace)) // a namespaced template only serves its namespace
	}
	if err := r.Client.List(ctx, pods, opts...); err != nil {
		return Drift{}, fmt.Errorf("list pods carrying %s/%s: %w", t.Namespace, t.Name, err)
	}
	return CountDrift(pods.Items, t.Namespace, t.Name, hash), nil
}
