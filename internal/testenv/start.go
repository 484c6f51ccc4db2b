package testenv

import (
	"testing"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// Start starts env for one test (what names it in errors, e.g. "the second API server"), stops it when the test
// ends, also when it fails, and returns its config and a client using scheme.
func Start(t testing.TB, env *envtest.Environment, scheme *runtime.Scheme, what string) (*rest.Config, client.Client) {
	t.Helper()
	cfg, err := env.Start()
	if err != nil {
		_ = env.Stop() // whatever did start (etcd without its API server) is stopped too
		t.Fatalf("start %s: %v", what, err)
	}
	t.Cleanup(func() {
		if err := env.Stop(); err != nil {
			t.Errorf("stop %s: %v", what, err)
		}
	})
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	return cfg, c
}
