package policy_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/sidecar-dev/sidecar-injector/internal/api/v1alpha1"
	"github.com/sidecar-dev/sidecar-injector/internal/testenv"
)

// TestMixedModeLeavesPolicyServedTemplatesToThePolicy runs in the webhook cluster (policy mode on): once a
// template's ServedByPolicy condition is True, the webhook never injects it — its decision for a pod that
// requests it is ServedByPolicy, not Injected nor AlreadyInjected — a request for it is not denied as "not
// found", the policy's sidecar is in the pod once, and the record the webhook rewrites to add its own template
// keeps the policy's entry.
func TestMixedModeLeavesPolicyServedTemplatesToThePolicy(t *testing.T) {
	c := webhookCluster
	const ns = "mixed-b"
	c.ensureNamespace(t, ns, nil)
	byPolicy := &v1alpha1.SidecarTemplate{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "by-policy"},
		Spec: v1alpha1.SidecarTemplateSpec{Mode: v1alpha1.ModePolicy, JobPolicy: v1alpha1.JobPolicySkip,
			Containers: []corev1.Container{{Name: "policy-sidecar", Image: "policy:1"}}}}
	// Before the policy's template in injection order: the webhook runs after the policy all the same.
	byWebhook := &v1alpha1.SidecarTemplate{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "by-webhook"},
		Spec: v1alpha1.SidecarTemplateSpec{Order: -1, Containers: []corev1.Container{{Name: "webhook-sidecar", Image: "webhook:1"}}}}
	for _, st := range []*v1alpha1.SidecarTemplate{byPolicy, byWebhook} {
		if err := c.c.Create(ctxFor(t), st); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		for _, st := range []*v1alpha1.SidecarTemplate{byPolicy, byWebhook} {
			_ = c.c.Delete(ctxFor(t), st)
		}
		waitNoGeneratedObjects(t, c)
	})
	expectCondition(t, c, byPolicy, metav1.ConditionTrue, "Compiled")

	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "mixed",
		Annotations: map[string]string{v1alpha1.AnnotationInject: "by-policy, by-webhook"}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "app:1"}}}}
	// The webhook's store learns the condition through its informer: dry runs until its decision says so.
	testenv.Eventually(t, syncTimeout, "the webhook leaves by-policy to the policy", func() error {
		if _, err := c.dryRun(t, pod); err != nil {
			return err
		}
		if n := decisions(t, ns, "by-policy", "ServedByPolicy"); n == 0 {
			return fmt.Errorf("no ServedByPolicy decision for by-policy yet")
		}
		return nil
	})
	before := decisions(t, ns, "by-policy", "")
	got, err := c.createPod(t, map[string]any{"apiVersion": "v1", "kind": "Pod",
		"metadata": map[string]any{"name": pod.Name, "namespace": ns, "annotations": map[string]any{v1alpha1.AnnotationInject: "by-policy, by-webhook"}},
		"spec":     map[string]any{"containers": []any{map[string]any{"name": "app", "image": "app:1"}}}})
	if err != nil {
		t.Fatalf("a pod requesting a policy-served template is denied: %v", err)
	}
	var names []string
	for _, ct := range got.Spec.Containers {
		names = append(names, ct.Name)
	}
	if want := []string{"app", "policy-sidecar", "webhook-sidecar"}; !slices.Equal(names, want) {
		t.Errorf("containers %v, want %v: the policy's first (it runs first), each once", names, want)
	}
	rec := got.Annotations[v1alpha1.AnnotationStatus]
	if strings.Count(rec, `"name":"by-policy"`) != 1 || strings.Count(rec, `"name":"by-webhook"`) != 1 {
		t.Errorf("record %s: want one entry per template, the policy's kept when the webhook rewrote it", rec)
	}
	after := decisions(t, ns, "by-policy", "")
	served := decisions(t, ns, "by-policy", "ServedByPolicy")
	if after-before != 1 || served == 0 || after != served {
		t.Errorf("the webhook's decisions about by-policy: %v in all, %v ServedByPolicy (%v before this pod): want every one ServedByPolicy, one for this pod", after, served, before)
	}
}

// decisions sums the in-process server's sidecar_injector_template_decisions_total for the template, for one
// reason ("" for every reason).
func decisions(t *testing.T, namespace, name, reason string) float64 {
	t.Helper()
	families, err := ctrlmetrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, f := range families {
		if f.GetName() != "sidecar_injector_template_decisions_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			l := map[string]string{}
			for _, p := range m.GetLabel() {
				l[p.GetName()] = p.GetValue()
			}
			if l["namespace"] == namespace && l["template"] == name && (reason == "" || l["reason"] == reason) {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}
