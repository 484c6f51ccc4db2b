package controller

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/priorityqueue"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/sidecar-dev/sidecar-injector/internal/api/v1alpha1"
	"github.com/sidecar-dev/sidecar-injector/internal/metrics"
	"github.com/sidecar-dev/sidecar-injector/internal/testenv"
)

// recordNaming is the record of a pod injected with the given templates (namespace/name).
func recordNaming(keys ...types.NamespacedName) string {
	rec := `{"templates":[`
	for i, k := range keys {
		if i > 0 {
			rec += ","
		}
		rec += fmt.Sprintf(`{"namespace":%q,"name":%q,"generation":1,"hash":"h","containers":["c%d"]}`, k.Namespace, k.Name, i)
	}
	return rec + `]}`
}

func TestABurstOfPodEventsWaitsAndJoinsOneRequestPerTemplate(t *testing.T) {
	good, other := types.NamespacedName{Namespace: "team-a", Name: "good"}, types.NamespacedName{Namespace: "team-a", Name: "other"}
	q := priorityqueue.New[reconcile.Request]("podwatch-test")
	defer q.ShutDown()
	// A delay no test outlives: what is waiting is not ready.
	h := podEvents{delay: time.Hour}
	ctx := context.Background()
	for i := range 100 {
		pod := podWithRecord(recordNaming(good))
		pod.Name = fmt.Sprintf("web-%d", i)
		h.Create(ctx, event.CreateEvent{Object: &pod}, q)
	}
	both := podWithRecord(recordNaming(good, other))
	h.Delete(ctx, event.DeleteEvent{Object: &both}, q)
	if n := q.Len(); n != 0 {
		t.Fatalf("right after 101 pod events, %d requests are ready, want 0: the events wait to be joined", n)
	}
	// The template's own event (its spec changed) is not held back, and takes the pods' waiting request along.
	q.Add(reconcile.Request{NamespacedName: good})
	if n := q.Len(); n != 1 {
		t.Fatalf("after the template's own event, %d requests are ready, want 1 (the pods' events joined it)", n)
	}
	if got, _ := q.Get(); got.NamespacedName != good {
		t.Errorf("ready request %v, want %v", got, good)
	}
}

func TestAPodWhoseRecordChangesEnqueuesTheTemplatesOfBothRecords(t *testing.T) {
	a, b := types.NamespacedName{Namespace: "team-a", Name: "a"}, types.NamespacedName{Namespace: "team-a", Name: "b"}
	q := priorityqueue.New[reconcile.Request]("podwatch-test")
	defer q.ShutDown()
	oldPod, newPod := podWithRecord(recordNaming(a)), podWithRecord(recordNaming(b))
	podEvents{}.Update(context.Background(), event.UpdateEvent{ObjectOld: &oldPod, ObjectNew: &newPod}, q)
	got := map[types.NamespacedName]bool{}
	for q.Len() > 0 {
		req, _ := q.Get()
		got[req.NamespacedName] = true
		q.Done(req)
	}
	if !got[a] || !got[b] || len(got) != 2 {
		t.Errorf("enqueued %v, want %v and %v: the template the pod left loses it from its count", got, a, b)
	}
}

func TestAPodWithoutARecordEnqueuesNothing(t *testing.T) {
	q := priorityqueue.New[reconcile.Request]("podwatch-test")
	defer q.ShutDown()
	plain := metav1.PartialObjectMetadata{}
	podEvents{}.Create(context.Background(), event.CreateEvent{Object: &plain}, q)
	if n := q.Len(); n != 0 {
		t.Errorf("a pod without a record enqueued %d requests, want 0", n)
	}
}

// TestTheCountsAreRightAfterABurstOfPodCreationsAndDeletions: the joined events lose no pod. 40 injected pods
// created as fast as the API server takes them and 15 of them deleted leave status.injectedPods at 25.
func TestTheCountsAreRightAfterABurstOfPodCreationsAndDeletions(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	k8s, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	ns := "burst"
	if err := k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		t.Fatal(err)
	}
	mgr := newTestManager(t, cfg, scheme)
	m, err := metrics.New(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	r := &TemplateReconciler{Client: mgr.GetClient(), InjectorNamespace: testInjectorNS, Metrics: m, Pace: Unlimited}
	if err := r.SetupWithManager(ctx, mgr); err != nil {
		t.Fatal(err)
	}
	defer runManager(t, ctx, cancel, mgr)()
	if err := k8s.Create(ctx, &v1alpha1.SidecarTemplate{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "shipper"},
		Spec: v1alpha1.SidecarTemplateSpec{Containers: []corev1.Container{{Name: "shipper", Image: "fluent-bit:3.1"}}}}); err != nil {
		t.Fatal(err)
	}
	record := recordNaming(types.NamespacedName{Namespace: ns, Name: "shipper"})
	for i := range 40 {
		if err := k8s.Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("web-%d", i),
			Annotations: map[string]string{v1alpha1.AnnotationStatus: record}},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "app:1"}}}}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 15 {
		if err := k8s.Delete(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("web-%d", i)}},
			client.GracePeriodSeconds(0)); err != nil {
			t.Fatal(err)
		}
	}
	testenv.Eventually(t, 30*time.Second, "the template counts the 25 pods left", func() error {
		var st v1alpha1.SidecarTemplate
		if err := k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: "shipper"}, &st); err != nil {
			return err
		}
		if st.Status.InjectedPods != 25 {
			return fmt.Errorf("status.injectedPods = %d", st.Status.InjectedPods)
		}
		return nil
	})
}
