package store

import (
	"fmt"
	"slices"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	toolscache "k8s.io/client-go/tools/cache"

	"github.com/sidecar-dev/sidecar-injector/internal/api/v1alpha1"
	"github.com/sidecar-dev/sidecar-injector/internal/inject"
)

const injectorNS = "sidecar-injector"

// tmpl returns a valid SidecarTemplate namespace/name adding one container named after it.
func tmpl(namespace, name string, generation int64, order int32) *v1alpha1.SidecarTemplate {
	return &v1alpha1.SidecarTemplate{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name, Generation: generation,
			ResourceVersion: fmt.Sprint(generation)},
		Spec: v1alpha1.SidecarTemplateSpec{
			Order:      order,
			Containers: []corev1.Container{{Name: name, Image: "example.com/" + name + ":1"}},
		},
	}
}

// keys returns namespace/name of each template, in the order given.
func keys(ts []*inject.Template) []string {
	out := make([]string, 0, len(ts))
	for _, t := range ts {
		out = append(out, t.Key())
	}
	return out
}

func assertCandidates(t *testing.T, s *Templates, namespace string, want ...string) {
	t.Helper()
	if got := keys(s.Index(namespace).Templates()); !slices.Equal(got, want) {
		t.Errorf("Index(%q).Templates() = %q, want %q", namespace, got, want)
	}
}

func TestAddedTemplateIsACandidateInItsNamespaceOnly(t *testing.T) {
	s := NewTemplates(injectorNS)
	s.OnAdd(tmpl("team-a", "log-shipper", 1, 0), true)

	assertCandidates(t, s, "team-a", "team-a/log-shipper")
	assertCandidates(t, s, "team-b")
	if s.Len() != 1 {
		t.Errorf("Len() = %d, want 1", s.Len())
	}
	if got := s.Get("team-a", "log-shipper"); got == nil || got.ClusterWide || got.Err != nil {
		t.Errorf("Get(team-a/log-shipper) = %+v, want a valid namespaced template", got)
	}
}

func TestTemplateInTheInjectorNamespaceIsACandidateEverywhere(t *testing.T) {
	s := NewTemplates(injectorNS)
	s.OnAdd(tmpl(injectorNS, "metrics", 1, 0), true)
	s.OnAdd(tmpl("team-a", "log-shipper", 1, 0), true)

	assertCandidates(t, s, "team-a", "sidecar-injector/metrics", "team-a/log-shipper")
	assertCandidates(t, s, "team-b", "sidecar-injector/metrics")
	assertCandidates(t, s, injectorNS, "sidecar-injector/metrics")
	if got := s.Get(injectorNS, "metrics"); got == nil || !got.ClusterWide {
		t.Errorf("Get(%s/metrics) = %+v, want a cluster-wide template", injectorNS, got)
	}
}

func TestCandidatesAreInInjectionOrderWhateverTheOrderOfEvents(t *testing.T) {
	s := NewTemplates(injectorNS)
	s.OnAdd(tmpl("team-a", "zeta", 1, 0), true)
	s.OnAdd(tmpl(injectorNS, "early", 1, -5), true)
	s.OnAdd(tmpl("team-a", "alpha", 1, 0), true)
	s.OnAdd(tmpl(injectorNS, "alpha", 1, 0), true)
	s.OnAdd(tmpl("team-a", "late", 1, 10), true)

	// order, then namespace ("sidecar-injector" < "team-a"), then name.
	assertCandidates(t, s, "team-a",
		"sidecar-injector/early", "sidecar-injector/alpha", "team-a/alpha", "team-a/zeta", "team-a/late")
}

func TestUpdateRecompilesOnlyWhenTheSpecChanged(t *testing.T) {
	s := NewTemplates(injectorNS)
	v1 := tmpl("team-a", "log-shipper", 1, 0)
	s.OnAdd(v1, true)
	first := s.Get("team-a", "log-shipper")

	resync := v1.DeepCopy()
	s.OnUpdate(v1, resync)
	if s.Get("team-a", "log-shipper") != first {
		t.Error("a resync (same resourceVersion) recompiled the template")
	}

	statusOnly := v1.DeepCopy()
	statusOnly.ResourceVersion = "1a"
	statusOnly.Status.ObservedGeneration = 1
	s.OnUpdate(v1, statusOnly)
	if s.Get("team-a", "log-shipper") != first {
		t.Error("a status-only update (same generation) recompiled the template")
	}

	v2 := tmpl("team-a", "log-shipper", 2, 7)
	v2.Spec.Containers[0].Image = "example.com/log-shipper:2"
	s.OnUpdate(statusOnly, v2)
	got := s.Get("team-a", "log-shipper")
	if got == first {
		t.Fatal("a spec change (new generation) did not recompile the template")
	}
	if got.Generation != 2 || got.Order != 7 || got.Hash == first.Hash {
		t.Errorf("after the update: generation %d, order %d, hash changed %v; want 2, 7, true",
			got.Generation, got.Order, got.Hash != first.Hash)
	}
	assertCandidates(t, s, "team-a", "team-a/log-shipper")
	if s.Len() != 1 {
		t.Errorf("Len() = %d after an update, want 1", s.Len())
	}
}

