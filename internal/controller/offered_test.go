package controller

import (
	"context"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/sidecar-dev/sidecar-injector/internal/api/v1alpha1"
	"github.com/sidecar-dev/sidecar-injector/internal/store"
)

// The controller decides a template's readiness from the webhook's store (compiled templates and the engine's
// index) when it has one, and from listed templates otherwise: both give the same verdict, and both follow the
// engine's override rule.
func TestReadinessFromTheStoreMatchesListing(t *testing.T) {
	templates := []tmpl{
		{ns: injectorNS, name: "mesh", selector: "", containers: []string{"proxy"}},
		{ns: injectorNS, name: "shadowed", selector: "", volumes: []string{"data"}, override: v1alpha1.NamespaceOverrideAllow},
		{ns: "team-a", name: "shadowed", selector: "-", containers: []string{"x"}},
		{ns: injectorNS, name: "platform", selector: "", containers: []string{"platform"}},
		{ns: "team-a", name: "platform", selector: "-", containers: []string{"y"}},
		{ns: injectorNS, name: "elsewhere", selector: "", containers: []string{"e"}, nsSelector: "env=prod"},
		{ns: "team-a", name: "elsewhere", selector: "app=web", containers: []string{"z"}},
		{ns: "team-a", name: "mine", selector: "app=web", containers: []string{"proxy"}, volumes: []string{"data"}},
		{ns: "team-a", name: "fine", selector: "app=web", containers: []string{"other"}},
	}
	scheme := runtime.NewScheme()
	_ = corev1.AddToScheme(scheme)
	_ = v1alpha1.AddToScheme(scheme)
	objs := []*v1alpha1.SidecarTemplate{}
	cb := fake.NewClientBuilder().WithScheme(scheme).WithObjects(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "team-a"}})
	st := store.NewTemplates(injectorNS)
	for _, x := range templates {
		o := x.build(t)
		o.Generation = 1
		objs = append(objs, &o)
		cb = cb.WithObjects(&o)
		st.Set(&o)
	}
	cl := cb.Build()
	listed := &TemplateReconciler{Client: cl, InjectorNamespace: injectorNS}
	stored := &TemplateReconciler{Client: cl, InjectorNamespace: injectorNS, Templates: st}
	want := map[string]string{"team-a/mine": ReasonNameClash, "team-a/fine": ReasonReady, injectorNS + "/mesh": ReasonReady,
		// A namespaced template of a cluster-wide one's name: used where the cluster-wide one allows it or does
		// not serve the namespace (its namespaceSelector leaves team-a out), else OverrideDenied.
		"team-a/shadowed": ReasonReady, "team-a/platform": ReasonOverrideDenied, "team-a/elsewhere": ReasonReady,
		injectorNS + "/shadowed": ReasonReady, injectorNS + "/platform": ReasonReady, injectorNS + "/elsewhere": ReasonReady}
	for _, o := range objs {
		a, err := listed.readiness(context.Background(), o, listed.compile(o))
		if err != nil {
			t.Fatal(err)
		}
		b, err := stored.readiness(context.Background(), o, stored.compile(o))
		if err != nil {
			t.Fatal(err)
		}
		if a != b {
			t.Errorf("%s/%s: from the store %+v, from listing %+v", o.Namespace, o.Name, b, a)
		}
		if w, ok := want[o.Namespace+"/"+o.Name]; !ok {
			t.Errorf("%s/%s: no verdict expected in the test", o.Namespace, o.Name)
		} else if a.Reason != w {
			t.Errorf("%s/%s: %s (%s), want %s", o.Namespace, o.Name, a.Reason, a.Message, w)
		}
	}
	if c := stored.compile(objs[0]); c != st.Get(objs[0].Namespace, objs[0].Name) {
		t.Errorf("the store's compiled template of the same generation is not reused")
	}
}
