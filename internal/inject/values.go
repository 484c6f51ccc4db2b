package inject

import (
	"cmp"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/sidecar-dev/sidecar-injector/internal/api/v1alpha1"
)

func valuesOf(pod *podView, namespace string) *podValues {
	pv := &podValues{namespace: namespace}
	if m := pod.Metadata; m != nil {
		pv.name, pv.generateName, pv.labels, pv.annotations = m.Name, m.GenerateName, m.Labels, m.Annotations
		pv.owner = ownerOf(m.OwnerReferences)
		if m.Namespace != "" && namespace == "" {
			pv.namespace = m.Namespace
		}
	}
	if s := pod.Spec; s != nil {
		pv.serviceAccount = cmp.Or(s.ServiceAccountName, s.ServiceAccount)
		pv.completes = s.RestartPolicy == string(corev1.RestartPolicyNever) || s.RestartPolicy == string(corev1.RestartPolicyOnFailure)
	}
	// The API server's ServiceAccount admission fills in "default" before webhooks run; offline, do the same.
	pv.serviceAccount = cmp.Or(pv.serviceAccount, "default")
	return pv
}

// podValues is what per-pod values resolve against.
type podValues struct {
	name, generateName, namespace, serviceAccount string
	labels, annotations                           map[string]string
	// owner is "Kind/name" of the pod's controller (else its first owner); empty for a bare pod.
	owner string
	// completes: the pod runs to completion (restartPolicy Never or OnFailure), so spec.jobPolicy applies.
	completes bool
}

// paramAnnotation is the pod annotation that sets parameter param of template tmpl.
func paramAnnotation(tmpl, param string) string {
	return tmpl + v1alpha1.ParamAnnotationSuffix + param
}

// resolveParams returns the value of every declared parameter for this pod, or the message for the first one
// that has neither a default nor a pod annotation. A value the pod's record holds (recorded, "params.NAME")
// stands for the pod's annotation: it goes through the same checks as one.
func (t *Template) resolveParams(pv *podValues, recorded map[string]string) (map[string]string, string) {
	if len(t.params) == 0 {
		return nil, ""
	}
	out := make(map[string]string, len(t.params))
	for _, p := range t.params {
		v, ok := recorded[paramExprPrefix+p.Name]
		if !ok {
			v, ok = pv.annotations[paramAnnotation(t.Name, p.Name)]
		}
		if ok {
			out[p.Name] = v
			continue
		}
		if p.Default == nil {
			return nil, fmt.Sprintf("parameter %q has no default and the pod does not set it; add the annotation %q to the pod",
				p.Name, paramAnnotation(t.Name, p.Name))
		}
		out[p.Name] = *p.Default
	}
	return out, ""
}

// paramExprPrefix starts the per-pod expression of a parameter, {{ params.NAME }}.
const paramExprPrefix = "params."

// namespaceExpr is the one per-pod value that the pod's author does not control: never recorded, always the
// request's.
const namespaceExpr = "pod.namespace"

// resolver returns the value of one per-pod expression (already checked by findPlaceholders): the recorded one
// when the record holds it (the namespace excepted), else the pod's current one.
func resolver(pv *podValues, params, recorded map[string]string) func(expr string) string {
	return func(expr string) string {
		if v, ok := recorded[expr]; ok && expr != namespaceExpr {
			return v
		}
		switch {
		case expr == "pod.name":
			return pv.name
		case expr == "pod.generateName":
			return pv.generateName
		case expr == namespaceExpr:
			return pv.namespace
		case expr == "pod.serviceAccountName":
			return pv.serviceAccount
		case strings.HasPrefix(expr, "pod.labels."):
			return pv.labels[strings.TrimPrefix(expr, "pod.labels.")]
		case strings.HasPrefix(expr, "pod.annotations."):
			return pv.annotations[strings.TrimPrefix(expr, "pod.annotations.")]
		case strings.HasPrefix(expr, paramExprPrefix):
			return params[strings.TrimPrefix(expr, paramExprPrefix)]
		}
		return ""
	}
}

// valuesUsed returns what the template's per-pod values resolve to (value: the resolver of one rendering), for
// the pod's record: every expression the template uses but the namespace, which verification takes from the
// request (a record copied from another namespace then renders other values and does not verify). Nil when
// the template uses none.
func (t *Template) valuesUsed(value func(expr string) string) map[string]string {
	if len(t.recordable) == 0 {
		return nil
	}
	out := make(map[string]string, len(t.recordable))
	for _, e := range t.recordable {
		out[e] = value(e)
	}
	return out
}
