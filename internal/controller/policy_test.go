package controller

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

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
