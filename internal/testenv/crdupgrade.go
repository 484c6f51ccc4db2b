package testenv

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"
)

// UpgradeProbeField is the field chart version N+1's CRD adds to SidecarTemplate's spec in the CRD upgrade story.
const UpgradeProbeField = "upgradeProbe"

// templatesCRD is the CRD the chart installs.
const templatesCRD = "sidecartemplates.sidecar.dev"

// CRDUpgrade is the chart's CRD lifecycle story, told with the real helm against an API server of envtest
// (test/chart) and against the real cluster (test/e2e): install chart version N, whose CRD lacks
// UpgradeProbeField (a template setting it is stored without it); upgrade to N+1, whose CRD has it (the existing
// template and a new one are stored with it); uninstall removes the release but keeps the CRD and the templates
// (crds.keep).
type CRDUpgrade struct {
	Chart       string                             // the chart's directory, copied as versions N and N+1
	Helm        func(t *testing.T, args ...string) // runs helm against the API server, failing the test on error
	Client      client.Client                      // an admin client of the same API server
	Release     string                             // the release, installed into Namespace
	Namespace   string
	InstallArgs []string // for install and upgrade (e.g. --set image.tag=...)
	// TemplateNamespace is an existing namespace for the SidecarTemplates, which outlive the release.
	TemplateNamespace string
}

// Run tells the story and logs how long each helm step took.
func (s CRDUpgrade) Run(t *testing.T, ctx context.Context) {
	t.Helper()
	chartN := CopyChart(t, s.Chart, "1.0.0", nil)
	chartN1 := CopyChart(t, s.Chart, "1.1.0", AddSpecField(UpgradeProbeField))
	helm := func(step string, args ...string) {
		t.Helper()
		start := time.Now()
		s.Helm(t, append(args, "--namespace", s.Namespace)...)
		t.Logf("helm %s: %s", step, time.Since(start).Round(100*time.Millisecond))
	}

	helm("install (chart version N)", append([]string{"install", s.Release, chartN, "--create-namespace"}, s.InstallArgs...)...)
	s.waitCRD(t, ctx, false)
	survivor := s.template("survivor", "set in version N")
	if err := s.Client.Create(ctx, survivor); err != nil {
		t.Fatalf("create a SidecarTemplate under chart version N: %v", err)
	}
	if got := s.probe(t, ctx, "survivor"); got != "" {
		t.Fatalf("version N's CRD already serves spec.%s (%q): the story would prove nothing", UpgradeProbeField, got)
	}

	helm("upgrade (to N+1, CRD with a new field)", append([]string{"upgrade", s.Release, chartN1}, s.InstallArgs...)...)
	s.waitCRD(t, ctx, true)
	Eventually(t, 30*time.Second, "spec."+UpgradeProbeField+" served after the upgrade", func() error {
		var cur unstructured.Unstructured
		cur.SetGroupVersionKind(survivor.GroupVersionKind())
		if err := s.Client.Get(ctx, client.ObjectKeyFromObject(survivor), &cur); err != nil {
			return err
		}
		_ = unstructured.SetNestedField(cur.Object, "set in version N+1", "spec", UpgradeProbeField)
		if err := s.Client.Update(ctx, &cur); err != nil {
			return err
		}
		if got := s.probe(t, ctx, "survivor"); got != "set in version N+1" {
			return fmt.Errorf("spec.%s = %q after the update", UpgradeProbeField, got)
		}
		return nil
	})
	if err := s.Client.Create(ctx, s.template("newcomer", "created under N+1")); err != nil {
		t.Fatalf("create a SidecarTemplate with spec.%s under chart version N+1: %v", UpgradeProbeField, err)
	}
	if got := s.probe(t, ctx, "newcomer"); got != "created under N+1" {
		t.Errorf("a SidecarTemplate created under N+1 is stored with spec.%s = %q, want it as created", UpgradeProbeField, got)
	}

	helm("uninstall", "uninstall", s.Release, "--wait")
	var deps appsv1.DeploymentList
	if err := s.Client.List(ctx, &deps, client.InNamespace(s.Namespace), client.MatchingLabels{"app.kubernetes.io/instance": s.Release}); err != nil || len(deps.Items) != 0 {
		t.Errorf("the release's Deployments after uninstall: %d (%v), want none", len(deps.Items), err)
	}
	var crd apiextensionsv1.CustomResourceDefinition
	if err := s.Client.Get(ctx, types.NamespacedName{Name: templatesCRD}, &crd); err != nil || crd.DeletionTimestamp != nil {
		t.Fatalf("the CRD after uninstall: %v (deleting: %v); want it kept", err, crd.DeletionTimestamp)
	}
	for name, want := range map[string]string{"survivor": "set in version N+1", "newcomer": "created under N+1"} {
		if got := s.probe(t, ctx, name); got != want {
			t.Errorf("SidecarTemplate %s after uninstall: spec.%s = %q; want it kept as it was (%q)", name, UpgradeProbeField, got, want)
		}
	}
}

