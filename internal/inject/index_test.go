package inject

import (
	"fmt"
	"math/rand"
	"reflect"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sidecar-dev/sidecar-injector/internal/api/v1alpha1"
)

// sameResult reports how two results differ, or "" when they are the same in every field.
func sameResult(a, b *Result) string {
	pa, errA := a.PatchJSON()
	pb, errB := b.PatchJSON()
	switch {
	case errA != nil || errB != nil:
		return fmt.Sprintf("patch cannot be encoded: %v / %v", errA, errB)
	case string(pa) != string(pb):
		return fmt.Sprintf("patch\n%s\nwant\n%s", pb, pa)
	case a.Denied != b.Denied || a.DenyMessage != b.DenyMessage:
		return fmt.Sprintf("denied %v %q, want %v %q", b.Denied, b.DenyMessage, a.Denied, a.DenyMessage)
	case a.PodSkipReason != b.PodSkipReason:
		return fmt.Sprintf("pod skip reason %q, want %q", b.PodSkipReason, a.PodSkipReason)
	case !slices.Equal(a.Warnings, b.Warnings):
		return fmt.Sprintf("warnings %q, want %q", b.Warnings, a.Warnings)
	case !reflect.DeepEqual(a.Decisions, b.Decisions):
		return fmt.Sprintf("decisions\n%+v\nwant\n%+v", b.Decisions, a.Decisions)
	}
	return ""
}

// checkIndexed runs req through the scan (Templates) and through an Index of the same templates, both as the
// webhook asks (OmitNotApplicable) and as explain asks (every decision), and fails when anything differs.
func checkIndexed(t *testing.T, name string, req Request) {
	t.Helper()
	for _, omit := range []bool{true, false} {
		scan := req
		scan.OmitNotApplicable = omit
		want, errWant := Inject(scan)
		indexed := scan
		indexed.Templates, indexed.Index = nil, NewIndex(req.Namespace, req.InjectorNamespace, req.Templates)
		got, errGot := Inject(indexed)
		if (errWant == nil) != (errGot == nil) {
			t.Fatalf("%s (omit=%v): error %v, want %v", name, omit, errGot, errWant)
		}
		if errWant != nil {
			continue
		}
		if diff := sameResult(want, got); diff != "" {
			t.Fatalf("%s (omit=%v): the indexed admission differs from the scan: %s\npod: %s", name, omit, diff, req.Pod)
		}
	}
}

func TestAnIndexedAdmissionDecidesExactlyAsTheScanForEveryGoldenAndRandomPod(t *testing.T) {
	for _, c := range allPropertyCases(t) {
		checkIndexed(t, c.name, c.req)
	}
}

