package policy

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"github.com/sidecar-dev/sidecar-injector/internal/api/v1alpha1"
	"github.com/sidecar-dev/sidecar-injector/internal/inject"
)

var update = flag.Bool("update", false, "rewrite testdata/compiled.yaml")

func readTemplates(t *testing.T, file string) []*v1alpha1.SidecarTemplate {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var out []*v1alpha1.SidecarTemplate
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(b), 4096)
	for {
		var st v1alpha1.SidecarTemplate
		if err := dec.Decode(&st); errors.Is(err, io.EOF) {
			return out
		} else if err != nil {
			t.Fatal(err)
		}
		out = append(out, &st)
	}
}

// TestCompiledPoliciesMatchTheGoldenFile pins the generated objects: a change to them shows in review.
// Whether they inject what the webhook injects is the differential test's job (test/policy).
func TestCompiledPoliciesMatchTheGoldenFile(t *testing.T) {
	res, err := Compile(readTemplates(t, "testdata/templates.yaml"), Options{InjectorNamespace: "sidecar-injector", RejectUnknownNames: true})
	if err != nil {
		t.Fatal(err)
	}
	var got bytes.Buffer
	for _, o := range res.Objects() {
		b, err := yaml.Marshal(o)
		if err != nil {
			t.Fatal(err)
		}
		got.WriteString("---\n")
		got.Write(b)
	}
	const golden = "testdata/compiled.yaml"
	if *update {
		if err := os.WriteFile(golden, got.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test ./internal/policy -update)", err)
	}
	if !bytes.Equal(got.Bytes(), want) {
		t.Errorf("the compiled policies differ from %s (run go test ./internal/policy -update and review the diff)", golden)
	}
}

func TestCompileServesTemplatesInInjectionOrderAndReportsEveryUnsupportedConstruct(t *testing.T) {
	res, err := Compile(readTemplates(t, "testdata/templates.yaml"), Options{InjectorNamespace: "sidecar-injector"})
	if err != nil {
		t.Fatal(err)
	}
	var served []string
	for _, k := range res.Served {
		served = append(served, k.String())
	}
	// order -3 first, then order 0 by namespace and name.
	want := "team-a/first sidecar-injector/node team-a/job-native team-a/log-shipper team-a/params team-b/node"
	if got := strings.Join(served, " "); got != want {
		t.Errorf("served %q, want %q", got, want)
	}
	// team-a's policy: its four templates and the cluster-wide node; team-b's: its node only (it shadows the
	// cluster-wide one, which stays in the policy and finds it shadowed); everyone else's: the cluster-wide node.
	var perPolicy []string
	for i, mp := range res.Mutating {
		perPolicy = append(perPolicy, fmt.Sprintf("%s:%d in %v", mp.Name, len(mp.Spec.Mutations), res.MutatingBindings[i].Spec.MatchResources.NamespaceSelector.MatchExpressions[len(res.MutatingBindings[i].Spec.MatchResources.NamespaceSelector.MatchExpressions)-1].Values))
	}
	if got, want := strings.Join(perPolicy, " "), "sidecar-injector-team-a:5 in [team-a] sidecar-injector-team-b:2 in [team-b] sidecar-injector:1 in [disabled]"; got != want {
		t.Errorf("policies %q, want %q", got, want)
	}
	if names := res.MutatingBindings[2].Spec.MatchResources.NamespaceSelector.MatchExpressions[0].Values; !strings.Contains(strings.Join(names, ","), "team-a,team-b") {
		t.Errorf("the cluster-wide policy is bound to team-a or team-b too (not in %v): their pods would meet node twice", names)
	}
	reasons := func(k Key) []string {
		var out []string
		for _, u := range res.NotCompilable[k] {
			out = append(out, u.Reason)
		}
		return out
	}
	if got := strings.Join(reasons(Key{"sidecar-injector", "dns"}), " "); got != ReasonEnvFrom+" "+ReasonHostAliases+" "+ReasonDNSConfig {
		t.Errorf("dns: reasons %q, want one per unsupported construct", got)
	}
	if got := reasons(Key{"team-a", "job-keep"}); len(got) != 1 || got[0] != ReasonJobPolicy {
		t.Errorf("job-keep: reasons %v, want [%s]: a mutating policy cannot warn about containers in Job pods", got, ReasonJobPolicy)
	}
	if got := reasons(Key{"team-a", "typed"}); len(got) != 1 || got[0] != ReasonTypedParameter {
		t.Errorf("typed: reasons %v, want [%s]: a typed parameter is never approximated by a policy", got, ReasonTypedParameter)
	}
	if got := reasons(Key{"team-a", "invalid"}); len(got) != 1 || got[0] != ReasonInvalid {
		t.Errorf("invalid: reasons %v, want [%s]", got, ReasonInvalid)
	}
}

