package inject

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

const (
	I  = OutcomeInjected
	NA = OutcomeNotApplicable
	SK = OutcomeSkipped
	DN = OutcomeDenied
	AI = OutcomeAlreadyInjected
)

func TestSelection(t *testing.T) {
	runTable(t, []tableCase{
		{
			name:      "a pod in team-a receives the team-a template it requests by name",
			pod:       simplePod("", `{sidecar.dev/inject: shipper}`),
			templates: tmpl("team-a", "shipper", ""),
			decisions: []want{{"team-a", "shipper", I, ReasonRequested}},
			check:     expectContainers("app", "shipper-c"),
		},
		{
			name:        "a pod in team-a never receives a template from team-b by name",
			pod:         simplePod("", `{sidecar.dev/inject: shipper}`),
			templates:   tmpl("team-b", "shipper", ""),
			decisions:   []want{{"", "shipper", DN, ReasonNotFound}},
			notInjected: []string{"team-b/shipper"},
			denied:      true,
			denyHas:     []string{`"shipper"`},
		},
		{
			name:      "a misspelt name is denied with a suggestion of the close name in the pod's scope",
			pod:       simplePod("", `{sidecar.dev/inject: log-shiper}`),
			templates: tmpl("team-a", "log-shipper", "") + tmpl("team-b", "log-shipped", ""),
			decisions: []want{{"", "log-shiper", DN, ReasonNotFound}},
			denied:    true,
			denyHas:   []string{`"log-shiper"`, `did you mean "log-shipper"?`},
		},
		{
			name:      "a name far from every template's gets no suggestion, nor one from another tenant",
			pod:       simplePod("", `{sidecar.dev/inject: shipper}`),
			templates: tmpl("team-a", "proxy", "") + tmpl("team-b", "shipper", ""),
			denied:    true,
			check: func(t *testing.T, r *Result, _ *corev1.Pod) {
				if strings.Contains(r.DenyMessage, "did you mean") {
					t.Errorf("deny message suggests a name: %s", r.DenyMessage)
				}
			},
		},
		{
			name:        "a pod in team-a never receives a team-b template whose selector matches every pod",
			pod:         simplePod(`{app: web}`, ""),
			templates:   tmpl("team-b", "grab", "  selector: {}"),
			notInjected: []string{"team-b/grab"},
			noPatch:     true,
		},
		{
			name:      "a requested name resolves to the cluster-wide template when the namespace has none",
			pod:       simplePod("", `{sidecar.dev/inject: shipper}`),
			templates: tmpl("sidecar-injector", "shipper", ""),
			decisions: []want{{"sidecar-injector", "shipper", I, ReasonRequested}},
		},
		{
			name:        "a namespaced template replaces a cluster-wide one of the same name that allows it, for requests",
			pod:         simplePod("", `{sidecar.dev/inject: shipper}`),
			templates:   tmpl("sidecar-injector", "shipper", "  namespaceOverride: Allow") + tmpl("team-a", "shipper", ""),
			decisions:   []want{{"team-a", "shipper", I, ReasonRequested}, {"sidecar-injector", "shipper", NA, ReasonShadowed}},
			notInjected: []string{"sidecar-injector/shipper"},
		},
		{
			name:      "a namespaced template replaces a cluster-wide one that allows it for its selector too, even when it does not match",
			pod:       simplePod(`{app: web}`, ""),
			templates: tmpl("sidecar-injector", "metrics", "  selector: {}\n  namespaceOverride: Allow") + tmpl("team-a", "metrics", "  selector: {matchLabels: {app: other}}"),
			decisions: []want{{"sidecar-injector", "metrics", NA, ReasonShadowed}, {"team-a", "metrics", NA, ReasonSelectorMismatch}},
			noPatch:   true,
		},
		{
			name:        "a namespaced template does not replace a cluster-wide one that says nothing (Deny): the cluster-wide one serves the request",
			pod:         simplePod("", `{sidecar.dev/inject: shipper}`),
			templates:   tmpl("sidecar-injector", "shipper", "") + tmpl("team-a", "shipper", ""),
			decisions:   []want{{"sidecar-injector", "shipper", I, ReasonRequested}, {"team-a", "shipper", NA, ReasonOverrideDenied}},
			notInjected: []string{"team-a/shipper"},
		},
		{
			name:      "a namespaced template that selects nothing cannot switch off a cluster-wide one under Deny: it still selects the pod",
			pod:       simplePod(`{app: web}`, ""),
			templates: tmpl("sidecar-injector", "metrics", "  selector: {}\n  namespaceOverride: Deny") + tmpl("team-a", "metrics", "  selector: {matchLabels: {app: other}}"),
			decisions: []want{{"sidecar-injector", "metrics", I, ReasonSelected}, {"team-a", "metrics", NA, ReasonOverrideDenied}},
		},
		{
			name: "an invalid namespaced template cannot switch off a cluster-wide one under Deny, nor deny the pod",
			pod:  simplePod(`{app: web}`, `{sidecar.dev/inject: metrics}`),
			templates: tmpl("sidecar-injector", "metrics", "  selector: {}") +
				tmpl("team-a", "metrics", "  hostNetwork: true"),
			decisions:   []want{{"sidecar-injector", "metrics", I, ReasonRequested}, {"team-a", "metrics", NA, ReasonOverrideDenied}},
			notInjected: []string{"team-a/metrics"},
		},
		{
			name:      "a namespaced template serves where the cluster-wide one of its name does not (its namespaceSelector leaves the namespace out), even under Deny",
			pod:       simplePod("", `{sidecar.dev/inject: shipper}`),
			nsLabels:  map[string]string{"env": "dev"},
			templates: tmpl("sidecar-injector", "shipper", "  namespaceSelector: {matchLabels: {env: prod}}") + tmpl("team-a", "shipper", ""),
			decisions: []want{{"team-a", "shipper", I, ReasonRequested}, {"sidecar-injector", "shipper", NA, ReasonNamespaceSelectorMismatch}},
		},
		{
			name:        "namespaceOverride on a namespaced template makes it invalid, with a message saying it is for cluster-wide templates",
			pod:         simplePod("", `{sidecar.dev/inject: shipper}`),
			templates:   tmpl("team-a", "shipper", "  namespaceOverride: Allow"),
			decisions:   []want{{"team-a", "shipper", DN, ReasonInvalid}},
			denied:      true,
			denyHas:     []string{"spec.namespaceOverride only applies to cluster-wide templates"},
			notInjected: []string{"team-a/shipper"},
		},
		{
			name:      "a cluster-wide template with a selector serves a pod in any namespace",
			pod:       simplePod(`{app: web}`, ""),
			templates: tmpl("sidecar-injector", "metrics", "  selector: {matchLabels: {app: web}}"),
			decisions: []want{{"sidecar-injector", "metrics", I, ReasonSelected}},
		},
		{
			name:      "a cluster-wide template skips a namespace its namespaceSelector does not match, for its selector",
			pod:       simplePod(`{app: web}`, ""),
			nsLabels:  map[string]string{"env": "dev"},
			templates: tmpl("sidecar-injector", "metrics", "  selector: {}\n  namespaceSelector: {matchLabels: {env: prod}}"),
			decisions: []want{{"sidecar-injector", "metrics", NA, ReasonNamespaceSelectorMismatch}},
			noPatch:   true,
		},
		{
			name:      "a cluster-wide template serves a namespace its namespaceSelector matches",
			pod:       simplePod(`{app: web}`, ""),
			nsLabels:  map[string]string{"env": "prod"},
			templates: tmpl("sidecar-injector", "metrics", "  selector: {}\n  namespaceSelector: {matchExpressions: [{key: env, operator: In, values: [prod, staging]}]}"),
			decisions: []want{{"sidecar-injector", "metrics", I, ReasonSelected}},
		},
		{
			name:        "a requested cluster-wide template whose namespaceSelector does not match the namespace is not found",
			pod:         simplePod("", `{sidecar.dev/inject: metrics}`),
			nsLabels:    map[string]string{"env": "dev"},
			templates:   tmpl("sidecar-injector", "metrics", "  namespaceSelector: {matchLabels: {env: prod}}"),
			notInjected: []string{"sidecar-injector/metrics"},
			denied:      true,
			denyHas:     []string{`"metrics"`},
		},
		{
			name:      "namespaceSelector on a namespaced template is ignored",
			pod:       simplePod("", `{sidecar.dev/inject: shipper}`),
			nsLabels:  map[string]string{"env": "dev"},
			templates: tmpl("team-a", "shipper", "  namespaceSelector: {matchLabels: {env: prod}}"),
			decisions: []want{{"team-a", "shipper", I, ReasonRequested}},
		},
		{
			name:      "an empty selector matches every pod in scope, even one without labels",
			pod:       simplePod("", ""),
			templates: tmpl("team-a", "all", "  selector: {}"),
			decisions: []want{{"team-a", "all", I, ReasonSelected}},
		},
		{
			name:      "a selector that does not match the pod's labels is not applied",
			pod:       simplePod(`{app: web}`, ""),
			templates: tmpl("team-a", "api-only", "  selector: {matchLabels: {app: api}}"),
			decisions: []want{{"team-a", "api-only", NA, ReasonSelectorMismatch}},
			noPatch:   true,
		},
		{
			name:      "a matchExpressions selector (NotIn, Exists) is honoured",
			pod:       simplePod(`{app: web, tier: front}`, ""),
			templates: tmpl("team-a", "expr", "  selector: {matchExpressions: [{key: app, operator: NotIn, values: [db]}, {key: tier, operator: Exists}]}"),
			decisions: []want{{"team-a", "expr", I, ReasonSelected}},
		},
		{
			name:      "a template without a selector is not injected unless requested",
			pod:       simplePod(`{app: web}`, ""),
			templates: tmpl("team-a", "on-request", ""),
			decisions: []want{{"team-a", "on-request", NA, ReasonNotRequested}},
			noPatch:   true,
		},
		{
			name:      "a template both requested and selected is injected once",
			pod:       simplePod(`{app: web}`, `{sidecar.dev/inject: "both, both"}`),
			templates: tmpl("team-a", "both", "  selector: {matchLabels: {app: web}}"),
			decisions: []want{{"team-a", "both", I, ReasonRequested}},
			check:     expectContainers("app", "both-c"),
		},
		{
			name:        `"false" opts a pod out of every template, selector-matched ones included`,
			pod:         simplePod(`{app: web}`, `{sidecar.dev/inject: "false"}`),
			templates:   tmpl("team-a", "all", "  selector: {}") + tmpl("sidecar-injector", "cw", "  selector: {}"),
			podSkip:     ReasonOptedOut,
			noPatch:     true,
			notInjected: []string{"team-a/all", "sidecar-injector/cw"},
		},
		{
			name:        `"False" and " FALSE " opt out too (case-insensitive)`,
			pod:         simplePod(`{app: web}`, `{sidecar.dev/inject: " FALSE "}`),
			templates:   tmpl("team-a", "all", "  selector: {}"),
			podSkip:     ReasonOptedOut,
			noPatch:     true,
			notInjected: []string{"team-a/all"},
		},
		{
			name:        `"falſe" (with U+017F, which Unicode folds to s) is a name, not the opt-out: ASCII case only, as the chart's matchCondition compares`,
			pod:         simplePod(`{app: web}`, `{sidecar.dev/inject: "falſe"}`),
			templates:   tmpl("team-a", "all", "  selector: {}"),
			denied:      true,
			denyHas:     []string{`"falſe" requested by annotation sidecar.dev/inject was not found`},
			notInjected: []string{"team-a/all"},
		},
		{
			name:      "a pod that lists more distinct names than max-requested-names is denied, naming the limit",
			pod:       simplePod("", `{sidecar.dev/inject: "`+manyNames(DefaultLimits.MaxRequestedNames+1)+`"}`),
			templates: tmpl("team-a", "n0", ""),
			denied:    true,
			denyHas:   []string{"the pod exceeds the injector's limit max-requested-names (64)", "more than 64 distinct names"},
		},
		{
			name:      "as many names as max-requested-names, repeated any number of times, are within the limit",
			pod:       simplePod("", `{sidecar.dev/inject: "`+manyNames(DefaultLimits.MaxRequestedNames)+", "+manyNames(DefaultLimits.MaxRequestedNames)+`"}`),
			templates: tmpl("team-a", "n0", ""),
			denied:    true, // the other 63 names are not found: what matters is which message
			denyHas:   []string{`sidecar template "n63" requested by annotation sidecar.dev/inject was not found`},
		},
		{
			name:      "a name longer than max-name-length is denied, naming the limit",
			pod:       simplePod("", `{sidecar.dev/inject: "ok, `+strings.Repeat("x", 254)+`"}`),
			templates: tmpl("team-a", "ok", ""),
			denied:    true,
			denyHas:   []string{"the pod exceeds the injector's limit max-name-length (253): sidecar.dev/inject lists a name of 254 bytes"},
		},
		{
			name:      "whitespace and empty entries in the annotation are ignored",
			pod:       simplePod("", `{sidecar.dev/inject: " a ,, b ,   ,"}`),
			templates: tmpl("team-a", "a", "") + tmpl("team-a", "b", ""),
			decisions: []want{{"team-a", "a", I, ReasonRequested}, {"team-a", "b", I, ReasonRequested}},
			check:     expectContainers("app", "a-c", "b-c"),
		},
		{
			name:      "an annotation that is only spaces and commas requests nothing and denies nothing",
			pod:       simplePod("", `{sidecar.dev/inject: " , , "}`),
			templates: tmpl("team-a", "a", ""),
			decisions: []want{{"team-a", "a", NA, ReasonNotRequested}},
			noPatch:   true,
		},
		{
			name:        "pods in kube-system are never injected and never denied, whatever they request",
			pod:         simplePod(`{app: web}`, `{sidecar.dev/inject: "missing, cw"}`),
			ns:          "kube-system",
			templates:   tmpl("sidecar-injector", "cw", "  selector: {}"),
			podSkip:     ReasonSystemNamespace,
			noPatch:     true,
			notInjected: []string{"sidecar-injector/cw"},
		},
		{
			name:      "pods in kube-public are never injected",
			pod:       simplePod(`{app: web}`, `{sidecar.dev/inject: cw}`),
			ns:        "kube-public",
			templates: tmpl("sidecar-injector", "cw", "  selector: {}"),
			podSkip:   ReasonSystemNamespace,
			noPatch:   true,
		},
		{
			name:      "pods in kube-node-lease are never injected",
			pod:       simplePod(`{app: web}`, `{sidecar.dev/inject: cw}`),
			ns:        "kube-node-lease",
			templates: tmpl("sidecar-injector", "cw", "  selector: {}"),
			podSkip:   ReasonSystemNamespace,
			noPatch:   true,
		},
		{
			name:        "pods in the injector's own namespace are never injected, not even by its own cluster-wide templates",
			pod:         simplePod(`{app: web}`, `{sidecar.dev/inject: "cw, missing"}`),
			ns:          "sidecar-injector",
			templates:   tmpl("sidecar-injector", "cw", "  selector: {}"),
			podSkip:     ReasonInjectorNamespace,
			noPatch:     true,
			notInjected: []string{"sidecar-injector/cw"},
		},
		{
			name:        "the injector namespace is the one the request names, not a hard-coded one",
			pod:         simplePod(`{app: web}`, `{sidecar.dev/inject: cw}`),
			ns:          "platform",
			injector:    "platform",
			templates:   tmpl("platform", "cw", "  selector: {}"),
			podSkip:     ReasonInjectorNamespace,
			noPatch:     true,
			notInjected: []string{"platform/cw"},
		},
		{
			name:        "a namespace labelled sidecar.dev/injection=disabled gets nothing, and requests for missing templates are not denied",
			pod:         simplePod(`{app: web}`, `{sidecar.dev/inject: "cw, missing"}`),
			nsLabels:    map[string]string{"sidecar.dev/injection": "disabled"},
			templates:   tmpl("sidecar-injector", "cw", "  selector: {}") + tmpl("team-a", "own", "  selector: {}"),
			podSkip:     ReasonNamespaceDisabled,
			noPatch:     true,
			notInjected: []string{"sidecar-injector/cw", "team-a/own"},
		},
		{
			name:      "a namespace labelled sidecar.dev/injection with another value is injected as usual",
			pod:       simplePod(`{app: web}`, ""),
			nsLabels:  map[string]string{"sidecar.dev/injection": "enabled"},
			templates: tmpl("team-a", "own", "  selector: {}"),
			decisions: []want{{"team-a", "own", I, ReasonSelected}},
		},
		{
			name:      "a requested name that matches no template denies the pod and names it",
			pod:       simplePod("", `{sidecar.dev/inject: "a, nope"}`),
			templates: tmpl("team-a", "a", "  failurePolicy: Ignore"),
			decisions: []want{{"", "nope", DN, ReasonNotFound}},
			denied:    true,
			denyHas:   []string{`"nope"`},
		},
		{
			name:        "templates outside the pod's namespace and the injector's, passed in by the caller, are ignored",
			pod:         simplePod(`{app: web}`, `{sidecar.dev/inject: own}`),
			templates:   tmpl("team-b", "own", "") + tmpl("team-b", "sel", "  selector: {}") + tmpl("team-a", "own", ""),
			decisions:   []want{{"team-a", "own", I, ReasonRequested}},
			notInjected: []string{"team-b/own", "team-b/sel"},
			check:       expectContainers("app", "own-c"),
		},
		{
			name:      "a pod whose metadata.namespace is empty is served by the request's namespace",
			pod:       "metadata: {generateName: x-, annotations: {sidecar.dev/inject: own}}\nspec: {containers: [{name: app, image: a}]}",
			ns:        "team-a",
			templates: tmpl("team-a", "own", "") + tmpl("team-b", "own", ""),
			decisions: []want{{"team-a", "own", I, ReasonRequested}},
		},
		{
			name:        "the request's namespace wins over a forged metadata.namespace",
			pod:         "metadata: {name: x, namespace: team-b, annotations: {sidecar.dev/inject: own}}\nspec: {containers: [{name: app, image: a}]}",
			ns:          "team-a",
			templates:   tmpl("team-b", "own", "") + tmpl("team-a", "own", ""),
			decisions:   []want{{"team-a", "own", I, ReasonRequested}},
			notInjected: []string{"team-b/own"},
		},
	})
}

