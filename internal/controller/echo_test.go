package controller

import (
	"context"
	"testing"
	"time"

	"golang.org/x/time/rate"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/event"

	"github.com/sidecar-dev/sidecar-injector/internal/api/v1alpha1"
)

// written returns the template read from the cache (version 5) and the template with the status the controller
// writes over it (a condition time to the nanosecond, which the API server keeps to the second).
func written() (read, write *v1alpha1.SidecarTemplate) {
	read = &v1alpha1.SidecarTemplate{ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", Name: "proxy", ResourceVersion: "5", Generation: 2}}
	write = read.DeepCopy()
	write.Status.ObservedGeneration, write.Status.InjectedPods = 2, 3
	meta.SetStatusCondition(&write.Status.Conditions, metav1.Condition{Type: v1alpha1.ConditionReady, Status: metav1.ConditionTrue,
		Reason: ReasonReady, LastTransitionTime: metav1.NewTime(time.Date(2026, 1, 2, 3, 4, 5, 678, time.UTC))})
	return read, write
}

func TestTheEchoOfTheControllersOwnStatusWriteIsNotReconciled(t *testing.T) {
	update := func(old, o *v1alpha1.SidecarTemplate) event.UpdateEvent {
		return event.UpdateEvent{ObjectOld: old, ObjectNew: o}
	}
	key := types.NamespacedName{Namespace: "team-a", Name: "proxy"}
	tests := []struct {
		name      string
		event     func(read, write *v1alpha1.SidecarTemplate) event.UpdateEvent
		forget    bool
		reconcile bool
	}{
		{name: "the write's own echo is dropped", reconcile: false,
			event: func(read, write *v1alpha1.SidecarTemplate) event.UpdateEvent {
				echo := write.DeepCopy()
				echo.ResourceVersion = "6"
				echo.Status.Conditions[0].LastTransitionTime = echo.Status.Conditions[0].LastTransitionTime.Rfc3339Copy()
				return update(read, echo)
			}},
		{name: "a change of the spec over the same version is reconciled", reconcile: true,
			event: func(read, write *v1alpha1.SidecarTemplate) event.UpdateEvent {
				o := write.DeepCopy()
				o.Generation = 3
				return update(read, o)
			}},
		{name: "another status than the one written is reconciled", reconcile: true,
			event: func(read, write *v1alpha1.SidecarTemplate) event.UpdateEvent {
				o := write.DeepCopy()
				o.Status.InjectedPods = 4
				return update(read, o)
			}},
		{name: "an update from another version than the one written over is reconciled", reconcile: true,
			event: func(read, write *v1alpha1.SidecarTemplate) event.UpdateEvent {
				old := read.DeepCopy()
				old.ResourceVersion = "4"
				return update(old, write)
			}},
		{name: "the echo is reconciled when another reconcile looked before it arrived", forget: true, reconcile: true,
			event: func(read, write *v1alpha1.SidecarTemplate) event.UpdateEvent { return update(read, write) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var e echoes
			read, write := written()
			e.writing(write)
			if tt.forget {
				e.forget(key)
			}
			if got := e.predicate().Update(tt.event(read, write)); got != tt.reconcile {
				t.Errorf("reconciled: %v, want %v", got, tt.reconcile)
			}
		})
	}

	var e echoes
	read, write := written()
	e.writing(write)
	echo := write.DeepCopy()
	echo.ResourceVersion = "6"
	echo.Status.Conditions[0].LastTransitionTime = echo.Status.Conditions[0].LastTransitionTime.Rfc3339Copy()
	if e.predicate().Update(update(read, echo)) {
		t.Fatalf("the echo was reconciled")
	}
	if !e.predicate().Update(update(read, echo)) {
		t.Errorf("an echo is dropped once: the same event again is reconciled")
	}
}

func TestAReconcilesWritesTakeOneToken(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	l := rate.NewLimiter(rate.Every(time.Hour), 2)
	unit := &writeUnit{limiter: l}
	for range 3 { // a revision, the status, a pruned revision
		if err := unit.wait(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if got := l.Tokens(); got < 0.99 || got > 1.01 {
		t.Errorf("%.2f tokens left of 2 after one reconcile's three writes, want 1", got)
	}
	if err := (&writeUnit{limiter: l}).wait(ctx); err != nil {
		t.Fatal(err)
	}
	if got := l.Tokens(); got > 0.01 {
		t.Errorf("%.2f tokens left after a second reconcile's write, want 0", got)
	}
}