func TestServeLeavesOtherTemplatesOutButLetsThemShadowClusterWideOnes(t *testing.T) {
	templates := readTemplates(t, "testdata/templates.yaml")
	res, err := Compile(templates, Options{InjectorNamespace: "sidecar-injector", Serve: func(st *v1alpha1.SidecarTemplate) bool {
		return st.Namespace == "sidecar-injector" && st.Name == "node"
	}})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Served) != 1 || len(res.NotCompilable) != 0 {
		t.Fatalf("served %v, not compilable %v: want only sidecar-injector/node", res.Served, res.NotCompilable)
	}
	expr := res.Mutating[0].Spec.Mutations[0].JSONPatch.Expression
	if !strings.Contains(expr, `!(request.namespace in ["team-b"])`) {
		t.Errorf("the cluster-wide node template is not shadowed in team-b, where a namespaced node template exists:\n%s", expr)
	}
}

func TestTheRecordEntryIsTheOneTheWebhookWrites(t *testing.T) {
	st := readTemplates(t, "testdata/templates.yaml")[0]
	tpl := inject.Compile(st, "sidecar-injector")
	u, err := newUnit(st, tpl, nil, reach{})
	if err != nil {
		t.Fatal(err)
	}
	var got inject.StatusEntry
	if err := json.Unmarshal([]byte(u.entry), &got); err != nil {
		t.Fatal(err)
	}
	if got.Namespace != "team-a" || got.Name != "log-shipper" || got.Generation != 3 || got.Hash != tpl.Hash ||
		strings.Join(got.Containers, ",") != "log-shipper" || strings.Join(got.Volumes, ",") != "app-logs" {
		t.Errorf("entry %s does not name the template, its generation, hash and what it adds", u.entry)
	}
}

func TestSelectorsBecomeCELWithLabelSelectorSemantics(t *testing.T) {
	for _, tc := range []struct {
		name string
		sel  metav1.LabelSelector
		want string
	}{
		{"an empty selector matches everything", metav1.LabelSelector{}, "true"},
		{"matchLabels compares the value", metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}, `(L[?"app"] == optional.of("web"))`},
		{"In needs the key", metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "t", Operator: metav1.LabelSelectorOpIn, Values: []string{"a", "b"}}}},
			`(("t" in L && L["t"] in ["a", "b"]))`},
		{"NotIn matches a pod without the key", metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "t", Operator: metav1.LabelSelectorOpNotIn, Values: []string{"a"}}}},
			`(!("t" in L && L["t"] in ["a"]))`},
		{"Exists and DoesNotExist look at the key only", metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
			{Key: "e", Operator: metav1.LabelSelectorOpExists}, {Key: "d", Operator: metav1.LabelSelectorOpDoesNotExist}}},
			`("e" in L && !("d" in L))`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := selectorCEL(&tc.sel, "L"); got != tc.want {
				t.Errorf("got %s, want %s", got, tc.want)
			}
		})
	}
}

func TestPerPodValuesBecomeConcatenationsAndOtherBracesStayText(t *testing.T) {
	v := &values{template: "t", defaults: map[string]string{"level": "info"}}
	for _, tc := range []struct{ in, want string }{
		{"plain", `"plain"`},
		{"{{ .Data.password }}", `"{{ .Data.password }}"`},
		{"--level={{params.level}}!", `("--level=" + object.metadata.?annotations[?"t.param.sidecar.dev/level"].orValue("info") + "!")`},
		{"{{ pod.namespace }}", `(request.namespace)`},
	} {
		got, err := v.str(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("str(%q) = %s, %v; want %s", tc.in, got, err, tc.want)
		}
	}
	if _, err := v.str(`{{ pod.labels.a"b }}`); err == nil {
		t.Error("a per-pod value naming a key that JSON escapes is accepted; the webhook would look it up escaped")
	}
}

