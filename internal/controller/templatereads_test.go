package controller

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/sidecar-dev/sidecar-injector/internal/api/v1alpha1"
	"github.com/sidecar-dev/sidecar-injector/internal/store"
)

// As serve runs them, the controllers read templates through the store (store.Templates.Reader), which decodes a
// typed copy of the cache's compact form; a typed read of the cache itself, forgotten somewhere, fails instead of
// keeping a second, typed copy of every template.
func TestTemplatesAreReadThroughTheStoreAndATypedReadOfTheCacheFails(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	k8s, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	const ns = "reads"
	if err := k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"a", "b"} {
		st := &v1alpha1.SidecarTemplate{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{"name": name}},
			Spec: v1alpha1.SidecarTemplateSpec{Containers: []corev1.Container{{Name: name, Image: "example.com/" + name + ":1"}}}}
		if err := k8s.Create(ctx, st); err != nil {
			t.Fatal(err)
		}
	}
	mgr := newStoreTestManager(t, cfg, scheme)
	templates := store.NewTemplates(testInjectorNS)
	if _, err := templates.Register(ctx, mgr.GetCache()); err != nil {
		t.Fatal(err)
	}
	defer runManager(t, ctx, cancel, mgr)()
	if !mgr.GetCache().WaitForCacheSync(ctx) {
		t.Fatal("the cache did not sync")
	}
	reader := templates.Reader(mgr.GetClient())

	var got v1alpha1.SidecarTemplate
	if err := reader.Get(ctx, client.ObjectKey{Namespace: ns, Name: "a"}, &got); err != nil {
		t.Fatal(err)
	}
	if len(got.Spec.Containers) != 1 || got.Spec.Containers[0].Image != "example.com/a:1" || got.UID == "" || got.ResourceVersion == "" {
		t.Errorf("read through the store: %+v, want the template with its spec, UID and resourceVersion", got)
	}
	err = reader.Get(ctx, client.ObjectKey{Namespace: ns, Name: "missing"}, &got)
	if !apierrors.IsNotFound(err) {
		t.Errorf("a missing template: %v, want NotFound", err)
	}
	var list v1alpha1.SidecarTemplateList
	if err := reader.List(ctx, &list, client.InNamespace(ns)); err != nil || len(list.Items) != 2 {
		t.Errorf("listed %d templates of %s (%v), want 2", len(list.Items), ns, err)
	}
	if err := reader.List(ctx, &list, client.InNamespace(ns), client.MatchingLabels{"name": "b"}); err != nil ||
		len(list.Items) != 1 || list.Items[0].Name != "b" {
		t.Errorf("listed %v by label (%v), want only b", list.Items, err)
	}
	if err := reader.List(ctx, &list, client.MatchingFields{"metadata.name": "a"}); err == nil {
		t.Error("a list by field was answered; the store has no field index and must refuse it")
	}
	// Changing a copy changes nothing in the store.
	got.Spec.Containers[0].Image = "changed"
	var again v1alpha1.SidecarTemplate
	if err := reader.Get(ctx, client.ObjectKey{Namespace: ns, Name: "a"}, &again); err != nil || again.Spec.Containers[0].Image != "example.com/a:1" {
		t.Errorf("after changing a copy, the store has %v (%v)", again.Spec.Containers, err)
	}

	typedCtx, typedCancel := context.WithTimeout(ctx, 10*time.Second)
	defer typedCancel()
	err = mgr.GetClient().Get(typedCtx, client.ObjectKey{Namespace: ns, Name: "a"}, &v1alpha1.SidecarTemplate{})
	if err == nil || !strings.Contains(err.Error(), "StoredTemplate") {
		t.Errorf("a typed Get from the cache: %v, want it refused (the cache holds store.StoredTemplate)", err)
	}
	err = mgr.GetClient().List(typedCtx, &v1alpha1.SidecarTemplateList{}, client.InNamespace(ns))
	if err == nil {
		t.Error("a typed List from the cache was answered, want it refused")
	}
}
