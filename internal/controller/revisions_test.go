package controller

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/sidecar-dev/sidecar-injector/internal/api/v1alpha1"
	"github.com/sidecar-dev/sidecar-injector/internal/inject"
	"github.com/sidecar-dev/sidecar-injector/internal/metrics"
	"github.com/sidecar-dev/sidecar-injector/internal/store"
	"github.com/sidecar-dev/sidecar-injector/internal/testenv"
)

func TestPruneListKeepsTheNewestAndTheCurrentAndStableRevisions(t *testing.T) {
	revs := func(numbers ...int64) []appsv1.ControllerRevision {
		var out []appsv1.ControllerRevision
		for _, n := range numbers {
			out = append(out, appsv1.ControllerRevision{Revision: n})
		}
		return out
	}
	numbers := func(crs []appsv1.ControllerRevision) []int64 {
		var out []int64
		for _, cr := range crs {
			out = append(out, cr.Revision)
		}
		return out
	}
	cases := []struct {
		name            string
		have            []appsv1.ControllerRevision
		current, stable int64
		want            []int64
	}{
		{"a history within the limit is kept whole", revs(3, 2, 1), 3, 3, nil},
		{"beyond the limit the oldest go", revs(12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1), 12, 12, []int64{2, 1}},
		{"the stable revision of a running canary stays, however old", revs(12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1), 12, 1, []int64{3, 2}},
		{"a current revision returned to (an older spec again) stays", revs(12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1), 2, 2, []int64{3, 1}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := numbers(PruneList(c.have, History{Current: c.current, Stable: c.stable}))
			if !slices.Equal(got, c.want) {
				t.Errorf("pruned %v, want %v", got, c.want)
			}
		})
	}
}

// TestRevisions runs the controller against the API server through a template's life: created (revision 1),
// changed under a 50% canary (revision 2, stable stays 1), promoted (no new revision, stable 2), and changed
// often enough to prune its history; pods are counted per revision. The controller reads the revisions from the
// webhook's store, as serve runs it, and without a store, from the cache.
func TestRevisions(t *testing.T) {
	t.Run("with the webhook's store", func(t *testing.T) { testRevisions(t, "revisions-store", true) })
	t.Run("without a store", func(t *testing.T) { testRevisions(t, "revisions", false) })
}

