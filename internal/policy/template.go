package policy

import (
	"cmp"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/ptr"

	"github.com/sidecar-dev/sidecar-injector/internal/api/v1alpha1"
	"github.com/sidecar-dev/sidecar-injector/internal/inject"
)

// Reasons a template cannot be served by a policy. Each is a condition reason on the template's status.
const (
	// ReasonInvalid: the template is invalid; the webhook reports it under its failurePolicy.
	ReasonInvalid = "TemplateInvalid"
	// ReasonEnvFrom: envFrom is deduplicated by the entry's whole content, which CEL cannot compare with the
	// pod's typed entries.
	ReasonEnvFrom = "EnvFromUnsupported"
	// ReasonHostAliases: hostnames are merged into the pod's entries for the same IP.
	ReasonHostAliases = "HostAliasesUnsupported"
	// ReasonDNSConfig: nameservers, searches and options are merged into the pod's dnsConfig.
	ReasonDNSConfig = "DNSConfigUnsupported"
	// ReasonPerPodKey: a per-pod value in an annotation or label key, or one that names a key JSON escapes.
	ReasonPerPodKey = "PerPodValueUnsupported"
	// ReasonUnknownField: a spec field this compiler does not know (added to the API after it): never ignored.
	ReasonUnknownField = "FieldUnsupported"
	// ReasonJobPolicy: spec.jobPolicy Keep adds containers to a pod that runs to completion with an admission
	// warning, which a mutating policy cannot give. Native (two patches, chosen by the pod's restartPolicy) and
	// Skip (a condition) compile.
	ReasonJobPolicy = "JobPolicyUnsupported"
	// ReasonSelectorSeesAddedLabel: the template's selector reads a label key that a template in its reach adds
	// (itself included). The webhook selects until nothing new is selected and then applies in injection order;
	// a policy's mutations see only what the mutations before them added, and a reinvocation places what it
	// adds after everything else, so the pods would differ.
	ReasonSelectorSeesAddedLabel = "SelectorSeesAddedLabelUnsupported"
	// ReasonTypedParameter: a Quantity or Integer parameter, whose pod value the webhook checks against the
	// type and bounds (failing the template with a message naming them) and writes as a number in ports; a
	// policy would have to approximate both, so it does not serve the template.
	ReasonTypedParameter = "TypedParameterUnsupported"
)

// compiledFields are the spec fields the compiler reproduces (or reports above). A template that sets any other
// is not compiled: a field added to the API must be taught here before a policy may serve it.
var compiledFields = map[string]bool{
	"selector": true, "namespaceSelector": true, "order": true, "failurePolicy": true, "mode": true,
	"containers": true, "containerPlacement": true, "initContainers": true, "initContainerPlacement": true,
	"volumes": true, "volumeMounts": true, "env": true, "envFrom": true, "targetContainers": true,
	"imagePullSecrets": true, "annotations": true, "labels": true, "shareProcessNamespace": true,
	"hostAliases": true, "dnsConfig": true, "hostNetwork": true, "hostPID": true, "hostIPC": true, "parameters": true,
	"jobPolicy": true, "namespaceOverride": true,
}

// Unsupported says why a template cannot be compiled: a reason per construct.
type Unsupported struct {
	Reason  string
	Message string
}

// unit is one template compiled to CEL: the conditions that decide whether it applies to a pod and the patch it
// makes. Every expression reads the pod as the mutations before this one left it.
type unit struct {
	t        *inject.Template
	spec     *v1alpha1.SidecarTemplateSpec
	v        *values
	scope    string // the pod is in the template's scope (namespace, shadowing, namespaceSelector)
	nsMiss   string // cluster-wide, not shadowed, but the namespaceSelector does not select the namespace
	request  string // the pod names the template in sidecar.dev/inject
	wanted   string // requested or selected
	recorded string // the pod's record names the template
	failures []failure
	ops      []string // CEL lists of JSONPatch, applied in this order
	entry    string   // the template's entry in the record, JSON
	// entryPrefix is how the template's entry in the record starts: it finds the entry.
	entryPrefix string
	// firstContainers and firstInits count what this template puts in front of the pod's own lists, so that
	// later templates insert behind it, as the webhook orders them.
	firstContainers, firstInits int
	// converted counts the init containers at the end of spec.InitContainers that are the template's containers
	// turned into native sidecars (the job variant): they go where native sidecars go.
	converted int
	// job, when set, is the template as it applies to a pod that runs to completion (jobPolicy Native with
	// containers): its containers are native sidecars. The mutation, the checks and the record follow the
	// pod's restartPolicy, which no mutation changes.
	job *unit
}