func TestUpdateOfAClusterWideTemplateReachesNamespacesThatCachedTheirIndex(t *testing.T) {
	s := NewTemplates(injectorNS)
	s.OnAdd(tmpl(injectorNS, "metrics", 1, 0), true)
	s.OnAdd(tmpl("team-a", "log-shipper", 1, 0), true)
	before := s.Index("team-a").Templates() // caches the namespace's index

	s.OnUpdate(tmpl(injectorNS, "metrics", 1, 0), tmpl(injectorNS, "metrics", 2, 0))
	after := s.Index("team-a").Templates()
	if after[0] == before[0] || after[0].Generation != 2 {
		t.Errorf("team-a still sees generation %d of the cluster-wide template, want 2", after[0].Generation)
	}

	s.OnAdd(tmpl(injectorNS, "proxy", 1, 0), true)
	assertCandidates(t, s, "team-a", "sidecar-injector/metrics", "sidecar-injector/proxy", "team-a/log-shipper")
	s.OnDelete(tmpl(injectorNS, "metrics", 2, 0))
	assertCandidates(t, s, "team-a", "sidecar-injector/proxy", "team-a/log-shipper")
	s.OnDelete(tmpl(injectorNS, "proxy", 1, 0))
	assertCandidates(t, s, "team-a", "team-a/log-shipper")
}

func TestDeleteRemovesTheTemplateHoweverTheEventCarriesIt(t *testing.T) {
	for _, tc := range []struct {
		name  string
		event func(*v1alpha1.SidecarTemplate) any
	}{
		{"as the object", func(o *v1alpha1.SidecarTemplate) any { return o }},
		{"as a tombstone with the object", func(o *v1alpha1.SidecarTemplate) any {
			return toolscache.DeletedFinalStateUnknown{Key: o.Namespace + "/" + o.Name, Obj: o}
		}},
		{"as a tombstone with only the key", func(o *v1alpha1.SidecarTemplate) any {
			return toolscache.DeletedFinalStateUnknown{Key: o.Namespace + "/" + o.Name}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := NewTemplates(injectorNS)
			gone, kept := tmpl("team-a", "gone", 1, 0), tmpl("team-a", "kept", 1, 0)
			s.OnAdd(gone, true)
			s.OnAdd(kept, true)
			s.OnDelete(tc.event(gone))
			assertCandidates(t, s, "team-a", "team-a/kept")
			if s.Get("team-a", "gone") != nil || s.Len() != 1 {
				t.Errorf("after delete: Get = %v, Len = %d; want nil, 1", s.Get("team-a", "gone"), s.Len())
			}
		})
	}
}

func TestDeletingTheLastTemplateOfANamespaceForgetsTheNamespace(t *testing.T) {
	s := NewTemplates(injectorNS)
	s.OnAdd(tmpl("team-a", "only", 1, 0), true)
	s.OnDelete(tmpl("team-a", "only", 1, 0))
	s.OnDelete(tmpl("team-a", "never-existed", 1, 0)) // harmless
	if _, ok := s.byNamespace["team-a"]; ok || s.Len() != 0 {
		t.Errorf("team-a is still indexed (%d templates in the store)", s.Len())
	}
	assertCandidates(t, s, "team-a")
}

func TestAnInvalidTemplateIsStoredWithItsError(t *testing.T) {
	s := NewTemplates(injectorNS)
	bad := tmpl("team-a", "bad", 1, 0)
	bad.Spec.Containers[0].Image = ""
	s.OnAdd(bad, true)
	got := s.Get("team-a", "bad")
	if got == nil || got.Err == nil {
		t.Fatalf("Get(team-a/bad) = %+v, want the template with its error", got)
	}
	assertCandidates(t, s, "team-a", "team-a/bad") // so that a pod requesting it gets a clear answer
}

