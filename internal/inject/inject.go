package inject

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"

	"k8s.io/apimachinery/pkg/labels"

	"github.com/sidecar-dev/sidecar-injector/internal/api/v1alpha1"
)

// Inject decides which templates a pod receives and computes the patch. It returns an error only for a pod that
// cannot be read (a *PodError: not a JSON object, or a field the engine reads has the wrong type) and when
// Request.Context is done before the work is (its error). What exceeds Request.Limits is a denial, not an error.
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
	limits := req.Limits.withDefaults()
	requested, optOut, err := parseInject(pv.annotations[v1alpha1.AnnotationInject], limits)
	if err != nil {
		res.Denied, res.DenyMessage = true, err.Error()
		return res, nil
	}
	if optOut {
		res.skipAll(req, templates, ReasonOptedOut)
		return res, nil
	}

	var nm names = &listNames{req: req, templates: templates}
	if idx != nil {
		nm = idx
	}
	// One pass is a fixpoint: selectors are evaluated again on the labels that the templates applied add, and
	// while that selects a template more, the admission starts over with it (labels are only added, and a
	// template once selected stays selected, so every round selects more; there are at most as many rounds as
	// templates). A second pass then finds nothing new to select.
	rounds := len(templates) // at most one round per template, and one more
	if idx != nil {
		rounds = idx.size()
	}
	var st state
	var stay map[templateKey]bool
	selLabels := pv.labels
	for round := 0; ; round++ {
		if round > 0 {
			res = &Result{}
		}
		st = state{}
		applying, err := res.pass(req, idx, nm, &st, pod, pv, templates, requested, limits, selLabels, stay)
		if err != nil {
			return nil, err
		}
		if res.Denied || len(st.addLabels) == 0 || round >= rounds {
			break
		}
		if idx != nil && !idx.selectsOn(st.addLabels) {
			break // no selector names a label the templates added: they select nothing more
		}
		selLabels = withAdded(pv.labels, st.addLabels)
		if stay = selectsMore(req, idx, nm, templates, requested, selLabels, applying); stay == nil {
			break
		}
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

// pass runs one round of an admission on a fresh state: the pod's record, then the templates that apply to a
// pod with selLabels (and those stay keeps selected), each applied in injection order. It returns those.
func (res *Result) pass(req Request, idx *Index, nm names, st *state, pod *podView, pv *podValues, templates []*Template,
	requested []string, limits Limits, selLabels map[string]string, stay map[templateKey]bool) ([]applying, error) {
	st.init(req.Pod, pod)
	st.limits, st.pv, st.images = limits, pv, req.Images
	if raw, ok := pv.annotations[v1alpha1.AnnotationStatus]; ok {
		known := inScope(req, templates)
		if idx != nil {
			known = idx.inScope
		}
		st.loadStatus(raw, known)
	}
	if idx != nil {
		// Only what the pod requests or may be selected by: the rest would be NotApplicable, and is omitted.
		templates = idx.candidates(selLabels, req.NamespaceLabels, requested)
	}
	applying := res.resolve(req, nm, templates, requested, labels.Set(selLabels), stay)
	res.keepServedByPolicy(st)
	// Each applying template adds at most one entry to the record: make room once.
	st.entries = slices.Grow(st.entries, len(applying))
	for i, a := range applying {
		// Between templates: work for a request its client has given up on stops here.
		if req.Context != nil && req.Context.Err() != nil {
			return nil, fmt.Errorf("stopped after %d of %d templates: %w", i, len(applying), context.Cause(req.Context))
		}
		res.apply(st, a, pv)
	}
	return applying, nil
}

// withAdded returns the pod's labels with those the templates add (keys the pod does not have), as a new map.
func withAdded(podLabels, added map[string]string) map[string]string {
	out := make(map[string]string, len(podLabels)+len(added))
	maps.Copy(out, podLabels)
	maps.Copy(out, added)
	return out
}

// selectsMore returns the templates applied in this round (applying) and those that selLabels, the pod's labels
// with those the round added, select besides; nil when they select none besides.
func selectsMore(req Request, idx *Index, nm names, templates []*Template, requested []string, selLabels map[string]string, applying []applying) map[templateKey]bool {
	next := make(map[templateKey]bool, len(applying)+1)
	for _, a := range applying {
		next[templateKey{a.t.Namespace, a.t.Name}] = true
	}
	if idx != nil {
		templates = idx.candidates(selLabels, req.NamespaceLabels, requested)
	}
	req.OmitNotApplicable = true // only the templates that apply are looked at
	var scratch Result
	grown := false
	for _, a := range scratch.resolve(req, nm, templates, requested, labels.Set(selLabels), next) {
		if k := (templateKey{a.t.Namespace, a.t.Name}); !next[k] {
			next[k], grown = true, true
		}
	}
	if !grown {
		return nil
	}
	return next
}

// keepServedByPolicy keeps in the pod's record the entries of the templates an admission policy serves that the
// pod wants: the policy wrote them, before this webhook was called, and a record the webhook rewrites must not
// lose them.
func (res *Result) keepServedByPolicy(st *state) {
	for i := range res.Decisions {
		if d := &res.Decisions[i]; d.Reason == ReasonServedByPolicy {
			if e := st.record(d.Namespace, d.Name); e != nil {
				e.present = true
			}
		}
	}
}

// apply plans one applying template against the pod as the templates before it left it, and commits it whole
// or fails it whole under its failurePolicy.
func (res *Result) apply(st *state, a applying, pv *podValues) {
	d := &res.Decisions[a.decision]
	t := a.t
	if t.Err != nil {
		res.fail(d, t.FailurePolicy, ReasonInvalid, fmt.Sprintf("sidecar template %q is invalid: %v", t.Name, t.Err))
		return
	}
	if t, d.Message = t.revisionFor(pv); st.recorded(t) {
		// The pod's record decides when it names a verified revision: the current one stays (the pod is up to
		// date, whatever the canary says), the one the canary gives it stays; any other is outdated.
		switch e := st.record(t.Namespace, t.Name); {
		case e.rev.Hash == a.t.Hash:
			t, d.Message = a.t, ""
		case e.rev.Hash != t.Hash:
			res.outdated(d, a.t, e)
			return
		}
	}
	d.Revision = t.Revision
	if pv.completes && t.jobPolicy == v1alpha1.JobPolicySkip {
		d.Outcome, d.Reason = OutcomeNotApplicable, ReasonJobPolicySkip
		d.Message = fmt.Sprintf("sidecar template %q is not injected into pods that run to completion (restartPolicy Never or OnFailure): its spec.jobPolicy is Skip", t.Name)
		return
	}
	var recorded map[string]string
	if e := st.record(t.Namespace, t.Name); e != nil {
		recorded = e.Values // what this template was rendered with before renders the same now (verifyEntry)
	}
	in, err := t.instanceFor(pv, recorded, st.limits.MaxRenderedBytes)
	reason := ReasonMissingParameter
	if err == nil {
		// The plan lives on the stack: nothing keeps it beyond this template.
		var p plan
		if err = st.plan(t, in, &p); err == nil {
			res.Warnings = append(res.Warnings, p.warnings...)
			if pv.completes && len(p.containers) > 0 {
				// Only Keep gets here with containers: Native made them init containers.
				res.Warnings = append(res.Warnings, fmt.Sprintf("sidecar template %q adds regular containers to a pod that runs to completion (restartPolicy Never or OnFailure): the pod will not complete unless they exit by themselves; set the template's spec.jobPolicy to Native to add them as native sidecars", t.Name))
			}
			d.Added = st.commit(t, in, &p)
			if p.empty() && st.recorded(t) {
				d.Outcome, d.Reason = OutcomeAlreadyInjected, ReasonAlreadyInjected
			} else {
				d.Outcome = OutcomeInjected
			}
			return
		}
		reason = ReasonConflict
	}
	var limit *LimitError
	var invalid *invalidRender
	var badValue *parameterValueError
	switch {
	case errors.As(err, &limit):
		res.fail(d, t.FailurePolicy, ReasonLimitExceeded, limit.Error())
		return
	case errors.As(err, &invalid):
		reason = ReasonInvalid
	case errors.As(err, &badValue):
		reason = ReasonInvalidParameter
	}
	res.fail(d, t.FailurePolicy, reason, fmt.Sprintf("sidecar template %q: %v", t.Name, err))
}
