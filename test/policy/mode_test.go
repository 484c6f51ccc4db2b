package policy_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/sidecar-dev/sidecar-injector/internal/api/v1alpha1"
	"github.com/sidecar-dev/sidecar-injector/internal/testenv"
)

// TestTemplatesInPolicyAndAutoModeAreServedByGeneratedPoliciesAndNothingIsLeftBehind runs in the webhook
// cluster, where the injector's controller runs: it generates the policies, reports the mode in each
// template's condition, injects nothing twice beside the webhook, and deletes what no template needs.
func TestTemplatesInPolicyAndAutoModeAreServedByGeneratedPoliciesAndNothingIsLeftBehind(t *testing.T) {
	c := webhookCluster
	c.ensureNamespace(t, "mode-a", nil)
	policyT := &v1alpha1.SidecarTemplate{ObjectMeta: metav1.ObjectMeta{Namespace: "mode-a", Name: "by-policy"},
		Spec: v1alpha1.SidecarTemplateSpec{Mode: v1alpha1.ModePolicy, JobPolicy: v1alpha1.JobPolicySkip,
			Containers: []corev1.Container{{Name: "policy-sidecar", Image: "policy:1"}},
			Env:        []corev1.EnvVar{{Name: "BY", Value: "policy"}}}}
	autoT := &v1alpha1.SidecarTemplate{ObjectMeta: metav1.ObjectMeta{Namespace: "mode-a", Name: "auto"},
		Spec: v1alpha1.SidecarTemplateSpec{Mode: v1alpha1.ModeAuto,
			Containers: []corev1.Container{{Name: "auto-sidecar", Image: "auto:1"}},
			EnvFrom:    []corev1.EnvFromSource{{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "cfg"}}}}}}
	for _, st := range []*v1alpha1.SidecarTemplate{policyT, autoT} {
		if err := c.c.Create(ctxFor(t), st); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		for _, st := range []*v1alpha1.SidecarTemplate{policyT, autoT} {
			_ = c.c.Delete(ctxFor(t), st)
		}
		waitNoGeneratedObjects(t, c)
	})

	expectCondition(t, c, policyT, metav1.ConditionTrue, "Compiled")
	expectCondition(t, c, autoT, metav1.ConditionFalse, "EnvFromUnsupported")
	var mp admissionregistrationv1.MutatingAdmissionPolicy
	if err := c.c.Get(ctxFor(t), client.ObjectKey{Name: "sidecar-injector-mode-a"}, &mp); err != nil {
		t.Fatalf("the generated policy: %v", err)
	}
	if n := len(mp.Spec.Mutations); n != 1 || !strings.Contains(mp.Spec.Mutations[0].JSONPatch.Expression, "mode-a/by-policy") {
		t.Errorf("the generated policy has %d mutations; want one, for mode-a/by-policy", n)
	}
	for _, name := range []string{"sidecar-injector-deny"} {
		var vp admissionregistrationv1.ValidatingAdmissionPolicy
		if err := c.c.Get(ctxFor(t), client.ObjectKey{Name: name}, &vp); err != nil {
			t.Errorf("the validating policy for failurePolicy Fail: %v", err)
		}
	}
	if o := mp.OwnerReferences; len(o) != 1 || o[0].Kind != "MutatingWebhookConfiguration" || o[0].Name != "sidecar-injector" {
		t.Errorf("owner references %+v: want the injector's MutatingWebhookConfiguration, so that uninstalling deletes the policy", o)
	}

	// Mixed mode: the policy injects by-policy first, the webhook then finds it injected and adds auto.
	pod := map[string]any{"apiVersion": "v1", "kind": "Pod", "metadata": map[string]any{"name": "mixed", "namespace": "mode-a",
		"annotations": map[string]any{v1alpha1.AnnotationInject: "by-policy, auto"}},
		"spec": map[string]any{"containers": []any{map[string]any{"name": "app", "image": "app:1"}}}}
	got, err := c.createPod(t, pod)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, ct := range got.Spec.Containers {
		names = append(names, ct.Name)
	}
	if want := []string{"app", "auto-sidecar", "policy-sidecar"}; !slices.Equal(sorted(names), want) {
		t.Errorf("containers %v, want each of %v once", names, want)
	}
	if rec := got.Annotations[v1alpha1.AnnotationStatus]; strings.Count(rec, `"name":"by-policy"`) != 1 || strings.Count(rec, `"name":"auto"`) != 1 {
		t.Errorf("record %s: want one entry per template", rec)
	}

	// Back to the webhook: no template needs a policy any more, so none is left.
	policyT.Spec.Mode = v1alpha1.ModeWebhook
	testenv.Eventually(t, syncTimeout, "update the template's mode", func() error {
		var cur v1alpha1.SidecarTemplate
		if err := c.c.Get(ctxFor(t), client.ObjectKeyFromObject(policyT), &cur); err != nil {
			return err
		}
		cur.Spec.Mode = v1alpha1.ModeWebhook
		return c.c.Update(ctxFor(t), &cur)
	})
	expectCondition(t, c, policyT, metav1.ConditionFalse, "ModeWebhook")
	waitNoGeneratedObjects(t, c)
}

func sorted(s []string) []string { s = slices.Clone(s); slices.Sort(s); return s }

func expectCondition(t *testing.T, c *cluster, st *v1alpha1.SidecarTemplate, status metav1.ConditionStatus, reason string) {
	t.Helper()
	testenv.Eventually(t, syncTimeout, fmt.Sprintf("%s/%s: ServedByPolicy %s %s", st.Namespace, st.Name, status, reason), func() error {
		var cur v1alpha1.SidecarTemplate
		if err := c.c.Get(ctxFor(t), client.ObjectKeyFromObject(st), &cur); err != nil {
			return err
		}
		cond := meta.FindStatusCondition(cur.Status.Conditions, v1alpha1.ConditionServedByPolicy)
		if cond == nil || cond.Status != status || cond.Reason != reason || cond.ObservedGeneration != cur.Generation {
			return fmt.Errorf("condition %+v", cond)
		}
		return nil
	})
}

// waitNoGeneratedObjects waits until the controller has deleted every generated policy and binding.
func waitNoGeneratedObjects(t *testing.T, c *cluster) {
	t.Helper()
	testenv.Eventually(t, syncTimeout, "no generated policy or binding is left", func() error {
		for _, l := range []client.ObjectList{&admissionregistrationv1.MutatingAdmissionPolicyList{}, &admissionregistrationv1.MutatingAdmissionPolicyBindingList{},
			&admissionregistrationv1.ValidatingAdmissionPolicyList{}, &admissionregistrationv1.ValidatingAdmissionPolicyBindingList{}} {
			if err := c.c.List(ctxFor(t), l); err != nil {
				return err
			}
			if n := meta.LenList(l); n > 0 {
				return fmt.Errorf("%d %T items left", n, l)
			}
		}
		return nil
	})
}
