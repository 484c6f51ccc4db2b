package store

import (
	"maps"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	toolscache "k8s.io/client-go/tools/cache"
)

func nsMeta(name string, labels map[string]string) *metav1.PartialObjectMetadata {
	o := NamespaceObject()
	o.Name, o.Labels = name, labels
	return o
}

func assertLabels(t *testing.T, n *Namespaces, name string, want map[string]string, wantKnown bool) {
	t.Helper()
	got, known := n.NamespaceLabels(name)
	if known != wantKnown || !maps.Equal(got, want) {
		t.Errorf("NamespaceLabels(%q) = %v, %v; want %v, %v", name, got, known, want, wantKnown)
	}
}

func TestNamespaceObjectAsksForMetadataOfCoreV1Namespaces(t *testing.T) {
	gvk := NamespaceObject().GroupVersionKind()
	if gvk.Group != "" || gvk.Version != "v1" || gvk.Kind != "Namespace" {
		t.Errorf("NamespaceObject() has GVK %v, want /v1, Kind=Namespace", gvk)
	}
}

func TestNamespaceLabelsFollowAddUpdateAndDelete(t *testing.T) {
	n := NewNamespaces()
	assertLabels(t, n, "team-a", nil, false)

	n.OnAdd(nsMeta("team-a", map[string]string{"team": "a"}), true)
	n.OnAdd(nsMeta("bare", nil), true)
	assertLabels(t, n, "team-a", map[string]string{"team": "a"}, true)
	assertLabels(t, n, "bare", map[string]string{}, true) // known, without labels

	n.OnUpdate(nsMeta("team-a", map[string]string{"team": "a"}),
		nsMeta("team-a", map[string]string{"team": "a", "sidecar.dev/injection": "disabled"}))
	assertLabels(t, n, "team-a", map[string]string{"team": "a", "sidecar.dev/injection": "disabled"}, true)

	n.OnDelete(nsMeta("team-a", nil))
	assertLabels(t, n, "team-a", nil, false)
	n.OnDelete(toolscache.DeletedFinalStateUnknown{Key: "bare"})
	assertLabels(t, n, "bare", nil, false)
	if n.Len() != 0 {
		t.Errorf("Len() = %d, want 0", n.Len())
	}
}

func TestNamespaceLabelsAreACopyOfTheInformersObject(t *testing.T) {
	n := NewNamespaces()
	labels := map[string]string{"team": "a"}
	n.OnAdd(nsMeta("team-a", labels), true)
	labels["team"] = "changed"
	assertLabels(t, n, "team-a", map[string]string{"team": "a"}, true)
}

func TestTypedNamespaceObjectsAndTombstonesWithObjectsAreUnderstood(t *testing.T) {
	n := NewNamespaces()
	n.OnAdd(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "typed", Labels: map[string]string{"a": "b"}}}, false)
	assertLabels(t, n, "typed", map[string]string{"a": "b"}, true)
	n.OnDelete(toolscache.DeletedFinalStateUnknown{Key: "typed", Obj: nsMeta("typed", nil)})
	assertLabels(t, n, "typed", nil, false)
	n.OnAdd("not an object", false)
	if n.Len() != 0 {
		t.Errorf("Len() = %d, want 0", n.Len())
	}
}
