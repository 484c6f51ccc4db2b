package inject

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"testing"
)

// The two invariants the engine's optimisations put on other code, each enforced here.

// answer is everything a caller reads from a Result, encoded.
func answer(t *testing.T, r *Result) string {
	t.Helper()
	patch, err := r.PatchJSON()
	if err != nil {
		t.Fatal(err)
	}
	rest, err := json.Marshal(struct {
		D []Decision
		W []string
		M string
	}{r.Decisions, r.Warnings, r.DenyMessage})
	if err != nil {
		t.Fatal(err)
	}
	return string(patch) + string(rest)
}

// TestResultKeepsNothingOfThePod: the webhook decodes request.object as a slice of the request body and recycles
// the body once the answer is written (internal/webhook/http.go). That is safe only while no Result aliases
// Request.Pod: overwriting the pod's bytes after Inject must change nothing the caller reads.
func TestResultKeepsNothingOfThePod(t *testing.T) {
	for _, c := range allPropertyCases(t) {
		req := c.req
		req.Pod = bytes.Clone(c.req.Pod)
		r, err := Inject(req)
		if err != nil {
			continue
		}
		before := answer(t, r)
		for i := range req.Pod {
			req.Pod[i] = 'x'
		}
		if after := answer(t, r); after != before {
			t.Errorf("%s: the result changed when the pod's bytes were overwritten: it aliases them", c.name)
		}
	}
}

// TestInjectionNeverWritesATemplate: what a template adds is encoded once at Compile and shared by every
// admission; plans and the state take its arrays clipped (subsequence, appendItems) so that an append copies
// instead of writing into them. Injecting every case must leave every template exactly as compiled.
func TestInjectionNeverWritesATemplate(t *testing.T) {
	snapshot := func(ts []*Template) []string {
		var out []string
		for _, tp := range ts {
			if tp == nil || tp.base == nil {
				continue
			}
			b := tp.base
			s := fmt.Sprintf("%s %v %v %v %v", tp.Key(), b.annotations, b.annotationVals, b.labels, b.labelVals)
			for _, list := range [][]item{b.containers, b.initContainers, b.volumes, b.mounts, b.env, b.envFrom, b.pullSecrets} {
				s += fmt.Sprintf(" %d/%d", len(list), cap(list))
				for _, it := range list[:cap(list)] { // beyond len too: an append into the template's array lands there
					s += " " + it.key + "=" + string(it.raw)
				}
			}
			out = append(out, s)
		}
		return out
	}
	// Three of each in the first template: its arrays have room for a fourth (append doubles), which a second
	// template's additions would land in if the state appended to the first one's array.
	three := func(f string) string {
		return fmt.Sprintf("[{%s: a, image: i}, {%s: b, image: i}, {%s: c, image: i}]", f, f, f)
	}
	sts := parseTemplates(t, []byte("metadata: {name: one, namespace: team-a}\nspec:\n  containers: "+three("name")+
		"\n  initContainers: [{name: i1, image: i}, {name: i2, image: i}, {name: i3, image: i}]"+
		"\n  env: [{name: A}, {name: B}, {name: C}]\n---\nmetadata: {name: two, namespace: team-a}\nspec:\n"+
		"  containers: [{name: d, image: i}]\n  initContainers: [{name: i4, image: i}]\n  env: [{name: D}]\n"))
	cases := append(allPropertyCases(t), propertyCase{name: "spare capacity", req: Request{
		Pod:       podJSON(t, "metadata: {name: p, annotations: {sidecar.dev/inject: 'one, two'}}\nspec: {containers: [{name: app, image: a}]}"),
		Namespace: "team-a", InjectorNamespace: injectorNS, Templates: compileAll(sts, injectorNS)}})
	var all []*Template
	for _, c := range cases {
		all = append(all, c.req.Templates...)
		if c.req.Index != nil {
			all = append(all, c.req.Index.Templates()...)
		}
	}
	before := snapshot(all)
	for range 2 { // the second round sees whatever the first one left behind
		for _, c := range cases {
			_, _ = Inject(c.req)
		}
	}
	if after := snapshot(all); !slices.Equal(before, after) {
		for i := range before {
			if before[i] != after[i] {
				t.Errorf("injection wrote into a compiled template:\nbefore %s\nafter  %s", before[i], after[i])
			}
		}
	}
}
