package store

import (
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/types"
	toolscache "k8s.io/client-go/tools/cache"

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

func TestTheStoreCompilesTemplatesWithTheirRevisions(t *testing.T) {
	s := NewTemplates(injectorNS)
	v1 := tmpl("team-a", "proxy", 1, 0)
	v1.UID = "uid-1"
	s.OnAdd(v1, true)
	rev1 := revisionOf(t, v1, 1)
	s.RevisionHandler().OnAdd(rev1, false)
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

func TestRevisionsStayEncodedInTheInformersObjectUntilCompiled(t *testing.T) {
	s := NewTemplates(injectorNS)
	v1 := tmpl("team-a", "proxy", 1, 0)
	v1.UID = "uid-1"
	rev := revisionOf(t, v1, 1)
	s.RevisionHandler().OnAdd(rev, false)
	broken := revisionOf(t, v1, 2)
	broken.Name, broken.Data.Raw = "proxy-broken", []byte(`{"spec": "not a template"}`)
	s.RevisionHandler().OnAdd(broken, false)
	s.OnAdd(v1, true)

	h := s.history[types.NamespacedName{Namespace: "team-a", Name: "proxy"}]
	if len(h) != 1 {
		t.Fatalf("the store holds %d revisions of team-a/proxy, want 1 (data that is not a template left out)", len(h))
	}
	// The same bytes, not a decoded copy: a typed copy per template is what the store must not keep.
	if len(h[0].data) == 0 || &h[0].data[0] != &rev.Data.Raw[0] {
		t.Error("the store keeps its own copy of the revision's data, not the informer's")
	}
	if got := s.Get("team-a", "proxy"); got.Revision != 1 {
		t.Errorf("compiled as revision %d, want 1 (decoded from the kept data)", got.Revision)
	}
}
