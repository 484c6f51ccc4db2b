package inject

import (
	"bytes"
	"math/rand"
	"reflect"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/sidecar-dev/sidecar-injector/internal/patchtest"
)

// propertyCase is one pod and its request, from a golden case or the random generator.
type propertyCase struct {
	name string
	req  Request
}

func goldenPropertyCases(t *testing.T) []propertyCase {
	var out []propertyCase
	for _, c := range loadGoldenCases(t) {
		out = append(out, propertyCase{name: c.name, req: c.req})
	}
	return out
}

const randomPods = 400

func randomPropertyCases(t *testing.T) []propertyCase {
	ts := fixedTemplates(t)
	r := rand.New(rand.NewSource(20240601))
	var out []propertyCase
	for i := range randomPods {
		ns := "team-a"
		var nsLabels map[string]string
		if r.Intn(10) == 0 {
			nsLabels = map[string]string{"env": "prod"}
		}
		out = append(out, propertyCase{
			name: "random-" + itoa(i),
			req: Request{
				Pod:               randomPod(r),
				Namespace:         ns,
				NamespaceLabels:   nsLabels,
				InjectorNamespace: injectorNS,
				Templates:         randomSubset(r, ts),
			},
		})
	}
	return out
}

func allPropertyCases(t *testing.T) []propertyCase {
	return append(goldenPropertyCases(t), randomPropertyCases(t)...)
}

// TestPropertyAddOnly: every op is an add (but the status replace), the patch applies to the exact input, the
// result decodes strictly as a Pod, and every original value — planted unknown fields included — is still
// there, unchanged.
func TestPropertyAddOnly(t *testing.T) {
	for _, c := range allPropertyCases(t) {
		t.Run(c.name, func(t *testing.T) {
			r, err := Inject(c.req)
			if err != nil {
				t.Fatalf("Inject: %v\npod: %s", err, c.req.Pod)
			}
			verifyPatch(t, c.req.Pod, r)
			if t.Failed() {
				t.Logf("pod: %s", c.req.Pod)
			}
		})
	}
}

// TestPropertyIdempotent: applying the patch and feeding the result back gives an empty patch, no denial and no
// template injected a second time.
func TestPropertyIdempotent(t *testing.T) {
	cases, checked := allPropertyCases(t), 0
	defer func() {
		// Denied pods have no patch to feed back; the property must still hold for most cases.
		if checked < len(cases)/2 {
			t.Errorf("idempotency checked on only %d of %d cases: the others were denied", checked, len(cases))
		}
	}()
	for _, c := range cases {
		if r, err := Inject(c.req); err == nil && r.Denied {
			continue // nothing to feed back
		}
		checked++
		t.Run(c.name, func(t *testing.T) {
			r1, err := Inject(c.req)
			if err != nil {
				t.Fatalf("Inject: %v", err)
			}
			patched, err := patchtest.Apply(c.req.Pod, mustPatchJSON(t, r1))
			if err != nil {
				t.Fatalf("the patch does not apply: %v", err)
			}
			req2 := c.req
			req2.Pod = patched
			r2, err := Inject(req2)
			if err != nil {
				t.Fatalf("Inject on its own output: %v", err)
			}
			if len(r2.Patch) != 0 {
				t.Errorf("fed back, the pod gets a second patch: %s\nfirst patch: %s\ninput pod: %s", mustPatchJSON(t, r2), mustPatchJSON(t, r1), c.req.Pod)
			}
			if r2.Denied {
				t.Errorf("fed back, the pod is denied: %s", r2.DenyMessage)
			}
			for _, d := range r2.Decisions {
				if d.Outcome == OutcomeInjected {
					t.Errorf("fed back, %s/%s is injected again", d.Namespace, d.Name)
				}
			}
			// what was injected the first time is AlreadyInjected the second time
			for _, d := range r1.Decisions {
				if d.Outcome != OutcomeInjected {
					continue
				}
				i := slices.IndexFunc(r2.Decisions, func(e Decision) bool { return e.Namespace == d.Namespace && e.Name == d.Name })
				if i < 0 || r2.Decisions[i].Outcome != OutcomeAlreadyInjected {
					t.Errorf("%s/%s was injected; fed back it should be AlreadyInjected, got %+v", d.Namespace, d.Name, r2.Decisions)
				}
			}
		})
	}
}

