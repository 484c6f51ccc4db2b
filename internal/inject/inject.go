package inject

import (
	"cmp"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
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

	var st state
	st.init(req.Pod, pod)
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
	// Each applying template adds at most one entry to the record: make room once.
	st.entries = slices.Grow(st.entries, len(applying))

	for _, a := range applying {
		d := &res.Decisions[a.decision]
		t := a.t
		msg, reason := "", ReasonConflict
		var in *instance
		var rendered instance // the template's additions for this pod, when it has per-pod values
		if t.Err != nil {
			msg, reason = fmt.Sprintf("sidecar template %q is invalid: %v", t.Name, t.Err), ReasonInvalid
		} else if in, msg = t.instanceFor(pv, &rendered); msg != "" {
			msg, reason = fmt.Sprintf("sidecar template %q: %s", t.Name, msg), ReasonMissingParameter
		} else {
			// The plan, like rendered, lives on the stack: nothing keeps either beyond this template.
			var p plan
			if msg = st.plan(t, in, &p); msg == "" {
				res.Warnings = append(res.Warnings, p.warnings...)
				d.Added = st.commit(t, in, &p)
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
	out := make(map[templateKey]*Template, len(templates))
	for _, t := range templates {
		if t.Namespace == req.Namespace || (req.InjectorNamespace != "" && t.Namespace == req.InjectorNamespace) {
			out[templateKey{t.Namespace, t.Name}] = t
		}
	}
	return func(namespace, name string) *Template { return out[templateKey{namespace, name}] }
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
	for n := range strings.SplitSeq(v, ",") {
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
	// local names the templates of the pod's own namespace, which shadow cluster-wide ones of the same name;
	// built when the first cluster-wide template comes up (many requests have none).
	var local map[string]bool
	shadowed := func(name string) bool {
		if local == nil {
			local = make(map[string]bool, len(templates))
			for _, t := range templates {
				if t.Namespace == req.Namespace {
					local[t.Name] = true
				}
			}
		}
		return local[name]
	}
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
		switch {
		case t.Namespace != req.Namespace && (t.Namespace != req.InjectorNamespace || req.InjectorNamespace == ""):
			d.Reason = ReasonOutOfScope
		case t.Namespace != req.Namespace && shadowed(t.Name):
			d.Reason = ReasonShadowed
		case t.Namespace != req.Namespace && t.namespaceSelector != nil && !t.namespaceSelector.Matches(nsLabels):
			d.Reason = ReasonNamespaceSelectorMismatch
			if isRequested { // asked for by name, but not offered here: a failure under the template's policy
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
		case isRequested:
			d.Reason = ReasonRequested
			found[requestedAt] = true
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
	for i, n := range requested {
		if found[i] {
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
	return s.record(t.Namespace, t.Name) != nil
}

// encodeStatus renders the record deterministically, naming the entries that are present: exactly what
// encoding/json writes for Status{Templates: those entries} (none written as an empty list: the record always
// has a list, never null). It is written by hand, straight into the string it returns, because every injected
// pod gets one and json.Marshal plus the conversion to a string allocated it three times over.
func encodeStatus(entries []record) string {
	n := len(`{"templates":[]}`)
	for i := range entries {
		e := &entries[i]
		if !e.present {
			continue
		}
		n += 80 + len(e.Namespace) + len(e.Name) + len(e.Hash)
		for _, names := range [][]string{e.Containers, e.InitContainers, e.Volumes} {
			n += 20
			for _, name := range names {
				n += len(name) + 3
			}
		}
	}
	var b strings.Builder
	b.Grow(n)
	b.WriteString(`{"templates":[`)
	first := true
	for i := range entries {
		e := &entries[i]
		if !e.present {
			continue
		}
		if !first {
			b.WriteByte(',')
		}
		first = false
		b.WriteString(`{"namespace":`)
		writeJSONString(&b, e.Namespace)
		b.WriteString(`,"name":`)
		writeJSONString(&b, e.Name)
		b.WriteString(`,"generation":`)
		var num [20]byte
		b.Write(strconv.AppendInt(num[:0], e.Generation, 10))
		b.WriteString(`,"hash":`)
		writeJSONString(&b, e.Hash)
		writeJSONStrings(&b, `,"containers":`, e.Containers)
		writeJSONStrings(&b, `,"initContainers":`, e.InitContainers)
		writeJSONStrings(&b, `,"volumes":`, e.Volumes)
		b.WriteByte('}')
	}
	b.WriteString(`]}`)
	return b.String()
}

// writeJSONStrings writes a list field tagged omitempty: nothing when the list is empty.
func writeJSONStrings(b *strings.Builder, field string, list []string) {
	if len(list) == 0 {
		return
	}
	b.WriteString(field)
	b.WriteByte('[')
	for i, s := range list {
		if i > 0 {
			b.WriteByte(',')
		}
		writeJSONString(b, s)
	}
	b.WriteByte(']')
}

// writeJSONString writes s as encoding/json does. Names and hashes are plain ASCII, written as they are; any
// other string goes through encoding/json (HTML characters, control characters, non-ASCII, invalid UTF-8),
// so the output is always encoding/json's own.
func writeJSONString(b *strings.Builder, s string) {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			enc, _ := json.Marshal(s) // a string always encodes
			b.Write(enc)
			return
		}
	}
	b.WriteByte('"')
	b.WriteString(s)
	b.WriteByte('"')
}
