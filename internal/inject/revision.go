package inject

import (
	"cmp"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"slices"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/sidecar-dev/sidecar-injector/internal/api/v1alpha1"
)

// Revision is one remembered revision of a template: its number and the template as it was then (namespace,
// name, generation and spec). The controller keeps them as ControllerRevisions; the store passes them here as
// they are stored (Hash and Data), and they are decoded only when compiled as an earlier revision: most
// templates have a single revision, their current spec, which needs nothing but its number.
type Revision struct {
	Number int64
	// Hash is the hash the revision is labelled with (the Hash of its template compiled); when it is the current
	// template's, the revision is the current one and Data is not read. Empty: unknown, Data is compiled.
	Hash string
	// Data is the revision's template encoded as JSON (a ControllerRevision's data); read when Template is nil.
	Data []byte
	// Template is the revision's template decoded; nil: decoded from Data when needed.
	Template *v1alpha1.SidecarTemplate
}

// template returns r's template, decoding Data when needed; nil when there is none or it is not a template.
func (r *Revision) template() *v1alpha1.SidecarTemplate {
	if r.Template != nil || len(r.Data) == 0 {
		return r.Template
	}
	var t v1alpha1.SidecarTemplate
	if json.Unmarshal(r.Data, &t) != nil {
		return nil
	}
	return &t
}

// canary is spec.updatePolicy.canary while it holds a revision back (percent below 100).
type canary struct {
	percent  int32
	selector labels.Selector // nil: no selector
}

// compileUpdatePolicy reads spec.updatePolicy. A canary at 100 percent is a promoted one: no canary.
func (t *Template) compileUpdatePolicy(spec *v1alpha1.SidecarTemplateSpec, c *checks) {
	up := spec.UpdatePolicy
	if up == nil {
		t.stalePods = v1alpha1.StalePodsAdmit
		return
	}
	t.stalePods = cmp.Or(up.StalePods, v1alpha1.StalePodsAdmit)
	if t.stalePods != v1alpha1.StalePodsAdmit && t.stalePods != v1alpha1.StalePodsDeny {
		c.add("spec.updatePolicy.stalePods must be Admit or Deny, not %q", t.stalePods)
	}
	if up.Canary == nil {
		return
	}
	percent := int32(0)
	if up.Canary.Percent != nil {
		percent = *up.Canary.Percent
	}
	if percent < 0 || percent > 100 {
		c.add("spec.updatePolicy.canary.percent must be between 0 and 100, not %d", percent)
		return
	}
	if percent == 100 {
		return
	}
	t.canary = &canary{percent: percent}
	if up.Canary.Selector != nil {
		sel, err := metav1.LabelSelectorAsSelector(up.Canary.Selector)
		if err != nil {
			c.add("spec.updatePolicy.canary.selector is not a valid label selector: %v", err)
			return
		}
		t.canary.selector = sel
	}
}

// CompileRevisions is Compile with the template's history: the revision numbers, the earlier revisions that a
// pod's sidecar may still be (recognised as outdated, never a conflict), and the stable revision
// (status.stableRevision) that pods outside a canary get. Revisions that do not compile are left out: nothing
// can be verified against them.
func CompileRevisions(st *v1alpha1.SidecarTemplate, injectorNamespace string, history []Revision) *Template {
	t := Compile(st, injectorNamespace)
	for _, r := range history {
		if r.Hash != "" && r.Hash == t.Hash {
			t.Revision = r.Number // the current spec: nothing to decode
			continue
		}
		rt := r.template()
		if rt == nil {
			continue
		}
		old := *rt
		old.Namespace, old.Name = st.Namespace, st.Name
		h := Compile(&old, injectorNamespace)
		if h.Hash == t.Hash {
			t.Revision = r.Number
			continue
		}
		if h.Err != nil || slices.ContainsFunc(t.earlier, func(e *Template) bool { return e.Hash == h.Hash }) {
			continue
		}
		h.Revision = r.Number
		t.earlier = append(t.earlier, h)
		if r.Number == st.Status.StableRevision {
			t.stable = h
		}
	}
	slices.SortFunc(t.earlier, func(a, b *Template) int { return cmp.Compare(b.Revision, a.Revision) })
	return t
}

// Earlier returns the earlier revisions the engine knows, newest first.
func (t *Template) Earlier() []*Template { return t.earlier }