// completes is true for a pod that runs to completion, as the webhook decides it (restartPolicy Never or
// OnFailure; the API server defaults it to Always before admission).
const completes = "(has(object.spec.restartPolicy) && object.spec.restartPolicy in ['Never', 'OnFailure'])"

// either is the CEL that picks the job variant's expression for a pod that runs to completion.
func (u *unit) either(f func(*unit) string) string {
	if u.job == nil {
		return f(u)
	}
	return fmt.Sprintf("(%s ? %s : %s)", completes, f(u.job), f(u))
}

// pods says which pods a unit serves: a template without a job variant serves every pod; one with a job variant
// serves the pods that keep running by its base unit and those that run to completion by its job variant.
type pods int

const (
	allPods pods = iota
	runningPods
	completingPods
)

// failure is a reason the template cannot be applied to a pod: a CEL condition and a CEL message.
type failure struct{ cond, msg string }

// applies is true when the template's mutation runs.
func (u *unit) applies() string {
	var fails []string
	for _, f := range u.failures {
		fails = append(fails, f.cond)
	}
	cond := u.scope + " && " + u.wanted + " && !" + u.recorded
	if len(fails) > 0 {
		cond += " && !(" + strings.Join(fails, " || ") + ")"
	}
	return cond
}

// applied is true, in the validating policy (which sees the pod after every mutation), when the template is in the
// pod: the mutation wrote its current entry into the record, or the pod arrived with it injected. The entry is
// checked first: between mutation and validation the API server may generate the pod's name, which per-pod
// values rendered before it (so the rendering check alone would fail for {{ pod.name }}).
func (u *unit) applied() string {
	return u.either(func(u *unit) string { return u.appliedAs() })
}

func (u *unit) appliedAs() string {
	return fmt.Sprintf("(%s.contains(%s) || %s)", celAnnotation(v1alpha1.AnnotationStatus), celQuote(u.entry), u.recorded)
}

// unsupported lists every construct of the template that a policy cannot serve exactly.
func unsupported(t *inject.Template, spec *v1alpha1.SidecarTemplateSpec) []Unsupported {
	var out []Unsupported
	if t.Err != nil {
		out = append(out, Unsupported{ReasonInvalid, t.Err.Error()})
		return out
	}
	if m, err := jsonValue(spec); err == nil {
		var unknown []string
		for k := range m {
			if !compiledFields[k] {
				unknown = append(unknown, k)
			}
		}
		slices.Sort(unknown)
		for _, k := range unknown {
			out = append(out, Unsupported{ReasonUnknownField, fmt.Sprintf("spec.%s is not known to the policy compiler", k)})
		}
	}
	if len(spec.EnvFrom) > 0 {
		out = append(out, Unsupported{ReasonEnvFrom, "spec.envFrom is added unless a container has an equal entry; a policy cannot compare whole entries"})
	}
	if len(spec.HostAliases) > 0 {
		out = append(out, Unsupported{ReasonHostAliases, "spec.hostAliases are merged into the pod's entries per IP; a policy does not merge them"})
	}
	if spec.DNSConfig != nil {
		out = append(out, Unsupported{ReasonDNSConfig, "spec.dnsConfig is merged into the pod's dnsConfig; a policy does not merge it"})
	}
	if len(spec.Containers) > 0 && spec.JobPolicy == v1alpha1.JobPolicyKeep {
		out = append(out, Unsupported{ReasonJobPolicy, "spec.jobPolicy Keep: pods that run to completion (restartPolicy Never or OnFailure) get spec.containers with an admission warning, which a mutating policy cannot give (jobPolicy Native and Skip compile)"})
	}
	if typed := typedParameters(spec); len(typed) > 0 || len(spec.TypedPlaceholders) > 0 {
		out = append(out, Unsupported{ReasonTypedParameter, fmt.Sprintf("spec.parameters %v are typed (Quantity or Integer): a policy cannot check a pod's value against the type and bounds; the webhook serves the template", typed)})
	}
	for field, m := range map[string]map[string]string{"annotations": spec.Annotations, "labels": spec.Labels} {
		for k := range m {
			if placeholderRE.MatchString(k) {
				out = append(out, Unsupported{ReasonPerPodKey, fmt.Sprintf("spec.%s key %q holds a per-pod value", field, k)})
			}
		}
	}
	return out
}