// Random selectors over a small alphabet, so that they often match: every operator, several values, empty and
// broken selectors, namespace selectors, names shared by a namespace's template and a cluster-wide one (under
// namespaceOverride Allow and Deny), labels added by templates that selectors read, and templates of a third
// namespace that are never in scope.
func TestAnIndexedAdmissionDecidesExactlyAsTheScanForRandomSelectors(t *testing.T) {
	r := rand.New(rand.NewSource(7))
	keys := []string{"app", "tier", "env", "team", "agent"}
	values := []string{"a", "b", "c"}
	randomSelector := func() *metav1.LabelSelector {
		switch r.Intn(8) {
		case 0:
			return nil
		case 1:
			return &metav1.LabelSelector{}
		case 2:
			return &metav1.LabelSelector{MatchLabels: map[string]string{"bad key!": "a"}} // cannot be parsed
		}
		s := &metav1.LabelSelector{}
		for range 1 + r.Intn(3) {
			k := pick(r, keys)
			switch op := pick(r, []metav1.LabelSelectorOperator{"=", metav1.LabelSelectorOpIn, metav1.LabelSelectorOpNotIn,
				metav1.LabelSelectorOpExists, metav1.LabelSelectorOpDoesNotExist}); op {
			case "=":
				if s.MatchLabels == nil {
					s.MatchLabels = map[string]string{}
				}
				s.MatchLabels[k] = pick(r, values)
			case metav1.LabelSelectorOpIn, metav1.LabelSelectorOpNotIn:
				vs := []string{pick(r, values)}
				if r.Intn(2) == 0 {
					vs = append(vs, pick(r, values))
				}
				s.MatchExpressions = append(s.MatchExpressions, metav1.LabelSelectorRequirement{Key: k, Operator: op, Values: vs})
			default:
				s.MatchExpressions = append(s.MatchExpressions, metav1.LabelSelectorRequirement{Key: k, Operator: op})
			}
		}
		return s
	}
	randomLabels := func() map[string]string {
		m := map[string]string{}
		for _, k := range keys {
			if r.Intn(2) == 0 {
				m[k] = pick(r, values)
			}
		}
		return m
	}
	names := []string{"t0", "t1", "t2", "t3", "t4", "t5", "t6", "t7"}
	const ns, other = "team-a", "team-b"
	checked, applied := 0, 0
	for i := range 1500 {
		var sts []*v1alpha1.SidecarTemplate
		for j := range 2 + r.Intn(14) {
			st := &v1alpha1.SidecarTemplate{
				ObjectMeta: metav1.ObjectMeta{Namespace: pick(r, []string{ns, ns, injectorNS, injectorNS, other}), Name: pick(r, names)},
				Spec: v1alpha1.SidecarTemplateSpec{
					Order:      int32(r.Intn(3)),
					Selector:   randomSelector(),
					Containers: []corev1.Container{{Name: fmt.Sprintf("side-%d-%d", i, j), Image: "example.com/side:1"}},
				},
			}
			if r.Intn(3) == 0 {
				st.Spec.FailurePolicy = v1alpha1.FailurePolicyIgnore
			}
			if st.Namespace == injectorNS && r.Intn(2) == 0 {
				st.Spec.NamespaceSelector = randomSelector()
			}
			if st.Namespace == injectorNS && r.Intn(2) == 0 {
				st.Spec.NamespaceOverride = v1alpha1.NamespaceOverrideAllow // else Deny: the override rule both ways
			}
			if r.Intn(4) == 0 { // a label other selectors may read: the fixpoint, indexed and scanned
				st.Spec.Labels = map[string]string{pick(r, keys): pick(r, values)}
			}
			sts = append(sts, st)
		}
		templates := compileAll(sts, injectorNS)
		var requested []string
		for _, n := range names {
			if r.Intn(6) == 0 {
				requested = append(requested, n)
			}
		}
		pod := podJSON(t, fmt.Sprintf(`
metadata:
  name: pod-%d
  labels: %s
  annotations: {%s: %q}
spec:
  containers: [{name: app, image: example.com/app:1}]
`, i, mustJSON(randomLabels()), v1alpha1.AnnotationInject, strings.Join(requested, ",")))
		req := Request{Pod: pod, Namespace: ns, NamespaceLabels: randomLabels(), InjectorNamespace: injectorNS, Templates: templates}
		checkIndexed(t, fmt.Sprintf("case %d", i), req)
		checked++
		// One index serving the namespace while its labels change: what it remembers of the last labels must
		// never decide for the new ones.
		shared := NewIndex(ns, injectorNS, templates)
		for j := range 3 {
			req.NamespaceLabels = randomLabels()
			scan := req
			scan.OmitNotApplicable = true
			want, errWant := Inject(scan)
			indexed := scan
			indexed.Templates, indexed.Index = nil, shared
			got, errGot := Inject(indexed)
			if (errWant == nil) != (errGot == nil) {
				t.Fatalf("case %d, labels %d: error %v, want %v", i, j, errGot, errWant)
			}
			if errWant == nil {
				if diff := sameResult(want, got); diff != "" {
					t.Fatalf("case %d, namespace labels %v: %s", i, req.NamespaceLabels, diff)
				}
			}
		}
		if res, err := Inject(Request{Pod: pod, Namespace: ns, NamespaceLabels: req.NamespaceLabels, InjectorNamespace: injectorNS,
			Index: NewIndex(ns, injectorNS, templates), OmitNotApplicable: true}); err == nil && len(res.Decisions) > 0 {
			applied++
		}
	}
	// The comparison means something only if many cases had templates that apply (or fail) for the pod.
	if applied < checked/3 {
		t.Fatalf("only %d of %d random cases had a template that applies: the generator is too narrow", applied, checked)
	}
}

