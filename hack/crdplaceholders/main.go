// Command crdplaceholders relaxes the generated SidecarTemplate CRD exactly where a template may use a typed
// parameter: a sidecar's resources.requests and resources.limits values (a quantity, or exactly one
// {{ params.NAME }}) and its ports' containerPort and hostPort (an integer, or exactly one {{ params.NAME }}).
// controller-gen cannot say this: the fields belong to corev1.Container, whose schema it generates whole and
// which markers cannot reach. `make manifests` runs this after controller-gen; `make verify` fails when the
// committed CRD is not its output. Everything else in the schema is left as generated.
//
// Usage: go run ./hack/crdplaceholders FILE (rewritten in place).
package main

import (
	"bytes"
	"fmt"
	"os"

	"sigs.k8s.io/yaml"

	"github.com/sidecar-dev/sidecar-injector/internal/api/v1alpha1"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: crdplaceholders CRD.yaml")
		os.Exit(2)
	}
	if err := run(os.Args[1]); err != nil {
		fmt.Fprintln(os.Stderr, "crdplaceholders:", err)
		os.Exit(1)
	}
}

func run(file string) error {
	data, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	var crd map[string]any
	if err := yaml.Unmarshal(bytes.TrimPrefix(data, []byte("---\n")), &crd); err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	versions, _ := at(crd, "spec", "versions").([]any)
	if len(versions) == 0 {
		return fmt.Errorf("%s: no spec.versions", file)
	}
	for _, v := range versions {
		spec, _ := at(v, "schema", "openAPIV3Schema", "properties", "spec", "properties").(map[string]any)
		for _, list := range []string{"containers", "initContainers"} {
			c, _ := at(spec, list, "items", "properties").(map[string]any)
			if c == nil {
				return fmt.Errorf("%s: no schema for spec.%s", file, list)
			}
			if err := relax(c, list); err != nil {
				return fmt.Errorf("%s: %w", file, err)
			}
		}
	}
	out, err := yaml.Marshal(crd)
	if err != nil {
		return err
	}
	return os.WriteFile(file, append([]byte("---\n"), out...), 0o644)
}

// relax changes the schema of one container list's items (their properties).
func relax(c map[string]any, list string) error {
	for _, kind := range v1alpha1.QuantityFields {
		q, _ := at(c, "resources", "properties", kind, "additionalProperties").(map[string]any)
		pattern, _ := q["pattern"].(string)
		if pattern == "" {
			return fmt.Errorf("spec.%s: resources.%s has no quantity pattern to extend", list, kind)
		}
		if pattern != v1alpha1.TypedPlaceholderPattern && !bytes.HasSuffix([]byte(pattern), []byte("|"+v1alpha1.TypedPlaceholderPattern)) {
			q["pattern"] = pattern + "|" + v1alpha1.TypedPlaceholderPattern
		}
	}
	port, _ := at(c, "ports", "items", "properties").(map[string]any)
	for _, name := range v1alpha1.IntegerFields {
		f, _ := port[name].(map[string]any)
		if f == nil {
			return fmt.Errorf("spec.%s: ports have no %s", list, name)
		}
		port[name] = map[string]any{
			"description":                f["description"],
			"anyOf":                      []any{map[string]any{"type": "integer"}, map[string]any{"type": "string"}},
			"pattern":                    v1alpha1.TypedPlaceholderPattern,
			"x-kubernetes-int-or-string": true,
		}
	}
	return nil
}

// at walks nested objects by key; nil when a key is missing.
func at(v any, keys ...string) any {
	for _, k := range keys {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}
