// Package offline renders workloads with `sidecar-injector inject`, as a GitOps pipeline does, for the suites
// that need a pod or workload injected offline before the API server sees it.
package offline

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/sidecar-dev/sidecar-injector/internal/api/v1alpha1"
	"github.com/sidecar-dev/sidecar-injector/internal/cli"
)

// Render runs `sidecar-injector inject` on obj (a pod or workload with its apiVersion and kind set) with the one
// template tpl, in namespace, and decodes what it prints into out. It fails t when inject fails or injects
// nothing (the record annotation is missing from what it prints).
func Render(t testing.TB, tpl *v1alpha1.SidecarTemplate, obj any, namespace, injectorNamespace string, out any) {
	t.Helper()
	dir := t.TempDir()
	write := func(file string, v any) string {
		b, err := yaml.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, file)
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	// The template as a user would have it in a file: typed, without what the API server keeps for itself.
	clean := tpl.DeepCopy()
	clean.APIVersion, clean.Kind = v1alpha1.GroupVersion.String(), "SidecarTemplate"
	clean.ManagedFields, clean.Status = nil, v1alpha1.SidecarTemplateStatus{}
	var stdout, stderr bytes.Buffer
	root := cli.NewRootCommand()
	root.SetArgs([]string{"inject", "-f", write("workload.yaml", obj), "--templates", write("templates.yaml", clean),
		"--namespace", namespace, "--injector-namespace", injectorNamespace})
	root.SetOut(&stdout)
	root.SetErr(&stderr)
	if err := root.Execute(); err != nil {
		t.Fatalf("sidecar-injector inject: %v\n%s", err, stderr.String())
	}
	if !bytes.Contains(stdout.Bytes(), []byte(v1alpha1.AnnotationStatus)) {
		t.Fatalf("inject did not render the template %q:\n%s", tpl.Name, stdout.String())
	}
	if err := yaml.UnmarshalStrict(stdout.Bytes(), out); err != nil {
		t.Fatalf("inject wrote %q: %v", stdout.String(), err)
	}
}
