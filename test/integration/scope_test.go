package integration

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/sidecar-dev/sidecar-injector/internal/api/v1alpha1"
	"github.com/sidecar-dev/sidecar-injector/internal/testenv"
)

// unique returns prefix-<random>, for names and label values that must not collide with other stories.
func unique(prefix string) string { return fmt.Sprintf("%s-%06d", prefix, rand.IntN(1_000_000)) }

func tracerSpec(selector map[string]string) v1alpha1.SidecarTemplateSpec {
	return v1alpha1.SidecarTemplateSpec{
		Selector:   &metav1.LabelSelector{MatchLabels: selector},
		Containers: []corev1.Container{{Name: "tracer", Image: "registry.example/tracer:1"}},
	}
}

func TestASelectorTemplateInjectsWithoutAnnotationAndOptOutsAreLeftAlone(t *testing.T) {
	ns := createNamespace(t, "selector", nil)
	disabledNS := createNamespace(t, "selector-disabled", map[string]string{v1alpha1.LabelInjection: v1alpha1.LabelInjectionDisabled})
	createTemplate(t, ns, "tracer", tracerSpec(map[string]string{"app": "web"}))
	createTemplate(t, disabledNS, "tracer", tracerSpec(map[string]string{"app": "web"}))
	// A cluster-wide selector template (no namespaceSelector: every namespace), for the system and injector
	// namespaces. Its selector label is unique to this story so that it touches no other story's pods.
	cwLabel := unique("selector-story")
	cw := createTemplate(t, injectorNS, unique("cw-tracer"), v1alpha1.SidecarTemplateSpec{
		Selector:   &metav1.LabelSelector{MatchLabels: map[string]string{"story": cwLabel}},
		Containers: []corev1.Container{{Name: "cw-tracer", Image: "registry.example/tracer:1"}},
	})
	deleteAfter(t, cw)
	waitUntilServed(t, ns, ns, "tracer")
	waitUntilServed(t, ns, injectorNS, cw.Name)

	t.Run("a pod the selector matches receives the template unasked", func(t *testing.T) {
		got := createPod(t, newPod(ns, "matched", withLabel("app", "web")))
		if g, w := containerNames(got.Spec.Containers), []string{"app", "tracer"}; !slices.Equal(g, w) {
			t.Errorf("containers = %v, want %v", g, w)
		}
		if g, w := injectedTemplates(t, got), []string{ns + "/tracer"}; !slices.Equal(g, w) {
			t.Errorf("status names %v, want %v", g, w)
		}
	})
	t.Run("a pod the selector does not match is left alone", func(t *testing.T) {
		pod := newPod(ns, "unmatched", withLabel("app", "batch"))
		expectUntouched(t, pod, createPod(t, pod))
	})
	t.Run("a cluster-wide selector template also reaches an ordinary namespace", func(t *testing.T) {
		got := createPod(t, newPod(ns, "cw-matched", withLabel("story", cwLabel)))
		if g, w := containerNames(got.Spec.Containers), []string{"app", "cw-tracer"}; !slices.Equal(g, w) {
			t.Errorf("containers = %v, want %v", g, w)
		}
	})
	for _, v := range []string{"false", "False"} {
		t.Run(fmt.Sprintf("sidecar.dev/inject: %q opts a matching pod out", v), func(t *testing.T) {
			pod := newPod(ns, "opted-out-"+map[string]string{"false": "lower", "False": "upper"}[v],
				withLabel("app", "web"), withLabel("story", cwLabel), withInject(v))
			expectUntouched(t, pod, createPod(t, pod))
		})
	}
	t.Run("a namespace labelled sidecar.dev/injection=disabled is left alone and never denied", func(t *testing.T) {
		pod := newPod(disabledNS, "in-disabled-ns", withLabel("app", "web"), withLabel("story", cwLabel))
		expectUntouched(t, pod, createPod(t, pod))
		asks := newPod(disabledNS, "asks-in-disabled-ns", withInject("tracer, no-such-template"))
		expectUntouched(t, asks, createPod(t, asks))
	})
	for _, sys := range []string{"kube-system", injectorNS} {
		t.Run(fmt.Sprintf("pods in %s are left alone and never denied", sys), func(t *testing.T) {
			pod := newPod(sys, unique("selected"), withLabel("story", cwLabel))
			got := createPod(t, pod)
			deleteAfter(t, got)
			expectUntouched(t, pod, got)
			asks := newPod(sys, unique("asks"), withInject(cw.Name+", no-such-template"))
			got = createPod(t, asks)
			deleteAfter(t, got)
			expectUntouched(t, asks, got)
		})
	}
	t.Run("labelling an existing namespace disabled stops injection there for the next pod", func(t *testing.T) {
		var nsObj corev1.Namespace
		if err := k8s.Get(ctxFor(t), client.ObjectKey{Name: ns}, &nsObj); err != nil {
			t.Fatal(err)
		}
		patch := client.MergeFrom(nsObj.DeepCopy())
		nsObj.Labels[v1alpha1.LabelInjection] = v1alpha1.LabelInjectionDisabled
		if err := k8s.Patch(ctxFor(t), &nsObj, patch); err != nil {
			t.Fatal(err)
		}
		took := testenv.Eventually(t, cacheDeadline, "injection stops in the newly disabled namespace", func() error {
			got, err := tryCreatePod(t, newPod(ns, "after-disable", withLabel("app", "web")), true)
			if err != nil {
				return err
			}
			if n := len(got.Spec.Containers); n != 1 {
				return fmt.Errorf("dry-run pod still has %v", containerNames(got.Spec.Containers))
			}
			return nil
		})
		t.Logf("took effect after %s", took)
	})
}