// TestPropertyDeterministic: whatever the order of the templates, the patch is byte-identical and the decisions,
// warnings and denial are the same.
func TestPropertyDeterministic(t *testing.T) {
	rnd := rand.New(rand.NewSource(7))
	for _, c := range allPropertyCases(t) {
		t.Run(c.name, func(t *testing.T) {
			r0, err := Inject(c.req)
			if err != nil {
				t.Fatalf("Inject: %v", err)
			}
			want := mustPatchJSON(t, r0)
			shuffles := 30
			if len(c.req.Templates) < 2 {
				shuffles = 2
			}
			for range shuffles {
				req := c.req
				req.Templates = slices.Clone(c.req.Templates)
				rnd.Shuffle(len(req.Templates), func(i, j int) { req.Templates[i], req.Templates[j] = req.Templates[j], req.Templates[i] })
				r, err := Inject(req)
				if err != nil {
					t.Fatalf("Inject: %v", err)
				}
				if got := mustPatchJSON(t, r); !bytes.Equal(got, want) {
					t.Fatalf("template order changed the patch:\n%s\nvs\n%s", want, got)
				}
				if !reflect.DeepEqual(outcomeOf(r), outcomeOf(r0)) {
					t.Fatalf("template order changed the decisions:\n%+v\nvs\n%+v", outcomeOf(r0), outcomeOf(r))
				}
			}
			// and the same call twice gives the same bytes (no map-order leak)
			for range 5 {
				r, _ := Inject(c.req)
				if got := mustPatchJSON(t, r); !bytes.Equal(got, want) {
					t.Fatalf("the same request gave different patches")
				}
			}
		})
	}
}

// TestPropertyEverythingInjectedLands: for every Injected decision, each container, init container and volume
// the decision lists is in the patched pod, exactly once; the status annotation names exactly the templates that
// are Injected or AlreadyInjected; and a pod that was not injected at all gets no status written.
func TestPropertyEverythingInjectedLands(t *testing.T) {
	for _, c := range allPropertyCases(t) {
		t.Run(c.name, func(t *testing.T) {
			r, err := Inject(c.req)
			if err != nil {
				t.Fatalf("Inject: %v", err)
			}
			if r.Denied {
				if len(r.Patch) != 0 {
					t.Fatalf("denied with a patch")
				}
				if r.DenyMessage == "" {
					t.Errorf("denied without a message")
				}
				for _, d := range r.Decisions {
					if d.Outcome == OutcomeDenied && !bytes.Contains([]byte(r.DenyMessage), []byte(`"`+d.Name+`"`)) {
						t.Errorf("deny message %q does not name template %q", r.DenyMessage, d.Name)
					}
				}
				return
			}
			patched, err := patchtest.Apply(c.req.Pod, mustPatchJSON(t, r))
			if err != nil {
				t.Fatalf("the patch does not apply: %v", err)
			}
			pod := decodePod(t, patched)
			count := func(names []string, n string) int {
				k := 0
				for _, x := range names {
					if x == n {
						k++
					}
				}
				return k
			}
			var vols []string
			for _, v := range pod.Spec.Volumes {
				vols = append(vols, v.Name)
			}
			cs, ics := containerNames(pod.Spec.Containers), containerNames(pod.Spec.InitContainers)
			present := map[string]bool{}
			for _, d := range r.Decisions {
				switch d.Outcome {
				case OutcomeInjected, OutcomeAlreadyInjected:
					present[d.Namespace+"/"+d.Name] = true
				case OutcomeDenied:
					t.Errorf("a Denied decision in a result that is not denied: %+v", d)
				case OutcomeSkipped:
					if !slices.ContainsFunc(r.Warnings, func(w string) bool { return bytes.Contains([]byte(w), []byte(`"`+d.Name+`"`)) }) {
						t.Errorf("skipped template %q has no warning naming it: %q", d.Name, r.Warnings)
					}
				}
				if d.Outcome != OutcomeInjected || d.Added == nil {
					continue
				}
				for _, n := range d.Added.Containers {
					if count(cs, n) != 1 {
						t.Errorf("%s: container %q is in the pod %d times", d.Name, n, count(cs, n))
					}
				}
				for _, n := range d.Added.InitContainers {
					if count(ics, n) != 1 {
						t.Errorf("%s: init container %q is in the pod %d times", d.Name, n, count(ics, n))
					}
				}
				for _, n := range d.Added.Volumes {
					if count(vols, n) != 1 {
						t.Errorf("%s: volume %q is in the pod %d times", d.Name, n, count(vols, n))
					}
				}
			}
			// no duplicate names anywhere
			all := append(slices.Clone(cs), ics...)
			for _, n := range all {
				if count(all, n) > 1 {
					t.Errorf("container name %q appears %d times in the patched pod", n, count(all, n))
				}
			}
			if len(present) == 0 {
				if len(r.Patch) != 0 {
					t.Errorf("nothing injected, yet a patch: %s", mustPatchJSON(t, r))
				}
				return
			}
			st := readStatus(t, pod)
			if st == nil {
				t.Fatalf("templates are present but the pod has no status annotation")
			}
			if len(r.Injected()) > 0 || len(r.Patch) > 0 {
				got := map[string]bool{}
				for _, e := range st.Templates {
					got[e.Namespace+"/"+e.Name] = true
				}
				if !reflect.DeepEqual(got, present) {
					t.Errorf("status names %v; the present templates are %v", got, present)
				}
			}
			// the hash recorded for a template injected now is the template's hash
			for _, e := range st.Templates {
				for _, tm := range c.req.Templates {
					if tm.Namespace == e.Namespace && tm.Name == e.Name && slices.ContainsFunc(r.Injected(), func(d Decision) bool { return d.Namespace == e.Namespace && d.Name == e.Name }) {
						if e.Hash != tm.Hash || e.Generation != tm.Generation {
							t.Errorf("status for %s records hash %q generation %d, template has %q %d", tm.Key(), e.Hash, e.Generation, tm.Hash, tm.Generation)
						}
					}
				}
			}
		})
	}
}

