package inject

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

// want is an expected decision. ns is empty for a requested name that matched no template.
type want struct {
	ns, name string
	outcome  Outcome
	reason   Reason
}

// tableCase is one sentence about the engine: a pod (YAML), the templates (multi-document YAML) and what must
// happen.
type tableCase struct {
	name      string
	pod       string
	templates string
	ns        string            // the request's namespace; default team-a
	nsLabels  map[string]string // the namespace's labels
	injector  string            // default sidecar-injector

	decisions   []want   // each must be among the result's decisions
	notInjected []string // "ns/name": must not be Injected (no decision, or any other outcome)
	denied      bool     // the result must be denied (and have no patch)
	denyHas     []string // substrings of the deny message
	warnHas     []string // substrings that some warning must contain
	noWarnings  bool
	podSkip     Reason // the result's PodSkipReason
	noPatch     bool   // the patch must be empty
	check       func(t *testing.T, r *Result, pod *corev1.Pod)
}

func runTable(t *testing.T, cases []tableCase) {
	t.Helper()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ns := c.ns
			if ns == "" {
				ns = defaultNamespace
			}
			inj := c.injector
			if inj == "" {
				inj = injectorNS
			}
			pod := podJSON(t, c.pod)
			req := Request{
				Pod: pod, Namespace: ns, NamespaceLabels: c.nsLabels, InjectorNamespace: inj,
				Templates: compileAll(parseTemplates(t, []byte(c.templates)), inj),
			}
			r, err := Inject(req)
			if err != nil {
				t.Fatalf("Inject: %v", err)
			}
			patched := verifyPatch(t, pod, r)
			defer func() {
				if t.Failed() {
					t.Logf("patch: %s\noutcome: %s", mustPatchJSON(t, r), marshalIndent(t, outcomeOf(r)))
				}
			}()
			if r.Denied != c.denied {
				t.Errorf("denied = %v, want %v (%s)", r.Denied, c.denied, r.DenyMessage)
			}
			if c.denied && len(r.Patch) > 0 {
				t.Errorf("a denied pod got a patch")
			}
			for _, s := range c.denyHas {
				if !strings.Contains(r.DenyMessage, s) {
					t.Errorf("deny message %q does not contain %q", r.DenyMessage, s)
				}
			}
			for _, s := range c.warnHas {
				found := false
				for _, w := range r.Warnings {
					if strings.Contains(w, s) {
						found = true
					}
				}
				if !found {
					t.Errorf("no warning contains %q; warnings: %q", s, r.Warnings)
				}
			}
			if c.noWarnings && len(r.Warnings) > 0 {
				t.Errorf("unexpected warnings: %q", r.Warnings)
			}
			if r.PodSkipReason != c.podSkip {
				t.Errorf("PodSkipReason = %q, want %q", r.PodSkipReason, c.podSkip)
			}
			if c.noPatch && len(r.Patch) > 0 {
				t.Errorf("want no patch, got %s", mustPatchJSON(t, r))
			}
			for _, w := range c.decisions {
				d, ok := findDecision(r, w.ns, w.name)
				if !ok {
					t.Errorf("no decision for %s/%s; decisions: %+v", w.ns, w.name, r.Decisions)
					continue
				}
				if d.Outcome != w.outcome || d.Reason != w.reason {
					t.Errorf("%s/%s: got %s/%s, want %s/%s (%s)", w.ns, w.name, d.Outcome, d.Reason, w.outcome, w.reason, d.Message)
				}
				if (d.Outcome == OutcomeDenied || d.Outcome == OutcomeSkipped) && !strings.Contains(d.Message, `"`+w.name+`"`) {
					t.Errorf("%s/%s: message %q does not name the template", w.ns, w.name, d.Message)
				}
			}
			for _, key := range c.notInjected {
				ns, name, _ := strings.Cut(key, "/")
				if d, ok := findDecision(r, ns, name); ok && (d.Outcome == OutcomeInjected || d.Outcome == OutcomeAlreadyInjected) {
					t.Errorf("%s must not be injected, got %s/%s", key, d.Outcome, d.Reason)
				}
			}
			if c.check != nil {
				c.check(t, r, decodePod(t, patched))
			}
		})
	}
}

func findDecision(r *Result, ns, name string) (Decision, bool) {
	for _, d := range r.Decisions {
		if d.Namespace == ns && d.Name == name {
			return d, true
		}
	}
	return Decision{}, false
}

// simplePod is a pod in team-a with one container "app", the given labels and annotations (YAML flow maps).
func simplePod(labels, annotations string) string {
	return `
metadata:
  name: web
  namespace: team-a
  labels: ` + orEmpty(labels) + `
  annotations: ` + orEmpty(annotations) + `
spec:
  containers:
  - name: app
    image: app:1
`
}

func orEmpty(s string) string {
	if s == "" {
		return "{}"
	}
	return s
}

func container(t *testing.T, p *corev1.Pod, name string) corev1.Container {
	t.Helper()
	for _, c := range p.Spec.Containers {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("the pod has no container %q; it has %v", name, containerNames(p.Spec.Containers))
	return corev1.Container{}
}

func envValue(c corev1.Container, name string) (string, bool) {
	for _, e := range c.Env {
		if e.Name == name {
			return e.Value, true
		}
	}
	return "", false
}

func mountAt(c corev1.Container, path string) (corev1.VolumeMount, bool) {
	for _, m := range c.VolumeMounts {
		if m.MountPath == path {
			return m, true
		}
	}
	return corev1.VolumeMount{}, false
}

func expectContainers(want ...string) func(t *testing.T, r *Result, p *corev1.Pod) {
	return func(t *testing.T, _ *Result, p *corev1.Pod) {
		t.Helper()
		if got := containerNames(p.Spec.Containers); strings.Join(got, ",") != strings.Join(want, ",") {
			t.Errorf("containers = %v, want %v", got, want)
		}
	}
}

func expectInitContainers(want ...string) func(t *testing.T, r *Result, p *corev1.Pod) {
	return func(t *testing.T, _ *Result, p *corev1.Pod) {
		t.Helper()
		if got := containerNames(p.Spec.InitContainers); strings.Join(got, ",") != strings.Join(want, ",") {
			t.Errorf("initContainers = %v, want %v", got, want)
		}
	}
}

// A template in team-a with a sidecar container named like the template.
func tmpl(ns, name, extraSpec string) string {
	return `
---
metadata: {name: ` + name + `, namespace: ` + ns + `, generation: 1}
spec:
  containers: [{name: ` + name + `-c, image: "x:1"}]
` + extraSpec
}

type corev1Pod = corev1.Pod
