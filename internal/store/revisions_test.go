package store

import (
	"reflect"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"

	"github.com/sidecar-dev/sidecar-injector/internal/api/v1alpha1"
	"github.com/sidecar-dev/sidecar-injector/internal/inject"
)

// revisionOf returns the ControllerRevision the controller would write for t as revision number.
func revisionOf(t *testing.T, st *v1alpha1.SidecarTemplate, number int64) *appsv1.ControllerRevision {
	t.Helper()
	cr, err := NewRevision(st, number, inject.Compile(st, injectorNS).Hash)
	if err != nil {
		t.Fatal(err)
	}
	return cr
}

// storeWithRevision1 returns a store holding team-a/proxy at generation 1 and its revision 1, which it also
// returns.
func storeWithRevision1(t *testing.T) (*Templates, *v1alpha1.SidecarTemplate, *appsv1.ControllerRevision) {
	t.Helper()
	s := NewTemplates(injectorNS)
	v1 := tmpl("team-a", "proxy", 1, 0)
	v1.UID = "uid-1"
	s.OnAdd(v1, true)
	rev1 := revisionOf(t, v1, 1)
	s.RevisionHandler().OnAdd(rev1, false)
	return s, v1, rev1
}

func TestTheStoreCompilesTemplatesWithTheirRevisions(t *testing.T) {
	s, v1, rev1 := storeWithRevision1(t)
	if got := s.Get("team-a", "proxy"); got.Revision != 1 || len(got.Earlier()) != 0 {
		t.Fatalf("after revision 1: revision %d, %d earlier; want 1, none", got.Revision, len(got.Earlier()))
	}

	v2 := v1.DeepCopy()
	v2.Generation, v2.ResourceVersion = 2, "2"
	v2.Spec.Containers[0].Image = "example.com/proxy:2"
	s.OnUpdate(v1, v2)
	s.RevisionHandler().OnAdd(revisionOf(t, v2, 2), false)
	got := s.Get("team-a", "proxy")
	if got.Revision != 2 || len(got.Earlier()) != 1 || got.Earlier()[0].Revision != 1 {
		t.Fatalf("after revision 2: revision %d, earlier %d; want 2 with revision 1 remembered", got.Revision, len(got.Earlier()))
	}

	// A template deleted and created again under the same name does not inherit the old one's revisions.
	again := v2.DeepCopy()
	again.UID, again.ResourceVersion = "uid-2", "3"
	s.OnDelete(v2)
	s.OnAdd(again, false)
	if got := s.Get("team-a", "proxy"); len(got.Earlier()) != 0 || got.Revision != 0 {
		t.Errorf("a new template of the same name has revision %d and %d earlier ones of the old one", got.Revision, len(got.Earlier()))
	}

	// A pruned revision is forgotten; tombstones are understood.
	s.OnDelete(again)
	s.OnAdd(v2, false)
	s.RevisionHandler().OnDelete(toolscache.DeletedFinalStateUnknown{Key: "team-a/" + rev1.Name, Obj: rev1})
	if got := s.Get("team-a", "proxy"); len(got.Earlier()) != 0 || got.Revision != 2 {
		t.Errorf("after pruning revision 1: revision %d, %d earlier", got.Revision, len(got.Earlier()))
	}
}

func TestAChangedStableRevisionRecompiles(t *testing.T) {
	s := NewTemplates(injectorNS)
	v1 := tmpl("team-a", "proxy", 1, 0)
	s.OnAdd(v1, true)
	old := s.Get("team-a", "proxy")
	promoted := v1.DeepCopy()
	promoted.ResourceVersion = "9"
	promoted.Status.StableRevision = 3
	s.OnUpdate(v1, promoted)
	if s.Get("team-a", "proxy") == old {
		t.Errorf("a status update that moves the stable revision kept the compiled template (pods outside a canary would get the old stable one)")
	}
	resync := promoted.DeepCopy()
	resync.ResourceVersion = "10"
	cur := s.Get("team-a", "proxy")
	s.OnUpdate(promoted, resync)
	if s.Get("team-a", "proxy") != cur {
		t.Errorf("a status update that leaves the stable revision recompiled the template")
	}
}

func TestRevisionNamesStayValidObjectNames(t *testing.T) {
	long := strings.Repeat("a", 253)
	if got := RevisionName(long, "0123456789abcdef"); len(got) > 253 || !strings.HasSuffix(got, "-0123456789abcdef") {
		t.Errorf("RevisionName of a 253-character name = %q (%d)", got, len(got))
	}
	if got := RevisionName("proxy", "0123456789abcdef"); got != "proxy-0123456789abcdef" {
		t.Errorf("RevisionName = %q", got)
	}
}

func TestOtherControllerRevisionsAreIgnored(t *testing.T) {
	s := NewTemplates(injectorNS)
	s.OnAdd(tmpl("team-a", "proxy", 1, 0), true)
	ds := &appsv1.ControllerRevision{}
	ds.Namespace, ds.Name, ds.Revision = "team-a", "proxy-abc", 1
	s.RevisionHandler().OnAdd(ds, false)
	if len(s.history) != 0 {
		t.Errorf("a DaemonSet's revision was taken for a template's: %v", s.history)
	}
}