// A pod is checked against the templates that concern it, not against all of them.
func TestAnIndexOffersAPodOnlyTheTemplatesItsLabelsOrItsRequestCanSelect(t *testing.T) {
	var sts []*v1alpha1.SidecarTemplate
	add := func(namespace, name string, sel *metav1.LabelSelector) {
		sts = append(sts, &v1alpha1.SidecarTemplate{
			ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name},
			Spec:       v1alpha1.SidecarTemplateSpec{Selector: sel, Containers: []corev1.Container{{Name: name, Image: "example.com/x:1"}}},
		})
	}
	for i := range 5000 {
		add("team-a", fmt.Sprintf("app-%04d", i), &metav1.LabelSelector{MatchLabels: map[string]string{"app": fmt.Sprintf("app-%04d", i), "tier": "web"}})
	}
	for i := range 100 { // all mention tier=web; each also needs its own label, which is what it is filed under
		add(injectorNS, fmt.Sprintf("agent-%03d", i), &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
			{Key: "tier", Operator: metav1.LabelSelectorOpIn, Values: []string{"web", "api"}},
			{Key: fmt.Sprintf("agent-%03d", i), Operator: metav1.LabelSelectorOpExists},
		}})
	}
	add("team-a", "by-name-only", nil)
	add("team-a", "not-web", &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
		{Key: "tier", Operator: metav1.LabelSelectorOpNotIn, Values: []string{"web"}}}})
	add(injectorNS, "agent-007", nil) // shadowed by nothing: another namespace's name
	add("team-a", "agent-042", nil)   // shadows the cluster-wide agent-042
	x := NewIndex("team-a", injectorNS, compileAll(sts, injectorNS))

	keys := func(ts []*Template) []string {
		var out []string
		for _, t := range ts {
			out = append(out, t.Key())
		}
		return out
	}
	for _, c := range []struct {
		name      string
		labels    map[string]string
		requested []string
		want      []string
	}{
		{"a pod with one app label meets one of 5,000 app selectors, plus the selector without an anchor",
			map[string]string{"app": "app-0042", "tier": "web"}, nil,
			[]string{"team-a/app-0042", "team-a/not-web"}},
		{"a pod with an agent label meets that agent's selector",
			map[string]string{"tier": "web", "agent-013": ""}, nil,
			[]string{injectorNS + "/agent-013", "team-a/not-web"}},
		{"a name the namespace also uses offers both templates of the name (resolve applies the override rule)",
			map[string]string{"tier": "web", "agent-042": "x"}, []string{"agent-042"},
			[]string{injectorNS + "/agent-042", "team-a/agent-042", "team-a/not-web"}},
		{"a requested template without a selector is offered by its name",
			map[string]string{}, []string{"by-name-only", "missing"},
			[]string{"team-a/by-name-only", "team-a/not-web"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := keys(x.candidates(c.labels, nil, c.requested))
			slices.Sort(got)
			if !slices.Equal(got, c.want) {
				t.Errorf("candidates %v, want %v", got, c.want)
			}
		})
	}
}

func TestAnIndexForAnotherNamespaceFallsBackToTheScan(t *testing.T) {
	ts := fixedTemplates(t)
	pod := podJSON(t, `
metadata: {name: p, labels: {app: web}, annotations: {sidecar.dev/inject: "log-shipper,proxy"}}
spec: {containers: [{name: app, image: example.com/app:1}]}
`)
	scan, err := Inject(Request{Pod: pod, Namespace: "team-a", InjectorNamespace: injectorNS, Templates: ts, OmitNotApplicable: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(scan.Injected()) == 0 {
		t.Fatal("nothing injected: the test compares nothing")
	}
	for _, x := range []*Index{NewIndex("team-b", injectorNS, ts), NewIndex("team-a", "other-injector", ts)} {
		got, err := Inject(Request{Pod: pod, Namespace: "team-a", InjectorNamespace: injectorNS, Index: x, OmitNotApplicable: true})
		if err != nil {
			t.Fatal(err)
		}
		if diff := sameResult(scan, got); diff != "" {
			t.Errorf("index for %q/%q: %s", x.namespace, x.injectorNamespace, diff)
		}
	}
}

func TestOnlyLabelsASelectorNamesCanSelectATemplateMore(t *testing.T) {
	idx := NewIndex(defaultNamespace, injectorNS, compileAll(parseTemplates(t, []byte(`
metadata: {name: own, namespace: team-a}
spec: {selector: {matchLabels: {mesh: "on"}}, labels: {traced: "yes"}}
---
metadata: {name: wide, namespace: sidecar-injector}
spec: {selector: {matchExpressions: [{key: tier, operator: NotIn, values: [batch]}]}, labels: {x: "y"}}
`)), injectorNS))
	for _, c := range []struct {
		added map[string]string
		want  bool
	}{
		{map[string]string{"traced": "yes"}, false},              // no selector names it
		{map[string]string{"traced": "yes", "mesh": "on"}, true}, // the namespace's own selector names mesh
		{map[string]string{"tier": "web"}, true},                 // a cluster-wide selector names tier (NotIn)
		{map[string]string{"mesh-extra": "on", "x": "y"}, false}, // keys, not prefixes
	} {
		if got := idx.selectsOn(c.added); got != c.want {
			t.Errorf("labels %v: selectsOn = %v, want %v", c.added, got, c.want)
		}
	}
}
