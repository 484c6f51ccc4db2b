package inject

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"
	"sync"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
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
	Hash string
	// Revision is the number of the template's revision this is (status.currentRevision for the current one);
	// 0 when no ControllerRevision numbers it (yet, or offline).
	Revision      int64
	Order         int32
	FailurePolicy v1alpha1.FailurePolicy
	// ClusterWide is true when the template lives in the injector's namespace.
	ClusterWide bool
	// Err is non-nil when the template cannot be injected; its message says what to change.
	Err error

	// HasSelector is true when the template selects pods by label (spec.selector is set).
	HasSelector bool
	// OverrideAllowed is true when a cluster-wide template lets a namespaced template of its name replace it in
	// that namespace (spec.namespaceOverride: Allow).
	OverrideAllowed bool
	// ServedByPolicy is true when a MutatingAdmissionPolicy, not the webhook, serves the template: the engine
	// never injects it, yet it still answers a request for its name and still counts for the override rule.
	// Compile leaves it false; the store sets it on its own copy from the template's ServedByPolicy condition
	// (WithServedByPolicy).
	ServedByPolicy bool

	selector          labels.Selector // nil when HasSelector is false
	selectorsBroken   bool            // selector or namespaceSelector cannot be parsed
	namespaceSelector labels.Selector // nil means every namespace
	params            []parameter
	placeholders      bool         // what the template adds has {{ pod.* }} or {{ params.* }}
	recordable        []string     // the per-pod expressions it uses whose values the pod's record keeps, sorted
	base              *instance    // what the template adds, encoded once; per-pod values not yet substituted
	renders           *renderCache // base rendered with per-pod values, the latest few; nil without placeholders
	job               *jobForm     // base for a pod that runs to completion (jobPolicy Native); nil: base serves it
	jobPolicy         v1alpha1.JobPolicy
	containerPlace    v1alpha1.ContainerPlacement
	initPlace         v1alpha1.InitContainerPlacement
	targets           []string
	names             Added // the fixed names of what the template adds, for checking a pod's record
	stalePods         v1alpha1.StalePodsPolicy
	canary            *canary     // nil: every pod gets this revision
	stable            *Template   // the revision pods outside the canary get; nil: none
	earlier           []*Template // earlier revisions (CompileRevisions), newest first
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
	DNSConfig             *v1alpha1.TemplateDNSConfig   `json:"dnsConfig,omitempty"`
	HostNetwork           *bool                         `json:"hostNetwork,omitempty"`
	HostPID               *bool                         `json:"hostPID,omitempty"`
	HostIPC               *bool                         `json:"hostIPC,omitempty"`
	// TypedPlaceholders are put into the encoded containers (newInstance); they are checked on their own
	// (checkTypedPlaceholders), so they stay out of the JSON that findPlaceholders reads.
	TypedPlaceholders map[string]string `json:"-"`
}

// payloadOf copies into a payload the spec fields it names (by Go field name). By reflection, so that a field
// declared in payload cannot be left out here; TestEverySpecFieldIsAddedOrSelects makes every spec field either
// a payload field or one that only decides which pods get the template and where it goes.
func payloadOf(spec *v1alpha1.SidecarTemplateSpec) *payload {
	var pl payload
	dst, src := reflect.ValueOf(&pl).Elem(), reflect.ValueOf(spec).Elem()
	for i := range dst.NumField() {
		dst.Field(i).Set(src.FieldByName(dst.Type().Field(i).Name))
	}
	return &pl
}

// Selector returns the template's pod selector; nil when it selects no pod by label (no spec.selector, or one
// that cannot be parsed).
func (t *Template) Selector() labels.Selector {
	if t.selectorsBroken {
		return nil
	}
	return t.selector
}