func TestEventsOfOtherTypesAreIgnored(t *testing.T) {
	s := NewTemplates(injectorNS)
	s.OnAdd(&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", Name: "p"}}, false)
	s.OnUpdate(nil, "not an object")
	s.OnDelete(42)
	if s.Len() != 0 {
		t.Errorf("Len() = %d, want 0", s.Len())
	}
}

func TestNamespacesNeverSeeEachOthersTemplatesAtScale(t *testing.T) {
	s := fill(1000, 10)
	for _, ns := range []string{"ns-0", "ns-500", "ns-999"} {
		got := s.Index(ns).Templates()
		if len(got) != 10+3 {
			t.Fatalf("Index(%s) has %d templates, want 13", ns, len(got))
		}
		for _, c := range got {
			if c.Namespace != ns && c.Namespace != injectorNS {
				t.Errorf("Index(%s) includes %s", ns, c.Key())
			}
		}
	}
	assertCandidates(t, s, "no-templates-here",
		"sidecar-injector/cluster-0", "sidecar-injector/cluster-1", "sidecar-injector/cluster-2")
}

func TestIndexAllocatesNothingOnceBuilt(t *testing.T) {
	s := fill(100, 10)
	s.Index("ns-7")
	for _, ns := range []string{"ns-7", "no-templates-here", injectorNS} {
		if n := testing.AllocsPerRun(100, func() { s.Index(ns) }); n != 0 {
			t.Errorf("Index(%q) allocates %v times per call, want 0", ns, n)
		}
	}
}

func TestConcurrentReadersAndWritersAgree(t *testing.T) {
	s := fill(20, 5)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for r := 0; r < 4; r++ {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				for _, c := range s.Index("ns-3").Templates() {
					if c.Namespace != "ns-3" && c.Namespace != injectorNS {
						t.Errorf("ns-3 got %s", c.Key())
						return
					}
				}
			}
		})
	}
	for i := range 200 {
		s.OnAdd(tmpl(injectorNS, fmt.Sprintf("extra-%d", i%7), int64(i+1), 0), false)
		s.OnAdd(tmpl("ns-3", fmt.Sprintf("extra-%d", i%5), int64(i+1), 0), false)
		s.OnDelete(tmpl("ns-4", fmt.Sprintf("t-%d", i%5), 1, 0))
	}
	close(stop)
	wg.Wait()
	if got := len(s.Index("ns-3").Templates()); got != 5+5+3+7 {
		t.Errorf("ns-3 has %d candidates after the writes, want 20", got)
	}
}

// fill returns a store with perNS templates in each of namespaces namespaces ns-0..., and 3 cluster-wide ones.
func fill(namespaces, perNS int) *Templates {
	s := NewTemplates(injectorNS)
	for i := range 3 {
		s.OnAdd(tmpl(injectorNS, fmt.Sprintf("cluster-%d", i), 1, 0), true)
	}
	for n := range namespaces {
		for i := range perNS {
			s.OnAdd(tmpl(fmt.Sprintf("ns-%d", n), fmt.Sprintf("t-%d", i), 1, int32(i%3)), true)
		}
	}
	return s
}

// BenchmarkIndex is the admission path's lookup with 10,000 templates across 1,000 namespaces.
func BenchmarkIndex(b *testing.B) {
	s := fill(1000, 10)
	names := make([]string, 1000)
	for i := range names {
		names[i] = fmt.Sprintf("ns-%d", i)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		_ = s.Index(names[i%len(names)])
		i++
	}
}

// compiledCount counts the store's templates that have been compiled.
func compiledCount(s *Templates) int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	n := 0
	for _, ns := range s.byNamespace {
		for _, e := range ns.byName {
			if e.compiled.Load() != nil {
				n++
			}
		}
	}
	return n
}

func TestTemplatesAreCompiledWhenAPodOfTheirNamespaceNeedsThemNotWhenTheyArrive(t *testing.T) {
	s := fill(1000, 10) // 10,003 templates
	if n := compiledCount(s); n != 0 {
		t.Fatalf("%d templates compiled before any admission, want 0", n)
	}
	if got := len(s.Index("ns-7").Templates()); got != 13 {
		t.Fatalf("ns-7 has %d templates, want 13", got)
	}
	if n := compiledCount(s); n != 13 {
		t.Errorf("%d templates compiled after an admission in ns-7, want its 10 and the 3 cluster-wide ones", n)
	}
	s.Index("no-templates-here")
	if n := compiledCount(s); n != 13 {
		t.Errorf("%d templates compiled after an admission in a namespace without templates, want still 13", n)
	}
}