func TestOrdering(t *testing.T) {
	runTable(t, []tableCase{
		{
			name:      "templates are applied by order, lower first",
			pod:       simplePod("", `{sidecar.dev/inject: "b, a"}`),
			templates: tmpl("team-a", "a", "  order: 10") + tmpl("team-a", "b", "  order: -10"),
			check:     expectContainers("app", "b-c", "a-c"),
		},
		{
			name:      "ties are broken by namespace, then name",
			pod:       simplePod("", `{sidecar.dev/inject: "zz, yy, mm"}`),
			templates: tmpl("team-a", "zz", "") + tmpl("team-a", "yy", "") + tmpl("sidecar-injector", "mm", ""),
			check:     expectContainers("app", "mm-c", "yy-c", "zz-c"),
		},
		{
			name:      "decisions are listed in injection order, requested names that matched nothing last",
			pod:       simplePod("", `{sidecar.dev/inject: "zz-missing, b, a"}`),
			templates: tmpl("team-a", "a", "  order: 2") + tmpl("team-a", "b", "  order: 1"),
			denied:    true,
			check: func(t *testing.T, r *Result, _ *corev1Pod) {
				var got []string
				for _, d := range r.Decisions {
					got = append(got, d.Namespace+"/"+d.Name)
				}
				if len(got) != 3 || got[0] != "team-a/b" || got[1] != "team-a/a" || got[2] != "/zz-missing" {
					t.Errorf("decision order %v", got)
				}
			},
		},
		{
			name:      "two templates adding the same container name conflict: the later one fails",
			pod:       simplePod("", `{sidecar.dev/inject: "one, two"}`),
			templates: "metadata: {name: one, namespace: team-a}\nspec: {order: 1, containers: [{name: same, image: a}]}\n---\nmetadata: {name: two, namespace: team-a}\nspec: {order: 2, failurePolicy: Ignore, containers: [{name: same, image: b}]}",
			decisions: []want{{"team-a", "one", I, ReasonRequested}, {"team-a", "two", SK, ReasonConflict}},
			warnHas:   []string{`"two"`, `"same"`},
			check: func(t *testing.T, _ *Result, p *corev1Pod) {
				if c := container(t, p, "same"); c.Image != "a" {
					t.Errorf("the container of the first template must stay, got image %q", c.Image)
				}
			},
		},
	})
}

