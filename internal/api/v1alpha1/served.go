package v1alpha1

import (
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// IsServedByPolicy reports whether a generated MutatingAdmissionPolicy serves the template: its ServedByPolicy
// condition is True for its current generation. A condition of an older generation describes a spec the policy
// may not serve yet, and the webhook serves the template meanwhile. The one rule for the webhook's store and for
// explain.
func (t *SidecarTemplate) IsServedByPolicy() bool {
	c := meta.FindStatusCondition(t.Status.Conditions, ConditionServedByPolicy)
	return c != nil && c.Status == metav1.ConditionTrue && c.ObservedGeneration == t.Generation
}