func TestTheControllersLookAtEveryNamespaceLeavesOnlyTheCompiledTemplatesAdmissionsUse(t *testing.T) {
	s := fill(1000, 10) // 10,003 templates
	s.Index("ns-7")     // an admission in ns-7
	want := keys(s.Index("ns-7").Templates())
	for i := range 1000 {
		ns := fmt.Sprintf("ns-%d", i)
		// Every namespace offers its 10 and the 3 cluster-wide ones; ns-7 exactly what its admission index offers.
		got := keys(s.Peek(ns).Templates())
		if len(got) != 13 || i == 7 && !slices.Equal(got, want) {
			t.Fatalf("Peek(%s) offers %q, want 13 templates (ns-7's index: %q)", ns, got, want)
		}
		if tpl := s.PeekTemplate(ns, "t-3"); tpl == nil || tpl.Err != nil || tpl.Namespace != ns {
			t.Fatalf("PeekTemplate(%s, t-3) = %+v, want a valid template of that namespace", ns, tpl)
		}
	}
	if n := compiledCount(s); n != 13 {
		t.Errorf("%d templates compiled after the controller looked at every namespace, want the 13 of ns-7's admission", n)
	}
	if tpl := s.PeekTemplate("ns-7", "t-3"); tpl != s.Get("ns-7", "t-3") {
		t.Error("PeekTemplate did not return the compiled template that admissions share")
	}
	if s.PeekTemplate("ns-7", "missing") != nil {
		t.Error("PeekTemplate of a template the store does not have is not nil")
	}
}

// The informer replaces its object on every update; the store must follow it rather than keep an older version
// alive beside it (ten thousand status writes would double the memory of the templates).
func TestAStatusUpdateMovesTheStoreToTheInformersNewObjectAndKeepsTheCompiledTemplate(t *testing.T) {
	s := NewTemplates(injectorNS)
	v1 := tmpl("team-a", "log-shipper", 1, 0)
	s.OnAdd(v1, true)
	compiled := s.Get("team-a", "log-shipper")
	statusOnlyT := v1.DeepCopy()
	statusOnlyT.ResourceVersion = "1a"
	statusOnlyT.Status.ObservedGeneration = 1
	statusOnly := stored(t, statusOnlyT) // the informer's object
	s.OnUpdate(v1, statusOnly)
	s.mu.RLock()
	e := s.byNamespace["team-a"].byName["log-shipper"]
	s.mu.RUnlock()
	if e.obj != statusOnly {
		t.Error("the store still points at the object the informer replaced")
	}
	if e.compiled.Load() != compiled {
		t.Error("a status-only update dropped the compiled template")
	}

	// Not compiled yet: the newer object is the one compiled later.
	s.OnAdd(tmpl("team-a", "proxy", 1, 0), true)
	newerT := tmpl("team-a", "proxy", 1, 0)
	newerT.ResourceVersion = "1b"
	newer := stored(t, newerT)
	s.OnUpdate(tmpl("team-a", "proxy", 1, 0), newer)
	s.mu.RLock()
	e = s.byNamespace["team-a"].byName["proxy"]
	s.mu.RUnlock()
	if e.obj != newer || e.compiled.Load() != nil {
		t.Errorf("entry points at %p (want the newer %p), compiled %v (want not yet)", e.obj, newer, e.compiled.Load() != nil)
	}
}

// Namespaces without templates of their own share the cluster-wide layer but not the memory of their labels;
// the store keeps a bounded number of them.
func TestNamespacesWithoutTemplatesGetTheirOwnIndexUpToABound(t *testing.T) {
	s := fill(2, 1)
	a, b := s.Index("bare-a"), s.Index("bare-b")
	if a == b {
		t.Fatal("two namespaces without templates share one index (and one memory of namespace labels)")
	}
	if s.Index("bare-a") != a {
		t.Error("the index of a namespace without templates is rebuilt on every admission")
	}
	for i := range maxBare + 10 {
		s.Index(fmt.Sprintf("churn-%d", i))
	}
	s.bareMu.Lock()
	n := len(s.bare)
	s.bareMu.Unlock()
	if n > maxBare {
		t.Errorf("%d indexes kept for namespaces without templates, want at most %d", n, maxBare)
	}
	s.OnAdd(tmpl(injectorNS, "new-cluster-wide", 1, 0), true)
	assertCandidates(t, s, "bare-a", "sidecar-injector/cluster-0", "sidecar-injector/cluster-1",
		"sidecar-injector/cluster-2", "sidecar-injector/new-cluster-wide")
}

