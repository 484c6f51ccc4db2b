package inject

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	"github.com/agnivade/levenshtein"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/sidecar-dev/sidecar-injector/internal/api/v1alpha1"
)

// InjectionOrder is the order templates are applied in: order, then namespace, then name; the hash breaks ties
// between two objects for the same template so the result never depends on the order of the cache. A later
// template sees what the earlier ones added, and fails where it clashes with them.
func InjectionOrder(a, b *Template) int {
	return cmp.Or(cmp.Compare(a.Order, b.Order), cmp.Compare(a.Namespace, b.Namespace),
		cmp.Compare(a.Name, b.Name), cmp.Compare(a.Hash, b.Hash))
}

// inOrder returns a copy of the templates in injection order, nil entries and duplicates removed. It is not on
// the webhook's path (an Index is sorted once, when built).
func inOrder(in []*Template) []*Template {
	out := make([]*Template, 0, len(in))
	for _, t := range in {
		if t != nil {
			out = append(out, t)
		}
	}
	slices.SortFunc(out, InjectionOrder)
	// Two objects for one template (possible offline, from files): the first in injection order counts, wherever
	// the other one sorts (a different spec.order puts them apart).
	seen := make(map[[2]string]bool, len(out))
	return slices.DeleteFunc(out, func(t *Template) bool {
		k := [2]string{t.Namespace, t.Name}
		dup := seen[k]
		seen[k] = true
		return dup
	})
}

func namespaceSkip(req Request) Reason {
	switch {
	case slices.Contains(v1alpha1.SystemNamespaces, req.Namespace):
		return ReasonSystemNamespace
	case req.Namespace == req.InjectorNamespace:
		return ReasonInjectorNamespace
	case req.NamespaceLabels[v1alpha1.LabelInjection] == v1alpha1.LabelInjectionDisabled:
		return ReasonNamespaceDisabled
	}
	return ""
}

// parseInject reads sidecar.dev/inject: names separated by commas, spaces around them allowed, empty entries
// and repeats ignored; "false" alone, in any ASCII case, opts out. Linear in the annotation's length (repeats are
// found through a set); more distinct names than lim.MaxRequestedNames, or a name longer than
// lim.MaxNameLength, is an error, found before any more work is done.
func parseInject(v string, lim Limits) (names []string, optOut bool, err error) {
	if isOptOut(v) {
		return nil, true, nil
	}
	var seen map[string]struct{} // built past 32 names, where a search starts to cost more than the map
	for n := range strings.SplitSeq(v, ",") {
		if n = strings.TrimSpace(n); n == "" {
			continue
		}
		if len(n) > lim.MaxNameLength {
			return nil, false, &LimitError{Limit: "max-name-length", Max: lim.MaxNameLength,
				What: fmt.Sprintf("%s lists a name of %d bytes", v1alpha1.AnnotationInject, len(n))}
		}
		if seen == nil && len(names) >= 32 {
			seen = make(map[string]struct{}, 2*len(names))
			for _, m := range names {
				seen[m] = struct{}{}
			}
		}
		if seen != nil {
			if _, dup := seen[n]; dup {
				continue
			}
			seen[n] = struct{}{}
		} else if slices.Contains(names, n) {
			continue
		}
		if len(names) == lim.MaxRequestedNames {
			return nil, false, &LimitError{Limit: "max-requested-names", Max: lim.MaxRequestedNames,
				What: fmt.Sprintf("%s lists more than %d distinct names", v1alpha1.AnnotationInject, lim.MaxRequestedNames)}
		}
		names = append(names, n)
	}
	return names, false, nil
}

// isOptOut reports whether v is the opt-out value: "false" with spaces around it allowed, compared in ASCII
// case only, as the chart's matchCondition (trim().lowerAscii()) and any CEL policy compare it. (Unicode case
// folding would let "falſe", with U+017F, opt out unseen by them.)
func isOptOut(v string) bool {
	v = strings.TrimSpace(v)
	if len(v) != len(v1alpha1.OptOutValue) {
		return false
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != v1alpha1.OptOutValue[i] {
			return false
		}
	}
	return true
}

// inScope returns a lookup of the templates that may serve the pod's namespace: its own and the cluster-wide
// ones.
func inScope(req Request, templates []*Template) func(namespace, name string) *Template {
	out := make(map[templateKey]*Template, len(templates))
	for _, t := range templates {
		if t.Namespace == req.Namespace || (req.InjectorNamespace != "" && t.Namespace == req.InjectorNamespace) {
			out[templateKey{t.Namespace, t.Name}] = t
		}
	}
	return func(namespace, name string) *Template { return out[templateKey{namespace, name}] }
}

