package workload

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	jsonpatch "github.com/evanphx/json-patch/v5"
)

// kindInfo says where an apiVersion/kind keeps its pod.
type kindInfo struct {
	apiVersion string
	path       []string // path of the pod template in the object; nil for a Pod
}

// kinds are the objects whose pods can be injected.
var kinds = map[string]kindInfo{
	"Pod":                   {"v1", nil},
	"ReplicationController": {"v1", []string{"spec", "template"}},
	"Deployment":            {"apps/v1", []string{"spec", "template"}},
	"StatefulSet":           {"apps/v1", []string{"spec", "template"}},
	"DaemonSet":             {"apps/v1", []string{"spec", "template"}},
	"ReplicaSet":            {"apps/v1", []string{"spec", "template"}},
	"Job":                   {"batch/v1", []string{"spec", "template"}},
	"CronJob":               {"batch/v1", []string{"spec", "jobTemplate", "spec", "template"}},
}

// Kinds returns the kinds whose pods can be injected, List aside, sorted.
func Kinds() []string { return slices.Sorted(maps.Keys(kinds)) }

// Pod is a pod found in an object: the object itself when it is a Pod, else the pod template of a workload.
// JSON is the pod the injection engine sees; Apply writes the engine's patch back into the object.
type Pod struct {
	// Kind and Name identify the object that carries the pod (Name may be empty, see Describe).
	Kind string
	Name string
	// GenerateName is the object's metadata.generateName, for objects without a name.
	GenerateName string
	// Namespace is where the pod is created: the object's metadata.namespace, else the default namespace.
	Namespace string
	// Items is the position of the object in the List(s) it came from, 1-based, outermost first; empty for
	// an object that is the document itself.
	Items []int

	holder   map[string]any // the Pod object, or the workload's pod template
	template bool           // holder is a pod template: only metadata and spec are carried over
	podJSON  []byte
}

// Describe names the object the pod lives in, for messages: `Deployment "web"`, `Pod generateName "web-"`,
// or just the kind.
func (p *Pod) Describe() string { return describe(p.Kind, p.Name, p.GenerateName) }

// Where is Describe prefixed with the object's position in its List(s), e.g. `item 2 (Deployment "web")`;
// it is Describe alone for an object that is the document itself.
func (p *Pod) Where() string {
	if len(p.Items) == 0 {
		return p.Describe()
	}
	parts := make([]string, len(p.Items))
	for i, n := range p.Items {
		parts[i] = strconv.Itoa(n)
	}
	return fmt.Sprintf("item %s (%s)", strings.Join(parts, "."), p.Describe())
}

func describe(kind, name, generateName string) string {
	if kind == "" {
		kind = "object"
	}
	switch {
	case name != "":
		return fmt.Sprintf("%s %q", kind, name)
	case generateName != "":
		return fmt.Sprintf("%s generateName %q", kind, generateName)
	default:
		return kind
	}
}

// Describe names an object for messages, like Pod.Describe: `Deployment "web"`, `List`.
func Describe(obj map[string]any) string {
	kind, _ := obj["kind"].(string)
	meta, _ := obj["metadata"].(map[string]any)
	name, _ := meta["name"].(string)
	gen, _ := meta["generateName"].(string)
	return describe(kind, name, gen)
}

// JSON is the pod as the injection engine sees it: apiVersion v1, kind Pod, the metadata (with
// metadata.namespace set to Namespace) and the spec of the pod or the pod template. The engine's patch is
// computed against these exact bytes.
func (p *Pod) JSON() []byte { return p.podJSON }

// Pods finds the pods in an object decoded by Decode: the object itself for a Pod, the pod template of a
// Deployment, StatefulSet, DaemonSet, ReplicaSet, ReplicationController or Job, the job's pod template of a
// CronJob, and the pods of every item of a List (v1), recursively. defaultNamespace is the namespace of objects
// without metadata.namespace. An object of a kind that has no pod (a Service, a ConfigMap) has no pods and is
// passed through unchanged, so that `helm template ... | sidecar-injector inject -f -` works on a whole chart.
// A supported kind at another apiVersion, or whose pod is not where it should be, is an error naming it; for a
// List, the error names the item.
func Pods(obj map[string]any, defaultNamespace string) ([]*Pod, error) {
	return pods(obj, defaultNamespace, nil)
}

