package integration

import (
	"fmt"
	"strings"
	"testing"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/sidecar-dev/sidecar-injector/internal/api/v1alpha1"
	"github.com/sidecar-dev/sidecar-injector/internal/testenv"
)

func TestTheWebhookManifestRegistersPodCreateWithReinvocation(t *testing.T) {
	for _, p := range manifestProblems {
		t.Errorf("config/webhook/manifests.yaml: %s", p)
	}
	var installed admissionregistrationv1.MutatingWebhookConfiguration
	if err := k8s.Get(ctxFor(t), client.ObjectKey{Name: ours.Name}, &installed); err != nil {
		t.Fatalf("installed configuration %s: %v", ours.Name, err)
	}
	for _, w := range installed.Webhooks {
		if w.ClientConfig.URL == nil || !strings.HasSuffix(*w.ClientConfig.URL, webhookPath) {
			t.Errorf("webhook %s: url %v, want one ending in %s", w.Name, deref(w.ClientConfig.URL), webhookPath)
		}
		if w.ReinvocationPolicy == nil || *w.ReinvocationPolicy != admissionregistrationv1.IfNeededReinvocationPolicy {
			t.Errorf("webhook %s as installed: reinvocationPolicy %v, want IfNeeded", w.Name, deref(w.ReinvocationPolicy))
		}
	}
}

func TestATemplateEditedOrDeletedTakesEffectForTheNextPodWithinSeconds(t *testing.T) {
	ns := createNamespace(t, "edits", nil)
	tpl := createTemplate(t, ns, "log-shipper", logShipperSpec())
	tracer := createTemplate(t, ns, "tracer", tracerSpec(map[string]string{"app": "web"}))
	waitUntilServed(t, ns, ns, "log-shipper")
	waitUntilServed(t, ns, ns, "tracer")
	first := createPod(t, newPod(ns, "v1", withInject("log-shipper")))
	firstRec := parseStatus(t, first)
	if firstRec == nil || len(firstRec.Templates) != 1 {
		t.Fatalf("first pod's status: %v", first.Annotations[v1alpha1.AnnotationStatus])
	}

	t.Run("an edit reaches the next pod", func(t *testing.T) {
		patch := client.MergeFrom(tpl.DeepCopy())
		tpl.Spec.Containers[0].Image = "fluent/fluent-bit:3.3"
		if err := k8s.Patch(ctxFor(t), tpl, patch); err != nil {
			t.Fatal(err)
		}
		if tpl.Generation <= firstRec.Templates[0].Generation {
			t.Fatalf("template generation %d did not move past %d", tpl.Generation, firstRec.Templates[0].Generation)
		}
		took := testenv.Eventually(t, cacheDeadline, "the edited image reaches a new pod", func() error {
			got, err := tryCreatePod(t, newPod(ns, "v2", withInject("log-shipper")), true)
			if err != nil {
				return err
			}
			if img := findContainer(got.Spec.Containers, "log-shipper").Image; img != "fluent/fluent-bit:3.3" {
				return fmt.Errorf("image still %s", img)
			}
			rec := parseStatus(t, got)
			if rec.Templates[0].Generation != tpl.Generation {
				return fmt.Errorf("status generation %d, want %d", rec.Templates[0].Generation, tpl.Generation)
			}
			if rec.Templates[0].Hash == firstRec.Templates[0].Hash {
				return fmt.Errorf("status hash %s did not change with the spec", rec.Templates[0].Hash)
			}
			return nil
		})
		t.Logf("edit took effect after %s", took)
		// The pod created before the edit keeps what it was given.
		var stored corev1.Pod
		if err := k8s.Get(ctxFor(t), client.ObjectKeyFromObject(first), &stored); err != nil {
			t.Fatal(err)
		}
		if img := findContainer(stored.Spec.Containers, "log-shipper").Image; img != "fluent/fluent-bit:3.2" {
			t.Errorf("existing pod's sidecar image changed to %s", img)
		}
	})

	t.Run("a deleted requested template denies the next pod that asks for it", func(t *testing.T) {
		if err := k8s.Delete(ctxFor(t), tpl); err != nil {
			t.Fatal(err)
		}
		var lastErr error
		took := testenv.Eventually(t, cacheDeadline, "the deletion reaches the webhook", func() error {
			_, err := tryCreatePod(t, newPod(ns, "after-delete", withInject("log-shipper")), true)
			if err == nil {
				return fmt.Errorf("pod still admitted")
			}
			lastErr = err
			return nil
		})
		expectDenied(t, newPod(ns, "after-delete", withInject("log-shipper")), lastErr, `"log-shipper"`)
		t.Logf("deletion took effect after %s: %v", took, lastErr)
	})

	t.Run("a deleted selector template no longer reaches matching pods", func(t *testing.T) {
		if err := k8s.Delete(ctxFor(t), tracer); err != nil {
			t.Fatal(err)
		}
		took := testenv.Eventually(t, cacheDeadline, "the deletion reaches the webhook", func() error {
			got, err := tryCreatePod(t, newPod(ns, "selected-after-delete", withLabel("app", "web")), true)
			if err != nil {
				return err
			}
			if len(got.Spec.Containers) != 1 {
				return fmt.Errorf("pod still receives %v", containerNames(got.Spec.Containers))
			}
			return nil
		})
		t.Logf("deletion took effect after %s", took)
	})
}
