package store

import (
	"encoding/json"
	"fmt"
	"runtime"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/sidecar-dev/sidecar-injector/internal/api/v1alpha1"
	"github.com/sidecar-dev/sidecar-injector/internal/fixtures"
	"github.com/sidecar-dev/sidecar-injector/internal/inject"
)

// scaleObjects returns the scale scenario's 10,100 templates and their revisions as the API server sends them
// once the status controller has settled: metadata, spec, a Ready status, one revision each.
func scaleObjects(b *testing.B) (templates, revisions [][]byte) {
	sts := append(fixtures.ScaleTemplates(1000, 10), fixtures.ClusterTemplates(100)...)
	for i, st := range sts {
		st.UID = types.UID(fmt.Sprintf("%08d-0000-4000-8000-000000000000", i))
		st.Generation, st.ResourceVersion = 1, fmt.Sprint(100000+i)
		st.CreationTimestamp = metav1.Now()
		st.Status = v1alpha1.SidecarTemplateStatus{ObservedGeneration: 1, CurrentRevision: 1, StableRevision: 1}
		meta.SetStatusCondition(&st.Status.Conditions, metav1.Condition{Type: v1alpha1.ConditionReady,
			Status: metav1.ConditionTrue, Reason: "Ready", Message: "the template can be injected", ObservedGeneration: 1})
		cr, err := NewRevision(st, 1, inject.Compile(st, fixtures.InjectorNamespace).Hash)
		if err != nil {
			b.Fatal(err)
		}
		cr.UID, cr.ResourceVersion, cr.CreationTimestamp = st.UID+"-r", st.ResourceVersion+"1", st.CreationTimestamp
		templates = append(templates, mustJSON(b, st))
		revisions = append(revisions, mustJSON(b, cr))
	}
	return templates, revisions
}

func mustJSON(b *testing.B, v any) []byte {
	js, err := json.Marshal(v)
	if err != nil {
		b.Fatal(err)
	}
	return js
}

// BenchmarkMemoryAtScale reports the live heap the injector keeps per template of the scale scenario (10,100),
// layer by layer: the informer's template (template-B/template: a StoredTemplate), its ControllerRevision
// (revision-B/template: a Revision), what the store adds for both (store-B/template), and the compiled template
// once every namespace has seen a pod (compiled-B/template).
func BenchmarkMemoryAtScale(b *testing.B) {
	tjs, rjs := scaleObjects(b)
	for range b.N {
		h0 := liveHeap()
		sts := make([]any, len(tjs))
		for i, js := range tjs {
			var st v1alpha1.SidecarTemplate
			if err := json.Unmarshal(js, &st); err != nil {
				b.Fatal(err)
			}
			sts[i], _ = TemplateTransform(&st)
		}
		h1 := liveHeap()
		crs := make([]any, len(rjs))
		for i, js := range rjs {
			var cr appsv1.ControllerRevision
			if err := json.Unmarshal(js, &cr); err != nil {
				b.Fatal(err)
			}
			crs[i], _ = RevisionTransform(&cr)
		}
		h2 := liveHeap()
		s := NewTemplates(fixtures.InjectorNamespace)
		for _, cr := range crs {
			s.RevisionHandler().OnAdd(cr, true)
		}
		for _, st := range sts {
			s.OnAdd(st, true)
		}
		h3 := liveHeap()
		for i := range 1000 {
			s.Index(fixtures.ScaleNamespace(i))
		}
		h4 := liveHeap()
		runtime.KeepAlive(tjs)
		runtime.KeepAlive(rjs)
		runtime.KeepAlive(sts) // the informers' caches keep them
		runtime.KeepAlive(crs)
		runtime.KeepAlive(s)
		n := float64(len(tjs))
		b.ReportMetric(float64(h1-h0)/n, "template-B/template")
		b.ReportMetric(float64(h2-h1)/n, "revision-B/template")
		b.ReportMetric(float64(h3-h2)/n, "store-B/template")
		b.ReportMetric(float64(h4-h3)/n, "compiled-B/template")
		b.ReportMetric(float64(h4-h0)/(1<<20), "total-MiB")
	}
}

func liveHeap() int64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapAlloc)
}
