package inject

import (
	"cmp"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/labels"

	"github.com/sidecar-dev/sidecar-injector/internal/api/v1alpha1"
)

// Inject decides which templates a pod receives and computes the patch. It returns an error (a *PodError) only
// for a pod that cannot be read: not a JSON object, or a field the engine reads has the wrong type.
//
// The steps: pod-level exclusions (system and injector namespaces, disabled namespaces, opt-out); resolution of
// the requested names and selectors into the templates that apply; then, in injection order, each template is
// planned against the pod as the templates before it left it, and either committed whole or failed whole under
// its failurePolicy; finally the committed additions are written as add operations.
func Inject(req Request) (*Result, error) {
	res := &Result{}
	idx := req.Index
	var templates []*Template
	switch {
	case idx == nil:
		templates = inOrder(req.Templates)
	case !req.OmitNotApplicable || !idx.serves(req):
		templates, idx = idx.Templates(), nil // every decision is wanted, or the index is not for this namespace
	}

	if reason := namespaceSkip(req); reason != "" {
		res.skipAll(req, templates, reason)
		return res, nil
	}
	pod, err := readPod(req.Pod)
	if err != nil {
		return nil, err
	}
	pv := valuesOf(pod, req.Namespace)
	requested, optOut := parseInject(pv.annotations[v1alpha1.AnnotationInject])
	if optOut {
		res.skipAll(req, templates, ReasonOptedOut)
		return res, nil
	}

	st := newState(req.Pod, pod)
	if raw, ok := pv.annotations[v1alpha1.AnnotationStatus]; ok {
		known := inScope(req, templates)
		if idx != nil {
			known = idx.inScope
		}
		st.loadStatus(raw, known, pv)
	}
	if idx != nil {
		// Only what the pod requests or may be selected by: the rest would be NotApplicable, and is omitted.
		templates = idx.candidates(pv.labels, req.NamespaceLabels, requested)
	}
	applying := res.resolve(req, templates, requested, labels.Set(pv.labels))

	for _, a := range applying {
		d := &res.Decisions[a.decision]
		t := a.t
		msg, reason := "", ReasonConflict
		var in *instance
		if t.Err != nil {
			msg, reason = fmt.Sprintf("sidecar template %q is invalid: %v", t.Name, t.Err), ReasonInvalid
		} else if in, msg = t.instanceFor(pv); msg != "" {
			msg, reason = fmt.Sprintf("sidecar template %q: %s", t.Name, msg), ReasonMissingParameter
		} else {
			var p *plan
			p, msg = st.plan(t, in)
			if msg == "" {
				res.Warnings = append(res.Warnings, p.warnings...)
				d.Added = st.commit(t, p)
				if p.empty() && st.recorded(t) {
					d.Outcome, d.Reason = OutcomeAlreadyInjected, ReasonAlreadyInjected
				} else {
					d.Outcome = OutcomeInjected
				}
				continue
			}
			msg = fmt.Sprintf("sidecar template %q: %s", t.Name, msg)
		}
		res.fail(d, t.FailurePolicy, reason, msg)
	}
	if res.Denied {
		res.DenyMessage = res.denyMessage()
		// Nothing is injected into a denied pod: say so for the templates that would have been.
		for i := range res.Decisions {
			if d := &res.Decisions[i]; d.Outcome == OutcomeInjected {
				d.Outcome, d.Reason, d.Added = OutcomeSkipped, ReasonPodDenied, nil
				d.Message = "not injected: the pod is denied because of another template"
			}
		}
		return res, nil
	}
	res.Patch = st.patch()
	return res, nil
}

