package server

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sidecar-dev/sidecar-injector/internal/api/v1alpha1"
	"github.com/sidecar-dev/sidecar-injector/internal/store"
)

func TestTheCacheKeepsTemplatesInTheStoresFormAndLeavesOtherKindsToTheDefault(t *testing.T) {
	var others []any
	tr := transform(func(obj any) (any, error) { others = append(others, obj); return obj, nil })
	tpl := &v1alpha1.SidecarTemplate{ObjectMeta: metav1.ObjectMeta{Name: "t",
		Annotations: map[string]string{corev1.LastAppliedConfigAnnotation: "{}"}}}
	got, err := tr(tpl)
	if err != nil {
		t.Fatal(err)
	}
	if st, ok := got.(*store.StoredTemplate); !ok || st.Annotations != nil {
		t.Errorf("the cache keeps a template as %#v, want a store.StoredTemplate without kubectl's copy of the spec", got)
	}
	pod := &corev1.Pod{}
	if _, err := tr(pod); err != nil {
		t.Fatal(err)
	}
	if len(others) != 1 || others[0] != pod {
		t.Errorf("the default transform saw %v, want only the pod", others)
	}
}
