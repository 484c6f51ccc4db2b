package explain

import (
	"context"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sidecar-dev/sidecar-injector/internal/api/v1alpha1"
	"github.com/sidecar-dev/sidecar-injector/internal/inject"
)

// listSource serves fixed templates and no namespace labels.
type listSource []v1alpha1.SidecarTemplate

func (l listSource) Templates(context.Context, string) ([]v1alpha1.SidecarTemplate, error) {
	return l, nil
}
func (listSource) NamespaceLabels(context.Context, string) (map[string]string, error) {
	return nil, nil
}

// explain says what the webhook does with a template a generated policy serves (its ServedByPolicy condition True
// for its generation): nothing, reason ServedByPolicy; with the condition of an older generation, it injects it.
func TestExplainLeavesPolicyServedTemplatesToThePolicy(t *testing.T) {
	tpl := v1alpha1.SidecarTemplate{ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", Name: "mesh", Generation: 3},
		Spec: v1alpha1.SidecarTemplateSpec{Mode: v1alpha1.ModePolicy, Containers: []corev1.Container{{Name: "proxy", Image: "p:1"}}}}
	pod := PodInput{Source: "pod.yaml#1", Object: `Pod "web"`, Namespace: "team-a",
		Raw: []byte(`{"metadata":{"name":"web","annotations":{"sidecar.dev/inject":"mesh"}},"spec":{"containers":[{"name":"app","image":"a"}]}}`)}
	for _, c := range []struct {
		observed int64
		outcome  inject.Outcome
		reason   inject.Reason
	}{{3, inject.OutcomeNotApplicable, inject.ReasonServedByPolicy}, {2, inject.OutcomeInjected, inject.ReasonRequested}} {
		st := tpl.DeepCopy()
		st.Status.Conditions = []metav1.Condition{{Type: v1alpha1.ConditionServedByPolicy, Status: metav1.ConditionTrue,
			ObservedGeneration: c.observed, Reason: "Compiled"}}
		rep, err := Explain(context.Background(), []PodInput{pod}, listSource{*st}, "sidecar-injector")
		if err != nil {
			t.Fatal(err)
		}
		got := rep.Pods[0]
		if len(got.Templates) != 1 || got.Templates[0].Outcome != c.outcome || got.Templates[0].Reason != c.reason || got.Denied {
			t.Errorf("condition for generation %d of 3: %+v, want %s/%s and not denied", c.observed, got.Templates, c.outcome, c.reason)
		}
	}
}
