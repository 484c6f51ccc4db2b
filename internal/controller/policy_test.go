package controller

import (
	"context"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/sidecar-dev/sidecar-injector/internal/api/v1alpha1"
	"github.com/sidecar-dev/sidecar-injector/internal/policy"
)

func TestServedByPolicySaysWhatServesEachTemplateAndWhy(t *testing.T) {
	tpl := func(name string, mode v1alpha1.Mode, envFrom bool) *v1alpha1.SidecarTemplate {
		st := &v1alpha1.SidecarTemplate{ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", Name: name, Generation: 4},
			Spec: v1alpha1.SidecarTemplateSpec{Mode: mode, Containers: []corev1.Container{{Name: name + "-c", Image: "x:1"}}}}
		if envFrom {
			st.Spec.EnvFrom = []corev1.EnvFromSource{{SecretRef: &corev1.SecretEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "s"}}}}
		}
		return st
	}
	templates := []*v1alpha1.SidecarTemplate{
		tpl("absent", "", false), tpl("webhook", v1alpha1.ModeWebhook, false), tpl("policy", v1alpha1.ModePolicy, false),
		tpl("auto", v1alpha1.ModeAuto, false), tpl("auto-envfrom", v1alpha1.ModeAuto, true), tpl("policy-envfrom", v1alpha1.ModePolicy, true),
	}
	res, err := policy.Compile(templates, policy.Options{InjectorNamespace: "sidecar-injector", Name: "si", Serve: served})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		template string
		status   metav1.ConditionStatus
		reason   string
		message  string
	}{
		{"absent", metav1.ConditionFalse, ReasonModeWebhook, "spec.mode is Webhook"},
		{"webhook", metav1.ConditionFalse, ReasonModeWebhook, "spec.mode is Webhook"},
		{"policy", metav1.ConditionTrue, ReasonCompiled, "served by MutatingAdmissionPolicy si-team-a;"},
		{"auto", metav1.ConditionTrue, ReasonCompiled, "served by MutatingAdmissionPolicy si-team-a;"},
		{"auto-envfrom", metav1.ConditionFalse, policy.ReasonEnvFrom, "the webhook serves the template, a policy cannot: EnvFromUnsupported"},
		{"policy-envfrom", metav1.ConditionFalse, policy.ReasonEnvFrom, "spec.mode is Policy but a policy cannot serve the template"},
	} {
		t.Run(tc.template, func(t *testing.T) {
			var st *v1alpha1.SidecarTemplate
			for _, s := range templates {
				if s.Name == tc.template {
					st = s
				}
			}
			c := servedCondition(st, res)
			if c.Status != tc.status || c.Reason != tc.reason || !strings.Contains(c.Message, tc.message) || c.ObservedGeneration != 4 {
				t.Errorf("condition %+v; want %s %s with %q, observedGeneration 4", c, tc.status, tc.reason, tc.message)
			}
		})
	}
}

// A template is marked served by policy (which makes the webhook leave it alone) only once the generated objects
// have stayed unchanged for the activation delay, so that no pod meets neither the policy nor the webhook; a
// template already marked for its generation stays marked when another template's change rewrites the policy.
func TestServedByPolicyWaitsUntilTheAPIServerCanApplyThePolicy(t *testing.T) {
	scheme := runtime.NewScheme()
	_ = v1alpha1.AddToScheme(scheme)
	st := &v1alpha1.SidecarTemplate{ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", Name: "p", Generation: 4},
		Spec: v1alpha1.SidecarTemplateSpec{Mode: v1alpha1.ModePolicy, JobPolicy: v1alpha1.JobPolicySkip,
			Containers: []corev1.Container{{Name: "p", Image: "x:1"}}}}
	cl := fake.NewClientBuilder().WithScheme(scheme).WithObjects(st).WithStatusSubresource(st).Build()
	r := &PolicyReconciler{Client: cl}
	ctx := context.Background()
	step := func(what string, generation int64, pending bool, wantStatus metav1.ConditionStatus, wantReason string) {
		t.Helper()
		var cur v1alpha1.SidecarTemplate
		if err := cl.Get(ctx, client.ObjectKeyFromObject(st), &cur); err != nil {
			t.Fatal(err)
		}
		cur.Generation = generation
		res, err := policy.Compile([]*v1alpha1.SidecarTemplate{&cur}, policy.Options{InjectorNamespace: "sidecar-injector", Serve: served})
		if err != nil {
			t.Fatal(err)
		}
		activating, err := r.writeConditions(ctx, []*v1alpha1.SidecarTemplate{&cur}, res, pending)
		if err != nil {
			t.Fatal(err)
		}
		if err := cl.Get(ctx, client.ObjectKeyFromObject(st), &cur); err != nil {
			t.Fatal(err)
		}
		c := meta.FindStatusCondition(cur.Status.Conditions, v1alpha1.ConditionServedByPolicy)
		if c == nil || c.Status != wantStatus || c.Reason != wantReason || activating != (wantReason == ReasonActivating) {
			t.Errorf("%s: condition %+v (activating %v), want %s %s", what, c, activating, wantStatus, wantReason)
		}
	}
	step("just written", 4, true, metav1.ConditionFalse, ReasonActivating)
	step("unchanged for the activation delay", 4, false, metav1.ConditionTrue, ReasonCompiled)
	step("the policy rewritten for another template", 4, true, metav1.ConditionTrue, ReasonCompiled)
	step("its own spec changed", 5, true, metav1.ConditionFalse, ReasonActivating)
}
