package chart

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/sidecar-dev/sidecar-injector/internal/testenv"
)

// upgradeProbeField is the field chart version N+1's CRD adds to SidecarTemplate's spec in this test.
const upgradeProbeField = "upgradeProbe"

// TestHelmUpgradesTheCRDAndUninstallKeepsIt runs the real helm against a kube-apiserver of its own (it installs
// a webhook configuration and a changed CRD, which the other tests must not see): install chart version N,
// upgrade to N+1 whose CRD has one more field, which the API server then serves; uninstall removes the release
// but keeps the CRD and the SidecarTemplates (crds.keep).
func TestHelmUpgradesTheCRDAndUninstallKeepsIt(t *testing.T) {
	c, kubeconfig := ownAPIServer(t)
	ctx := ctxFor(t, 3*time.Minute)
	const release, ns = "lifecycle", "lifecycle"
	helmDo := func(args ...string) {
		t.Helper()
		args = append(args, "--namespace", ns, "--kubeconfig", kubeconfig)
		if out, stderr, err := helm(t, args...); err != nil {
			t.Fatalf("helm %s: %v\n%s%s", strings.Join(args, " "), err, out, stderr)
		}
	}

	chartN := copyChart(t, "1.0.0", nil)
	chartN1 := copyChart(t, "1.1.0", addSpecField(upgradeProbeField))

	helmDo("install", release, chartN, "--create-namespace")
	crdName := "sidecartemplates.sidecar.dev"
	waitCRD(t, ctx, c, crdName, false)
	ensureNamespace(t, ctx, c, "team-a", nil)
	tpl := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "sidecar.dev/v1alpha1", "kind": "SidecarTemplate",
		"metadata": map[string]any{"name": "survivor", "namespace": "team-a"},
		"spec": map[string]any{
			"containers":      []any{map[string]any{"name": "agent", "image": "agent:1"}},
			upgradeProbeField: "set in version N",
		},
	}}
	if err := c.Create(ctx, tpl); err != nil {
		t.Fatalf("create a SidecarTemplate under chart version N: %v", err)
	}
	if got := probeField(t, ctx, c); got != "" {
		t.Fatalf("version N's CRD already serves spec.%s (%q): the test would prove nothing", upgradeProbeField, got)
	}

	helmDo("upgrade", release, chartN1)
	waitCRD(t, ctx, c, crdName, true)
	testenv.Eventually(t, 30*time.Second, "spec."+upgradeProbeField+" served after the upgrade", func() error {
		var cur unstructured.Unstructured
		cur.SetGroupVersionKind(tpl.GroupVersionKind())
		if err := c.Get(ctx, client.ObjectKeyFromObject(tpl), &cur); err != nil {
			return err
		}
		_ = unstructured.SetNestedField(cur.Object, "set in version N+1", "spec", upgradeProbeField)
		if err := c.Update(ctx, &cur); err != nil {
			return err
		}
		if got := probeField(t, ctx, c); got != "set in version N+1" {
			return fmt.Errorf("spec.%s = %q after the update", upgradeProbeField, got)
		}
		return nil
	})

	helmDo("uninstall", release, "--wait")
	var dep unstructured.Unstructured
	dep.SetAPIVersion("apps/v1")
	dep.SetKind("Deployment")
	if err := c.Get(ctx, types.NamespacedName{Namespace: ns, Name: release + "-sidecar-injector"}, &dep); !apierrors.IsNotFound(err) {
		t.Errorf("the release's Deployment after uninstall: %v, want NotFound", err)
	}
	var crd apiextensionsv1.CustomResourceDefinition
	if err := c.Get(ctx, types.NamespacedName{Name: crdName}, &crd); err != nil || crd.DeletionTimestamp != nil {
		t.Fatalf("the CRD after uninstall: %v (deleting: %v); want it kept", err, crd.DeletionTimestamp)
	}
	if got := probeField(t, ctx, c); got != "set in version N+1" {
		t.Errorf("the SidecarTemplate after uninstall: spec.%s = %q; want it kept as it was", upgradeProbeField, got)
	}
}

// probeField reads spec.upgradeProbe of team-a/survivor ("" when absent).
func probeField(t *testing.T, ctx context.Context, c client.Client) string {
	t.Helper()
	var u unstructured.Unstructured
	u.SetAPIVersion("sidecar.dev/v1alpha1")
	u.SetKind("SidecarTemplate")
	if err := c.Get(ctx, types.NamespacedName{Namespace: "team-a", Name: "survivor"}, &u); err != nil {
		t.Fatalf("get the SidecarTemplate: %v", err)
	}
	v, _, _ := unstructured.NestedString(u.Object, "spec", upgradeProbeField)
	return v
}

// waitCRD waits until the CRD is established and, when withProbe, its schema has the probe field.
func waitCRD(t *testing.T, ctx context.Context, c client.Client, name string, withProbe bool) {
	t.Helper()
	testenv.Eventually(t, 30*time.Second, "CRD "+name+" established", func() error {
		var crd apiextensionsv1.CustomResourceDefinition
		if err := c.Get(ctx, types.NamespacedName{Name: name}, &crd); err != nil {
			return err
		}
		if _, has := crd.Spec.Versions[0].Schema.OpenAPIV3Schema.Properties["spec"].Properties[upgradeProbeField]; has != withProbe {
			return fmt.Errorf("schema has spec.%s: %v", upgradeProbeField, has)
		}
		for _, cond := range crd.Status.Conditions {
			if cond.Type == apiextensionsv1.Established && cond.Status == apiextensionsv1.ConditionTrue {
				return nil
			}
		}
		return fmt.Errorf("not established: %+v", crd.Status.Conditions)
	})
}

// copyChart copies the chart into a temporary directory with Chart.yaml's version set to version, passing each
// CRD file through editCRD when it is not nil.
func copyChart(t *testing.T, version string, editCRD func(t *testing.T, crd []byte) []byte) string {
	t.Helper()
	src, dst := chartDir(t), filepath.Join(t.TempDir(), "sidecar-injector")
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

// addSpecField returns a CRD edit that adds a string field to the spec of every version.
func addSpecField(field string) func(t *testing.T, crd []byte) []byte {
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