// injectionOrder is the order templates are applied in: order, then namespace, then name; the hash breaks ties
// between two objects for the same template so the result never depends on the order of the cache.
func injectionOrder(a, b *Template) int {
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
	slices.SortFunc(out, injectionOrder)
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

// inScope returns a lookup of the templates that may serve the pod's namespace: its own and the cluster-wide
// ones.
func inScope(req Request, templates []*Template) func(namespace, name string) *Template {
	out := make(map[string]*Template, len(templates))
	for _, t := range templates {
		if t.Namespace == req.Namespace || (req.InjectorNamespace != "" && t.Namespace == req.InjectorNamespace) {
			out[t.Key()] = t
		}
	}
	return func(namespace, name string) *Template { return out[namespace+"/"+name] }
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
// and repeats ignored; "false" (any case) alone opts out.
func parseInject(v string) (names []string, optOut bool) {
	if strings.EqualFold(strings.TrimSpace(v), v1alpha1.OptOutValue) {
		return nil, true
	}
	for _, n := range strings.Split(v, ",") {
		if n = strings.TrimSpace(n); n != "" && !slices.Contains(names, n) {
			names = append(names, n)
		}
	}
	return names, false
}

func valuesOf(pod *podView, namespace string) *podValues {
	pv := &podValues{namespace: namespace}
	if m := pod.Metadata; m != nil {
		pv.name, pv.generateName, pv.labels, pv.annotations = m.Name, m.GenerateName, m.Labels, m.Annotations
		if m.Namespace != "" && namespace == "" {
			pv.namespace = m.Namespace
		}
	}
	if s := pod.Spec; s != nil {
		pv.serviceAccount = cmp.Or(s.ServiceAccountName, s.ServiceAccount)
	}
	// The API server's ServiceAccount admission fills in "default" before webhooks run; offline, do the same.
	pv.serviceAccount = cmp.Or(pv.serviceAccount, "default")
	return pv
}

func (r *Result) skipAll(req Request, templates []*Template, reason Reason) {
	r.PodSkipReason = reason
	if req.OmitNotApplicable {
		return
	}
	r.Decisions = make([]Decision, 0, len(templates))
	for _, t := range templates {
		r.Decisions = append(r.Decisions, Decision{Namespace: t.Namespace, Name: t.Name, Outcome: OutcomeNotApplicable, Reason: reason})
	}
}

func (r *Result) fail(d *Decision, policy v1alpha1.FailurePolicy, reason Reason, msg string) {
	d.Reason, d.Message, d.Added = reason, msg, nil
	if policy == v1alpha1.FailurePolicyIgnore {
		d.Outcome = OutcomeSkipped
		r.Warnings = append(r.Warnings, msg+" (failurePolicy Ignore: the pod is admitted without this template)")
		return
	}
	d.Outcome = OutcomeDenied
	r.Denied = true
}

// denyMessage names every template that denied the pod, in decision order.
func (r *Result) denyMessage() string {
	var msgs []string
	for _, d := range r.Decisions {
		if d.Outcome == OutcomeDenied {
			msgs = append(msgs, d.Message)
		}
	}
	return strings.Join(msgs, "; ")
}

type applying struct {
	t        *Template
	decision int // index into Result.Decisions
}

// resolve records a decision for every template and requested name, and returns the templates that apply, in
// injection order.
func (r *Result) resolve(req Request, templates []*Template, requested []string, podLabels labels.Set) []applying {
	nsLabels := labels.Set(req.NamespaceLabels)
	local := map[string]bool{}
	for _, t := range templates {
		if t.Namespace == req.Namespace {
			local[t.Name] = true
		}
	}
	found := map[string]bool{}
	var out []applying
	if !req.OmitNotApplicable {
		r.Decisions = make([]Decision, 0, len(templates)+len(requested))
	}
	for _, t := range templates {
		d := Decision{Namespace: t.Namespace, Name: t.Name, Outcome: OutcomeNotApplicable}
		isRequested := slices.Contains(requested, t.Name)
		switch {
		case t.Namespace != req.Namespace && (t.Namespace != req.InjectorNamespace || req.InjectorNamespace == ""):
			d.Reason = ReasonOutOfScope
		case t.Namespace != req.Namespace && local[t.Name]:
			d.Reason = ReasonShadowed
		case t.Namespace != req.Namespace && t.namespaceSelector != nil && !t.namespaceSelector.Matches(nsLabels):
			d.Reason = ReasonNamespaceSelectorMismatch
			if isRequested { // asked for by name, but not offered here: a failure under the template's policy
				found[t.Name] = true
				r.Decisions = append(r.Decisions, d)
				r.fail(&r.Decisions[len(r.Decisions)-1], t.FailurePolicy, ReasonNotFound, fmt.Sprintf(
					"sidecar template %q is cluster-wide but its namespaceSelector does not select namespace %q", t.Name, req.Namespace))
				continue
			}
		case t.selectorsBroken && !isRequested:
			// A selector that cannot be parsed cannot tell which pods it selects: rather than deny every pod in
			// scope, the template selects none; its status condition says what is wrong.
			d.Reason = ReasonInvalid
		case isRequested:
			d.Reason = ReasonRequested
			found[t.Name] = true
		case t.HasSelector && t.selector != nil && t.selector.Matches(podLabels):
			d.Reason = ReasonSelected
		case t.HasSelector:
			d.Reason = ReasonSelectorMismatch
		default:
			d.Reason = ReasonNotRequested
		}
		applies := d.Reason == ReasonRequested || d.Reason == ReasonSelected
		if !applies && req.OmitNotApplicable {
			continue
		}
		r.Decisions = append(r.Decisions, d)
		if applies {
			out = append(out, applying{t, len(r.Decisions) - 1})
		}
	}
	for _, n := range requested {
		if found[n] {
			continue
		}
		r.Decisions = append(r.Decisions, Decision{Name: n})
		r.fail(&r.Decisions[len(r.Decisions)-1], v1alpha1.FailurePolicyFail, ReasonNotFound, fmt.Sprintf(
			"sidecar template %q requested by annotation %s was not found in namespace %q nor among the cluster-wide templates",
			n, v1alpha1.AnnotationInject, req.Namespace))
	}
	return out
}

// recorded reports whether the pod's status record names the template.
func (s *state) recorded(t *Template) bool {
	_, ok := s.owned[t.Key()]
	return ok
}

// encodeStatus renders the record deterministically.
func encodeStatus(entries []StatusEntry) string {
	if entries == nil {
		entries = []StatusEntry{} // the record always has a list, never null
	}
	b, _ := json.Marshal(Status{Templates: entries}) // plain strings and ints always encode
	return string(b)
}
