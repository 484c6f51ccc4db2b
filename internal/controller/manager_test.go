package controller

import (
	"context"
	"testing"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	crconfig "sigs.k8s.io/controller-runtime/pkg/config"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/sidecar-dev/sidecar-injector/internal/api/v1alpha1"
	"github.com/sidecar-dev/sidecar-injector/internal/store"
)

// newTestManager returns a manager on cfg without metrics or probe listeners. Several tests of this package
// start a controller of the same name in one process, so controller-runtime's name check is off.
func newTestManager(t *testing.T, cfg *rest.Config, scheme *runtime.Scheme) ctrl.Manager {
	t.Helper()
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{Scheme: scheme, Metrics: metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0", Controller: crconfig.Controller{SkipNameValidation: ptr.To(true)}})
	if err != nil {
		t.Fatal(err)
	}
	return mgr
}

// newStoreTestManager is newTestManager with serve's cache (internal/server): templates kept in the store's
// form (the controllers read them through store.Templates.Reader), revisions in theirs.
func newStoreTestManager(t *testing.T, cfg *rest.Config, scheme *runtime.Scheme) ctrl.Manager {
	t.Helper()
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{Scheme: scheme, Metrics: metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0", Controller: crconfig.Controller{SkipNameValidation: ptr.To(true)},
		Cache: cache.Options{ReaderFailOnMissingInformer: true, DefaultTransform: func(obj any) (any, error) {
			if _, ok := obj.(*v1alpha1.SidecarTemplate); ok {
				return store.TemplateTransform(obj)
			}
			return cache.TransformStripManagedFields()(obj)
		}, ByObject: map[client.Object]cache.ByObject{store.RevisionObject(): store.RevisionCache()}}})
	if err != nil {
		t.Fatal(err)
	}
	return mgr
}

// runManager starts mgr on ctx. The function it returns stops it (cancel must end ctx) and fails t when the
// manager ended with an error: defer it.
func runManager(t *testing.T, ctx context.Context, cancel context.CancelFunc, mgr ctrl.Manager) func() {
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	return func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("manager: %v", err)
		}
	}
}