// revisionByHash returns the earlier revision whose hash is hash; nil when none is remembered.
func (t *Template) revisionByHash(hash string) *Template {
	for _, e := range t.earlier {
		if e.Hash == hash {
			return e
		}
	}
	return nil
}

// revisionFor returns the revision of t that this pod gets, and why when a canary decided it. Without a
// running canary, or without a stable revision to hold back to, every pod gets the current revision.
func (t *Template) revisionFor(pv *podValues) (*Template, string) {
	if t.canary == nil || t.stable == nil {
		return t, ""
	}
	if s := t.canary.selector; s != nil && s.Matches(labels.Set(pv.labels)) {
		return t, fmt.Sprintf("%s (canary): the pod matches spec.updatePolicy.canary.selector", revisionName(t))
	}
	key := canaryKey(pv)
	if canaryBucket(t, pv.namespace, key) < t.canary.percent {
		return t, fmt.Sprintf("%s (canary): %s is in the %d%% canary share", revisionName(t), key, t.canary.percent)
	}
	return t.stable, fmt.Sprintf("%s (stable): %s is outside the %d%% canary share of %s", revisionName(t.stable),
		key, t.canary.percent, revisionName(t))
}

// canaryKey is what a pod's canary share is decided by: its owner, so that every pod of one ReplicaSet (or
// StatefulSet, DaemonSet, Job) gets the same revision; a bare pod by its generateName, else its name.
func canaryKey(pv *podValues) string {
	switch {
	case pv.owner != "":
		return pv.owner
	case pv.generateName != "":
		return "Pod/" + pv.generateName + "*"
	}
	return "Pod/" + pv.name
}

// ownerOf returns "Kind/name" of the controller among the owners, else of the first owner; "" without owners.
func ownerOf(owners []ownerView) string {
	if len(owners) == 0 {
		return ""
	}
	o := owners[0]
	if i := slices.IndexFunc(owners, func(o ownerView) bool { return o.Controller != nil && *o.Controller }); i >= 0 {
		o = owners[i]
	}
	return o.Kind + "/" + o.Name
}

// canaryBucket places an owner in one of 100 buckets, the same for every pod of the owner. The template's hash
// is part of it, so each new revision is tried first by another share of the owners; within one revision a
// higher percent only adds owners. FNV-1a is enough: the input is not chosen by an adversary who gains from a
// bucket (a pod's owner can ask for the canary by label anyway if the selector allows it).
func canaryBucket(t *Template, namespace, key string) int32 {
	h := fnv.New32a()
	for _, s := range []string{t.Namespace, t.Name, t.Hash, namespace, key} {
		_, _ = h.Write([]byte(s)) // never fails
		_, _ = h.Write([]byte{0})
	}
	return int32(h.Sum32() % 100)
}

// revisionName names a revision for people: by number, or by hash when the controller has not numbered it yet.
func revisionName(t *Template) string {
	if t.Revision > 0 {
		return fmt.Sprintf("revision %d", t.Revision)
	}
	return fmt.Sprintf("revision %s", t.Hash)
}

// outdated answers for a template whose sidecar in the pod is exactly what an earlier revision (e.rev)
// rendered: admitted unchanged with a warning, or denied under spec.updatePolicy.stalePods Deny.
func (res *Result) outdated(d *Decision, t *Template, e *record) {
	msg := fmt.Sprintf("sidecar template %q: the pod's sidecar is %s of the template, the current one is %s",
		t.Name, revisionName(e.rev), revisionName(t))
	d.Reason, d.Revision = ReasonOutdated, e.rev.Revision
	if t.stalePods == v1alpha1.StalePodsDeny {
		d.Outcome, d.Added = OutcomeDenied, nil
		d.Message = msg + "; its spec.updatePolicy.stalePods is Deny: render the workload again with the current " +
			"template (sidecar-injector inject), or remove the sidecar and the sidecar.dev/status annotation from " +
			"the pod template so that the current revision is injected"
		res.Denied = true
		return
	}
	e.present = true // the record keeps naming the template, with the revision the pod runs
	added := e.Added
	d.Outcome, d.Added = OutcomeAlreadyInjected, &added
	d.Message = msg + "; the pod is admitted unchanged and counted as outdated"
	res.Warnings = append(res.Warnings, d.Message)
}
