package inject

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/sidecar-dev/sidecar-injector/internal/api/v1alpha1"
	"github.com/sidecar-dev/sidecar-injector/internal/patchtest"
)

// proxy at two revisions: revision 1 runs proxy:1, revision 2 proxy:2 (and a new env var for the app).
const (
	proxyV1 = `
metadata: {name: proxy, namespace: team-a, generation: 1}
spec:
  containers: [{name: proxy, image: "proxy:1", args: ["--port=15001"]}]
  volumes: [{name: proxy-certs, emptyDir: {}}]
`
	proxyV2 = `
metadata: {name: proxy, namespace: team-a, generation: 2}
spec:
  containers: [{name: proxy, image: "proxy:2", args: ["--port=15001"]}]
  volumes: [{name: proxy-certs, emptyDir: {}}]
  env: [{name: PROXY, value: "on"}]
`
)

// proxyAt compiles proxy at revision 2 with revision 1 remembered; updatePolicy and stable are set on its spec
// and status first.
func proxyAt(t *testing.T, updatePolicy string, stable int64) *Template {
	t.Helper()
	v1 := parseTemplates(t, []byte(proxyV1))[0]
	v2 := parseTemplates(t, []byte(proxyV2+updatePolicy))[0]
	v2.Status.StableRevision = stable
	return CompileRevisions(v2, injectorNS, []Revision{{Number: 1, Template: v1}, {Number: 2, Template: v2}})
}

// proxyV1At compiles revision 1 as the current one (the template before the change).
func proxyV1At(t *testing.T) *Template {
	t.Helper()
	v1 := parseTemplates(t, []byte(proxyV1))[0]
	return CompileRevisions(v1, injectorNS, []Revision{{Number: 1, Template: v1}})
}

func injectWith(t *testing.T, pod []byte, tmpl *Template) *Result {
	t.Helper()
	res, err := Inject(Request{Pod: pod, Namespace: defaultNamespace, InjectorNamespace: injectorNS, Templates: []*Template{tmpl}})
	if err != nil {
		t.Fatalf("Inject: %v", err)
	}
	return res
}

func apply(t *testing.T, pod []byte, res *Result) []byte {
	t.Helper()
	if len(res.Patch) == 0 {
		return pod
	}
	out, err := patchtest.Apply(pod, mustPatchJSON(t, res))
	if err != nil {
		t.Fatalf("apply: %v", err)
	}
	return out
}

// podOwnedBy is a pod of a ReplicaSet (owner "" makes a bare pod with generateName name-).
func podOwnedBy(owner, name string, labels string) []byte {
	meta := fmt.Sprintf("metadata: {name: %s, namespace: team-a, labels: {%s}, annotations: {sidecar.dev/inject: proxy}", name, labels)
	if owner != "" {
		meta += fmt.Sprintf(", ownerReferences: [{apiVersion: apps/v1, kind: ReplicaSet, name: %s, uid: u-%s, controller: true}]", owner, owner)
	} else {
		meta = strings.Replace(meta, "name: "+name, "generateName: "+name+"-", 1)
	}
	return []byte(meta + "}\nspec: {containers: [{name: app, image: a}]}\n")
}

func podYAML(t *testing.T, y []byte) []byte { t.Helper(); return podJSON(t, string(y)) }

// revisionGiven injects the pod and returns the revision number its record names for proxy.
func revisionGiven(t *testing.T, pod []byte, tmpl *Template) (int64, *Result) {
	t.Helper()
	res := injectWith(t, pod, tmpl)
	if res.Denied || len(res.Decisions) != 1 || res.Decisions[0].Outcome != OutcomeInjected {
		t.Fatalf("not injected: %+v", res)
	}
	st := readStatus(t, decodePod(t, apply(t, pod, res)))
	return st.Templates[0].Revision, res
}

