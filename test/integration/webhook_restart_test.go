package integration

import (
	"slices"
	"strings"
	"testing"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"

	"github.com/sidecar-dev/sidecar-injector/internal/api/v1alpha1"
)

// This story stops and restarts the shared webhook server; its file name sorts last so that it runs after every
// other story (go test runs a package's tests in file order).

func TestAfterARestartTheWebhookKeepsInjecting(t *testing.T) {
	ns := createNamespace(t, "restart", nil)
	createTemplate(t, ns, "log-shipper", logShipperSpec())
	waitUntilServed(t, ns, ns, "log-shipper")
	before := createPod(t, newPod(ns, "before-restart", withInject("log-shipper")))

	if err := srv.stop(); err != nil {
		t.Errorf("server.Run returned %v after its context was cancelled, want nil", err)
	}
	srv = nil

	// With the server down, the API server cannot reach the webhook: under the configuration's failurePolicy
	// Fail the pod is rejected (a sign the restart is real, not a no-op).
	if fp := ours.Webhooks[0].FailurePolicy; fp == nil || *fp == admissionregistrationv1.Fail {
		_, err := tryCreatePod(t, newPod(ns, "while-down", withInject("log-shipper")), true)
		if err == nil || !strings.Contains(err.Error(), "failed calling webhook") {
			t.Errorf("create while the webhook is down: %v, want a 'failed calling webhook' error", err)
		}
	}

	var err error
	if srv, err = startServer(); err != nil {
		t.Fatalf("restart on the same port: %v", err)
	}
	// Ready means ready: the first pod after /readyz passes must be injected, without retrying.
	after, err := tryCreatePod(t, newPod(ns, "after-restart", withInject("log-shipper")), false)
	if err != nil {
		t.Fatalf("first pod after the restart: %v", err)
	}
	if g, w := containerNames(after.Spec.Containers), containerNames(before.Spec.Containers); !slices.Equal(g, w) {
		t.Errorf("after the restart containers = %v, want %v as before it", g, w)
	}
	if after.Annotations[v1alpha1.AnnotationStatus] != before.Annotations[v1alpha1.AnnotationStatus] {
		t.Errorf("status after the restart %s differs from before %s", after.Annotations[v1alpha1.AnnotationStatus], before.Annotations[v1alpha1.AnnotationStatus])
	}
}
