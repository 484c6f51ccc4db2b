package inject

import (
	"bytes"
	"fmt"
	"sync"
	"testing"
)

// renderTemplate is a template whose sidecar, mount, env var and annotation all hold per-pod values; version
// tells one spec from the next.
func renderTemplate(t testing.TB, version string) *Template {
	t.Helper()
	ts := compileAll(parseTemplates(t, []byte(fmt.Sprintf(`
metadata: {name: render, namespace: team-a, generation: 1}
spec:
  containers:
  - name: side
    image: example.com/side:%[1]s
    args: ["--app={{ pod.labels.app }}", "--ns={{ pod.namespace }}"]
  volumes: [{name: vol, emptyDir: {}}]
  volumeMounts: [{name: vol, mountPath: "/var/log/{{ pod.labels.app }}"}]
  env: [{name: SIDE_APP, value: "{{ pod.labels.app }}-%[1]s"}]
  annotations: {side.example.com/app: "{{ pod.labels.app }}"}
`, version))), injectorNS)
	if ts[0].Err != nil {
		t.Fatal(ts[0].Err)
	}
	return ts[0]
}

// renderPod is a pod that requests the template, labelled app=app; restartPolicy Never when completes.
func renderPod(t testing.TB, app string, completes bool) []byte {
	t.Helper()
	policy := "Always"
	if completes {
		policy = "Never"
	}
	return podJSON(t, fmt.Sprintf(`
metadata: {generateName: shop-, labels: {app: %q}, annotations: {sidecar.dev/inject: render}}
spec: {restartPolicy: %s, containers: [{name: app, image: shop:1}]}
`, app, policy))
}

func renderPatch(t testing.TB, tmpl *Template, pod []byte, limits Limits) ([]byte, *Result) {
	t.Helper()
	r, err := Inject(Request{Pod: pod, Namespace: defaultNamespace, InjectorNamespace: injectorNS,
		Templates: []*Template{tmpl}, Limits: limits})
	if err != nil {
		t.Fatal(err)
	}
	return mustPatchJSON(t, r), r
}

func cachedRenderings(tmpl *Template) int {
	if l := tmpl.renders.lru.Load(); l != nil {
		return l.Len()
	}
	return 0
}

func TestAPodWithTheValuesOfAnEarlierOneGetsWhatAFreshRenderingGives(t *testing.T) {
	shared := renderTemplate(t, "1")
	for _, pod := range []struct {
		app       string
		completes bool
	}{{"shop", false}, {"cart", false}, {"shop", false}, {"shop", true}, {"cart", true}, {"shop", false}} {
		raw := renderPod(t, pod.app, pod.completes)
		got, _ := renderPatch(t, shared, raw, Limits{})
		want, _ := renderPatch(t, renderTemplate(t, "1"), raw, Limits{}) // compiled now: nothing cached
		if !bytes.Equal(got, want) {
			t.Errorf("app=%s completes=%v: the shared template's patch\n%s\nis not a fresh one's\n%s", pod.app, pod.completes, got, want)
		}
		if !bytes.Contains(got, []byte("--app="+pod.app)) {
			t.Errorf("app=%s: the patch does not hold the pod's value: %s", pod.app, got)
		}
	}
	// shop and cart, each as a long-running pod and as one that runs to completion (the job form).
	if n := cachedRenderings(shared); n != min(4, rendersPerTemplate) {
		t.Errorf("the template keeps %d renderings, want %d (two values, two forms, as many as it keeps)", n, min(4, rendersPerTemplate))
	}
}

func TestAChangedTemplateNeverGetsTheRenderingOfItsEarlierSpec(t *testing.T) {
	pod := renderPod(t, "shop", false)
	before, _ := renderPatch(t, renderTemplate(t, "1"), pod, Limits{})
	after, _ := renderPatch(t, renderTemplate(t, "2"), pod, Limits{})
	if !bytes.Contains(before, []byte("side:1")) || !bytes.Contains(after, []byte("side:2")) ||
		bytes.Contains(after, []byte("side:1")) || !bytes.Contains(after, []byte("shop-2")) {
		t.Errorf("the changed template's patch holds its earlier spec:\nbefore: %s\nafter:  %s", before, after)
	}
}

func TestACachedRenderingIsStillHeldToTheRequestsMaxRenderedBytes(t *testing.T) {
	tmpl := renderTemplate(t, "1")
	pod := renderPod(t, "a-long-application-name", false)
	if _, r := renderPatch(t, tmpl, pod, Limits{}); len(r.Injected()) != 1 {
		t.Fatalf("under the default limits the template is not injected: %+v", r.Decisions)
	}
	_, r := renderPatch(t, tmpl, pod, Limits{MaxRenderedBytes: 16})
	if d := r.Decisions[0]; d.Reason != ReasonLimitExceeded {
		t.Errorf("a rendering cached under a larger limit passed max-rendered-bytes 16: %s %s", d.Reason, d.Message)
	}
}

func TestTheRenderingsATemplateKeepsAreBounded(t *testing.T) {
	tmpl := renderTemplate(t, "1")
	for i := range 3 * rendersPerTemplate {
		renderPatch(t, tmpl, renderPod(t, fmt.Sprintf("app-%d", i), false), Limits{})
	}
	if n := cachedRenderings(tmpl); n != rendersPerTemplate {
		t.Errorf("after %d pods with distinct values the template keeps %d renderings, want %d", 3*rendersPerTemplate, n, rendersPerTemplate)
	}
}

// Run with -race: concurrent admissions share one compiled template and its cache, with more distinct values
// than it keeps, so that renderings are added and evicted while others are read.
func TestConcurrentAdmissionsShareATemplatesRenderings(t *testing.T) {
	shared := renderTemplate(t, "1")
	apps := rendersPerTemplate + 2
	want := make([][]byte, apps)
	for i := range want {
		want[i], _ = renderPatch(t, renderTemplate(t, "1"), renderPod(t, fmt.Sprintf("app-%d", i), false), Limits{})
	}
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for n := range 50 {
				i := (g + n) % apps
				r, err := Inject(Request{Pod: renderPod(t, fmt.Sprintf("app-%d", i), false), Namespace: defaultNamespace,
					InjectorNamespace: injectorNS, Templates: []*Template{shared}})
				if err != nil {
					t.Error(err)
					return
				}
				if got, err := r.PatchJSON(); err != nil || !bytes.Equal(got, want[i]) {
					t.Errorf("app-%d: patch %s (err %v), want %s", i, got, err, want[i])
					return
				}
			}
		})
	}
	wg.Wait()
}