func testRevisions(t *testing.T, ns string, withStore bool) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	k8s, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	if err := k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		t.Fatal(err)
	}
	mgr := newTestManager(t, cfg, scheme)
	if withStore {
		mgr = newStoreTestManager(t, cfg, scheme) // as serve
	}
	m, err := metrics.New(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	r := &TemplateReconciler{Client: mgr.GetClient(), InjectorNamespace: testInjectorNS, Metrics: m, Pace: Unlimited}
	if withStore {
		r.Templates = store.NewTemplates(testInjectorNS)
		r.Client = r.Templates.Reader(mgr.GetClient())
		if _, err := r.Templates.Register(ctx, mgr.GetCache()); err != nil {
			t.Fatal(err)
		}
		if _, err := r.Templates.RegisterRevisions(ctx, mgr.GetCache()); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.SetupWithManager(ctx, mgr); err != nil {
		t.Fatal(err)
	}
	defer runManager(t, ctx, cancel, mgr)()

	key := types.NamespacedName{Namespace: ns, Name: "proxy"}
	spec := func(image string) v1alpha1.SidecarTemplateSpec {
		return v1alpha1.SidecarTemplateSpec{Containers: []corev1.Container{{Name: "proxy", Image: image}}}
	}
	if err := k8s.Create(ctx, &v1alpha1.SidecarTemplate{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: key.Name},
		Spec: spec("proxy:1")}); err != nil {
		t.Fatal(err)
	}
	get := func() *v1alpha1.SidecarTemplate {
		t.Helper()
		var st v1alpha1.SidecarTemplate
		if err := k8s.Get(ctx, key, &st); err != nil {
			t.Fatal(err)
		}
		return &st
	}
	edit := func(change func(*v1alpha1.SidecarTemplate)) {
		t.Helper()
		testenv.Eventually(t, 10*time.Second, "edit the template", func() error {
			st := get()
			change(st)
			return k8s.Update(ctx, st)
		})
	}
	revisions := func() []appsv1.ControllerRevision {
		t.Helper()
		var list appsv1.ControllerRevisionList
		if err := k8s.List(ctx, &list, client.InNamespace(ns), client.HasLabels{v1alpha1.LabelTemplateRevision}); err != nil {
			t.Fatal(err)
		}
		return list.Items
	}
	expect := func(what string, current, stable int64, perRevision string) *v1alpha1.SidecarTemplate {
		t.Helper()
		var st *v1alpha1.SidecarTemplate
		testenv.Eventually(t, 20*time.Second, what, func() error {
			st = get()
			s := st.Status
			if s.ObservedGeneration != st.Generation || s.CurrentRevision != current || s.StableRevision != stable || s.PodsPerRevision != perRevision {
				return fmt.Errorf("status at generation %d: observed %d, current %d, stable %d, pods per revision %q; want %d, %d, %q",
					st.Generation, s.ObservedGeneration, s.CurrentRevision, s.StableRevision, s.PodsPerRevision, current, stable, perRevision)
			}
			return nil
		})
		return st
	}

	st := expect("revision 1 after creation", 1, 1, "")
	crs := revisions()
	if len(crs) != 1 {
		t.Fatalf("%d revisions after creation, want 1", len(crs))
	}
	v1hash := inject.Compile(st, testInjectorNS).Hash
	if cr := crs[0]; cr.Labels[v1alpha1.LabelTemplateRevision] != v1hash || cr.Revision != 1 ||
		!metav1.IsControlledBy(&cr, st) {
		t.Errorf("revision 1: labels %v, number %d, owners %v; want hash %s, owned by the template", cr.Labels, cr.Revision, cr.OwnerReferences, v1hash)
	}
	var held v1alpha1.SidecarTemplate
	if err := json.Unmarshal(crs[0].Data.Raw, &held); err != nil || len(held.Spec.Containers) != 1 || held.Spec.Containers[0].Image != "proxy:1" {
		t.Errorf("revision 1 does not hold the spec (%v): %s", err, crs[0].Data.Raw)
	}

	for i := range 2 {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("web-%d", i), Annotations: map[string]string{
			v1alpha1.AnnotationStatus: fmt.Sprintf(`{"templates":[{"namespace":%q,"name":"proxy","generation":1,"hash":%q,"revision":1,"containers":["proxy"]}]}`, ns, v1hash)}},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "app"}, {Name: "proxy", Image: "proxy:1"}}}}
		if err := k8s.Create(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	expect("two pods on revision 1", 1, 1, "1=2")

	edit(func(st *v1alpha1.SidecarTemplate) {
		st.Spec = spec("proxy:2")
		st.Spec.UpdatePolicy = &v1alpha1.UpdatePolicy{Canary: &v1alpha1.Canary{Percent: ptr.To[int32](50)}}
	})
	st = expect("revision 2 under a canary: stable stays 1", 2, 1, "1=2")
	if st.Status.OutdatedPods != 2 {
		t.Errorf("outdatedPods %d, want 2", st.Status.OutdatedPods)
	}
	edit(func(st *v1alpha1.SidecarTemplate) { st.Spec.UpdatePolicy.Canary.Percent = ptr.To[int32](100) })
	expect("promoted: no new revision, stable 2", 2, 2, "1=2")
	if n := len(revisions()); n != 2 {
		t.Errorf("%d revisions after promotion, want 2 (promotion is not a change of what is injected)", n)
	}

	for i := 3; i <= HistoryLimit+3; i++ {
		edit(func(st *v1alpha1.SidecarTemplate) { st.Spec.Containers[0].Image = fmt.Sprintf("proxy:%d", i) })
		expect(fmt.Sprintf("revision %d", i), int64(i), int64(i), map[bool]string{true: "1=2", false: ""}[i < HistoryLimit+1])
	}
	crs = revisions()
	if len(crs) != HistoryLimit || !slices.ContainsFunc(crs, func(cr appsv1.ControllerRevision) bool { return cr.Revision == HistoryLimit+3 }) {
		t.Errorf("%d revisions after %d changes, want the newest %d", len(crs), HistoryLimit+3, HistoryLimit)
	}
}
