package inject

import (
	"maps"
	"slices"
	"sync/atomic"

	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
)

// Index holds the candidate templates of one namespace (its own and the cluster-wide ones) arranged so that an
// admission looks only at the templates that can apply to its pod: those the pod requests by name, and those
// whose selector the pod's labels can satisfy. Everything else would be NotApplicable, which the webhook does
// not report (Request.OmitNotApplicable), so with an Index the cost of an admission follows the templates that
// concern the pod, not the number of templates in scope.
//
// Each selectable template is filed under one anchor: a requirement that a pod must meet for the selector to
// match and that a pod's labels can be looked up by. `key in (v1, v2)` and `key = v` file it under each value of
// key, `key exists` (and `gt`/`lt`) under key. A selector with no such requirement (empty, or only `notin`,
// `!=`, `!key`) is tried for every pod. Among a selector's requirements the anchor is the one the fewest
// templates share, so that a label most selectors mention (`tier: web`) does not pull them all in.
//
// An Index is two layers: the namespace's own templates and the cluster-wide ones. The cluster-wide layer is
// shared by every namespace's index (NewClusterIndex, then ForNamespace), so that a thousand namespaces do not
// hold a thousand copies of it. Indexes are read-only once built and safe for concurrent use.
type Index struct {
	// namespace is the namespace whose pods the index serves; "" for an index of cluster-wide templates only,
	// which serves any namespace that has no templates of its own.
	namespace         string
	injectorNamespace string
	own, cluster      *layer
	// outside is what NewIndex was given that is in neither namespace: never offered, reported by the scan.
	outside []*Template
	// offered remembers, for the namespace labels last seen, which cluster-wide templates their
	// namespaceSelector keeps away from the namespace: labels rarely change, pods arrive all the time.
	offered atomic.Pointer[nsVerdict]
}

// nsVerdict is, for one set of namespace labels, a bit per cluster-wide template (by position) set when its
// namespaceSelector does not select the namespace.
type nsVerdict struct {
	labels   map[string]string
	excluded []uint64
}

func (v *nsVerdict) has(p int32) bool { return v.excluded[p/64]&(1<<(p%64)) != 0 }

// layer is one namespace's templates, in injection order, indexed; positions point into templates.
type layer struct {
	templates []*Template
	byName    map[string][]int32
	// byLabel files the selectable templates under the label key of their anchor; always holds those without
	// one.
	byLabel map[string]*anchored
	always  []int32
	// selectorKeys counts, per label key, the selectors that name it (in any requirement).
	selectorKeys map[string]int
}

// anchored is what is filed under one label key: by value (equality anchors) and for any value (key anchors).
type anchored struct {
	byValue  map[string][]int32
	anyValue []int32
}

// NewIndex indexes templates for the pods of namespace. injectorNamespace is the injector's own namespace (its
// templates are cluster-wide). Templates outside both namespaces are kept (explain reports them OutOfScope) but
// never offered to a pod. With namespace "", only the cluster-wide templates are offered: the index then serves
// every namespace without templates of its own.
func NewIndex(namespace, injectorNamespace string, templates []*Template) *Index {
	var own, cluster, outside []*Template
	for _, t := range templates {
		switch {
		case t == nil:
		case injectorNamespace != "" && t.Namespace == injectorNamespace:
			cluster = append(cluster, t)
		case namespace != "" && t.Namespace == namespace:
			own = append(own, t)
		default:
			outside = append(outside, t)
		}
	}
	x := NewClusterIndex(injectorNamespace, cluster).ForNamespace(namespace, own)
	x.outside = inOrder(outside)
	return x
}

// NewClusterIndex indexes the cluster-wide templates (those of injectorNamespace; any other is left out). The
// result serves every namespace without templates of its own, and is the shared layer of ForNamespace.
func NewClusterIndex(injectorNamespace string, templates []*Template) *Index {
	var cluster []*Template
	for _, t := range templates {
		if t != nil && injectorNamespace != "" && t.Namespace == injectorNamespace {
			cluster = append(cluster, t)
		}
	}
	return &Index{injectorNamespace: injectorNamespace, own: newLayer(nil), cluster: newLayer(cluster)}
}

// ForNamespace returns the index of namespace: its own templates (those of another namespace are left out) over
// the cluster-wide layer of x, which is shared, not copied.
func (x *Index) ForNamespace(namespace string, own []*Template) *Index {
	var mine []*Template
	for _, t := range own {
		if t != nil && namespace != "" && t.Namespace == namespace && t.Namespace != x.injectorNamespace {
			mine = append(mine, t)
		}
	}
	return &Index{namespace: namespace, injectorNamespace: x.injectorNamespace, own: newLayer(mine), cluster: x.cluster}
}

