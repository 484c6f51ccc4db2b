package inject

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/sidecar-dev/sidecar-injector/internal/api/v1alpha1"
)

// Template is a SidecarTemplate prepared for injection: selectors parsed, hash computed, what it adds encoded
// as JSON, its validity decided. Compile it once per template generation (the store does) and share it: it is
// read-only after Compile.
type Template struct {
	Namespace  string
	Name       string
	Generation int64
	// Hash is a hash of the spec, recorded in sidecar.dev/status to detect drift.
	Hash          string
	Order         int32
	FailurePolicy v1alpha1.FailurePolicy
	// ClusterWide is true when the template lives in the injector's namespace.
	ClusterWide bool
	// Err is non-nil when the template cannot be injected; its message says what to change.
	Err error

	// HasSelector is true when the template selects pods by label (spec.selector is set).
	HasSelector bool

	selector          labels.Selector // nil when HasSelector is false
	selectorsBroken   bool            // selector or namespaceSelector cannot be parsed
	namespaceSelector labels.Selector // nil means every namespace
	params            []v1alpha1.TemplateParameter
	placeholders      bool      // what the template adds has {{ pod.* }} or {{ params.* }}
	base              *instance // what the template adds, encoded once; per-pod values not yet substituted
	containerPlace    v1alpha1.ContainerPlacement
	initPlace         v1alpha1.InitContainerPlacement
	targets           []string
	names             Added // the fixed names of what the template adds, for checking a pod's record
}

// payload is the part of a spec that is added to pods, the unit of per-pod substitution.
type payload struct {
	Containers            []corev1.Container            `json:"containers,omitempty"`
	InitContainers        []corev1.Container            `json:"initContainers,omitempty"`
	Volumes               []corev1.Volume               `json:"volumes,omitempty"`
	VolumeMounts          []corev1.VolumeMount          `json:"volumeMounts,omitempty"`
	Env                   []corev1.EnvVar               `json:"env,omitempty"`
	EnvFrom               []corev1.EnvFromSource        `json:"envFrom,omitempty"`
	ImagePullSecrets      []corev1.LocalObjectReference `json:"imagePullSecrets,omitempty"`
	Annotations           map[string]string             `json:"annotations,omitempty"`
	Labels                map[string]string             `json:"labels,omitempty"`
	ShareProcessNamespace *bool                         `json:"shareProcessNamespace,omitempty"`
	HostAliases           []corev1.HostAlias            `json:"hostAliases,omitempty"`
	DNSConfig             *corev1.PodDNSConfig          `json:"dnsConfig,omitempty"`
	HostNetwork           *bool                         `json:"hostNetwork,omitempty"`
	HostPID               *bool                         `json:"hostPID,omitempty"`
	HostIPC               *bool                         `json:"hostIPC,omitempty"`
}

// Key returns "namespace/name".
func (t *Template) Key() string { return t.Namespace + "/" + t.Name }

