// Package samples_test checks the sample SidecarTemplates in this directory: every sample file is listed in
// kustomization.yaml, decodes strictly into the v1alpha1 types (so a renamed or removed API field breaks this
// test instead of silently dropping out of a sample) and compiles without error in the injection engine (so
// placeholders, parameters and cluster-wide-only settings are used as the product accepts them).
//
// The CRD's OpenAPI schema and CEL rules are enforced by a real API server; the integration suite has one.
package samples_test

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"testing"

	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"github.com/sidecar-dev/sidecar-injector/internal/api/v1alpha1"
	"github.com/sidecar-dev/sidecar-injector/internal/inject"
	"github.com/sidecar-dev/sidecar-injector/internal/workload"
)

// injectorNamespace is the namespace the samples assume the injector runs in: templates there are cluster-wide.
const injectorNamespace = "sidecar-injector"

// kustomization is the part of kustomization.yaml the samples use. Decoding it strictly makes a new field (a
// namespace: override would move the cluster-wide sample out of the injector's namespace) a deliberate change.
type kustomization struct {
	APIVersion string   `json:"apiVersion"`
	Kind       string   `json:"kind"`
	Resources  []string `json:"resources"`
}

func TestKustomizationListsEverySample(t *testing.T) {
	k := readKustomization(t)
	files, err := filepath.Glob("*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	files = slices.DeleteFunc(files, func(f string) bool { return f == "kustomization.yaml" })
	listed := slices.Sorted(slices.Values(k.Resources))
	if !slices.Equal(files, listed) {
		t.Errorf("kustomization.yaml resources %v, want exactly the sample files %v", listed, files)
	}
}

func TestSamplesAreValidSidecarTemplates(t *testing.T) {
	k := readKustomization(t)
	if len(k.Resources) == 0 {
		t.Fatal("kustomization.yaml lists no resources")
	}
	seen := map[string]string{} // namespace/name -> file
	for _, file := range k.Resources {
		t.Run(file, func(t *testing.T) {
			docs := readDocuments(t, file)
			if len(docs) == 0 {
				t.Fatalf("%s has no YAML document", file)
			}
			for i, doc := range docs {
				// The offline reader (as inject reads templates): strict inside the spec too, which
				// yaml.UnmarshalStrict is not past SidecarTemplateSpec's own UnmarshalJSON.
				read, err := workload.ReadTemplates(bytes.NewReader(doc), file, "")
				if err != nil || len(read) != 1 {
					t.Fatalf("%s document %d: %d templates, %v", file, i+1, len(read), err)
				}
				st := *read[0].Object
				if got, want := st.APIVersion, v1alpha1.GroupVersion.String(); got != want {
					t.Errorf("%s document %d: apiVersion %q, want %q", file, i+1, got, want)
				}
				if st.Kind != "SidecarTemplate" {
					t.Errorf("%s document %d: kind %q, want SidecarTemplate", file, i+1, st.Kind)
				}
				if st.Name == "" || st.Namespace == "" {
					t.Errorf("%s document %d: metadata.name and metadata.namespace must both be set (got %q/%q): "+
						"the namespace decides the template's scope", file, i+1, st.Namespace, st.Name)
					continue
				}
				key := st.Namespace + "/" + st.Name
				if prev, dup := seen[key]; dup {
					t.Errorf("%s: SidecarTemplate %s is also defined in %s", file, key, prev)
				}
				seen[key] = file
				if tmpl := inject.Compile(&st, injectorNamespace); tmpl.Err != nil {
					t.Errorf("%s: SidecarTemplate %s is invalid: %v", file, key, tmpl.Err)
				}
			}
		})
	}
}

func readKustomization(t *testing.T) kustomization {
	t.Helper()
	data, err := os.ReadFile("kustomization.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var k kustomization
	if err := yaml.UnmarshalStrict(data, &k); err != nil {
		t.Fatalf("kustomization.yaml: %v", err)
	}
	return k
}

// readDocuments splits a YAML file into its non-empty documents.
func readDocuments(t *testing.T, file string) [][]byte {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var docs [][]byte
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return docs
		}
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		// A document of only comments or whitespace decodes to nothing; it is not a sample.
		var probe map[string]any
		if err := yaml.Unmarshal(doc, &probe); err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		if len(probe) > 0 {
			docs = append(docs, doc)
		}
	}
}