// WithServedByPolicy returns t itself when its ServedByPolicy mark is already served, else a copy with the mark
// set to served (t is shared and read-only).
func (t *Template) WithServedByPolicy(served bool) *Template {
	if t.ServedByPolicy == served {
		return t
	}
	c := *t
	c.ServedByPolicy = served
	return &c
}

// Adds returns the names of the containers, init containers and volumes the template adds (before per-pod
// values are substituted).
func (t *Template) Adds() Added { return t.names }

// Key returns "namespace/name".
func (t *Template) Key() string {
	return types.NamespacedName{Namespace: t.Namespace, Name: t.Name}.String()
}

// Compile prepares a SidecarTemplate for injection. It never fails: an invalid template is returned with Err
// set, so that pods requesting it get a clear answer under its failurePolicy.
func Compile(st *v1alpha1.SidecarTemplate, injectorNamespace string) *Template {
	spec := &st.Spec
	t := &Template{
		Namespace:      st.Namespace,
		Name:           st.Name,
		Generation:     st.Generation,
		Order:          spec.Order,
		FailurePolicy:  cmp.Or(spec.FailurePolicy, v1alpha1.FailurePolicyFail),
		ClusterWide:    injectorNamespace != "" && st.Namespace == injectorNamespace,
		HasSelector:    spec.Selector != nil,
		containerPlace: cmp.Or(spec.ContainerPlacement, v1alpha1.ContainerPlacementLast),
		initPlace:      cmp.Or(spec.InitContainerPlacement, v1alpha1.InitContainerPlacementAuto),
		targets:        spec.TargetContainers,
		jobPolicy:      cmp.Or(spec.JobPolicy, v1alpha1.JobPolicyNative),
	}
	t.OverrideAllowed = t.ClusterWide && spec.NamespaceOverride == v1alpha1.NamespaceOverrideAllow
	// The hash is of what the template adds and where: spec.mode only says which path (webhook or admission
	// policy) serves it, spec.namespaceOverride only who may replace it, and spec.updatePolicy how a change
	// reaches pods (promoting a canary edits it), so switching any of them must not make every pod that carries
	// the template look outdated.
	hashed := *spec
	hashed.Mode, hashed.NamespaceOverride, hashed.UpdatePolicy = "", "", nil
	specJSON, err := json.Marshal(&hashed)
	if err != nil { // cannot happen for API types; kept so that a future field cannot panic here
		t.Err = fmt.Errorf("spec cannot be encoded: %w", err)
		return t
	}
	sum := sha256.Sum256(specJSON)
	t.Hash = hex.EncodeToString(sum[:8])

	var c checks
	t.compileSelectors(spec, &c)
	t.checkSettings(spec, injectorNamespace, &c)
	t.compileUpdatePolicy(spec, &c)
	t.names = checkNames(spec, &c)
	checkReservedKeys(spec, &c)
	checkListKeys(spec, &c)
	checkMetadata(spec, &c)
	t.params = compileParameters(spec, &c)
	declared := make(map[string]bool, len(t.params))
	for _, p := range t.params {
		declared[p.Name] = true
	}
	checkTypedPlaceholders(spec, t.params, &c)

	pl := payloadOf(spec)
	payloadJSON, err := json.Marshal(pl)
	if err != nil {
		c.add("spec cannot be encoded: %v", err)
	}
	refs, exprs, refErrs := findPlaceholders(payloadJSON, declared)
	c = append(c, refErrs...)
	t.placeholders = refs > 0 || len(pl.TypedPlaceholders) > 0
	t.recordable = recordableExprs(exprs, pl.TypedPlaceholders)

	if len(c) > 0 {
		t.Err = errors.New(strings.Join(c, "; "))
		return t
	}
	t.base = newInstance(pl, t.initPlace, 0)
	if t.placeholders {
		t.renders = &renderCache{}
	}
	if t.jobPolicy == v1alpha1.JobPolicyNative && len(pl.Containers) > 0 {
		t.job = &jobForm{typed: typedContainers(pl)}
	}
	return t
}

