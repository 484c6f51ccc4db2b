package v1alpha1

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"

	sigsjson "sigs.k8s.io/json"
)

// Typed placeholders: a parameter's {{ params.NAME }} standing alone where the API types hold a quantity (a
// sidecar's resources.requests and resources.limits) or an integer (its ports' containerPort and hostPort).
// The CRD's schema accepts exactly one placeholder there (hack/crdplaceholders relaxes the generated schema for
// these fields only); corev1.Container cannot hold one, so the spec keeps them aside in TypedPlaceholders, by
// path, and puts them back when it is encoded.

// TypedPlaceholderPattern is what the CRD accepts in those fields besides a valid value: exactly one parameter
// placeholder, spaces allowed inside the braces.
const TypedPlaceholderPattern = `^\{\{\s*params\.[a-z]([-a-z0-9]*[a-z0-9])?\s*\}\}$`

// QuantityFields and IntegerFields name the container fields whose value may be a typed placeholder, as a
// path within a container: resources.<requests|limits>.<resource> and ports[<i>].<field>.
var (
	QuantityFields = []string{"requests", "limits"}
	IntegerFields  = []string{"containerPort", "hostPort"}
)

// containerLists are the spec's lists of containers, whose fields may hold typed placeholders.
var containerLists = []string{"containers", "initContainers"}

// UnmarshalJSON decodes a spec as the API server stores it: typed placeholders move to TypedPlaceholders, the
// rest decodes as the plain struct would (case-sensitive, integers kept, unknown fields dropped, as
// controller-runtime's decoder does). Strict readers decode with PlainSpec, after SplitTypedPlaceholders.
func (s *SidecarTemplateSpec) UnmarshalJSON(data []byte) error {
	rest, typed, err := SplitTypedPlaceholders(data)
	if err != nil {
		return err
	}
	if err := sigsjson.UnmarshalCaseSensitivePreserveInts(rest, (*PlainSpec)(s)); err != nil {
		return err
	}
	s.TypedPlaceholders = typed
	return nil
}

// MarshalJSON encodes the spec as the API server stores it, typed placeholders in their place.
func (s SidecarTemplateSpec) MarshalJSON() ([]byte, error) {
	js, err := json.Marshal(PlainSpec(s))
	if err != nil || len(s.TypedPlaceholders) == 0 {
		return js, err
	}
	return JoinTypedPlaceholders(js, s.TypedPlaceholders)
}

// PlainSpec is SidecarTemplateSpec without its own JSON methods: the fields as the Go types hold them.
// +kubebuilder:object:generate=false
type PlainSpec SidecarTemplateSpec

// SplitTypedPlaceholders takes from an encoded spec every string that contains "{{" in a field that
// QuantityFields or IntegerFields names, and returns the spec without them and the strings by path
// ("containers[0].resources.limits.cpu"). A spec without "{{" is returned as it is.
func SplitTypedPlaceholders(spec []byte) ([]byte, map[string]string, error) {
	if !bytes.Contains(spec, []byte("{{")) {
		return spec, nil, nil
	}
	obj, err := decodeObject(spec)
	if err != nil || obj == nil {
		return spec, nil, nil // not an object: the caller's decoder reports what is wrong, in its words
	}
	typed := map[string]string{}
	for _, list := range containerLists {
		items, _ := obj[list].([]any)
		for i, it := range items {
			c, _ := it.(map[string]any)
			for path, v := range containerFields(c) {
				if s, ok := v.get().(string); ok && strings.Contains(s, "{{") {
					typed[fmt.Sprintf("%s[%d].%s", list, i, path)] = s
					v.del()
				}
			}
		}
	}
	if len(typed) == 0 {
		return spec, nil, nil
	}
	out, err := json.Marshal(obj)
	return out, typed, err
}

// JoinTypedPlaceholders puts typed placeholders (by path, as SplitTypedPlaceholders returns them) into an
// encoded spec.
func JoinTypedPlaceholders(spec []byte, typed map[string]string) ([]byte, error) {
	obj, err := decodeObject(spec)
	if err != nil {
		return nil, err
	}
	for _, list := range containerLists {
		items, _ := obj[list].([]any)
		for i, it := range items {
			c, ok := it.(map[string]any)
			if !ok {
				continue
			}
			if err := setContainerFields(c, ContainerPlaceholders(typed, list, i)); err != nil {
				return nil, fmt.Errorf("spec.%s[%d]: %w", list, i, err)
			}
		}
	}
	return json.Marshal(obj)
}