// reach is where a template serves besides its own rules, by the override rule (inject.OverrideOf).
type reach struct {
	// shadowedIn, for a cluster-wide template that allows it (namespaceOverride: Allow), are the namespaces where
	// a namespaced template of the same name replaces it.
	shadowedIn []string
	// keptOutBy, for a namespaced template, is the CEL condition under which a cluster-wide template of its name
	// that does not allow the override (Deny) serves the pod's namespace, and this one is not used; "" when
	// there is no such template.
	keptOutBy string
}

// newUnit compiles one template. earlier are the templates compiled before it, in injection order; r says where
// the override rule keeps it out.
func newUnit(st *v1alpha1.SidecarTemplate, t *inject.Template, earlier []*unit, r reach) (*unit, error) {
	if len(st.Spec.Containers) == 0 || cmp.Or(st.Spec.JobPolicy, v1alpha1.JobPolicyNative) != v1alpha1.JobPolicyNative {
		return build(&st.Spec, 0, t, earlier, r, allPods)
	}
	u, err := build(&st.Spec, 0, t, earlier, r, runningPods)
	if err != nil {
		return nil, err
	}
	if u.job, err = build(jobSpec(&st.Spec), len(st.Spec.Containers), t, earlier, r, completingPods); err != nil {
		return nil, err
	}
	return u, nil
}

// jobSpec is the template as the webhook applies it to a pod that runs to completion under jobPolicy Native
// (inject's asNativeSidecars): its containers become native sidecars, after its own init containers.
func jobSpec(spec *v1alpha1.SidecarTemplateSpec) *v1alpha1.SidecarTemplateSpec {
	job := *spec
	job.Containers = nil
	job.InitContainers = slices.Clone(spec.InitContainers)
	for _, c := range spec.Containers {
		c.RestartPolicy = ptr.To(corev1.ContainerRestartPolicyAlways)
		job.InitContainers = append(job.InitContainers, c)
	}
	return &job
}