// jobForm is what a template adds to a pod that runs to completion under jobPolicy Native (asNativeSidecars), built
// from base the first time such a pod needs it (jobInstance). Most templates only ever serve long-running pods:
// built eagerly, this form was over a third of each compiled template's memory (README, "Memory at scale").
// The copies WithServedByPolicy makes share it.
type jobForm struct {
	once sync.Once
	in   *instance
	// typed marks, per container, those with typed placeholders (nil: none): their encoding is a decoded map's.
	typed []bool
}

// jobInstance returns what the template adds to a pod that runs to completion: base, or under jobPolicy Native
// its containers as native sidecars, built once, on first use, by whichever admission needs it first.
func (t *Template) jobInstance() *instance {
	if t.job == nil {
		return t.base
	}
	t.job.once.Do(func() { t.job.in = asNativeSidecars(t.base, t.initPlace, t.job.typed) })
	return t.job.in
}

// typedContainers marks the containers of pl that have typed placeholders; nil when none has.
func typedContainers(pl *payload) []bool {
	var typed []bool
	for i := range pl.Containers {
		if len(v1alpha1.ContainerPlaceholders(pl.TypedPlaceholders, "containers", i)) > 0 {
			if typed == nil {
				typed = make([]bool, len(pl.Containers))
			}
			typed[i] = true
		}
	}
	return typed
}

// recordableExprs are the per-pod expressions whose values the pod's record keeps: those in the payload and
// those of the typed placeholders (kept aside from it), but never the namespace, which is always the request's.
func recordableExprs(exprs []string, typed map[string]string) []string {
	for _, p := range typed {
		for _, m := range placeholderRE.FindAllStringSubmatch(p, -1) {
			if !slices.Contains(exprs, m[1]) {
				exprs = append(exprs, m[1])
			}
		}
	}
	slices.Sort(exprs)
	return slices.DeleteFunc(exprs, func(e string) bool { return e == namespaceExpr })
}

// checks collects what is wrong with a template, each a sentence that says what to change.
type checks []string

func (c *checks) add(format string, args ...any) { *c = append(*c, fmt.Sprintf(format, args...)) }

// compileSelectors parses the selectors; one that cannot be parsed makes the template select nothing.
func (t *Template) compileSelectors(spec *v1alpha1.SidecarTemplateSpec, c *checks) {
	var err error
	if spec.Selector != nil {
		if t.selector, err = metav1.LabelSelectorAsSelector(spec.Selector); err != nil {
			c.add("spec.selector is not a valid label selector: %v", err)
			t.selectorsBroken = true
		}
	}
	if spec.NamespaceSelector != nil {
		if t.namespaceSelector, err = metav1.LabelSelectorAsSelector(spec.NamespaceSelector); err != nil {
			c.add("spec.namespaceSelector is not a valid label selector: %v", err)
			t.selectorsBroken = true
		}
	}
}