type applying struct {
	t        *Template
	decision int // index into Result.Decisions
}

// names finds, for a template in scope, the template of the same name in the other layer: a namespaced
// template's cluster-wide namesake and the other way round. From an Index (which has both layers at hand) or
// from the candidates given to Inject.
type names interface {
	localNamed(name string) *Template
	clusterNamed(name string) *Template
}

// listNames is names over a list of templates, its maps built on first use (most requests meet no template of
// the pod's namespace and the injector's namespace with the same name, and many never ask).
type listNames struct {
	req       Request
	templates []*Template
	own, cw   map[string]*Template
}

func (n *listNames) build() {
	if n.own != nil {
		return
	}
	n.own, n.cw = make(map[string]*Template), make(map[string]*Template)
	for _, t := range n.templates { // in injection order: the first of two objects for one template counts
		switch {
		case t.Namespace == n.req.Namespace:
			if n.own[t.Name] == nil {
				n.own[t.Name] = t
			}
		case n.req.InjectorNamespace != "" && t.Namespace == n.req.InjectorNamespace:
			if n.cw[t.Name] == nil {
				n.cw[t.Name] = t
			}
		}
	}
}

func (n *listNames) localNamed(name string) *Template   { n.build(); return n.own[name] }
func (n *listNames) clusterNamed(name string) *Template { n.build(); return n.cw[name] }

// offers reports whether the cluster-wide template t serves namespaces with nsLabels: it has no
// namespaceSelector, or one that selects them (one that cannot be parsed counts as selecting: the template is
// then reported Invalid where it is wanted, rather than silently replaced).
func offers(t *Template, nsLabels labels.Set) bool {
	return t.namespaceSelector == nil || t.namespaceSelector.Matches(nsLabels)
}

// Override is how the namespaced template local and the cluster-wide template of the same name decide which of
// them serves local's namespace (with nsLabels): local replaces the cluster-wide one only where that one offers
// itself to the namespace and allows it (spec.namespaceOverride: Allow). Under Deny (the default) local is not
// used. Where the cluster-wide one does not serve the namespace at all, there is nothing to replace and local
// serves. The one rule, for Inject, Index.Offered and the status controller.
type Override int

const (
	// NoOverride: no cluster-wide template of the name serves the namespace; the namespaced one serves.
	NoOverride Override = iota
	// Overridden: the namespaced template replaces the cluster-wide one (reason Shadowed on the latter).
	Overridden
	// OverrideDenied: the cluster-wide template serves; the namespaced one is not used (reason OverrideDenied).
	OverrideDenied
)

// OverrideOf decides between a namespaced template and cluster, the cluster-wide template of the same name (nil
// when there is none), for a namespace with nsLabels (nil: unknown, taken as selected by every
// namespaceSelector).
func OverrideOf(cluster *Template, nsLabels map[string]string) Override {
	switch {
	case cluster == nil || (nsLabels != nil && !offers(cluster, nsLabels)):
		return NoOverride
	case cluster.OverrideAllowed:
		return Overridden
	}
	return OverrideDenied
}

// OverrideDeniedMessage says why a namespaced template named name is not used (decision and status condition).
func OverrideDeniedMessage(name, injectorNamespace string) string {
	return fmt.Sprintf("not used: the cluster-wide template %s/%s of the same name serves this namespace and does not let a namespaced template replace it (its spec.namespaceOverride is Deny); rename this template, or ask the platform to set namespaceOverride: Allow on the cluster-wide one", injectorNamespace, name)
}