func newLayer(templates []*Template) *layer {
	l := &layer{
		templates: inOrder(templates),
		byName:    map[string][]int32{},
		byLabel:   map[string]*anchored{},
	}
	// How many selectors mention each label value and each label key: the anchor is the least shared one.
	valueUse, keyUse := map[[2]string]int{}, map[string]int{}
	for _, t := range l.templates {
		for _, r := range selectable(t) {
			keyUse[r.Key()]++
			if equality(r.Operator()) {
				for _, v := range r.ValuesUnsorted() {
					valueUse[[2]string{r.Key(), v}]++
				}
			}
		}
	}
	l.selectorKeys = keyUse
	for i, t := range l.templates {
		pos := int32(i)
		l.byName[t.Name] = append(l.byName[t.Name], pos)
		if !t.HasSelector || t.selector == nil || t.selectorsBroken {
			continue // applies only when requested by name (a broken selector selects nothing)
		}
		if _, ok := t.selector.Requirements(); !ok {
			continue // a selector that matches nothing
		}
		r, ok := anchor(selectable(t), valueUse, keyUse)
		if !ok {
			l.always = append(l.always, pos)
			continue
		}
		a := l.byLabel[r.Key()]
		if a == nil {
			a = &anchored{byValue: map[string][]int32{}}
			l.byLabel[r.Key()] = a
		}
		if !equality(r.Operator()) {
			a.anyValue = append(a.anyValue, pos)
			continue
		}
		for _, v := range r.ValuesUnsorted() {
			a.byValue[v] = append(a.byValue[v], pos)
		}
	}
	return l
}

// candidates returns the templates of l a pod with podLabels requesting requested may get, in
// injection order, leaving out, among those it may be selected by, those excluded marks (a requested template
// is always offered: asked for by name, it fails if not allowed here).
func (l *layer) candidates(podLabels map[string]string, requested []string, excluded *nsVerdict) []*Template {
	var buf [32]int32 // most pods meet a handful of templates: no allocation for them
	// The namespace's exclusions are left out as positions are collected, not after: a label many selectors
	// share (tier: web) may file dozens of templates that this namespace never gets, and collecting them
	// first would outgrow buf on every admission.
	keep := func(pos []int32, add []int32) []int32 {
		for _, p := range add {
			if excluded == nil || !excluded.has(p) {
				pos = append(pos, p)
			}
		}
		return pos
	}
	pos := keep(buf[:0], l.always)
	if len(l.byLabel) > 0 {
		for k, v := range podLabels {
			if a := l.byLabel[k]; a != nil {
				pos = keep(keep(pos, a.byValue[v]), a.anyValue)
			}
		}
	}
	for _, n := range requested {
		pos = append(pos, l.byName[n]...)
	}
	slices.Sort(pos)
	pos = slices.Compact(pos)
	out := make([]*Template, 0, len(pos))
	for _, p := range pos {
		out = append(out, l.templates[p])
	}
	return out
}

// selectsOn reports whether a selector of the index names one of the label keys of added. Labels a pod gains
// can make a selector match only through a requirement on one of them: when none names any, they select no
// template more (Inject then skips the fixpoint's next round, which would find nothing new).
func (x *Index) selectsOn(added map[string]string) bool {
	for k := range added {
		if x.own.selectorKeys[k] > 0 || x.cluster.selectorKeys[k] > 0 {
			return true
		}
	}
	return false
}

// size is the number of templates the index offers.
func (x *Index) size() int { return len(x.own.templates) + len(x.cluster.templates) }

// localNamed returns the namespace's own template named name, or nil.
func (x *Index) localNamed(name string) *Template { return x.own.lookup(name) }

// clusterNamed returns the cluster-wide template named name, or nil.
func (x *Index) clusterNamed(name string) *Template { return x.cluster.lookup(name) }

// lookup returns the template of l named name, or nil.
func (l *layer) lookup(name string) *Template {
	if p := l.byName[name]; len(p) > 0 {
		return l.templates[p[0]]
	}
	return nil
}

// Templates returns every template of the index in injection order.
func (x *Index) Templates() []*Template {
	all := make([]*Template, 0, len(x.own.templates)+len(x.cluster.templates)+len(x.outside))
	return inOrder(append(append(append(all, x.own.templates...), x.cluster.templates...), x.outside...))
}

// inScope returns the template namespace/name if it may serve the index's namespace (for the pod's status
// record), or nil.
func (x *Index) inScope(namespace, name string) *Template {
	switch {
	case namespace == "":
		return nil
	case namespace == x.namespace:
		return x.own.lookup(name)
	case namespace == x.injectorNamespace:
		return x.cluster.lookup(name)
	}
	return nil
}