// TestPropertyApplicationContainersOnly: env and mounts go to the pod's own containers, never into a sidecar a
// template added, and never into the pod's init containers unless a template names them in targetContainers.
func TestPropertyApplicationContainersOnly(t *testing.T) {
	for _, c := range allPropertyCases(t) {
		t.Run(c.name, func(t *testing.T) {
			r, err := Inject(c.req)
			if err != nil || r.Denied {
				return
			}
			before := decodePod(t, c.req.Pod)
			patched, err := patchtest.Apply(c.req.Pod, mustPatchJSON(t, r))
			if err != nil {
				t.Fatalf("the patch does not apply: %v", err)
			}
			after := decodePod(t, patched)
			orig := map[string]bool{}
			for _, x := range before.Spec.Containers {
				orig[x.Name] = true
			}
			for _, x := range after.Spec.Containers {
				if orig[x.Name] {
					continue
				}
				// a sidecar: its env and mounts are exactly the template's own, which never include the
				// template-level env of another template
				for _, e := range x.Env {
					if e.Name == "OTEL_ENDPOINT" || e.Name == "LOG_DIR" || e.Name == "POD_APP" {
						t.Errorf("sidecar %q received application env %q", x.Name, e.Name)
					}
				}
			}
			named := map[string]bool{}
			for _, tm := range c.req.Templates {
				for _, n := range tm.targets {
					named[n] = true
				}
			}
			initBefore := map[string]corev1.Container{}
			for _, x := range before.Spec.InitContainers {
				initBefore[x.Name] = x
			}
			for _, x := range after.Spec.InitContainers {
				if b, ok := initBefore[x.Name]; ok && !named[x.Name] && (len(x.Env) != len(b.Env) || len(x.VolumeMounts) != len(b.VolumeMounts) || len(x.EnvFrom) != len(b.EnvFrom)) {
					t.Errorf("the pod's init container %q was given env or mounts", x.Name)
				}
			}
		})
	}
}