// stored returns tpl as the store's informer keeps it.
func stored(t *testing.T, tpl *v1alpha1.SidecarTemplate) *StoredTemplate {
	t.Helper()
	o, err := TemplateTransform(tpl)
	if err != nil {
		t.Fatal(err)
	}
	return o.(*StoredTemplate)
}

func TestTheInformerKeepsTheSpecEncodedAndNeitherManagedFieldsNorKubectlsCopyOfTheSpec(t *testing.T) {
	tpl := tmpl("team-a", "log-shipper", 1, 0)
	tpl.UID, tpl.Labels = "uid-1", map[string]string{"team": "a"}
	tpl.Spec.Containers[0].Resources.Limits = corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("64Mi")}
	tpl.Status.ObservedGeneration = 1
	want := tpl.DeepCopy()
	want.TypeMeta = metav1.TypeMeta{APIVersion: v1alpha1.GroupVersion.String(), Kind: "SidecarTemplate"}
	tpl.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: "kubectl"}}
	tpl.Annotations = map[string]string{corev1.LastAppliedConfigAnnotation: `{"spec":{}}`, "team": "a"}
	want.Annotations = map[string]string{"team": "a"}
	st := stored(t, tpl)
	if again, _ := TemplateTransform(st); again != st {
		t.Error("transformed again, the stored template changed")
	}
	got, err := st.Decode()
	if err != nil {
		t.Fatal(err)
	}
	if !equality.Semantic.DeepEqual(got, want) {
		t.Errorf("decoded from the informer's form:\n%+v\nwant (without managedFields and kubectl's copy)\n%+v", got, want)
	}
	got.Spec.Containers[0].Image = "changed"
	got.Labels["team"] = "b"
	if again, _ := st.Decode(); again.Spec.Containers[0].Image != want.Spec.Containers[0].Image || again.Labels["team"] != "a" {
		t.Error("changing a decoded copy changed the informer's object")
	}
	pod := &corev1.Pod{}
	if got, _ := TemplateTransform(pod); got != pod {
		t.Error("another kind was changed")
	}
}

// In policy mode a template whose ServedByPolicy condition is True for its current generation is marked served by
// policy, in Get and in the namespace's index, and the mark follows status updates (which do not change the
// generation). Without policy mode, or for a condition of an older generation, the webhook serves it.
func TestTemplatesServedByPolicyAreMarkedFromTheirCondition(t *testing.T) {
	withCondition := func(st *v1alpha1.SidecarTemplate, status metav1.ConditionStatus, generation int64, rv string) *v1alpha1.SidecarTemplate {
		c := st.DeepCopy()
		c.ResourceVersion = rv
		c.Status.Conditions = []metav1.Condition{{Type: v1alpha1.ConditionServedByPolicy, Status: status, ObservedGeneration: generation, Reason: "x"}}
		return c
	}
	served := func(s *Templates) (get, indexed bool) {
		ts := s.Index("team-a").Templates()
		return s.Get(injectorNS, "mesh").ServedByPolicy, len(ts) == 1 && ts[0].ServedByPolicy
	}
	for _, policyMode := range []bool{false, true} {
		s := NewTemplates(injectorNS)
		if policyMode {
			s.EnablePolicyMode()
		}
		base := tmpl(injectorNS, "mesh", 2, 0)
		s.OnAdd(base, true)
		steps := []struct {
			what string
			obj  *v1alpha1.SidecarTemplate
			want bool
		}{
			{"no condition yet", base, false},
			{"ServedByPolicy True for the current generation", withCondition(base, metav1.ConditionTrue, 2, "3"), policyMode},
			{"ServedByPolicy True for an older generation", withCondition(base, metav1.ConditionTrue, 1, "4"), false},
			{"True again", withCondition(base, metav1.ConditionTrue, 2, "5"), policyMode},
			{"ServedByPolicy False", withCondition(base, metav1.ConditionFalse, 2, "6"), false},
		}
		prev := base
		for _, st := range steps {
			s.OnUpdate(prev, st.obj)
			prev = st.obj
			if get, indexed := served(s); get != st.want || indexed != st.want {
				t.Errorf("policy mode %v, %s: marked served by policy in Get %v, in the index %v; want %v", policyMode, st.what, get, indexed, st.want)
			}
		}
	}
}