func TestAClusterWideTemplateHonoursItsNamespaceSelector(t *testing.T) {
	tierKey := "integration.sidecar.dev/tier"
	gold, silver := unique("gold"), unique("silver")
	goldNS := createNamespace(t, "cw-gold", map[string]string{tierKey: gold})
	silverNS := createNamespace(t, "cw-silver", map[string]string{tierKey: silver})
	podLabel := unique("cw-story")
	cw := createTemplate(t, injectorNS, unique("metrics-exporter"), v1alpha1.SidecarTemplateSpec{
		NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{tierKey: gold}},
		Selector:          &metav1.LabelSelector{MatchLabels: map[string]string{"story": podLabel}},
		Containers:        []corev1.Container{{Name: "metrics-exporter", Image: "registry.example/exporter:1"}},
	})
	deleteAfter(t, cw)
	waitUntilServed(t, goldNS, injectorNS, cw.Name)

	t.Run("a matching namespace receives it by selector and by name", func(t *testing.T) {
		got := createPod(t, newPod(goldNS, "by-selector", withLabel("story", podLabel)))
		if g, w := injectedTemplates(t, got), []string{injectorNS + "/" + cw.Name}; !slices.Equal(g, w) {
			t.Errorf("status names %v, want %v", g, w)
		}
		got = createPod(t, newPod(goldNS, "by-name", withInject(cw.Name)))
		if g, w := containerNames(got.Spec.Containers), []string{"app", "metrics-exporter"}; !slices.Equal(g, w) {
			t.Errorf("containers = %v, want %v", g, w)
		}
	})
	t.Run("a namespace the namespaceSelector does not match never receives it", func(t *testing.T) {
		pod := newPod(silverNS, "by-selector", withLabel("story", podLabel))
		expectUntouched(t, pod, createPod(t, pod))

		asks := newPod(silverNS, "by-name", withInject(cw.Name))
		got, err := tryCreatePod(t, asks, false)
		if err != nil {
			// Denying is one acceptable answer (the name resolves to nothing here); injecting is not.
			expectDenied(t, asks, err, cw.Name)
			t.Logf("request by name in a non-matching namespace was denied: %v", err)
		} else {
			expectUntouched(t, asks, got)
			t.Logf("request by name in a non-matching namespace was admitted without the template")
		}
	})
	parent := t // the namespaced template outlives the subtest that creates it
	t.Run("a namespaced template of the same name does not replace a cluster-wide one that does not allow it", func(t *testing.T) {
		local := createTemplate(t, goldNS, cw.Name, v1alpha1.SidecarTemplateSpec{
			Containers: []corev1.Container{{Name: "team-exporter", Image: "registry.example/team-exporter:1"}},
		})
		deleteAfter(parent, local)
		testenv.Eventually(t, cacheDeadline, "the namespaced template's Ready condition says OverrideDenied", func() error {
			var got v1alpha1.SidecarTemplate
			if err := k8s.Get(ctxFor(t), client.ObjectKeyFromObject(local), &got); err != nil {
				return err
			}
			if c := meta.FindStatusCondition(got.Status.Conditions, v1alpha1.ConditionReady); c == nil || c.Status != metav1.ConditionFalse ||
				c.Reason != "OverrideDenied" || c.ObservedGeneration != got.Generation {
				return fmt.Errorf("Ready condition %+v", c)
			}
			return nil
		})
		got := createPod(t, newPod(goldNS, "not-replaced", withInject(cw.Name), withLabel("story", podLabel)))
		if g, w := containerNames(got.Spec.Containers), []string{"app", "metrics-exporter"}; !slices.Equal(g, w) {
			t.Errorf("containers = %v, want %v (the cluster-wide template, namespaceOverride Deny)", g, w)
		}
	})
	t.Run("it replaces the cluster-wide one once that one says namespaceOverride: Allow", func(t *testing.T) {
		var cur v1alpha1.SidecarTemplate
		if err := k8s.Get(ctxFor(t), client.ObjectKeyFromObject(cw), &cur); err != nil {
			t.Fatal(err)
		}
		patch := client.MergeFrom(cur.DeepCopy())
		cur.Spec.NamespaceOverride = v1alpha1.NamespaceOverrideAllow
		if err := k8s.Patch(ctxFor(t), &cur, patch); err != nil {
			t.Fatal(err)
		}
		waitUntilServed(t, goldNS, goldNS, cw.Name)
		got := createPod(t, newPod(goldNS, "shadowed", withInject(cw.Name), withLabel("story", podLabel)))
		if g, w := containerNames(got.Spec.Containers), []string{"app", "team-exporter"}; !slices.Equal(g, w) {
			t.Errorf("containers = %v, want %v (only the namespace's own template)", g, w)
		}
		if g, w := injectedTemplates(t, got), []string{goldNS + "/" + cw.Name}; !slices.Equal(g, w) {
			t.Errorf("status names %v, want %v", g, w)
		}
	})
	t.Run("relabelling a namespace to match brings the template to its next pod", func(t *testing.T) {
		var nsObj corev1.Namespace
		if err := k8s.Get(ctxFor(t), client.ObjectKey{Name: silverNS}, &nsObj); err != nil {
			t.Fatal(err)
		}
		patch := client.MergeFrom(nsObj.DeepCopy())
		nsObj.Labels[tierKey] = gold
		if err := k8s.Patch(ctxFor(t), &nsObj, patch); err != nil {
			t.Fatal(err)
		}
		took := testenv.Eventually(t, cacheDeadline, "template reaches the relabelled namespace", func() error {
			got, err := tryCreatePod(t, newPod(silverNS, "after-relabel", withLabel("story", podLabel)), true)
			if err != nil {
				return err
			}
			if g := injectedTemplates(t, got); !slices.Equal(g, []string{injectorNS + "/" + cw.Name}) {
				return fmt.Errorf("dry-run pod received %v", g)
			}
			return nil
		})
		t.Logf("took effect after %s", took)
	})
}