// ContainerPlaceholders returns the typed placeholders of container i of list ("containers" or
// "initContainers") by their path within the container ("resources.limits.cpu").
func ContainerPlaceholders(typed map[string]string, list string, i int) map[string]string {
	prefix := fmt.Sprintf("%s[%d].", list, i)
	var out map[string]string
	for _, path := range slices.Sorted(maps.Keys(typed)) {
		if rest, ok := strings.CutPrefix(path, prefix); ok {
			if out == nil {
				out = map[string]string{}
			}
			out[rest] = typed[path]
		}
	}
	return out
}

// SetContainerPlaceholders puts typed placeholders, by their path within the container, into one encoded
// container.
func SetContainerPlaceholders(container []byte, typed map[string]string) ([]byte, error) {
	if len(typed) == 0 {
		return container, nil
	}
	c, err := decodeObject(container)
	if err != nil {
		return nil, err
	}
	if err := setContainerFields(c, typed); err != nil {
		return nil, err
	}
	return json.Marshal(c)
}

// field is one value of a decoded container, to read or delete.
type field struct {
	get func() any
	del func()
}

// containerFields returns the fields of a decoded container that may hold typed placeholders, by path.
func containerFields(c map[string]any) map[string]field {
	out := map[string]field{}
	res, _ := c["resources"].(map[string]any)
	for _, kind := range QuantityFields {
		m, _ := res[kind].(map[string]any)
		for name := range m {
			out["resources."+kind+"."+name] = field{func() any { return m[name] }, func() { delete(m, name) }}
		}
	}
	ports, _ := c["ports"].([]any)
	for i, p := range ports {
		pm, _ := p.(map[string]any)
		for _, name := range IntegerFields {
			if _, ok := pm[name]; ok {
				out[fmt.Sprintf("ports[%d].%s", i, name)] = field{func() any { return pm[name] }, func() { delete(pm, name) }}
			}
		}
	}
	return out
}

// setContainerFields sets the fields named by path (as containerFields names them) in a decoded container.
func setContainerFields(c map[string]any, typed map[string]string) error {
	for _, path := range slices.Sorted(maps.Keys(typed)) {
		v := typed[path]
		if rest, ok := strings.CutPrefix(path, "resources."); ok {
			kind, name, _ := strings.Cut(rest, ".")
			if !slices.Contains(QuantityFields, kind) || name == "" {
				return fmt.Errorf("%s cannot hold a placeholder", path)
			}
			res := child(c, "resources")
			child(res, kind)[name] = v
			continue
		}
		var i int
		var name string
		if n, err := fmt.Sscanf(strings.Replace(path, "].", "] ", 1), "ports[%d] %s", &i, &name); n != 2 || err != nil || !slices.Contains(IntegerFields, name) {
			return fmt.Errorf("%s cannot hold a placeholder", path)
		}
		ports, _ := c["ports"].([]any)
		if i < 0 || i >= len(ports) {
			return fmt.Errorf("%s: the container has %d ports", path, len(ports))
		}
		pm, ok := ports[i].(map[string]any)
		if !ok {
			return fmt.Errorf("%s: ports[%d] is not an object", path, i)
		}
		pm[name] = v
	}
	return nil
}

// child returns m[key] as an object, creating it when absent.
func child(m map[string]any, key string) map[string]any {
	c, ok := m[key].(map[string]any)
	if !ok {
		c = map[string]any{}
		m[key] = c
	}
	return c
}

// decodeObject decodes a JSON object, numbers kept as written.
func decodeObject(js []byte) (map[string]any, error) {
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.UseNumber()
	var obj map[string]any
	if err := dec.Decode(&obj); err != nil {
		return nil, err
	}
	return obj, nil
}

// IsIntegerField reports whether a path, in the spec or in a container ("containers[0].ports[1].hostPort",
// "ports[1].hostPort"), names an integer field; the others that hold typed placeholders are quantities.
func IsIntegerField(path string) bool {
	i := strings.LastIndexByte(path, '.')
	return (strings.HasPrefix(path, "ports[") || strings.Contains(path, "].ports[")) && slices.Contains(IntegerFields, path[i+1:])
}