func pods(obj map[string]any, defaultNamespace string, items []int) ([]*Pod, error) {
	apiVersion, _ := obj["apiVersion"].(string)
	kind, _ := obj["kind"].(string)
	if kind == "" {
		return nil, fmt.Errorf("the object has no kind")
	}
	if kind == "List" {
		if apiVersion != "v1" {
			return nil, fmt.Errorf("apiVersion %q of List is not supported; use v1", apiVersion)
		}
		list, ok := obj["items"].([]any)
		if !ok && obj["items"] != nil {
			return nil, fmt.Errorf("items is a %s, not a list", jsonType(obj["items"]))
		}
		var out []*Pod
		for i, it := range list {
			at := append(slices.Clone(items), i+1)
			item, ok := it.(map[string]any)
			if !ok {
				return nil, fmt.Errorf("item %s is a %s, not an object", itemPath(at), jsonType(it))
			}
			ps, err := pods(item, defaultNamespace, at)
			if err != nil {
				if item["kind"] == "List" {
					return nil, err // already names the item
				}
				return nil, fmt.Errorf("item %s (%s): %w", itemPath(at), Describe(item), err)
			}
			out = append(out, ps...)
		}
		return out, nil
	}
	info, ok := kinds[kind]
	if !ok {
		return nil, nil
	}
	if apiVersion != info.apiVersion {
		return nil, fmt.Errorf("apiVersion %q of %s is not supported; use %s", apiVersion, kind, info.apiVersion)
	}
	meta, err := objectAt(obj, "metadata")
	if err != nil {
		return nil, err
	}
	p := &Pod{Kind: kind, Items: items}
	p.Name, _ = meta["name"].(string)
	p.GenerateName, _ = meta["generateName"].(string)
	p.Namespace, _ = meta["namespace"].(string)
	if p.Namespace == "" {
		p.Namespace = defaultNamespace
	}

	p.holder = obj
	if info.path != nil {
		p.template = true
		holder := obj
		for i, key := range info.path {
			next, err := objectAt(holder, key)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", strings.Join(info.path[:i], "."), err)
			}
			if next == nil {
				return nil, fmt.Errorf("%s has no %s", kind, strings.Join(info.path[:i+1], "."))
			}
			holder = next
		}
		p.holder = holder
		if _, err := objectAt(holder, "metadata"); err != nil {
			return nil, fmt.Errorf("%s.%w", strings.Join(info.path, "."), err)
		}
	}

	// The pod the engine sees. For a Pod it is the object itself; for a template, a Pod made of the
	// template's metadata and spec. metadata.namespace is set as the API server sets it before admission.
	view := map[string]any{"apiVersion": "v1", "kind": "Pod"}
	if p.template {
		if spec, ok := p.holder["spec"]; ok {
			view["spec"] = spec
		}
	} else {
		maps.Copy(view, p.holder)
	}
	podMeta, _ := p.holder["metadata"].(map[string]any)
	podMeta = maps.Clone(podMeta)
	if podMeta == nil {
		podMeta = map[string]any{}
	}
	podMeta["namespace"] = p.Namespace
	view["metadata"] = podMeta
	if p.podJSON, err = json.Marshal(view); err != nil {
		return nil, fmt.Errorf("cannot encode the pod: %w", err)
	}
	return []*Pod{p}, nil
}

func itemPath(items []int) string {
	parts := make([]string, len(items))
	for i, n := range items {
		parts[i] = strconv.Itoa(n)
	}
	return strings.Join(parts, ".")
}

// objectAt returns obj[key] as an object: nil when absent or null, an error when it is something else.
func objectAt(obj map[string]any, key string) (map[string]any, error) {
	v, ok := obj[key]
	if !ok || v == nil {
		return nil, nil
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%s is a %s, not an object", key, jsonType(v))
	}
	return m, nil
}

// Apply applies an RFC 6902 patch (as JSON) against JSON() and writes the patched pod back into the object
// the pod came from: the whole Pod, or the metadata and spec of the workload's pod template. The namespace
// that JSON() set for the engine is not written back: the object keeps the metadata.namespace it had, or
// none. An empty patch (nil, "[]" or "null") changes nothing.
func (p *Pod) Apply(patch []byte) error {
	patch = bytes.TrimSpace(patch)
	if len(patch) == 0 || bytes.Equal(patch, []byte("null")) || bytes.Equal(patch, []byte("[]")) {
		return nil
	}
	decoded, err := jsonpatch.DecodePatch(patch)
	if err != nil {
		return fmt.Errorf("cannot decode the patch: %w", err)
	}
	patched, err := decoded.Apply(p.podJSON)
	if err != nil {
		return fmt.Errorf("cannot apply the patch to the pod: %w", err)
	}
	v, err := decodeJSON(patched)
	if err != nil {
		return fmt.Errorf("cannot decode the patched pod: %w", err)
	}
	pod, ok := v.(map[string]any)
	if !ok {
		return fmt.Errorf("the patched pod is a %s, not an object", jsonType(v))
	}
	if pod["apiVersion"] != "v1" || pod["kind"] != "Pod" {
		return fmt.Errorf("the patch changes the pod's apiVersion or kind")
	}

	meta, ok := pod["metadata"].(map[string]any)
	if !ok {
		return fmt.Errorf("the patch removes the pod's metadata")
	}
	// Restore metadata.namespace as the object had it.
	origMeta, _ := p.holder["metadata"].(map[string]any)
	if ns, had := origMeta["namespace"]; had {
		meta["namespace"] = ns
	} else {
		delete(meta, "namespace")
	}

	if !p.template {
		delete(pod, "metadata")
		for k := range p.holder {
			if _, ok := pod[k]; !ok && k != "metadata" {
				return fmt.Errorf("the patch removes the pod's %s", k)
			}
		}
		maps.Copy(p.holder, pod)
		if len(meta) > 0 || origMeta != nil {
			p.holder["metadata"] = meta
		}
		p.podJSON = patched // a second patch applies to the pod as this one left it
		return nil
	}
	for k := range pod {
		switch k {
		case "apiVersion", "kind", "metadata", "spec":
		default:
			return fmt.Errorf("the patch adds %s to the pod, which a pod template cannot carry", k)
		}
	}
	spec, hasSpec := pod["spec"]
	if _, had := p.holder["spec"]; had && !hasSpec {
		return fmt.Errorf("the patch removes the pod's spec")
	}
	if len(meta) > 0 || origMeta != nil {
		p.holder["metadata"] = meta
	}
	if hasSpec {
		p.holder["spec"] = spec
	}
	p.podJSON = patched
	return nil
}