// resolve records a decision for every template and requested name, and returns the templates that apply, in
// injection order. podLabels are the pod's labels with those added by the templates applied in an earlier
// round of the same admission (Inject's fixpoint); stay are the templates those rounds selected, which stay
// selected whatever the added labels do to their selector.
func (r *Result) resolve(req Request, nm names, templates []*Template, requested []string, podLabels labels.Set, stay map[templateKey]bool) []applying {
	nsLabels := labels.Set(req.NamespaceLabels)
	found := make([]bool, len(requested)) // by position in requested, which has no repeats
	var out []applying
	if !req.OmitNotApplicable {
		// A requested name that matches nothing adds one more, but that is rare (it denies the pod).
		r.Decisions = make([]Decision, 0, len(templates))
	}
	for _, t := range templates {
		d := Decision{Namespace: t.Namespace, Name: t.Name, Outcome: OutcomeNotApplicable}
		requestedAt := slices.Index(requested, t.Name)
		isRequested := requestedAt >= 0
		clusterWide := t.Namespace != req.Namespace
		selected := stay[templateKey{t.Namespace, t.Name}] ||
			(t.HasSelector && !t.selectorsBroken && t.selector != nil && t.selector.Matches(podLabels))
		// wanted: the pod asks for the template or is selected by it; a decision that says why such a template
		// is not injected is kept even when NotApplicable ones are omitted (metrics and Events count it).
		wanted := isRequested || selected
		switch {
		case clusterWide && (t.Namespace != req.InjectorNamespace || req.InjectorNamespace == ""):
			d.Reason, wanted = ReasonOutOfScope, false
		case clusterWide && nm.localNamed(t.Name) != nil && t.OverrideAllowed && offers(t, nsLabels):
			d.Reason = ReasonShadowed
		case !clusterWide && OverrideOf(nm.clusterNamed(t.Name), nsLabels) == OverrideDenied:
			d.Reason = ReasonOverrideDenied
			d.Message = OverrideDeniedMessage(t.Name, req.InjectorNamespace)
		case clusterWide && t.namespaceSelector != nil && !t.namespaceSelector.Matches(nsLabels):
			d.Reason, wanted = ReasonNamespaceSelectorMismatch, false
			if isRequested && nm.localNamed(t.Name) == nil { // asked for by name, but not offered here: a failure under the template's policy
				found[requestedAt] = true
				r.Decisions = append(r.Decisions, d)
				r.fail(&r.Decisions[len(r.Decisions)-1], t.FailurePolicy, ReasonNotFound, fmt.Sprintf(
					"sidecar template %q is cluster-wide but its namespaceSelector does not select namespace %q", t.Name, req.Namespace))
				continue
			}
		case t.selectorsBroken && !isRequested:
			// A selector that cannot be parsed cannot tell which pods it selects: rather than deny every pod in
			// scope, the template selects none; its status condition says what is wrong.
			d.Reason = ReasonInvalid
		case wanted && t.ServedByPolicy:
			// A MutatingAdmissionPolicy injects it, inside the API server, before any webhook: the webhook leaves it
			// alone. A request for it is answered (not "not found").
			d.Reason = ReasonServedByPolicy
			if isRequested {
				found[requestedAt] = true
			}
		case isRequested:
			d.Reason = ReasonRequested
			found[requestedAt] = true
		case selected:
			d.Reason = ReasonSelected
		case t.HasSelector:
			d.Reason = ReasonSelectorMismatch
		default:
			d.Reason = ReasonNotRequested
		}
		applies := d.Reason == ReasonRequested || d.Reason == ReasonSelected
		if !applies && !wanted && req.OmitNotApplicable {
			continue
		}
		r.Decisions = append(r.Decisions, d)
		if applies {
			out = append(out, applying{t, len(r.Decisions) - 1})
		}
	}
	for i, n := range requested {
		if found[i] {
			continue
		}
		r.Decisions = append(r.Decisions, Decision{Name: n})
		r.fail(&r.Decisions[len(r.Decisions)-1], v1alpha1.FailurePolicyFail, ReasonNotFound, fmt.Sprintf(
			"sidecar template %q requested by annotation %s was not found in namespace %q nor among the cluster-wide templates%s",
			n, v1alpha1.AnnotationInject, req.Namespace, didYouMean(req, n)))
	}
	return out
}

// didYouMean suggests the template of the pod's scope whose name is closest to a requested name that matched
// none, when it is close enough to be a misspelling: at most 2 edits, fewer than half the name. Only a pod that
// is about to be denied pays for it.
func didYouMean(req Request, name string) string {
	all := req.Templates
	if req.Index != nil {
		all = req.Index.Templates()
	}
	best, bestDist := "", 0
	for _, t := range all {
		if t.Namespace != req.Namespace && (t.Namespace != req.InjectorNamespace || req.InjectorNamespace == "") {
			continue
		}
		d := levenshtein.ComputeDistance(name, t.Name)
		if d > 2 || 2*d >= len(name) {
			continue
		}
		if best == "" || d < bestDist || (d == bestDist && t.Name < best) {
			best, bestDist = t.Name, d
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf("; did you mean %q?", best)
}
