package explain

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/sidecar-dev/sidecar-injector/internal/api/v1alpha1"
	"github.com/sidecar-dev/sidecar-injector/internal/inject"
	"github.com/sidecar-dev/sidecar-injector/internal/store"
)

// Against a cluster, explain says which revision a pod gets under a canary, and why.
func TestExplainSaysWhichRevisionAndWhy(t *testing.T) {
	scheme := runtime.NewScheme()
	_ = clientgoscheme.AddToScheme(scheme)
	_ = v1alpha1.AddToScheme(scheme)
	tpl := func(image string) *v1alpha1.SidecarTemplate {
		return &v1alpha1.SidecarTemplate{ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", Name: "proxy", UID: "uid-proxy"},
			Spec: v1alpha1.SidecarTemplateSpec{Containers: []corev1.Container{{Name: "proxy", Image: image}}}}
	}
	v1, v2 := tpl("proxy:1"), tpl("proxy:2")
	v2.Spec.UpdatePolicy = &v1alpha1.UpdatePolicy{Canary: &v1alpha1.Canary{Percent: ptr.To[int32](0),
		Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"track": "canary"}}}}
	v2.Status.CurrentRevision, v2.Status.StableRevision = 2, 1
	objs := []client.Object{&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "team-a"}}, v2}
	for n, st := range map[int64]*v1alpha1.SidecarTemplate{1: v1, 2: v2} {
		cr, err := store.NewRevision(st, n, inject.Compile(st, DefaultInjectorNamespace).Hash)
		if err != nil {
			t.Fatal(err)
		}
		objs = append(objs, cr)
	}
	cl := fake.NewClientBuilder().WithScheme(scheme).WithObjects(objs...).Build()
	pods := `
apiVersion: v1
kind: Pod
metadata: {name: main, annotations: {sidecar.dev/inject: proxy}, ownerReferences: [{apiVersion: apps/v1, kind: ReplicaSet, name: web-1, uid: u1, controller: true}]}
spec: {containers: [{name: app, image: app}]}
---
apiVersion: v1
kind: Pod
metadata: {name: canary, labels: {track: canary}, annotations: {sidecar.dev/inject: proxy}}
spec: {containers: [{name: app, image: app}]}
`
	out := string(run(t, Config{File: "-", Namespace: "team-a", client: cl}, pods))
	for _, want := range []string{
		"revision 1\n", "revision 1 (stable): ReplicaSet/web-1 is outside the 0% canary share of revision 2",
		"revision 2\n", "revision 2 (canary): the pod matches spec.updatePolicy.canary.selector",
		`"image":"proxy:1"`, `"image":"proxy:2"`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("explain does not say %q:\n%s", want, out)
		}
	}
}