func TestCanaryChoice(t *testing.T) {
	canary := func(body string) string { return "  updatePolicy: {canary: {" + body + "}}\n" }
	cases := []struct {
		name         string
		updatePolicy string
		stable       int64
		pod          []byte
		want         int64
	}{
		{"without a canary every pod gets the current revision", "", 1, podOwnedBy("web-1", "web-1-a", ""), 2},
		{"at 0 percent an owner gets the stable revision", canary("percent: 0"), 1, podOwnedBy("web-1", "web-1-a", ""), 1},
		{"at 100 percent (promoted) an owner gets the current revision", canary("percent: 100"), 1, podOwnedBy("web-1", "web-1-a", ""), 2},
		{"a canary without a stable revision gives the current one", canary("percent: 0"), 0, podOwnedBy("web-1", "web-1-a", ""), 2},
		{"a pod the canary selector matches gets the current revision at 0 percent",
			canary("percent: 0, selector: {matchLabels: {track: canary}}"), 1, podOwnedBy("web-1", "web-1-a", "track: canary"), 2},
		{"a pod the canary selector does not match gets the stable revision",
			canary("selector: {matchLabels: {track: canary}}"), 1, podOwnedBy("web-1", "web-1-a", "track: main"), 1},
		{"a bare pod at 0 percent gets the stable revision", canary("percent: 0"), 1, podOwnedBy("", "job", ""), 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, res := revisionGiven(t, podYAML(t, c.pod), proxyAt(t, c.updatePolicy, c.stable))
			if got != c.want {
				t.Errorf("the pod got revision %d, want %d (decision %+v)", got, c.want, res.Decisions[0])
			}
			if res.Decisions[0].Revision != c.want {
				t.Errorf("the decision names revision %d, want %d", res.Decisions[0].Revision, c.want)
			}
		})
	}
}

func TestCanaryIsDecidedPerOwner(t *testing.T) {
	tmpl := proxyAt(t, "  updatePolicy: {canary: {percent: 50}}\n", 1)
	counts := map[int64]int{}
	for o := range 100 {
		owner := fmt.Sprintf("web-%d", o)
		first, _ := revisionGiven(t, podYAML(t, podOwnedBy(owner, owner+"-a", "")), tmpl)
		for p := range 3 { // every pod of the owner, whatever its name, gets the same revision
			if got, _ := revisionGiven(t, podYAML(t, podOwnedBy(owner, fmt.Sprintf("%s-%d", owner, p), "")), tmpl); got != first {
				t.Fatalf("owner %s: pod %d got revision %d, its first pod %d", owner, p, got, first)
			}
		}
		counts[first]++
	}
	// The split is a hash's: fixed for these names, near half; both revisions must be in use.
	if counts[1] < 30 || counts[2] < 30 {
		t.Errorf("50%% canary over 100 owners split %v; want both revisions near 50", counts)
	}
	// Bare pods of one generateName are one owner.
	bare := func(name string) []byte {
		return podYAML(t, []byte(strings.Replace(string(podOwnedBy("", "batch", "")), "generateName: batch-", "name: "+name+", generateName: batch-", 1)))
	}
	a, _ := revisionGiven(t, bare("batch-x1"), tmpl)
	b, _ := revisionGiven(t, bare("batch-y2"), tmpl)
	if a != b {
		t.Errorf("bare pods of generateName batch- got revisions %d and %d", a, b)
	}
}

func TestARaisedCanaryPercentOnlyAddsOwners(t *testing.T) {
	at := func(p int) *Template {
		return proxyAt(t, fmt.Sprintf("  updatePolicy: {canary: {percent: %d}}\n", p), 1)
	}
	low, high := at(20), at(60)
	for o := range 100 {
		owner := fmt.Sprintf("api-%d", o)
		pod := podYAML(t, podOwnedBy(owner, owner+"-a", ""))
		l, _ := revisionGiven(t, pod, low)
		h, _ := revisionGiven(t, pod, high)
		if l == 2 && h != 2 {
			t.Errorf("owner %s is in the 20%% canary but not in the 60%% one", owner)
		}
	}
}

func TestAPodOnTheStableRevisionIsAlreadyInjected(t *testing.T) {
	tmpl := proxyAt(t, "  updatePolicy: {canary: {percent: 0}}\n", 1)
	pod := podYAML(t, podOwnedBy("web-1", "web-1-a", ""))
	once := apply(t, pod, injectWith(t, pod, tmpl))
	again := injectWith(t, once, tmpl)
	if len(again.Patch) != 0 || len(again.Warnings) != 0 || again.Decisions[0].Outcome != OutcomeAlreadyInjected ||
		again.Decisions[0].Reason != ReasonAlreadyInjected {
		t.Errorf("a second pass over a pod given the stable revision: patch %v, warnings %q, decision %+v",
			again.Patch, again.Warnings, again.Decisions[0])
	}
}