func TestAPodCanNeverReceiveAnotherNamespacesTemplate(t *testing.T) {
	teamA := createNamespace(t, "team-a", nil)
	teamB := createNamespace(t, "team-b", nil)
	createTemplate(t, teamB, "secret-agent", v1alpha1.SidecarTemplateSpec{
		FailurePolicy: v1alpha1.FailurePolicyIgnore, // even Ignore must not make team-b's template visible to team-a
		Selector:      &metav1.LabelSelector{MatchLabels: map[string]string{"app": "shared"}},
		Containers:    []corev1.Container{{Name: "secret-agent", Image: "registry.example/agent:1"}},
	})
	waitUntilServed(t, teamB, teamB, "secret-agent")

	t.Run("the owning namespace's matching pod receives it", func(t *testing.T) {
		got := createPod(t, newPod(teamB, "own", withLabel("app", "shared")))
		if g, w := injectedTemplates(t, got), []string{teamB + "/secret-agent"}; !slices.Equal(g, w) {
			t.Errorf("status names %v, want %v", g, w)
		}
	})
	t.Run("by name, another namespace's pod is denied", func(t *testing.T) {
		pod := newPod(teamA, "by-name", withInject("secret-agent"))
		_, err := tryCreatePod(t, pod, false)
		expectDenied(t, pod, err, `"secret-agent"`)
		t.Logf("API server answered: %v", err)
	})
	t.Run("by namespace-qualified name, another namespace's pod does not receive it", func(t *testing.T) {
		pod := newPod(teamA, "by-qualified-name", withInject(teamB+"/secret-agent"))
		got, err := tryCreatePod(t, pod, false)
		if err == nil {
			expectUntouched(t, pod, got)
		} else {
			expectDenied(t, pod, err)
			t.Logf("API server answered: %v", err)
		}
	})
	t.Run("by selector, another namespace's matching pod is left alone", func(t *testing.T) {
		pod := newPod(teamA, "by-selector", withLabel("app", "shared"))
		expectUntouched(t, pod, createPod(t, pod))
	})
}
