package controller

import (
	"cmp"
	"fmt"
	"slices"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/apimachinery/pkg/util/sets"

	"github.com/sidecar-dev/sidecar-injector/internal/api/v1alpha1"
	"github.com/sidecar-dev/sidecar-injector/internal/inject"
)

// Clashes returns, for a template t with a selector, a sentence for every container, init container or volume
// name it adds that another template also adds, when both could select the same pod, so that a pod selected by
// both cannot receive both (the later one in injection order conflicts with the earlier one). candidates are
// the other templates of t's namespace and the cluster-wide ones (those in injectorNamespace); nsLabels are the
// labels of t's namespace (nil when unknown).
//
// It is an approximation made without looking at pods:
//   - only templates that both have a selector count: a template injected on request only clashes with another
//     in a pod that asks for it, which is that pod's author's choice;
//   - two selectors "could select the same pod" when the conjunction of their requirements is satisfiable
//     (an empty selector matches everything; app=a and app=b never meet; app=a and tier=web may);
//   - in one namespace, the clash is reported on the later template in injection order (order, namespace,
//     name), which is the one that fails;
//   - between a namespaced template and a cluster-wide one, it is reported on the namespaced template only,
//     whichever comes first: a tenant's template must not change the status of a cluster-wide one. A
//     cluster-wide template shadowed in t's namespace by a template of the same name, or whose namespaceSelector
//     does not match nsLabels, is not a candidate;
//   - invalid templates (never injected) are ignored.
func Clashes(t *v1alpha1.SidecarTemplate, candidates []v1alpha1.SidecarTemplate, injectorNamespace string, nsLabels map[string]string) []string {
	if t.Spec.Selector == nil {
		return nil
	}
	self, err := metav1.LabelSelectorAsSelector(t.Spec.Selector)
	if err != nil {
		return nil // invalid: reported as such
	}
	clusterWide := injectorNamespace != "" && t.Namespace == injectorNamespace
	local := sets.New[string]()
	for i := range candidates {
		if candidates[i].Namespace == t.Namespace {
			local.Insert(candidates[i].Name)
		}
	}
	others := make([]*v1alpha1.SidecarTemplate, 0, len(candidates))
	for i := range candidates {
		o := &candidates[i]
		if (o.Namespace == t.Namespace && o.Name == t.Name) || o.Spec.Selector == nil {
			continue
		}
		switch {
		case o.Namespace == t.Namespace:
			if !before(o, t) {
				continue // t comes first: the clash is reported on o
			}
		case clusterWide || o.Namespace != injectorNamespace || injectorNamespace == "":
			continue // a cluster-wide template is only compared with cluster-wide ones; other namespaces never meet
		case local.Has(o.Name):
			continue // shadowed here
		case o.Spec.NamespaceSelector != nil && nsLabels != nil:
			nsSel, err := metav1.LabelSelectorAsSelector(o.Spec.NamespaceSelector)
			if err != nil || !nsSel.Matches(labels.Set(nsLabels)) {
				continue
			}
		}
		if inject.Compile(o, injectorNamespace).Err != nil {
			continue
		}
		sel, err := metav1.LabelSelectorAsSelector(o.Spec.Selector)
		if err != nil || !CouldOverlap(self, sel) {
			continue
		}
		others = append(others, o)
	}
	slices.SortFunc(others, func(a, b *v1alpha1.SidecarTemplate) int {
		return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
	})

	var out []string
	mine := addedNames(t)
	for _, o := range others {
		theirs := addedNames(o)
		where := "template"
		if o.Namespace != t.Namespace {
			where = "cluster-wide template"
		}
		for _, n := range mine {
			if slices.Contains(theirs, n) {
				out = append(out, fmt.Sprintf("%s %q clashes with %s %s/%s, whose selector can select the same pods: a pod selected by both cannot receive both",
					n.kind, n.name, where, o.Namespace, o.Name))
			}
		}
	}
	return out
}

type addedName struct{ kind, name string }

// addedNames lists the names a template adds; containers and init containers share one namespace in a pod.
func addedNames(t *v1alpha1.SidecarTemplate) []addedName {
	var out []addedName
	for _, c := range t.Spec.Containers {
		out = append(out, addedName{"container name", c.Name})
	}
	for _, c := range t.Spec.InitContainers {
		out = append(out, addedName{"container name", c.Name})
	}
	for _, v := range t.Spec.Volumes {
		out = append(out, addedName{"volume name", v.Name})
	}
	return out
}

// before reports whether a comes before b in injection order (order, namespace, name).
func before(a, b *v1alpha1.SidecarTemplate) bool {
	return cmp.Or(cmp.Compare(a.Spec.Order, b.Spec.Order), cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name)) < 0
}

// CouldOverlap reports whether some set of labels matches both selectors: for every key, the requirements of
// both together are satisfiable (In/= values intersect and are not all excluded by NotIn/!=; a key is not both
// required and forbidden).
func CouldOverlap(a, b labels.Selector) bool {
	ra, _ := a.Requirements()
	rb, _ := b.Requirements()
	type keyReq struct {
		exists, absent bool
		allowed        sets.Set[string] // nil: any value
		excluded       sets.Set[string]
	}
	byKey := map[string]*keyReq{}
	for _, r := range append(slices.Clone(ra), rb...) {
		k := byKey[r.Key()]
		if k == nil {
			k = &keyReq{excluded: sets.New[string]()}
			byKey[r.Key()] = k
		}
		vals := r.ValuesUnsorted()
		switch r.Operator() {
		case selection.Equals, selection.DoubleEquals, selection.In:
			k.exists = true
			if k.allowed == nil {
				k.allowed = sets.New(vals...)
			} else {
				k.allowed = k.allowed.Intersection(sets.New(vals...))
			}
		case selection.NotEquals, selection.NotIn:
			k.excluded.Insert(vals...)
		case selection.Exists:
			k.exists = true
		case selection.DoesNotExist:
			k.absent = true
		default: // Gt, Lt: not produced by label selectors; assume they can be met
			k.exists = true
		}
	}
	for _, k := range byKey {
		if k.exists && k.absent {
			return false
		}
		if k.allowed != nil && k.allowed.Difference(k.excluded).Len() == 0 {
			return false
		}
	}
	return true
}
