package chart

import (
	"strings"
	"testing"
	"time"

	"github.com/sidecar-dev/sidecar-injector/internal/testenv"
)

// TestHelmUpgradesTheCRDAndUninstallKeepsIt runs the real helm against a kube-apiserver of its own (it installs
// a webhook configuration and a changed CRD, which the other tests must not see): install chart version N,
// upgrade to N+1 whose CRD has one more field, which the API server then serves; uninstall removes the release
// but keeps the CRD and the SidecarTemplates (crds.keep). test/e2e tells the same story on the real cluster.
func TestHelmUpgradesTheCRDAndUninstallKeepsIt(t *testing.T) {
	c, kubeconfig := ownAPIServer(t)
	ctx := ctxFor(t, 3*time.Minute)
	ensureNamespace(t, ctx, c, "team-a", nil)
	testenv.CRDUpgrade{
		Chart: chartDir(t),
		Helm: func(t *testing.T, args ...string) {
			t.Helper()
			args = append(args, "--kubeconfig", kubeconfig)
			if out, stderr, err := helm(t, args...); err != nil {
				t.Fatalf("helm %s: %v\n%s%s", strings.Join(args, " "), err, out, stderr)
			}
		},
		Client:            c,
		Release:           "lifecycle",
		Namespace:         "lifecycle",
		TemplateNamespace: "team-a",
	}.Run(t, ctx)
}
