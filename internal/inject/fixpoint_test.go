package inject

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/labels"

	"github.com/sidecar-dev/sidecar-injector/internal/patchtest"
)

// Selectors see the labels that templates add: one admission selects until nothing new is selected.
func TestSelectionSeesLabelsTemplatesAdd(t *testing.T) {
	runTable(t, []tableCase{
		{
			name: "a template that adds a label another template selects brings that template in the same pass",
			pod:  simplePod(`{app: web}`, `{sidecar.dev/inject: mesh}`),
			templates: tmpl("sidecar-injector", "mesh", "  labels: {mesh: 'on'}") +
				tmpl("sidecar-injector", "mesh-metrics", "  selector: {matchLabels: {mesh: 'on'}}"),
			decisions: []want{{"sidecar-injector", "mesh", I, ReasonRequested}, {"sidecar-injector", "mesh-metrics", I, ReasonSelected}},
			check:     expectContainers("app", "mesh-c", "mesh-metrics-c"),
		},
		{
			name: "a chain a→b→c is followed to its end even when injection order runs against it",
			pod:  simplePod(`{app: web}`, ""),
			templates: tmpl("sidecar-injector", "c", "  order: 1\n  selector: {matchLabels: {b: done}}") +
				tmpl("sidecar-injector", "b", "  order: 2\n  selector: {matchLabels: {a: done}}\n  labels: {b: done}") +
				tmpl("sidecar-injector", "a", "  order: 3\n  selector: {matchLabels: {app: web}}\n  labels: {a: done}"),
			decisions: []want{{"sidecar-injector", "a", I, ReasonSelected}, {"sidecar-injector", "b", I, ReasonSelected}, {"sidecar-injector", "c", I, ReasonSelected}},
			check:     expectContainers("app", "c-c", "b-c", "a-c"), // in injection order, as on any pod that asked for all three
		},
		{
			name:      "a template that selects on a label it adds itself is injected once when requested",
			pod:       simplePod("", `{sidecar.dev/inject: self}`),
			templates: tmpl("team-a", "self", "  selector: {matchLabels: {self: \"on\"}}\n  labels: {self: \"on\"}"),
			decisions: []want{{"team-a", "self", I, ReasonRequested}},
			check:     expectContainers("app", "self-c"),
		},
		{
			name: "a label the pod already sets keeps the pod's value, so a selector on the template's value does not see it",
			pod:  simplePod(`{mesh: 'off'}`, `{sidecar.dev/inject: mesh}`),
			templates: tmpl("sidecar-injector", "mesh", "  labels: {mesh: 'on'}") +
				tmpl("sidecar-injector", "mesh-metrics", "  selector: {matchLabels: {mesh: 'on'}}"),
			decisions: []want{{"sidecar-injector", "mesh", I, ReasonRequested}, {"sidecar-injector", "mesh-metrics", NA, ReasonSelectorMismatch}},
		},
		{
			name: "a template selected by an added label is denied under its failurePolicy like any selected one, and nothing is injected",
			pod:  simplePod(`{app: web}`, `{sidecar.dev/inject: mesh}`),
			templates: tmpl("sidecar-injector", "mesh", "  labels: {mesh: 'on'}") +
				"\n---\nmetadata: {name: clash, namespace: sidecar-injector}\nspec:\n  selector: {matchLabels: {mesh: \"on\"}}\n  containers: [{name: app, image: x}]\n",
			decisions:   []want{{"sidecar-injector", "clash", DN, ReasonConflict}},
			notInjected: []string{"sidecar-injector/mesh"},
			denied:      true,
		},
	})
}