func TestTheStoreKeepsRevisionsAsTheInformerHoldsThem(t *testing.T) {
	s, _, rev1 := storeWithRevision1(t)
	h := s.history[types.NamespacedName{Namespace: "team-a", Name: "proxy"}]
	if len(h) != 1 || h[0].Template != nil || &h[0].Data[0] != &rev1.Data.Raw[0] {
		t.Fatalf("the store holds %+v; want the informer's data, neither copied nor decoded", h)
	}

	// The current spec's revision is numbered by its hash: its data is not even read.
	current := rev1.DeepCopy()
	current.Data.Raw = []byte("not a template")
	s.RevisionHandler().OnUpdate(rev1, current)
	if got := s.Get("team-a", "proxy"); got.Revision != 1 || got.Err != nil {
		t.Errorf("the current revision with unreadable data: revision %d (%v); want 1: its hash says it is current", got.Revision, got.Err)
	}

	// An update that changes nothing compiling reads (a resync) keeps the compiled template.
	compiled := s.Get("team-a", "proxy")
	resync := current.DeepCopy()
	resync.ResourceVersion = "7"
	s.RevisionHandler().OnUpdate(current, resync)
	if s.Get("team-a", "proxy") != compiled {
		t.Errorf("a resync of a revision compiled the template again")
	}
}

func TestAnEarlierRevisionIsDecodedWhenItsTemplateIsCompiled(t *testing.T) {
	s := NewTemplates(injectorNS)
	v1 := tmpl("team-a", "proxy", 1, 0)
	v1.UID = "uid-1"
	v2 := v1.DeepCopy()
	v2.Generation = 2
	v2.Spec.Containers[0].Image = "example.com/proxy:2"
	s.OnAdd(v2, true)
	s.RevisionHandler().OnAdd(revisionOf(t, v1, 1), false)
	s.RevisionHandler().OnAdd(revisionOf(t, v2, 2), false)
	got := s.Get("team-a", "proxy")
	if got.Revision != 2 || len(got.Earlier()) != 1 || got.Earlier()[0].Revision != 1 ||
		got.Earlier()[0].Hash != inject.Compile(v1, injectorNS).Hash {
		t.Fatalf("revision %d, earlier %v; want 2 with revision 1 compiled from its data", got.Revision, got.Earlier())
	}
	broken := revisionOf(t, v1, 1)
	broken.Labels[v1alpha1.LabelTemplateRevision] = "0000000000000000"
	broken.Data.Raw = []byte(`{"spec":`)
	s.RevisionHandler().OnUpdate(revisionOf(t, v1, 1), broken)
	if got := s.Get("team-a", "proxy"); got.Revision != 2 || len(got.Earlier()) != 0 {
		t.Errorf("an earlier revision whose data is not a template: revision %d, %d earlier; want 2, none", got.Revision, len(got.Earlier()))
	}
}

func TestTheRevisionCacheKeepsWhatTheStoreAndControllerRead(t *testing.T) {
	st := tmpl("team-a", "proxy", 1, 0)
	st.UID = "uid-1"
	cr := revisionOf(t, st, 3)
	cr.ResourceVersion = "42"
	cr.Annotations = map[string]string{"note": "x"}
	cr.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: "sidecar-injector", Operation: metav1.ManagedFieldsOperationUpdate}}
	got, err := RevisionCache().Transform(cr)
	if err != nil {
		t.Fatal(err)
	}
	want := &Revision{namespace: "team-a", name: cr.Name, resourceVersion: "42", template: "proxy", templateUID: "uid-1",
		Revision: inject.Revision{Number: 3, Hash: cr.Labels[v1alpha1.LabelTemplateRevision], Data: cr.Data.Raw}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("the revision cache keeps\n%+v\nwant\n%+v", got, want)
	}
	// The informer keys and versions it as the ControllerRevision, and may give it to the transform again.
	if key, err := toolscache.MetaNamespaceKeyFunc(got); err != nil || key != "team-a/"+cr.Name {
		t.Errorf("the revision's key is %q (%v), want team-a/%s", key, err, cr.Name)
	}
	if m, err := meta.Accessor(got); err != nil || m.GetResourceVersion() != "42" {
		t.Errorf("the revision's resourceVersion cannot be read as 42 (%v)", err)
	}
	if again, _ := RevisionTransform(got); again != got {
		t.Errorf("transformed again, the revision became %+v", again)
	}
}

func TestTheRevisionCacheKeepsNoDataOfOtherControllerRevisions(t *testing.T) {
	cr := &appsv1.ControllerRevision{ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", Name: "web-5d8f",
		Labels:          map[string]string{v1alpha1.LabelTemplateRevision: "5d8f"},
		OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "DaemonSet", Name: "web", UID: "ds", Controller: ptr.To(true)}}},
		Data: runtime.RawExtension{Raw: []byte(`{"spec":{}}`)}, Revision: 1}
	got, _ := RevisionTransform(cr)
	if r := got.(*Revision); r.Data != nil || r.templateUID != "" {
		t.Errorf("a DaemonSet's revision is kept as %+v, want its name only", r)
	}
}
