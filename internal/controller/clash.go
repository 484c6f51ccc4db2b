package controller

import (
	"cmp"
	"fmt"
	"slices"

	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/sets"

	"github.com/sidecar-dev/sidecar-injector/internal/inject"
)

// Clashes returns, for a template t with a selector, a sentence for every container, init container or volume
// name it adds that another template also adds, when both could select the same pod, so that a pod selected by
// both cannot receive both (the later one in injection order conflicts with the earlier one). offered are the
// templates that may serve pods of t's namespace, by the engine's rule (inject.Index.Offered: scope, shadowing,
// namespaceSelector), t among them or not.
//
// It is an approximation made without looking at pods:
//   - only templates that both have a selector count: a template injected on request only clashes with another
//     in a pod that asks for it, which is that pod's author's choice;
//   - two selectors "could select the same pod" when the conjunction of their requirements is satisfiable
//     (an empty selector matches everything; app=a and app=b never meet; app=a and tier=web may);
//   - in one namespace, the clash is reported on the later template in injection order (inject.InjectionOrder),
//     which is the one that fails;
//   - between a namespaced template and a cluster-wide one, it is reported on the namespaced template only,
//     whichever comes first: a tenant's template must not change the status of a cluster-wide one;
//   - invalid templates (never injected) are ignored.
func Clashes(t *inject.Template, offered []*inject.Template) []string {
	self := t.Selector()
	if self == nil {
		return nil
	}
	var others []*inject.Template
	for _, o := range offered {
		switch {
		case o.Namespace == t.Namespace && o.Name == t.Name, o.Err != nil, o.Selector() == nil:
			continue
		case o.Namespace == t.Namespace && inject.InjectionOrder(o, t) > 0:
			continue // t comes first: the clash is reported on o
		case o.Namespace != t.Namespace && t.ClusterWide:
			continue // a cluster-wide template is only compared with cluster-wide ones
		}
		if CouldOverlap(self, o.Selector()) {
			others = append(others, o)
		}
	}
	slices.SortFunc(others, func(a, b *inject.Template) int {
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
				out = append(out, fmt.Sprintf("%s %q clashes with %s %s, whose selector can select the same pods: a pod selected by both cannot receive both",
					n.kind, n.name, where, types.NamespacedName{Namespace: o.Namespace, Name: o.Name}))
			}
		}
	}
	return out
}

// offeredWith returns the templates of all that may serve pods of t's namespace, by the engine's rule
// (inject.Index.Offered); for a cluster-wide t, the cluster-wide ones.
func offeredWith(t *inject.Template, all []*inject.Template, injectorNamespace string, nsLabels map[string]string) []*inject.Template {
	namespace := t.Namespace
	if t.ClusterWide {
		namespace = ""
	}
	return inject.NewIndex(namespace, injectorNamespace, all).Offered(nsLabels)
}

type addedName struct{ kind, name string }

// addedNames lists the names a template adds; containers and init containers share one namespace in a pod.
func addedNames(t *inject.Template) []addedName {
	var out []addedName
	adds := t.Adds()
	for _, c := range slices.Concat(adds.Containers, adds.InitContainers) {
		out = append(out, addedName{"container name", c})
	}
	for _, v := range adds.Volumes {
		out = append(out, addedName{"volume name", v})
	}
	return out
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