// checkSettings checks the enumerations and who may set the host namespaces. The API server's schema checks
// most of this already; templates read from files by the offline commands are not validated by anyone else.
func (t *Template) checkSettings(spec *v1alpha1.SidecarTemplateSpec, injectorNamespace string, c *checks) {
	if !t.ClusterWide {
		// In field order, so that the message (and the template's status condition) is the same every time.
		for _, f := range []struct {
			field string
			v     *bool
		}{{"hostNetwork", spec.HostNetwork}, {"hostPID", spec.HostPID}, {"hostIPC", spec.HostIPC}} {
			if f.v != nil {
				c.add("spec.%s can only be set by a cluster-wide template (one in the injector's namespace %q); remove it or move the template there", f.field, injectorNamespace)
			}
		}
		if spec.NamespaceOverride != "" {
			c.add("spec.namespaceOverride only applies to cluster-wide templates (those in the injector's namespace %q), which it lets a namespaced template of the same name replace; remove it from this namespaced template", injectorNamespace)
		}
	}
	switch spec.NamespaceOverride {
	case "", v1alpha1.NamespaceOverrideDeny, v1alpha1.NamespaceOverrideAllow:
	default:
		c.add("spec.namespaceOverride must be Deny or Allow, not %q", spec.NamespaceOverride)
	}
	switch t.FailurePolicy {
	case v1alpha1.FailurePolicyFail, v1alpha1.FailurePolicyIgnore:
	default:
		c.add("spec.failurePolicy must be Fail or Ignore, not %q", t.FailurePolicy)
	}
	switch t.containerPlace {
	case v1alpha1.ContainerPlacementFirst, v1alpha1.ContainerPlacementLast:
	default:
		c.add("spec.containerPlacement must be First or Last, not %q", t.containerPlace)
	}
	switch t.jobPolicy {
	case v1alpha1.JobPolicyNative, v1alpha1.JobPolicySkip, v1alpha1.JobPolicyKeep:
	default:
		c.add("spec.jobPolicy must be Native, Skip or Keep, not %q", t.jobPolicy)
	}
	switch t.initPlace {
	case v1alpha1.InitContainerPlacementAuto, v1alpha1.InitContainerPlacementFirst, v1alpha1.InitContainerPlacementLast:
	default:
		c.add("spec.initContainerPlacement must be Auto, First or Last, not %q", t.initPlace)
	}
}

// checkNames checks the containers, init containers and volumes the template adds, and returns their names.
func checkNames(spec *v1alpha1.SidecarTemplateSpec, c *checks) Added {
	var names Added
	for i, ctr := range spec.Containers {
		names.Containers = append(names.Containers, ctr.Name)
		if ctr.Image == "" {
			c.add("spec.containers[%d] (%q) has no image", i, ctr.Name)
		}
		if ctr.RestartPolicy != nil {
			c.add("spec.containers[%d] (%q) sets restartPolicy, which only init containers may set", i, ctr.Name)
		}
	}
	for i, ctr := range spec.InitContainers {
		names.InitContainers = append(names.InitContainers, ctr.Name)
		if ctr.Image == "" {
			c.add("spec.initContainers[%d] (%q) has no image", i, ctr.Name)
		}
		if ctr.RestartPolicy != nil && *ctr.RestartPolicy != corev1.ContainerRestartPolicyAlways {
			c.add("spec.initContainers[%d] (%q) has restartPolicy %q; only Always (a native sidecar) is allowed", i, ctr.Name, *ctr.RestartPolicy)
		}
		if slices.Contains(names.Containers, ctr.Name) {
			c.add("spec.initContainers[%d].name %q is also a container name; names must be unique across containers and initContainers", i, ctr.Name)
		}
	}
	for _, v := range spec.Volumes {
		names.Volumes = append(names.Volumes, v.Name)
	}
	checkList(c, "containers", names.Containers)
	checkList(c, "initContainers", names.InitContainers)
	checkList(c, "volumes", names.Volumes)
	return names
}

// checkList checks that the names of one list are valid and unique.
func checkList(c *checks, field string, names []string) {
	last := make(map[string]int, len(names)) // where each name was seen last
	for i, n := range names {
		if msgs := validation.IsDNS1123Label(n); len(msgs) > 0 {
			c.add("spec.%s[%d].name %q is not a valid name: %s", field, i, n, strings.Join(msgs, "; "))
		}
		if prev, dup := last[n]; dup {
			c.add("spec.%s[%d].name %q is used twice (also in spec.%s[%d])", field, i, n, field, prev)
		}
		last[n] = i
	}
}

