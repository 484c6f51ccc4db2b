package controller

import (
	"context"
	"sync"

	"golang.org/x/time/rate"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/predicate"

	"github.com/sidecar-dev/sidecar-injector/internal/api/v1alpha1"
	"github.com/sidecar-dev/sidecar-injector/internal/store"
)

// echoes remembers, per template, the status write the controller is making or made last, so that the watch
// event of that write is not reconciled: the object it brings is the one the reconcile just computed and wrote
// (an update is conditional on the version it read), so that look could only find nothing to do. It was a
// second reconcile per written template, about a fifth of a template's CPU on a start over 1,010 templates
// (TestStartAtScale's CPU profile), and it raced the revision informer: a look before that cache had the new
// revision created it again. The event is recognised by what it is, not by the version the write returns,
// because it may arrive before the write's answer: an update from the version the write was based on, to the
// same generation and exactly the status written. Anyone else's change is another update, and is reconciled.
// A reconcile of the template that starts before the echo arrived forgets the write: it read the
// template from a cache without that write, so it may have skipped a write of its own against a stale status,
// and the echo's look is what corrects that.
type echoes struct{ writes sync.Map } // types.NamespacedName → *statusWrite

// statusWrite is one status write: the version it updates and what it writes.
type statusWrite struct {
	from       string
	generation int64
	status     v1alpha1.SidecarTemplateStatus
}

// writing records the status write of t (its version as read, the status to write) before it is made.
func (e *echoes) writing(t *v1alpha1.SidecarTemplate) {
	w := &statusWrite{from: t.ResourceVersion, generation: t.Generation, status: *t.Status.DeepCopy()}
	for i := range w.status.Conditions { // as the API server keeps them: to the second
		c := &w.status.Conditions[i]
		c.LastTransitionTime = c.LastTransitionTime.Rfc3339Copy()
	}
	e.writes.Store(keyOf(t), w)
}

// forget forgets the last write to the template key: it did not happen, or a reconcile is looking at the
// template before its echo arrived.
func (e *echoes) forget(key types.NamespacedName) { e.writes.Delete(key) }

// echo reports whether the update from old to o is the controller's last write, and forgets that write.
func (e *echoes) echo(old, o client.Object) bool {
	status := templateStatus(o)
	if status == nil || old == nil {
		return false
	}
	v, ok := e.writes.Load(keyOf(o))
	if !ok {
		return false
	}
	w := v.(*statusWrite)
	if old.GetResourceVersion() != w.from || o.GetGeneration() != w.generation || !equality.Semantic.DeepEqual(*status, w.status) {
		return false
	}
	e.writes.CompareAndDelete(keyOf(o), v)
	return true
}

// predicate drops the update events that are echoes of the controller's own writes, and forgets a template's
// last write when it is deleted.
func (e *echoes) predicate() predicate.Predicate {
	return predicate.Funcs{
		UpdateFunc: func(ev event.UpdateEvent) bool { return ev.ObjectNew == nil || !e.echo(ev.ObjectOld, ev.ObjectNew) },
		DeleteFunc: func(ev event.DeleteEvent) bool {
			if ev.Object != nil {
				e.writes.Delete(keyOf(ev.Object))
			}
			return true
		},
	}
}

func keyOf(o client.Object) types.NamespacedName {
	return types.NamespacedName{Namespace: o.GetNamespace(), Name: o.GetName()}
}

// writeUnit is one reconcile's writes, paced as one unit of work (Pace.WritesPerSecond): a template's first
// reconcile creates its revision and writes the status that numbers it, two writes that make one change, and
// pacing them as one keeps a start over 10,100 templates at one token per template (about 400 s at the default
// pace) instead of two.
type writeUnit struct {
	limiter *rate.Limiter
	taken   bool
}

// wait takes the unit's token before its first write; later writes of the unit go at once.
func (u *writeUnit) wait(ctx context.Context) error {
	if u.taken {
		return nil
	}
	u.taken = true
	return wait(ctx, u.limiter)
}

// templateStatus returns the status of a template as the informer hands it on: the store's form
// (store.StoredTemplate), or typed (a cache without store.TemplateTransform); nil for any other object.
func templateStatus(o client.Object) *v1alpha1.SidecarTemplateStatus {
	switch t := o.(type) {
	case *store.StoredTemplate:
		return &t.Status
	case *v1alpha1.SidecarTemplate:
		return &t.Status
	}
	return nil
}