func TestATemplateSettingAFieldTheCompilerDoesNotKnowIsNotCompiled(t *testing.T) {
	// As if spec.order had been added to the API after the compiler was written.
	delete(compiledFields, "order")
	t.Cleanup(func() { compiledFields["order"] = true })
	st := readTemplates(t, "testdata/templates.yaml")[1] // first: order -3
	res, err := Compile([]*v1alpha1.SidecarTemplate{st}, Options{InjectorNamespace: "sidecar-injector"})
	if err != nil {
		t.Fatal(err)
	}
	why := res.NotCompilable[Key{st.Namespace, st.Name}]
	if len(res.Served) != 0 || len(why) != 1 || why[0].Reason != ReasonUnknownField || !strings.Contains(why[0].Message, "spec.order") {
		t.Errorf("served %v, reasons %+v: want it left to the webhook with %s naming spec.order", res.Served, why, ReasonUnknownField)
	}
}

func TestANativeTemplateRecordsItsContainersAsNativeSidecarsInPodsThatRunToCompletion(t *testing.T) {
	var st *v1alpha1.SidecarTemplate
	for _, x := range readTemplates(t, "testdata/templates.yaml") {
		if x.Name == "job-native" {
			st = x
		}
	}
	u, err := newUnit(st, inject.Compile(st, "sidecar-injector"), nil, reach{})
	if err != nil {
		t.Fatal(err)
	}
	if u.job == nil {
		t.Fatal("no job variant: pods that run to completion would get job-agent as a regular container")
	}
	for _, tc := range []struct {
		variant         *unit
		containers, ini string
	}{{u, "job-agent", ""}, {u.job, "", "job-agent"}} {
		var got inject.StatusEntry
		if err := json.Unmarshal([]byte(tc.variant.entry), &got); err != nil {
			t.Fatal(err)
		}
		if strings.Join(got.Containers, ",") != tc.containers || strings.Join(got.InitContainers, ",") != tc.ini {
			t.Errorf("entry %s: want containers %q, init containers %q", tc.variant.entry, tc.containers, tc.ini)
		}
	}
	if ops := strings.Join(u.job.ops, " "); !strings.Contains(ops, `"restartPolicy": dyn("Always")`) || strings.Contains(ops, "/spec/containers/-") {
		t.Errorf("the job variant does not add job-agent as a native sidecar:\n%s", ops)
	}
	if !strings.Contains(u.applied(), completes) {
		t.Errorf("whether the template is in the pod does not follow the pod's restartPolicy: %s", u.applied())
	}
}

// parseTemplates reads templates from YAML text.
func parseTemplates(t *testing.T, y string) []*v1alpha1.SidecarTemplate {
	t.Helper()
	f := filepath.Join(t.TempDir(), "templates.yaml")
	if err := os.WriteFile(f, []byte(y), 0o600); err != nil {
		t.Fatal(err)
	}
	return readTemplates(t, f)
}