// serves reports whether the index was built for the request's namespace and injector namespace.
func (x *Index) serves(req Request) bool {
	return (x.namespace == req.Namespace || x.namespace == "") && x.injectorNamespace == req.InjectorNamespace
}

// candidates returns, in injection order, the templates that may apply to a pod with podLabels that requests
// the names requested: a superset of those resolve finds applying, made only of the templates it requests and
// those filed under an anchor the pod meets. Which of two templates of one name serves (the override rule) is
// resolve's to decide: it looks the other one up in the index (localNamed, clusterNamed), and reports the one
// not used when the pod wants it.
func (x *Index) candidates(podLabels, nsLabels map[string]string, requested []string) []*Template {
	own := x.own.candidates(podLabels, requested, nil)
	cluster := x.cluster.candidates(podLabels, requested, x.verdict(nsLabels))
	if len(own) == 0 || len(cluster) == 0 {
		return append(own, cluster...)
	}
	// Two runs in injection order: merged.
	out := make([]*Template, 0, len(own)+len(cluster))
	for len(own) > 0 && len(cluster) > 0 {
		if InjectionOrder(own[0], cluster[0]) <= 0 {
			out, own = append(out, own[0]), own[1:]
		} else {
			out, cluster = append(out, cluster[0]), cluster[1:]
		}
	}
	return append(append(out, own...), cluster...)
}

// verdict returns which cluster-wide templates nsLabels keep away, from the last verdict when the labels are
// the same, else computed (and kept) now.
func (x *Index) verdict(nsLabels map[string]string) *nsVerdict {
	if v := x.offered.Load(); v != nil && maps.Equal(v.labels, nsLabels) {
		return v
	}
	v := &nsVerdict{labels: nsLabels, excluded: make([]uint64, (len(x.cluster.templates)+63)/64)}
	set := labels.Set(nsLabels)
	for i, t := range x.cluster.templates {
		if t.namespaceSelector != nil && !t.namespaceSelector.Matches(set) {
			v.excluded[i/64] |= 1 << (i % 64)
		}
	}
	x.offered.Store(v)
	return v
}

// selectable returns the requirements of t's selector that a pod must meet, or nil when t does not select by
// label.
func selectable(t *Template) labels.Requirements {
	if !t.HasSelector || t.selector == nil || t.selectorsBroken {
		return nil
	}
	reqs, _ := t.selector.Requirements()
	return reqs
}

func equality(op selection.Operator) bool {
	return op == selection.In || op == selection.Equals || op == selection.DoubleEquals
}

// anchor picks the requirement to file a selector under: one a pod can only meet by carrying the label (with
// one of the values, for equality), shared by the fewest selectors of the index; false when there is none.
func anchor(reqs labels.Requirements, valueUse map[[2]string]int, keyUse map[string]int) (labels.Requirement, bool) {
	best, bestCost := -1, 0
	for i, r := range reqs {
		cost := 0
		switch op := r.Operator(); {
		case equality(op):
			for _, v := range r.ValuesUnsorted() {
				cost += valueUse[[2]string{r.Key(), v}]
			}
		case op == selection.Exists || op == selection.GreaterThan || op == selection.LessThan:
			cost = keyUse[r.Key()]
		default:
			continue // notin, !=, !key: met by pods without the label
		}
		if best < 0 || cost < bestCost {
			best, bestCost = i, cost
		}
	}
	if best < 0 {
		return labels.Requirement{}, false
	}
	return reqs[best], true
}

// Offered returns, in injection order, the templates that may serve a pod of the index's namespace by
// selector or name: the cluster-wide ones whose namespaceSelector selects nsLabels (every one when nsLabels is
// nil: the labels are unknown), and the namespace's own, of two with one name the one the override rule
// (OverrideOf) picks. It is the rule Inject applies (resolve), for callers that reason about templates without
// a pod: the status controller's name clashes.
func (x *Index) Offered(nsLabels map[string]string) []*Template {
	var out []*Template
	for _, t := range x.own.templates {
		if OverrideOf(x.cluster.lookup(t.Name), nsLabels) != OverrideDenied {
			out = append(out, t)
		}
	}
	for _, t := range x.cluster.templates {
		if nsLabels != nil && !offers(t, nsLabels) {
			continue
		}
		if x.own.byName[t.Name] != nil && t.OverrideAllowed {
			continue // replaced by the namespace's own
		}
		out = append(out, t)
	}
	slices.SortFunc(out, InjectionOrder)
	return out
}