// TestPropertyOnePassIsAFixpointWhenTemplatesAddLabelsOthersSelect: random templates that add labels that other
// templates (and they themselves) select, chains included, in random injection orders and with selectors of
// every operator: a second pass over the first one's output injects nothing, changes nothing and denies nothing.
func TestPropertyOnePassIsAFixpointWhenTemplatesAddLabelsOthersSelect(t *testing.T) {
	rng := rand.New(rand.NewPCG(13, 5))
	multiRound := 0
	for i := range 400 {
		n := 2 + rng.IntN(6)
		var b strings.Builder
		for j := range n {
			spec := fmt.Sprintf("  order: %d\n", rng.IntN(4))
			switch rng.IntN(5) {
			case 0:
				spec += fmt.Sprintf("  selector: {matchLabels: {l%d: v}}\n", rng.IntN(n))
			case 1:
				spec += fmt.Sprintf("  selector: {matchExpressions: [{key: l%d, operator: Exists}]}\n", rng.IntN(n))
			case 2:
				spec += fmt.Sprintf("  selector: {matchExpressions: [{key: l%d, operator: In, values: [v, w]}, {key: l%d, operator: DoesNotExist}]}\n", rng.IntN(n), rng.IntN(n))
			case 3:
				spec += fmt.Sprintf("  selector: {matchExpressions: [{key: l%d, operator: NotIn, values: [w]}]}\n", rng.IntN(n))
			}
			if rng.IntN(3) > 0 {
				spec += fmt.Sprintf("  labels: {l%d: %s}\n", rng.IntN(n), []string{"v", "w"}[rng.IntN(2)])
			}
			ns := []string{"sidecar-injector", "team-a"}[rng.IntN(2)]
			b.WriteString(tmpl(ns, fmt.Sprintf("t%d", j), spec))
		}
		podLabel := rng.IntN(n)
		podLabels := fmt.Sprintf("{l%d: v}", podLabel)
		podAnn := ""
		if rng.IntN(2) == 0 {
			podAnn = fmt.Sprintf("{sidecar.dev/inject: t%d}", rng.IntN(n))
		}
		pod := podJSON(t, simplePod(podLabels, podAnn))
		sts := parseTemplates(t, []byte(b.String()))
		for _, indexed := range []bool{false, true} {
			req := Request{Pod: pod, Namespace: defaultNamespace, InjectorNamespace: injectorNS, Templates: compileAll(sts, injectorNS)}
			if indexed {
				req.Index, req.Templates, req.OmitNotApplicable = NewIndex(defaultNamespace, injectorNS, req.Templates), nil, true
			}
			r1, err := Inject(req)
			if err != nil {
				t.Fatal(err)
			}
			if r1.Denied {
				continue
			}
			if !indexed && selectedByAddedLabel(r1, req.Templates, labels.Set{fmt.Sprintf("l%d", podLabel): "v"}) {
				multiRound++
			}
			patched, err := patchtest.Apply(pod, mustPatchJSON(t, r1))
			if err != nil {
				t.Fatalf("case %d: %v", i, err)
			}
			req.Pod = patched
			r2, err := Inject(req)
			if err != nil {
				t.Fatal(err)
			}
			if len(r2.Patch) > 0 || r2.Denied {
				t.Errorf("case %d (indexed %v): a second pass changes the pod: patch %s, denied %q\ntemplates:\n%s\npod: %s", i, indexed, mustPatchJSON(t, r2), r2.DenyMessage, b.String(), pod)
			}
		}
	}
	if multiRound < 20 {
		t.Errorf("only %d cases selected a template through a label another template added: the generator does not exercise the rule", multiRound)
	}
}

// selectedByAddedLabel reports whether a template was injected by a selector that the pod's own labels do not
// satisfy: only a label another template added can have selected it.
func selectedByAddedLabel(r *Result, ts []*Template, podLabels labels.Set) bool {
	for _, d := range r.Decisions {
		if d.Outcome != OutcomeInjected || d.Reason != ReasonSelected {
			continue
		}
		for _, t := range ts {
			if t.Namespace == d.Namespace && t.Name == d.Name && !t.selector.Matches(podLabels) {
				return true
			}
		}
	}
	return false
}