// Compile prepares a SidecarTemplate for injection. It never fails: an invalid template is returned with Err
// set, so that pods requesting it get a clear answer under its failurePolicy.
func Compile(st *v1alpha1.SidecarTemplate, injectorNamespace string) *Template {
	spec := &st.Spec
	t := &Template{
		Namespace:      st.Namespace,
		Name:           st.Name,
		Generation:     st.Generation,
		Order:          spec.Order,
		FailurePolicy:  spec.FailurePolicy,
		ClusterWide:    injectorNamespace != "" && st.Namespace == injectorNamespace,
		HasSelector:    spec.Selector != nil,
		params:         spec.Parameters,
		containerPlace: spec.ContainerPlacement,
		initPlace:      spec.InitContainerPlacement,
		targets:        spec.TargetContainers,
	}
	if t.FailurePolicy == "" {
		t.FailurePolicy = v1alpha1.FailurePolicyFail
	}
	if t.containerPlace == "" {
		t.containerPlace = v1alpha1.ContainerPlacementLast
	}
	if t.initPlace == "" {
		t.initPlace = v1alpha1.InitContainerPlacementAuto
	}
	specJSON, err := json.Marshal(spec)
	if err != nil { // cannot happen for API types; kept so that a future field cannot panic here
		t.Err = fmt.Errorf("spec cannot be encoded: %w", err)
		return t
	}
	sum := sha256.Sum256(specJSON)
	t.Hash = hex.EncodeToString(sum[:8])

	var errs []string
	addErr := func(format string, args ...any) { errs = append(errs, fmt.Sprintf(format, args...)) }

	if spec.Selector != nil {
		if t.selector, err = metav1.LabelSelectorAsSelector(spec.Selector); err != nil {
			addErr("spec.selector is not a valid label selector: %v", err)
			t.selectorsBroken = true
		}
	}
	if spec.NamespaceSelector != nil {
		if t.namespaceSelector, err = metav1.LabelSelectorAsSelector(spec.NamespaceSelector); err != nil {
			addErr("spec.namespaceSelector is not a valid label selector: %v", err)
			t.selectorsBroken = true
		}
	}
	if !t.ClusterWide {
		for field, v := range map[string]*bool{"hostNetwork": spec.HostNetwork, "hostPID": spec.HostPID, "hostIPC": spec.HostIPC} {
			if v != nil {
				addErr("spec.%s can only be set by a cluster-wide template (one in the injector's namespace %q); remove it or move the template there", field, injectorNamespace)
			}
		}
	}
	switch t.FailurePolicy {
	case v1alpha1.FailurePolicyFail, v1alpha1.FailurePolicyIgnore:
	default:
		addErr("spec.failurePolicy must be Fail or Ignore, not %q", t.FailurePolicy)
	}
	switch t.containerPlace {
	case v1alpha1.ContainerPlacementFirst, v1alpha1.ContainerPlacementLast:
	default:
		addErr("spec.containerPlacement must be First or Last, not %q", t.containerPlace)
	}
	switch t.initPlace {
	case v1alpha1.InitContainerPlacementAuto, v1alpha1.InitContainerPlacementFirst, v1alpha1.InitContainerPlacementLast:
	default:
		addErr("spec.initContainerPlacement must be Auto, First or Last, not %q", t.initPlace)
	}
	// The API server's schema checks most of this already; templates read from files by the offline commands
	// are not validated by anyone else, so the engine checks again.
	seen := map[string]string{}
	checkNames := func(field string, names []string) {
		for i, n := range names {
			if msgs := validation.IsDNS1123Label(n); len(msgs) > 0 {
				addErr("spec.%s[%d].name %q is not a valid name: %s", field, i, n, strings.Join(msgs, "; "))
			}
			if prev, dup := seen[field+"/"+n]; dup {
				addErr("spec.%s[%d].name %q is used twice (also in %s)", field, i, n, prev)
			}
			seen[field+"/"+n] = fmt.Sprintf("spec.%s[%d]", field, i)
		}
	}
	var cNames, iNames, vNames []string
	for i, c := range spec.Containers {
		cNames = append(cNames, c.Name)
		if c.Image == "" {
			addErr("spec.containers[%d] (%q) has no image", i, c.Name)
		}
		if c.RestartPolicy != nil {
			addErr("spec.containers[%d] (%q) sets restartPolicy, which only init containers may set", i, c.Name)
		}
	}
	for i, c := range spec.InitContainers {
		iNames = append(iNames, c.Name)
		if c.Image == "" {
			addErr("spec.initContainers[%d] (%q) has no image", i, c.Name)
		}
		if c.RestartPolicy != nil && *c.RestartPolicy != corev1.ContainerRestartPolicyAlways {
			addErr("spec.initContainers[%d] (%q) has restartPolicy %q; only Always (a native sidecar) is allowed", i, c.Name, *c.RestartPolicy)
		}
		if slices.Contains(cNames, c.Name) {
			addErr("spec.initContainers[%d].name %q is also a container name; names must be unique across containers and initContainers", i, c.Name)
		}
	}
	for _, v := range spec.Volumes {
		vNames = append(vNames, v.Name)
	}
	t.names = Added{Containers: cNames, InitContainers: iNames, Volumes: vNames}
	checkNames("containers", cNames)
	checkNames("initContainers", iNames)
	checkNames("volumes", vNames)
	for _, k := range sortedKeys(spec.Annotations) {
		if strings.HasPrefix(k, v1alpha1.ReservedPrefix) {
			addErr("spec.annotations[%q]: keys under %s are reserved for the injector", k, v1alpha1.ReservedPrefix)
		}
	}
	for _, k := range sortedKeys(spec.Labels) {
		if strings.HasPrefix(k, v1alpha1.ReservedPrefix) {
			addErr("spec.labels[%q]: keys under %s are reserved for the injector", k, v1alpha1.ReservedPrefix)
		}
	}
	declared := map[string]bool{}
	for i, p := range spec.Parameters {
		if declared[p.Name] {
			addErr("spec.parameters[%d]: parameter %q is declared twice", i, p.Name)
		}
		declared[p.Name] = true
	}

	pl := payload{
		Containers: spec.Containers, InitContainers: spec.InitContainers, Volumes: spec.Volumes,
		VolumeMounts: spec.VolumeMounts, Env: spec.Env, EnvFrom: spec.EnvFrom, ImagePullSecrets: spec.ImagePullSecrets,
		Annotations: spec.Annotations, Labels: spec.Labels, ShareProcessNamespace: spec.ShareProcessNamespace,
		HostAliases: spec.HostAliases, DNSConfig: spec.DNSConfig, HostNetwork: spec.HostNetwork, HostPID: spec.HostPID,
		HostIPC: spec.HostIPC,
	}
	payloadJSON, err := json.Marshal(&pl)
	if err != nil {
		addErr("spec cannot be encoded: %v", err)
	}
	refs, refErrs := findPlaceholders(payloadJSON, declared)
	errs = append(errs, refErrs...)
	t.placeholders = refs > 0

	if len(errs) > 0 {
		t.Err = fmt.Errorf("%s", strings.Join(errs, "; "))
		return t
	}
	t.base = newInstance(&pl)
	return t
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