// template is a SidecarTemplate in TemplateNamespace that sets UpgradeProbeField to value.
func (s CRDUpgrade) template(name, value string) *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "sidecar.dev/v1alpha1", "kind": "SidecarTemplate",
		"metadata": map[string]any{"name": name, "namespace": s.TemplateNamespace},
		"spec": map[string]any{
			"containers":      []any{map[string]any{"name": "agent", "image": "agent:1"}},
			UpgradeProbeField: value,
		},
	}}
}

// probe reads spec.upgradeProbe of the SidecarTemplate name ("" when absent).
func (s CRDUpgrade) probe(t *testing.T, ctx context.Context, name string) string {
	t.Helper()
	var u unstructured.Unstructured
	u.SetAPIVersion("sidecar.dev/v1alpha1")
	u.SetKind("SidecarTemplate")
	if err := s.Client.Get(ctx, types.NamespacedName{Namespace: s.TemplateNamespace, Name: name}, &u); err != nil {
		t.Fatalf("get the SidecarTemplate %s: %v", name, err)
	}
	v, _, _ := unstructured.NestedString(u.Object, "spec", UpgradeProbeField)
	return v
}

// waitCRD waits until the CRD is established, its schema has the probe field exactly when withProbe, and the
// client knows the kind.
func (s CRDUpgrade) waitCRD(t *testing.T, ctx context.Context, withProbe bool) {
	t.Helper()
	Eventually(t, 30*time.Second, "CRD "+templatesCRD+" established", func() error {
		var crd apiextensionsv1.CustomResourceDefinition
		if err := s.Client.Get(ctx, types.NamespacedName{Name: templatesCRD}, &crd); err != nil {
			return err
		}
		if _, has := crd.Spec.Versions[0].Schema.OpenAPIV3Schema.Properties["spec"].Properties[UpgradeProbeField]; has != withProbe {
			return fmt.Errorf("schema has spec.%s: %v", UpgradeProbeField, has)
		}
		established := false
		for _, cond := range crd.Status.Conditions {
			established = established || cond.Type == apiextensionsv1.Established && cond.Status == apiextensionsv1.ConditionTrue
		}
		if !established {
			return fmt.Errorf("not established: %+v", crd.Status.Conditions)
		}
		// The API server's discovery publishes a new CRD a moment after it is established; the client maps the
		// kind through discovery.
		_, err := s.Client.IsObjectNamespaced(s.template("", ""))
		return err
	})
}

// CopyChart copies the chart in src into a temporary directory with Chart.yaml's version set to version,
// passing each CRD file (files/crds/) through editCRD when it is not nil.
func CopyChart(t *testing.T, src, version string, editCRD func(t *testing.T, crd []byte) []byte) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), filepath.Base(src))
	err := filepath.WalkDir(src, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		switch {
		case rel == "Chart.yaml":
			lines := strings.Split(string(data), "\n")
			for i, l := range lines {
				if strings.HasPrefix(l, "version:") {
					lines[i] = "version: " + version
				}
			}
			data = []byte(strings.Join(lines, "\n"))
		case editCRD != nil && strings.HasPrefix(rel, filepath.Join("files", "crds")+string(filepath.Separator)):
			data = editCRD(t, data)
		}
		return os.WriteFile(target, data, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}

// AddSpecField returns a CRD edit that adds a string field to the spec of every version.
func AddSpecField(field string) func(t *testing.T, crd []byte) []byte {
	return func(t *testing.T, data []byte) []byte {
		t.Helper()
		var crd apiextensionsv1.CustomResourceDefinition
		if err := yaml.UnmarshalStrict(data, &crd); err != nil {
			t.Fatal(err)
		}
		for i := range crd.Spec.Versions {
			spec := crd.Spec.Versions[i].Schema.OpenAPIV3Schema.Properties["spec"]
			spec.Properties[field] = apiextensionsv1.JSONSchemaProps{Type: "string", Description: "Added by chart version N+1 (test)."}
			crd.Spec.Versions[i].Schema.OpenAPIV3Schema.Properties["spec"] = spec
		}
		out, err := yaml.Marshal(&crd)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
}
