package controller

import (
	"context"
	"fmt"
	"sync"
	"time"

	"k8s.io/client-go/util/workqueue"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"
)

// DefaultPodEventDelay is how long a pod's event waits before the templates its record names are reconciled.
// Events of the same template that arrive meanwhile join the waiting request (the work queue keeps one entry
// per template), so a burst of N pod creations for one template costs about one reconcile, one pod count and
// at most one status write per delay instead of up to N of each: the counts in the template's status lag the
// pods by about this much. (controller-runtime's queue counts each delayed add in workqueue_retries_total, so
// for these controllers that metric counts pod events too.)
const DefaultPodEventDelay = time.Second

// PodWatch is the watch of pods' metadata that the status and rolling-restart controllers share, with the
// index of pods by the templates their records name (PodTemplateIndex).
//
// Only the leader needs it: nothing else in the process reads pods (admissions read the pod of the request),
// and the controllers run only on the leader. An informer that the manager's cache knows before it starts runs
// on every replica, leader or not, so the informer is not created at setup (as mgr.GetFieldIndexer().IndexField
// would): the first controller to start, i.e. on the replica that won the lease, creates it and registers the
// index (Source). A follower thus neither receives nor decodes the event of every pod created in the cluster.
// The price is at failover: the new leader lists the pods' metadata once before its controllers run.
type PodWatch struct {
	mgr ctrl.Manager
	// Delay is how long a pod's event waits before its templates are reconciled; zero means
	// DefaultPodEventDelay, a negative value none.
	Delay time.Duration

	once sync.Once
	err  error
}

// NewPodWatch returns the pod watch of mgr's cache; one per manager, shared by its controllers.
func NewPodWatch(mgr ctrl.Manager) *PodWatch { return &PodWatch{mgr: mgr} }

// index creates the pod informer, if nothing has yet, and registers PodTemplateIndex on it, once.
func (w *PodWatch) index(ctx context.Context) error {
	w.once.Do(func() {
		w.err = w.mgr.GetFieldIndexer().IndexField(ctx, podMeta(), PodTemplateIndex, func(o client.Object) []string {
			return TemplateKeysOf(o.GetAnnotations())
		})
		if w.err != nil {
			w.err = fmt.Errorf("index pods by injected template: %w", w.err)
		}
	})
	return w.err
}

// Source is a controller's source of pod events that pass preds, each enqueuing the templates the pod's record
// names (after Delay). Starting it, which a controller does only once it runs, registers the index first.
func (w *PodWatch) Source(preds ...predicate.Predicate) source.Source {
	delay := w.Delay
	if delay == 0 {
		delay = DefaultPodEventDelay
	}
	// Events of the informer's initial list (a new leader's) go behind those of templates people change, as
	// controller-runtime's own handlers do with its priority queue.
	events := handler.WithLowPriorityWhenUnchanged[client.Object, reconcile.Request](podEvents{delay: max(delay, 0)})
	return &indexedPods{w: w, SyncingSource: source.Kind[client.Object](w.mgr.GetCache(), podMeta(), events, preds...)}
}

// indexedPods is a pod source that registers the pod index before it starts.
type indexedPods struct {
	w *PodWatch
	source.SyncingSource
}

func (s *indexedPods) Start(ctx context.Context, q workqueue.TypedRateLimitingInterface[reconcile.Request]) error {
	if err := s.w.index(ctx); err != nil {
		return err
	}
	return s.SyncingSource.Start(ctx, q)
}

// podEvents enqueues, for a pod's event, the templates its record names (podTemplates), after delay: a
// template already waiting keeps its earlier time, so the events of a burst join one request.
type podEvents struct{ delay time.Duration }

func (h podEvents) add(ctx context.Context, o client.Object, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
	if o == nil {
		return
	}
	for _, req := range podTemplates(ctx, o) {
		if h.delay > 0 {
			q.AddAfter(req, h.delay)
		} else {
			q.Add(req)
		}
	}
}

func (h podEvents) Create(ctx context.Context, e event.CreateEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
	h.add(ctx, e.Object, q)
}

// Update enqueues the templates of both records: a template the pod no longer carries loses it from its count.
func (h podEvents) Update(ctx context.Context, e event.UpdateEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
	h.add(ctx, e.ObjectOld, q)
	h.add(ctx, e.ObjectNew, q)
}

func (h podEvents) Delete(ctx context.Context, e event.DeleteEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
	h.add(ctx, e.Object, q)
}

func (h podEvents) Generic(ctx context.Context, e event.GenericEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
	h.add(ctx, e.Object, q)
}