// checkReservedKeys refuses annotations and labels under the injector's prefix.
func checkReservedKeys(spec *v1alpha1.SidecarTemplateSpec, c *checks) {
	for _, k := range slices.Sorted(maps.Keys(spec.Annotations)) {
		if strings.HasPrefix(k, v1alpha1.ReservedPrefix) {
			c.add("spec.annotations[%q]: keys under %s are reserved for the injector", k, v1alpha1.ReservedPrefix)
		}
	}
	for _, k := range slices.Sorted(maps.Keys(spec.Labels)) {
		if strings.HasPrefix(k, v1alpha1.ReservedPrefix) {
			c.add("spec.labels[%q]: keys under %s are reserved for the injector", k, v1alpha1.ReservedPrefix)
		}
	}
}

// checkListKeys refuses what the CRD's list-map keys refuse (the API server checks them; templates read from
// files are not seen by it): a mountPath, env name, pull secret or hostAliases IP given twice in one list.
func checkListKeys(spec *v1alpha1.SidecarTemplateSpec, c *checks) {
	unique := func(field, key string, n int, at func(int) string) {
		first := make(map[string]int, n)
		for i := range n {
			k := at(i)
			if prev, dup := first[k]; dup {
				c.add("spec.%s[%d].%s %q is also spec.%s[%d].%s: each %s may appear once", field, i, key, k, field, prev, key, key)
				continue
			}
			first[k] = i
		}
	}
	unique("volumeMounts", "mountPath", len(spec.VolumeMounts), func(i int) string { return spec.VolumeMounts[i].MountPath })
	unique("env", "name", len(spec.Env), func(i int) string { return spec.Env[i].Name })
	unique("imagePullSecrets", "name", len(spec.ImagePullSecrets), func(i int) string { return spec.ImagePullSecrets[i].Name })
	unique("hostAliases", "ip", len(spec.HostAliases), func(i int) string { return spec.HostAliases[i].IP })
	unique("targetContainers", "name", len(spec.TargetContainers), func(i int) string { return spec.TargetContainers[i] })
	checkDNSOptions(spec.DNSConfig, c)
}

// checkDNSOptions refuses a dnsConfig that names an option twice: the pod would get both, its resolver one of
// them, and the next pass would find the pod's option "conflicting" with the other and deny the pod. The CRD
// refuses it too (options are a list-map keyed by name); this check makes offline reading agree.
func checkDNSOptions(d *v1alpha1.TemplateDNSConfig, c *checks) {
	if d == nil {
		return
	}
	first := make(map[string]int, len(d.Options))
	for i, o := range d.Options {
		if prev, dup := first[o.Name]; dup {
			c.add("spec.dnsConfig.options[%d] and spec.dnsConfig.options[%d] both name the option %q: give each option once, with the one value the pod should get", prev, i, o.Name)
			continue
		}
		first[o.Name] = i
	}
}

// checkMetadata refuses annotation and label keys, and label values, that the API server would refuse on every
// pod: the pod would be denied with its generic "Pod is invalid", naming no template. Keys and values with
// per-pod values are checked once rendered, for each pod (checkRenderedKeys).
func checkMetadata(spec *v1alpha1.SidecarTemplateSpec, c *checks) {
	for _, k := range slices.Sorted(maps.Keys(spec.Annotations)) {
		if msgs := validation.IsQualifiedName(strings.ToLower(k)); len(msgs) > 0 && !hasPlaceholder(k) {
			c.add("spec.annotations[%q]: not a valid annotation key: %s", k, strings.Join(msgs, "; "))
		}
	}
	for _, k := range slices.Sorted(maps.Keys(spec.Labels)) {
		if msgs := validation.IsQualifiedName(k); len(msgs) > 0 && !hasPlaceholder(k) {
			c.add("spec.labels[%q]: not a valid label key: %s", k, strings.Join(msgs, "; "))
		}
		if v := spec.Labels[k]; !hasPlaceholder(v) {
			if msgs := validation.IsValidLabelValue(v); len(msgs) > 0 {
				c.add("spec.labels[%q]: %q is not a valid label value: %s", k, v, strings.Join(msgs, "; "))
			}
		}
	}
}