// build compiles one variant of a template, for the pods it serves: converted as the unit's field; earlier and
// r as newUnit's.
func build(spec *v1alpha1.SidecarTemplateSpec, converted int, t *inject.Template, earlier []*unit, r reach, serves pods) (*unit, error) {
	u := &unit{t: t, spec: spec, converted: converted, v: &values{template: t.Name, defaults: map[string]string{}}}
	for _, p := range spec.Parameters {
		u.v.defaults[p.Name] = ""
		if p.Default != nil {
			u.v.defaults[p.Name] = *p.Default
		}
	}
	u.request = fmt.Sprintf("%s.split(',').exists(n, n.trim() == %s)", celAnnotation(v1alpha1.AnnotationInject), celQuote(t.Name))
	u.wanted = u.request
	if spec.Selector != nil {
		u.wanted = "(" + u.request + " || " + selectorCEL(spec.Selector, celLabels) + ")"
	}
	if spec.JobPolicy == v1alpha1.JobPolicySkip { // pods that run to completion are left without the template
		u.wanted = "(" + u.wanted + " && !" + completes + ")"
	}
	if t.ClusterWide {
		notShadowed := "true"
		if len(r.shadowedIn) > 0 {
			notShadowed = "!(request.namespace in " + celStringList(r.shadowedIn) + ")"
		}
		sel := "true"
		if spec.NamespaceSelector != nil {
			sel = selectorCEL(spec.NamespaceSelector, celNSLabels)
		}
		u.scope = "(" + notShadowed + " && " + sel + ")"
		u.nsMiss = "(" + notShadowed + " && !" + sel + ")"
	} else {
		u.scope = "(request.namespace == " + celQuote(t.Namespace) + ")"
		if r.keptOutBy != "" {
			u.scope = "(request.namespace == " + celQuote(t.Namespace) + " && !" + r.keptOutBy + ")"
		}
		u.nsMiss = "false"
	}
	entry, err := json.Marshal(inject.StatusEntry{Namespace: t.Namespace, Name: t.Name, Generation: t.Generation, Hash: t.Hash,
		Added: inject.Added{Containers: names(spec.Containers), InitContainers: names(spec.InitContainers), Volumes: volumeNames(spec.Volumes)}})
	if err != nil {
		return nil, err
	}
	u.entry = string(entry)
	u.entryPrefix = fmt.Sprintf(`{"namespace":%q,"name":%q,`, t.Namespace, t.Name)
	// The record names the template, and every sidecar and volume it adds is in the pod as the template renders
	// it (the webhook's check: a record copied from another pod, or written before the template changed, does
	// not make it count as injected).
	present := []string{fmt.Sprintf("%s.contains(%s)", celAnnotation(v1alpha1.AnnotationStatus), celQuote(u.entryPrefix))}
	for _, l := range []struct {
		list      string
		items     []any
		container bool
	}{{"containers", anys(spec.Containers), true}, {"initContainers", anys(spec.InitContainers), true}, {"volumes", anys(spec.Volumes), false}} {
		for _, it := range l.items {
			c, err := u.renders(it, l.container)
			if err != nil {
				return nil, err
			}
			present = append(present, fmt.Sprintf("object.spec.?%s.orValue([]).exists(x, %s)", l.list, c))
		}
	}
	u.recorded = "(" + strings.Join(present, " && ") + ")"

	u.addFailures()
	if err := u.addOps(earlier, serves); err != nil {
		return nil, err
	}
	return u, nil
}

func anys[T any](xs []T) []any {
	out := make([]any, len(xs))
	for i := range xs {
		out[i] = &xs[i]
	}
	return out
}

// renders is the CEL for "the pod's element x is what the template renders", as the webhook checks it: image as
// sameImage, imagePullPolicy and resources not compared (other webhooks rewrite them), the rest contained.
func (u *unit) renders(obj any, container bool) (string, error) {
	want, err := jsonValue(obj)
	if err != nil {
		return "", err
	}
	var terms []string
	if container {
		img, _ := want["image"].(string)
		if placeholderRE.MatchString(img) {
			return "", fmt.Errorf("an image with per-pod values cannot be compared")
		}
		terms = append(terms, sameImage(img, "x.image"))
		delete(want, "image")
		delete(want, "imagePullPolicy")
		delete(want, "resources")
	}
	c, err := u.v.contains(want, "x", 0)
	if err != nil {
		return "", err
	}
	return strings.Join(append(terms, c), " && "), nil
}

func names(cs []corev1.Container) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.Name)
	}
	return out
}

func volumeNames(vs []corev1.Volume) []string {
	var out []string
	for _, v := range vs {
		out = append(out, v.Name)
	}
	return out
}

