package store

import (
	"testing"

	toolscache "k8s.io/client-go/tools/cache"
)

// TestTheStoreIsCaughtUpOnlyWhenItHoldsWhatTheInformerHolds: a controller woken by a template's change asks
// whether the store has taken it in yet (the informer's own store is updated before any handler hears of it).
func TestTheStoreIsCaughtUpOnlyWhenItHoldsWhatTheInformerHolds(t *testing.T) {
	s := NewTemplates("injector")
	if !s.CaughtUp("team-a") {
		t.Fatal("a store fed directly (no informer) is never behind")
	}
	informer := toolscache.NewIndexer(toolscache.MetaNamespaceKeyFunc, toolscache.Indexers{toolscache.NamespaceIndex: toolscache.MetaNamespaceIndexFunc})
	s.informerCache = informer

	a, b := tmpl("team-a", "a", 1, 0), tmpl("team-a", "b", 1, 0)
	a.ResourceVersion, b.ResourceVersion = "10", "11"
	steps := []struct {
		name string
		do   func()
		want bool
	}{
		{"an empty store and informer agree", func() {}, true},
		{"the informer has a template the store has not heard of", func() { must(t, informer.Add(a)) }, false},
		{"the store took it in", func() { s.OnAdd(a, false) }, true},
		{"the informer has a newer version", func() {
			a2 := a.DeepCopy()
			a2.ResourceVersion = "12"
			must(t, informer.Update(a2))
			a = a2
		}, false},
		{"the store took the newer version in", func() { s.OnAdd(a, false) }, true},
		{"a second template arrived in both", func() { must(t, informer.Add(b)); s.OnAdd(b, false) }, true},
		{"the informer deleted one, the store not yet", func() { must(t, informer.Delete(b)) }, false},
		{"the store deleted it too", func() { s.OnDelete(b) }, true},
	}
	for _, step := range steps {
		step.do()
		if got := s.CaughtUp("team-a", "injector"); got != step.want {
			t.Fatalf("%s: CaughtUp = %v, want %v", step.name, got, step.want)
		}
	}
	if !s.CaughtUp("team-b") {
		t.Error("a namespace neither holds is caught up")
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