// manyNames is "n0, n1, ..." with n names.
func manyNames(n int) string {
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("n%d", i)
	}
	return strings.Join(names, ", ")
}

// A template that a MutatingAdmissionPolicy serves is the policy's: the webhook never injects it, answers a
// request for it, keeps the record entry the policy wrote, and the override rule still sees it.
func TestTemplatesServedByPolicyAreLeftToThePolicy(t *testing.T) {
	served := func(ts []*Template, keys ...string) []*Template {
		for i, tp := range ts {
			if slices.Contains(keys, tp.Key()) {
				ts[i] = tp.WithServedByPolicy(true)
			}
		}
		return ts
	}
	templates := func() []*Template {
		return compileAll(parseTemplates(t, []byte(
			tmpl(injectorNS, "mesh", "  selector: {matchLabels: {app: web}}")+
				tmpl(injectorNS, "logs", "")+
				tmpl(defaultNamespace, "mesh", "")+
				tmpl(defaultNamespace, "tracing", ""))), injectorNS)
	}
	// The pod as the policy left it: mesh's container and its record entry.
	const policyRecord = `{"templates":[{"namespace":"sidecar-injector","name":"mesh","generation":1,"hash":"HASH","containers":["mesh-c"]}]}`
	var meshHash string
	for _, tp := range templates() {
		if tp.Key() == injectorNS+"/mesh" {
			meshHash = tp.Hash
		}
	}
	afterPolicy := func(inject string) []byte {
		return podJSON(t, `
metadata:
  name: web
  labels: {app: web}
  annotations: {sidecar.dev/inject: "`+inject+`", sidecar.dev/status: '`+strings.ReplaceAll(policyRecord, "HASH", meshHash)+`'}
spec:
  containers: [{name: app, image: app:1}, {name: mesh-c, image: "x:1"}]
`)
	}
	for _, omit := range []bool{false, true} {
		t.Run(fmt.Sprintf("omitting NotApplicable %v", omit), func(t *testing.T) {
			t.Run("a selected and requested policy-served template is not injected and its request is not denied", func(t *testing.T) {
				r, err := Inject(Request{Pod: podJSON(t, simplePod(`{app: web}`, `{sidecar.dev/inject: mesh}`)), Namespace: defaultNamespace,
					InjectorNamespace: injectorNS, Templates: served(templates(), injectorNS+"/mesh"), OmitNotApplicable: omit})
				if err != nil {
					t.Fatal(err)
				}
				if r.Denied || len(r.Patch) > 0 {
					t.Errorf("denied %v (%s), patch %s: want neither", r.Denied, r.DenyMessage, mustPatchJSON(t, r))
				}
				if d, ok := findDecision(r, injectorNS, "mesh"); !ok || d.Outcome != NA || d.Reason != ReasonServedByPolicy {
					t.Errorf("decision %+v, want NotApplicable/ServedByPolicy (kept when NotApplicable ones are omitted)", d)
				}
				if d, ok := findDecision(r, defaultNamespace, "mesh"); !omit && (!ok || d.Reason != ReasonOverrideDenied) {
					t.Errorf("the namespaced mesh: %+v, want OverrideDenied: a policy-served template still keeps its name", d)
				}
			})
			t.Run("the webhook injecting another template keeps the record entry the policy wrote", func(t *testing.T) {
				pod := afterPolicy("tracing")
				r, err := Inject(Request{Pod: pod, Namespace: defaultNamespace, InjectorNamespace: injectorNS,
					Templates: served(templates(), injectorNS+"/mesh"), OmitNotApplicable: omit})
				if err != nil {
					t.Fatal(err)
				}
				patched := verifyPatch(t, pod, r)
				st := readStatus(t, decodePod(t, patched))
				var names []string
				for _, e := range st.Templates {
					names = append(names, e.Namespace+"/"+e.Name)
				}
				if !slices.Contains(names, injectorNS+"/mesh") || !slices.Contains(names, defaultNamespace+"/tracing") {
					t.Errorf("record names %v, want the policy's mesh and the webhook's tracing", names)
				}
				if got := containerNames(decodePod(t, patched).Spec.Containers); !slices.Equal(got, []string{"app", "mesh-c", "tracing-c"}) {
					t.Errorf("containers %v: the policy's sidecar must not be injected twice", got)
				}
			})
		})
	}
}