// addFailures lists what keeps the template from a pod, as the webhook's plan does: names the pod already has,
// settings it sets otherwise, mounts of volumes nobody provides, required parameters it does not set.
func (u *unit) addFailures() {
	has := func(list, name string) string {
		return fmt.Sprintf("object.spec.?%s.orValue([]).exists(x, x.name == %s)", list, celQuote(name))
	}
	add := func(cond, msg string) { u.failures = append(u.failures, failure{cond, celQuote(msg)}) }
	for _, c := range u.spec.Containers {
		add(has("containers", c.Name), fmt.Sprintf("container name %q already exists in pod", c.Name))
		add(has("initContainers", c.Name), fmt.Sprintf("container name %q already exists in pod as an init container", c.Name))
	}
	for _, c := range u.spec.InitContainers {
		add(has("initContainers", c.Name), fmt.Sprintf("init container name %q already exists in pod", c.Name))
		add(has("containers", c.Name), fmt.Sprintf("init container name %q already exists in pod as a container", c.Name))
	}
	for _, v := range u.spec.Volumes {
		add(has("volumes", v.Name), fmt.Sprintf("volume name %q already exists in pod", v.Name))
	}
	for _, b := range u.bools() {
		add(fmt.Sprintf("(has(object.spec.%s) && object.spec.%s != %t)", b.field, b.field, b.want),
			fmt.Sprintf("%s: the pod sets %t, the template sets %t", b.field, !b.want, b.want))
	}
	own := map[string]bool{}
	for _, v := range u.spec.Volumes {
		own[v.Name] = true
	}
	for _, m := range u.spec.VolumeMounts {
		if own[m.Name] {
			continue
		}
		path, err := u.v.str(m.MountPath)
		if err != nil {
			continue // reported by addOps
		}
		cond := fmt.Sprintf("(!%s && object.spec.containers.exists(c, %s && !c.?volumeMounts.orValue([]).exists(x, x.mountPath == %s)))",
			has("volumes", m.Name), u.target("c"), path)
		add(cond, fmt.Sprintf("volumeMount %q uses volume %q, which neither the pod nor the template has", m.MountPath, m.Name))
	}
	for _, p := range u.spec.Parameters {
		if p.Default != nil {
			continue
		}
		key := paramAnnotation(u.t.Name, p.Name)
		add(fmt.Sprintf("!(%s in %s)", celQuote(key), celAnnotations),
			fmt.Sprintf("parameter %q has no default and the pod does not set it; add the annotation %q to the pod", p.Name, key))
	}
}

type boolSetting struct {
	field string
	want  bool
}

func (u *unit) bools() []boolSetting {
	var out []boolSetting
	for _, b := range []struct {
		field string
		v     *bool
	}{{"shareProcessNamespace", u.spec.ShareProcessNamespace}, {"hostNetwork", u.spec.HostNetwork},
		{"hostPID", u.spec.HostPID}, {"hostIPC", u.spec.HostIPC}} {
		if b.v != nil {
			out = append(out, boolSetting{b.field, *b.v})
		}
	}
	return out
}

// sidecar is true for a container that the pod's record names as a template's: never an application container.
// The record is read as text (CEL has no JSON decoder): each "containers" list of an entry, up to its "]".
func sidecar(c string) string { return recordedIn("containers", c) }

// recordedIn is true when the pod's record names container c in one of its entries' list ("containers" or
// "initContainers"). The record is read as text (CEL has no JSON decoder): each such list, up to its "]".
func recordedIn(list, c string) string {
	return fmt.Sprintf(`%s.split('"%s":[').exists(p, !p.startsWith('{"templates"') && p.contains(']') && `+
		`p.substring(0, p.indexOf(']')).split(',').exists(q, q == '"' + %s.name + '"'))`, celAnnotation(v1alpha1.AnnotationStatus), list, c)
}

// target is true for a container that receives the template's volumeMounts and env.
func (u *unit) target(c string) string {
	if len(u.spec.TargetContainers) > 0 {
		return fmt.Sprintf("(%s.name in %s && !%s)", c, celStringList(u.spec.TargetContainers), sidecar(c))
	}
	return "!" + sidecar(c)
}

// typedParameters names the parameters of a type other than String.
func typedParameters(spec *v1alpha1.SidecarTemplateSpec) []string {
	var out []string
	for _, p := range spec.Parameters {
		if p.Type != "" && p.Type != v1alpha1.ParameterTypeString {
			out = append(out, p.Name)
		}
	}
	return out
}
