package e2e

import (
	"testing"
	"time"

	"github.com/sidecar-dev/sidecar-injector/internal/testenv"
)

// TestHelmUpgradesTheCRDOnTheCluster tells test/chart's CRD lifecycle story on the real cluster: chart version N
// installed, upgraded to N+1 whose CRD has a new field, which the API server then serves (a SidecarTemplate using
// it is stored with it); helm uninstall keeps the CRD and the templates (crds.keep). The release does not wait for
// the injector's pods: the story is the API server's.
func TestHelmUpgradesTheCRDOnTheCluster(t *testing.T) {
	start := time.Now()
	testenv.CRDUpgrade{
		Chart:             chartDir(),
		Helm:              func(t *testing.T, args ...string) { helm(t, args...) },
		Client:            k8s,
		Release:           release,
		Namespace:         injectorNS,
		InstallArgs:       []string{"--set", "image.repository=" + injectorRepo, "--set", "image.tag=" + injectorTag},
		TemplateNamespace: namespace(t, "crd-upgrade"),
	}.Run(t, ctxFor(t, 2*rolloutDeadline))
	logf(t, "CRD upgrade story (install N, upgrade to N+1, uninstall): %s", time.Since(start).Round(100*time.Millisecond))
}