func TestStaleSidecars(t *testing.T) {
	// The pod as revision 1 rendered it: by the webhook (numbered) or offline (no numbers: plain Compile).
	v1pod := func(t *testing.T, offline bool) []byte {
		pod := podYAML(t, podOwnedBy("web-1", "web-1-a", ""))
		tmpl := proxyV1At(t)
		if offline {
			tmpl = Compile(parseTemplates(t, []byte(proxyV1))[0], injectorNS)
		}
		return apply(t, pod, injectWith(t, pod, tmpl))
	}
	forge := func(pod []byte) []byte { return []byte(strings.Replace(string(pod), `"proxy:1"`, `"evil:1"`, 1)) }
	cases := []struct {
		name         string
		pod          func(t *testing.T) []byte
		updatePolicy string
		outcome      Outcome
		reason       Reason
		message      []string
	}{
		{"a sidecar revision 1 rendered is admitted unchanged, with a warning",
			func(t *testing.T) []byte { return v1pod(t, false) }, "", OutcomeAlreadyInjected, ReasonOutdated,
			[]string{`sidecar template "proxy"`, "revision 1", "the current one is revision 2", "admitted unchanged"}},
		{"a sidecar revision 1 rendered offline (no revision number) is admitted too",
			func(t *testing.T) []byte { return v1pod(t, true) }, "", OutcomeAlreadyInjected, ReasonOutdated,
			[]string{"revision 1", "revision 2"}},
		{"a look-alike that no revision rendered is a conflict, whatever the record says",
			func(t *testing.T) []byte { return forge(v1pod(t, false)) }, "", OutcomeDenied, ReasonConflict,
			[]string{`container name "proxy" already exists in pod`}},
		{"stalePods Deny denies the pod and says what to do",
			func(t *testing.T) []byte { return v1pod(t, false) }, "  updatePolicy: {stalePods: Deny}\n", OutcomeDenied, ReasonOutdated,
			[]string{"revision 1", "revision 2", "stalePods is Deny", "sidecar-injector inject"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			res := injectWith(t, c.pod(t), proxyAt(t, c.updatePolicy, 2))
			d := res.Decisions[0]
			if d.Outcome != c.outcome || d.Reason != c.reason {
				t.Fatalf("decision %+v, want %s/%s", d, c.outcome, c.reason)
			}
			for _, m := range c.message {
				if !strings.Contains(d.Message, m) {
					t.Errorf("message %q does not say %q", d.Message, m)
				}
			}
			if len(res.Patch) != 0 {
				t.Errorf("the pod was changed: %v", res.Patch)
			}
			if c.outcome == OutcomeDenied != res.Denied {
				t.Errorf("Denied = %v", res.Denied)
			}
			warned := slices.ContainsFunc(res.Warnings, func(w string) bool { return strings.Contains(w, "revision 1") })
			if want := c.outcome == OutcomeAlreadyInjected; warned != want {
				t.Errorf("warnings %q; want a warning naming revision 1: %v", res.Warnings, want)
			}
		})
	}
}

func TestTheRecordNamesTheRevision(t *testing.T) {
	pod := podYAML(t, podOwnedBy("web-1", "web-1-a", ""))
	res := injectWith(t, pod, proxyAt(t, "", 2))
	st := readStatus(t, decodePod(t, apply(t, pod, res)))
	if e := st.Templates[0]; e.Revision != 2 || e.Hash != proxyAt(t, "", 2).Hash {
		t.Errorf("record entry %+v, want revision 2 with the current hash", e)
	}
	// Offline, without revisions, the record has none: the field is left out.
	off := injectWith(t, pod, Compile(parseTemplates(t, []byte(proxyV2))[0], injectorNS))
	if raw := decodePod(t, apply(t, pod, off)).Annotations[v1alpha1.AnnotationStatus]; strings.Contains(raw, "revision") {
		t.Errorf("an unnumbered record names a revision: %s", raw)
	}
}

func TestUpdatePolicyIsNotPartOfTheRevision(t *testing.T) {
	plain := Compile(parseTemplates(t, []byte(proxyV2))[0], injectorNS)
	withPolicy := Compile(parseTemplates(t, []byte(proxyV2+"  updatePolicy: {stalePods: Deny, canary: {percent: 10}}\n"))[0], injectorNS)
	if plain.Hash != withPolicy.Hash {
		t.Errorf("setting updatePolicy changed the hash: %s -> %s (promoting a canary would make every pod outdated)", plain.Hash, withPolicy.Hash)
	}
}