// The override rule is the engine's (inject.OverrideOf): a namespaced template replaces a cluster-wide one of its
// name only where that one allows it; under Deny the namespaced one is kept out wherever the cluster-wide one
// serves, also when the webhook, not the policy, serves the cluster-wide one.
func TestCompiledScopesFollowTheOverrideRule(t *testing.T) {
	templates := parseTemplates(t, `
metadata: {name: mesh, namespace: sidecar-injector}
spec: {containers: [{name: mesh, image: "m:1"}]}
---
metadata: {name: mesh, namespace: team-a}
spec: {containers: [{name: team-mesh, image: "t:1"}]}
---
metadata: {name: tracing, namespace: sidecar-injector}
spec:
  namespaceSelector: {matchLabels: {tracing: "on"}}
  containers: [{name: tracing, image: "t:1"}]
---
metadata: {name: tracing, namespace: team-a}
spec: {containers: [{name: team-tracing, image: "t:1"}]}
`)
	for _, servedByWebhook := range []string{"", "mesh"} {
		res, err := Compile(templates, Options{InjectorNamespace: "sidecar-injector", Serve: func(st *v1alpha1.SidecarTemplate) bool {
			return st.Namespace != "sidecar-injector" || st.Name != servedByWebhook
		}})
		if err != nil {
			t.Fatal(err)
		}
		expr := map[string]string{}
		for _, mp := range res.Mutating {
			for _, m := range mp.Spec.Mutations {
				first, _, _ := strings.Cut(m.JSONPatch.Expression, "\n")
				expr[mp.Name+" "+strings.TrimPrefix(first, "// ")] = m.JSONPatch.Expression
			}
		}
		for _, c := range []struct{ key, has, why string }{
			{"sidecar-injector-team-a team-a/mesh", `(request.namespace == "team-a" && !true)`,
				"team-a's mesh is kept out: the cluster-wide mesh (Deny) serves every namespace"},
			{"sidecar-injector-team-a team-a/tracing", `(request.namespace == "team-a" && !((namespaceObject.metadata.?labels.orValue({})[?"tracing"] == optional.of("on"))))`,
				"team-a's tracing is kept out where the cluster-wide tracing (Deny) serves: namespaces labelled tracing=on"},
			{"sidecar-injector-team-a sidecar-injector/tracing", `(true && (namespaceObject`,
				"the cluster-wide tracing is not shadowed in team-a: it does not allow it"},
		} {
			e, ok := expr[c.key]
			if !ok {
				t.Errorf("no mutation %s; have %v", c.key, slices.Collect(maps.Keys(expr)))
				continue
			}
			if !strings.Contains(e, c.has) {
				t.Errorf("%s (webhook serves %q): %s; its expression lacks %s:\n%s", c.key, servedByWebhook, c.why, c.has, e)
			}
		}
	}
}

// A selector that reads a label a template adds is left to the webhook, which selects again on added labels
// within one admission; the template that adds the label compiles.
func TestSelectorsThatReadAddedLabelsAreNotCompilable(t *testing.T) {
	res, err := Compile(parseTemplates(t, `
metadata: {name: mesh, namespace: sidecar-injector}
spec: {labels: {mesh: "on"}, containers: [{name: mesh, image: "m:1"}]}
---
metadata: {name: metrics, namespace: team-a}
spec:
  selector: {matchExpressions: [{key: mesh, operator: Exists}]}
  containers: [{name: metrics, image: "m:1"}]
---
metadata: {name: self, namespace: team-b}
spec:
  selector: {matchLabels: {self: "yes"}}
  labels: {self: "yes"}
  containers: [{name: self, image: "s:1"}]
---
metadata: {name: elsewhere, namespace: team-c}
spec:
  selector: {matchLabels: {other: "x"}}
  containers: [{name: e, image: "e:1"}]
---
metadata: {name: adds-other, namespace: team-b}
spec: {labels: {other: "x"}, containers: [{name: o, image: "o:1"}]}
`), Options{InjectorNamespace: "sidecar-injector"})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		key      Key
		reason   string
		mentions string
	}{
		{Key{"team-a", "metrics"}, ReasonSelectorSeesAddedLabel, `sidecar-injector/mesh adds label "mesh"`},
		{Key{"team-b", "self"}, ReasonSelectorSeesAddedLabel, `team-b/self adds label "self"`},
	} {
		why := res.NotCompilable[c.key]
		if len(why) != 1 || why[0].Reason != c.reason || !strings.Contains(why[0].Message, c.mentions) {
			t.Errorf("%s: not compilable for %+v, want %s mentioning %s", c.key, why, c.reason, c.mentions)
		}
	}
	for _, k := range []Key{{"sidecar-injector", "mesh"}, {"team-c", "elsewhere"}, {"team-b", "adds-other"}} {
		if why, ok := res.NotCompilable[k]; ok {
			t.Errorf("%s is not compilable (%+v): it reads no label a template in its reach adds", k, why)
		}
	}
}
