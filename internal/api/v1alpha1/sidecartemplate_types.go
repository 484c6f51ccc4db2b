package v1alpha1

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// FailurePolicy says what happens to a pod when a template cannot be applied to it.
// +kubebuilder:validation:Enum=Fail;Ignore
type FailurePolicy string

const (
	// FailurePolicyFail denies the pod, with a message naming the template and the reason.
	FailurePolicyFail FailurePolicy = "Fail"
	// FailurePolicyIgnore admits the pod without this template and says why in an admission warning.
	FailurePolicyIgnore FailurePolicy = "Ignore"
)

// ContainerPlacement says where a template's containers go in spec.containers.
// +kubebuilder:validation:Enum=Last;First
type ContainerPlacement string

const (
	// ContainerPlacementLast appends the template's containers after the pod's own.
	ContainerPlacementLast ContainerPlacement = "Last"
	// ContainerPlacementFirst puts the template's containers before the pod's own, in template order.
	ContainerPlacementFirst ContainerPlacement = "First"
)

// InitContainerPlacement says where a template's init containers go in spec.initContainers.
// +kubebuilder:validation:Enum=Auto;First;Last
type InitContainerPlacement string

const (
	// InitContainerPlacementAuto keeps the template's order: its init containers up to and including its last
	// native sidecar (restartPolicy: Always) go before the pod's own init containers, so that those can use
	// them, and the rest after the pod's own.
	InitContainerPlacementAuto InitContainerPlacement = "Auto"
	// InitContainerPlacementFirst puts every init container of the template before the pod's own.
	InitContainerPlacementFirst InitContainerPlacement = "First"
	// InitContainerPlacementLast puts every init container of the template after the pod's own.
	InitContainerPlacementLast InitContainerPlacement = "Last"
)

// JobPolicy says what a template's containers become in a pod that runs to completion (restartPolicy Never or
// OnFailure: Jobs, CronJobs, workflow steps), where a regular sidecar container that never exits keeps the pod
// from ever completing.
// +kubebuilder:validation:Enum=Native;Skip;Keep
type JobPolicy string

const (
	// JobPolicyNative adds the template's containers to such pods as native sidecars (init containers with
	// restartPolicy: Always, placed before the pod's own init containers), which the kubelet stops when the
	// application's containers have finished, so the pod can complete.
	JobPolicyNative JobPolicy = "Native"
	// JobPolicySkip leaves such pods without the template (decision reason JobPolicySkip).
	JobPolicySkip JobPolicy = "Skip"
	// JobPolicyKeep adds the containers as regular containers, with an admission warning: the pod completes only
	// if they exit by themselves.
	JobPolicyKeep JobPolicy = "Keep"
)

// Mode says what serves a template: the webhook, or admission policies that the API server applies itself.
// +kubebuilder:validation:Enum=Webhook;Policy;Auto
type Mode string

const (
	// ModeWebhook: the webhook injects the template. Every construct is supported.
	ModeWebhook Mode = "Webhook"
	// ModePolicy: a MutatingAdmissionPolicy that the injector generates injects the template, inside the API
	// server, and the webhook leaves it alone. A template that a policy cannot serve exactly is not served at
	// all; its ServedByPolicy condition says why.
	ModePolicy Mode = "Policy"
	// ModeAuto: a policy when the template can be compiled into one, else the webhook.
	ModeAuto Mode = "Auto"
)

// NamespaceOverride says whether a namespaced template may replace a cluster-wide template of the same name in
// its namespace.
// +kubebuilder:validation:Enum=Deny;Allow
type NamespaceOverride string

const (
	// NamespaceOverrideDeny: a namespaced template of the same name is not used (for requests nor selection); the
	// cluster-wide template serves the namespace, and the namespaced one's Ready condition says why
	// (OverrideDenied).
	NamespaceOverrideDeny NamespaceOverride = "Deny"
	// NamespaceOverrideAllow: a namespaced template of the same name replaces this one in its namespace, for
	// requests and selection.
	NamespaceOverrideAllow NamespaceOverride = "Allow"
)

// ParameterType says what values a parameter takes, and so where its placeholder may stand.
// +kubebuilder:validation:Enum=String;Quantity;Integer
type ParameterType string

const (
	// ParameterTypeString: any text, substituted into the template's strings.
	ParameterTypeString ParameterType = "String"
	// ParameterTypeQuantity: a resource quantity ("250m", "128Mi"); its placeholder may also stand alone as a
	// value of a sidecar's resources.requests or resources.limits.
	ParameterTypeQuantity ParameterType = "Quantity"
	// ParameterTypeInteger: a whole number ("8080"); its placeholder may also stand alone as a sidecar's
	// ports[].containerPort or ports[].hostPort.
	ParameterTypeInteger ParameterType = "Integer"
)

// TemplateParameter is a per-pod value that the template's strings can use as {{ params.NAME }}.
// A pod sets it with the annotation "<template name>.param.sidecar.dev/<parameter name>".
// +kubebuilder:validation:XValidation:rule="(!has(self.minimum) && !has(self.maximum)) || (has(self.type) && self.type != 'String')",message="minimum and maximum need type Quantity or Integer"
type TemplateParameter struct {
	// name of the parameter, used as {{ params.<name> }} in the template's strings and as the last part of the
	// pod annotation that sets it. Lowercase letters, digits and '-', starting with a letter.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z]([-a-z0-9]*[a-z0-9])?$`
	Name string `json:"name"`

	// default is the value used when the pod does not set the parameter. Absent means the parameter is
	// required: a pod that does not set it cannot receive the template (see failurePolicy).
	// +optional
	// +kubebuilder:validation:MaxLength=4096
	Default *string `json:"default,omitempty"`

	// description tells the users of the template what the parameter is for.
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	Description string `json:"description,omitempty"`

	// type says what values the parameter takes: String (any text), Quantity (a resource quantity such as
	// "250m" or "128Mi") or Integer (a whole number). A value of the wrong type, from the pod or the default,
	// is the template's failure (see failurePolicy), with a message naming the parameter and the value.
	// Absent means String; no default is written into stored templates, for the same reason as mode's.
	// +optional
	Type ParameterType `json:"type,omitempty"`

	// minimum is the smallest value a Quantity or Integer parameter accepts (a quantity, or an integer).
	// A smaller value is the template's failure, with a message naming the bound. Absent means no bound.
	// +optional
	Minimum *intstr.IntOrString `json:"minimum,omitempty"`

	// maximum is the largest value a Quantity or Integer parameter accepts. Absent means no bound.
	// +optional
	Maximum *intstr.IntOrString `json:"maximum,omitempty"`
}

// SidecarTemplateSpec describes what is added to a pod that receives this template.
//
// Names of containers, init containers and volumes must be unique within their list (the API server checks
// this), DNS labels, and unique across containers and initContainers; the last two are checked by the injector
// and reported in the Ready condition, because CEL rules over unbounded names exceed the API server's cost
// budget.
//
// Strings anywhere in containers, initContainers, volumes, volumeMounts, env, envFrom, annotations and labels
// may use per-pod values, substituted as plain text (never evaluated as code):
// {{ pod.name }}, {{ pod.generateName }}, {{ pod.namespace }}, {{ pod.serviceAccountName }},
// {{ pod.labels.KEY }}, {{ pod.annotations.KEY }} and {{ params.NAME }}. Any other text between {{ and }}
// is left as it is, so configuration files of other template languages pass through unchanged.
//
// +kubebuilder:validation:XValidation:rule="has(self.containers) || has(self.initContainers) || has(self.volumes) || has(self.volumeMounts) || has(self.env) || has(self.envFrom) || has(self.imagePullSecrets) || has(self.annotations) || has(self.labels) || has(self.shareProcessNamespace) || has(self.hostAliases) || has(self.dnsConfig) || has(self.hostNetwork) || has(self.hostPID) || has(self.hostIPC)",message="a template must add something: set at least one of containers, initContainers, volumes, volumeMounts, env, envFrom, imagePullSecrets, annotations, labels or a namespace setting"
// +kubebuilder:validation:XValidation:rule="!has(self.targetContainers) || has(self.volumeMounts) || has(self.env) || has(self.envFrom)",message="targetContainers only makes sense with volumeMounts, env or envFrom"
type SidecarTemplateSpec struct {
	// selector picks the pods that receive this template without asking for it, by their labels. Absent means
	// the template is injected only into pods that request it with the sidecar.dev/inject annotation. An empty
	// selector ({}) selects every pod in the template's scope.
	// +optional
	Selector *metav1.LabelSelector `json:"selector,omitempty"`

	// namespaceSelector limits a cluster-wide template (one in the injector's own namespace) to the namespaces
	// whose labels it matches, both for requests by name and for its selector. Absent means every namespace.
	// It is ignored on a template in any other namespace, which only ever serves its own namespace.
	// +optional
	NamespaceSelector *metav1.LabelSelector `json:"namespaceSelector,omitempty"`

	// order decides where this template goes relative to other templates injected into the same pod: lower
	// first, ties broken by namespace and then name. Absent means 0.
	// +optional
	// +kubebuilder:validation:Minimum=-1000000
	// +kubebuilder:validation:Maximum=1000000
	Order int32 `json:"order,omitempty"`

	// failurePolicy says what happens when this template cannot be applied to a pod (a name conflict, a
	// missing parameter, an invalid template): Fail denies the pod with a message naming the template, Ignore
	// admits the pod without this template and says why in an admission warning. Absent means Fail.
	// +optional
	// +kubebuilder:default=Fail
	FailurePolicy FailurePolicy `json:"failurePolicy,omitempty"`

	// mode says what serves the template: Webhook (the webhook), Policy (a MutatingAdmissionPolicy generated
	// by the injector, applied by the API server without calling the webhook) or Auto (a policy when the
	// template can be compiled into one, else the webhook). The ServedByPolicy condition says which serves it
	// and, when a policy cannot, why. Absent means Webhook: a policy trusts a sidecar.dev/status record that a
	// pod arrives with, and runs before every webhook, so switching a template to it is a choice to make
	// knowingly (see the README). No default is written into stored templates: the record's hash covers the
	// spec, and a defaulted field would make every pod injected before it look outdated.
	// +optional
	Mode Mode `json:"mode,omitempty"`

	// namespaceOverride, on a cluster-wide template (one in the injector's own namespace), says whether a
	// template of the same name in another namespace replaces this one there, for requests and selection:
	// Allow lets it, Deny (the default) keeps this template serving the namespace and leaves the namespaced one
	// unused (its Ready condition says so). A namespaced template that sets it is invalid. Absent means Deny; no
	// default is written into stored templates, and it is left out of the record's hash (it changes who serves
	// a pod, not what a pod gets).
	// +optional
	NamespaceOverride NamespaceOverride `json:"namespaceOverride,omitempty"`

	// jobPolicy says what containers become in a pod that runs to completion (restartPolicy Never or
	// OnFailure): Native adds them as native sidecars (init containers with restartPolicy: Always, placed as
	// native sidecars are) so that the pod can complete; Skip leaves such pods without this template; Keep adds
	// them as regular containers, with an admission warning that the pod will not complete unless they exit by
	// themselves. Pods that run until deleted (restartPolicy Always) are not affected. Absent means Native; no
	// default is written into stored templates, for the same reason as mode's.
	// +optional
	JobPolicy JobPolicy `json:"jobPolicy,omitempty"`

	// containers are added to spec.containers. Names are fixed (no per-pod values). Absent means none.
	// +optional
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=32
	// +kubebuilder:validation:XValidation:rule="self.all(c, has(c.image) && size(c.image) > 0)",message="every container needs an image"
	// +kubebuilder:validation:XValidation:rule="self.all(c, !has(c.restartPolicy))",message="restartPolicy is only allowed on initContainers (restartPolicy: Always makes a native sidecar)"
	Containers []corev1.Container `json:"containers,omitempty"`

	// containerPlacement says where containers go: Last appends them after the pod's own containers, First puts
	// them before (some tools treat the first container as the main one). Absent means Last.
	// +optional
	// +kubebuilder:default=Last
	ContainerPlacement ContainerPlacement `json:"containerPlacement,omitempty"`

	// initContainers are added to spec.initContainers. One with restartPolicy: Always is a native sidecar: it
	// starts before the app containers and runs beside them. Names are fixed (no per-pod values). Absent means
	// none.
	// +optional
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=32
	// +kubebuilder:validation:XValidation:rule="self.all(c, has(c.image) && size(c.image) > 0)",message="every init container needs an image"
	// +kubebuilder:validation:XValidation:rule="self.all(c, !has(c.restartPolicy) || c.restartPolicy == 'Always')",message="an init container's restartPolicy can only be Always (a native sidecar)"
	InitContainers []corev1.Container `json:"initContainers,omitempty"`

	// initContainerPlacement says where initContainers go: Auto keeps the template's order, putting those up to
	// and including its last native sidecar before the pod's own init containers (so those can use them) and
	// the rest after; First and Last put all of them before or after the pod's own. Absent means Auto.
	// +optional
	// +kubebuilder:default=Auto
	InitContainerPlacement InitContainerPlacement `json:"initContainerPlacement,omitempty"`

	// volumes are added to spec.volumes, shared by the sidecars and the application. Names are fixed (no
	// per-pod values). Absent means none.
	// +optional
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=64
	Volumes []corev1.Volume `json:"volumes,omitempty"`

	// volumeMounts are added to the application's containers (those named in targetContainers, else all of the
	// pod's own containers). A mount path a container already has is left as the container has it. Absent means
	// none.
	// +optional
	// +listType=map
	// +listMapKey=mountPath
	// +kubebuilder:validation:MaxItems=64
	VolumeMounts []corev1.VolumeMount `json:"volumeMounts,omitempty"`

	// env is added to the application's containers. A variable a container already has keeps the container's
	// value. Absent means none.
	// +optional
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=128
	Env []corev1.EnvVar `json:"env,omitempty"`

	// envFrom is added to the application's containers, unless a container already has the same source.
	// Absent means none.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=32
	EnvFrom []corev1.EnvFromSource `json:"envFrom,omitempty"`

	// targetContainers names the application containers that receive volumeMounts, env and envFrom; it may
	// name the pod's own init containers, which receive them only when named. Absent means all of the pod's own
	// containers (never its init containers, nor the sidecars that templates add). A name the pod does not have
	// is reported in an admission warning.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MaxLength=63
	TargetContainers []string `json:"targetContainers,omitempty"`

	// imagePullSecrets are added to the pod's spec.imagePullSecrets, unless it already names them. Absent
	// means none.
	// +optional
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=16
	ImagePullSecrets []corev1.LocalObjectReference `json:"imagePullSecrets,omitempty"`

	// annotations are added to the pod's metadata; a key the pod already sets keeps the pod's value. Keys under
	// sidecar.dev/ are reserved. Absent means none.
	// +optional
	// +kubebuilder:validation:MaxProperties=64
	// +kubebuilder:validation:XValidation:rule="self.all(k, !k.startsWith('sidecar.dev/'))",message="annotation keys under sidecar.dev/ are reserved for the injector"
	Annotations map[string]string `json:"annotations,omitempty"`

	// labels are added to the pod's metadata; a key the pod already sets keeps the pod's value. Keys under
	// sidecar.dev/ are reserved. Absent means none.
	// +optional
	// +kubebuilder:validation:MaxProperties=64
	// +kubebuilder:validation:XValidation:rule="self.all(k, !k.startsWith('sidecar.dev/'))",message="label keys under sidecar.dev/ are reserved for the injector"
	Labels map[string]string `json:"labels,omitempty"`

	// shareProcessNamespace sets the pod's spec.shareProcessNamespace. A pod that sets it to the other value is
	// a conflict. Absent means the template leaves it alone.
	// +optional
	ShareProcessNamespace *bool `json:"shareProcessNamespace,omitempty"`

	// hostAliases are added to the pod's spec.hostAliases; hostnames for an IP the pod already lists are added
	// to that entry. Absent means none.
	// +optional
	// +listType=map
	// +listMapKey=ip
	// +kubebuilder:validation:MaxItems=32
	HostAliases []corev1.HostAlias `json:"hostAliases,omitempty"`

	// dnsConfig is merged into the pod's spec.dnsConfig: nameservers, searches and options the pod does not
	// have are added; an option the pod sets to another value is a conflict. Absent means the template leaves
	// it alone. Shaped as a pod's dnsConfig; each option may be named once.
	// +optional
	DNSConfig *TemplateDNSConfig `json:"dnsConfig,omitempty"`

	// hostNetwork sets the pod's spec.hostNetwork. Only a cluster-wide template (in the injector's namespace)
	// may set it; a pod that sets it to the other value is a conflict. Absent means the template leaves it alone.
	// +optional
	HostNetwork *bool `json:"hostNetwork,omitempty"`

	// hostPID sets the pod's spec.hostPID. Only a cluster-wide template may set it; a pod that sets it to the
	// other value is a conflict. Absent means the template leaves it alone.
	// +optional
	HostPID *bool `json:"hostPID,omitempty"`

	// hostIPC sets the pod's spec.hostIPC. Only a cluster-wide template may set it; a pod that sets it to the
	// other value is a conflict. Absent means the template leaves it alone.
	// +optional
	HostIPC *bool `json:"hostIPC,omitempty"`

	// parameters declares the per-pod values that the template's strings use as {{ params.NAME }}. Absent
	// means none.
	// +optional
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=32
	Parameters []TemplateParameter `json:"parameters,omitempty"`

	// TypedPlaceholders holds the placeholders that stand where the Go types hold a number or a quantity
	// (containers[0].resources.limits.cpu: "{{ params.cpu }}"), by their path in the spec: the API server's
	// schema accepts them there (see hack/crdplaceholders), the Go types cannot. UnmarshalJSON moves them here,
	// MarshalJSON puts them back, so the spec reads and writes as the API server stores it.
	TypedPlaceholders map[string]string `json:"-"`

	// updatePolicy says how a change of this template reaches pods: which new pods get the new revision first
	// (canary), what happens to a pod that arrives with a sidecar an earlier revision rendered (stalePods), and
	// whether the injector restarts the workloads of pods that run an earlier revision (restart).
	// It is not part of the revision: editing it (promoting a canary) does not make pods outdated.
	// +optional
	UpdatePolicy *UpdatePolicy `json:"updatePolicy,omitempty"`
}

// StalePodsPolicy says what happens to a pod whose sidecar is exactly what an earlier revision rendered.
// +kubebuilder:validation:Enum=Admit;Deny
type StalePodsPolicy string

const (
	// StalePodsAdmit admits such a pod unchanged, with a warning naming its revision and the current one.
	StalePodsAdmit StalePodsPolicy = "Admit"
	// StalePodsDeny denies such a pod, with a message saying how to get the current revision.
	StalePodsDeny StalePodsPolicy = "Deny"
)

// UpdatePolicy is how a template's new revision reaches pods.
type UpdatePolicy struct {
	// stalePods says what happens to a pod created with a sidecar that an earlier revision of this template
	// rendered (a workload rendered offline with sidecar-injector inject, or re-created from an exported
	// manifest): Admit admits it unchanged, counts it as outdated and warns; Deny denies it and says how to get
	// the current revision. A sidecar that no remembered revision rendered is a conflict either way. Absent
	// means Admit.
	// +optional
	StalePods StalePodsPolicy `json:"stalePods,omitempty"`

	// canary sends a new revision first to some new pods only; the others get the stable revision (the last
	// one promoted, status.stableRevision). Promote by setting percent to 100 or removing canary.
	// +optional
	Canary *Canary `json:"canary,omitempty"`

	// restart: Rolling lets the injector restart, the way `kubectl rollout restart` does, the Deployments,
	// StatefulSets and DaemonSets whose pods run an older version of this template, one group of at most
	// maxConcurrent at a time, in namespaces labelled sidecar.dev/restart=enabled only. Jobs, CronJobs, bare
	// pods and ReplicaSets without a Deployment are never restarted. Never leaves running pods alone. Absent
	// means Never.
	// +optional
	Restart Restart `json:"restart,omitempty"`

	// maxConcurrent is how many workloads the injector restarts at once for this template (restart: Rolling):
	// it starts the next one when a rollout has finished (all of the workload's pods run the current version
	// and are Ready). Absent means 1.
	// +optional
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=100
	MaxConcurrent *int32 `json:"maxConcurrent,omitempty"`
}

// Canary picks the new pods that get a template's newest revision before it is promoted.
type Canary struct {
	// percent is the share of pod owners (all pods of one ReplicaSet, StatefulSet, DaemonSet or Job together;
	// a bare pod by its generateName or name) whose new pods get the newest revision, decided by a hash of the
	// owner, so the same owner always gets the same answer. 100 promotes the newest revision. Absent means 0.
	// +optional
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=100
	Percent *int32 `json:"percent,omitempty"`

	// selector picks pods, by their labels, that get the newest revision whatever percent says.
	// +optional
	Selector *metav1.LabelSelector `json:"selector,omitempty"`
}

// TemplateDNSConfig is what a template merges into a pod's spec.dnsConfig: a PodDNSConfig (same fields, same
// JSON) whose options are keyed by name, so that the API server refuses a template naming one option twice (the
// pod would get contradictory options, and the next pass would deny it).
type TemplateDNSConfig struct {
	// nameservers are added to the pod's dnsConfig.nameservers when it lacks them.
	// +optional
	// +listType=atomic
	Nameservers []string `json:"nameservers,omitempty"`
	// searches are added to the pod's dnsConfig.searches when it lacks them.
	// +optional
	// +listType=atomic
	Searches []string `json:"searches,omitempty"`
	// options are added to the pod's dnsConfig.options when it lacks them; one the pod sets to another value is a
	// conflict. Each name once.
	// +optional
	// +listType=map
	// +listMapKey=name
	Options []TemplateDNSOption `json:"options,omitempty"`
}

// TemplateDNSOption is a resolver option, as corev1.PodDNSConfigOption, with its name required.
type TemplateDNSOption struct {
	// name is the option's name (ndots, edns0, ...).
	// +kubebuilder:validation:MinLength=1
	Name string `json:"name"`
	// value is the option's value. Absent means an option without a value.
	// +optional
	Value *string `json:"value,omitempty"`
}

// PodDNSConfig returns the template's dnsConfig as the pod's type; nil for nil.
func (d *TemplateDNSConfig) PodDNSConfig() *corev1.PodDNSConfig {
	if d == nil {
		return nil
	}
	out := &corev1.PodDNSConfig{Nameservers: d.Nameservers, Searches: d.Searches}
	for _, o := range d.Options {
		out.Options = append(out.Options, corev1.PodDNSConfigOption{Name: o.Name, Value: o.Value})
	}
	return out
}

// Restart says whether the injector restarts workloads whose pods run an older version of a template.
// +kubebuilder:validation:Enum=Never;Rolling
type Restart string

const (
	// RestartNever leaves running pods with the version they have until they are re-created.
	RestartNever Restart = "Never"
	// RestartRolling restarts their workloads, at most maxConcurrent at a time (namespace permitting).
	RestartRolling Restart = "Rolling"
)

// SidecarTemplateStatus is written by the injector's controller.
type SidecarTemplateStatus struct {
	// observedGeneration is the metadata.generation that the conditions describe. Absent means the controller
	// has not looked at the template yet.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// conditions describe the template's state. Ready is True when the template can be injected; when it is
	// False, its reason and message say what to change. Absent means not yet known.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// injectedPods is how many existing pods carry this template: their sidecar.dev/status record names it.
	// Pods being deleted are not counted.
	// +optional
	// +kubebuilder:validation:Minimum=0
	InjectedPods int32 `json:"injectedPods"`

	// outdatedPods is how many of those pods carry an older version of the template: the hash in their record
	// is not the hash of the current spec (drift). Recreate them (e.g. kubectl rollout restart) to update.
	// +optional
	// +kubebuilder:validation:Minimum=0
	OutdatedPods int32 `json:"outdatedPods"`

	// currentRevision is the number of the revision the current spec is (a ControllerRevision in the
	// template's namespace, owned by the template). Every change of the spec other than spec.mode and
	// spec.updatePolicy is a new revision.
	// +optional
	CurrentRevision int64 `json:"currentRevision,omitempty"`

	// stableRevision is the revision that pods outside a canary get: the current one once promoted (no canary,
	// or percent 100). While a canary runs it stays at the revision promoted last.
	// +optional
	StableRevision int64 `json:"stableRevision,omitempty"`

	// revisions counts the injected pods per remembered revision, newest first; revisions no pod runs are
	// left out. Pods whose record names a revision that is no longer remembered are in outdatedPods only.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=16
	Revisions []RevisionPods `json:"revisions,omitempty"`

	// podsPerRevision is revisions in one line for kubectl get -o wide: "REVISION=PODS", newest first.
	// +optional
	PodsPerRevision string `json:"podsPerRevision,omitempty"`
}

// RevisionPods is how many pods run one revision of a template.
type RevisionPods struct {
	Revision int64 `json:"revision"`
	Pods     int32 `json:"pods"`
}

// Condition types and reasons used in SidecarTemplateStatus.
const (
	// ConditionReady is True when the template can be injected.
	ConditionReady = "Ready"
	// ConditionRollingRestart reports the rolling restart of a template with updatePolicy.restart Rolling:
	// True while workloads are being restarted or when none is outdated, False (reason
	// ProgressDeadlineExceeded) when a restarted workload did not progress in time, which stops the restarts.
	ConditionRollingRestart = "RollingRestart"
	// ConditionServedByPolicy is True when a generated MutatingAdmissionPolicy serves the template (spec.mode
	// Policy or Auto), False when the webhook does (reason ModeWebhook, or the construct a policy cannot serve)
	// or, in Policy mode, when nothing does because a policy cannot serve it.
	ConditionServedByPolicy = "ServedByPolicy"
)

// SidecarTemplate describes a sidecar once; every pod that requests it by annotation, or that its selector
// matches, receives it when the pod is created.
//
// Example, a log shipper sharing an emptyDir with the application:
//
//	apiVersion: sidecar.dev/v1alpha1
//	kind: SidecarTemplate
//	metadata:
//	  name: log-shipper
//	  namespace: team-a
//	spec:
//	  containers:
//	  - name: log-shipper
//	    image: fluent/fluent-bit:3.2
//	    volumeMounts:
//	    - name: app-logs
//	      mountPath: /var/log/app
//	      readOnly: true
//	  volumes:
//	  - name: app-logs
//	    emptyDir: {}
//	  volumeMounts:
//	  - name: app-logs
//	    mountPath: /var/log/app
//	  env:
//	  - name: LOG_DIR
//	    value: /var/log/app
//
// A pod receives it with the annotation sidecar.dev/inject: log-shipper.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=sct,categories=sidecar
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`,priority=1
// +kubebuilder:printcolumn:name="Pods",type=integer,JSONPath=`.status.injectedPods`
// +kubebuilder:printcolumn:name="Outdated",type=integer,JSONPath=`.status.outdatedPods`
// +kubebuilder:printcolumn:name="Revision",type=integer,JSONPath=`.status.currentRevision`
// +kubebuilder:printcolumn:name="Stable",type=integer,JSONPath=`.status.stableRevision`,priority=1
// +kubebuilder:printcolumn:name="Pods-Per-Revision",type=string,JSONPath=`.status.podsPerRevision`,priority=1
// +kubebuilder:printcolumn:name="Mode",type=string,JSONPath=`.spec.mode`
// +kubebuilder:printcolumn:name="Order",type=integer,JSONPath=`.spec.order`
// +kubebuilder:printcolumn:name="Failure-Policy",type=string,JSONPath=`.spec.failurePolicy`
// +kubebuilder:printcolumn:name="Selector",type=string,JSONPath=`.spec.selector`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type SidecarTemplate struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec says what the template adds to a pod and which pods receive it.
	// +required
	Spec SidecarTemplateSpec `json:"spec"`

	// status is written by the injector.
	// +optional
	Status SidecarTemplateStatus `json:"status,omitempty"`
}

// SidecarTemplateList is a list of SidecarTemplates.
//
// +kubebuilder:object:root=true
type SidecarTemplateList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []SidecarTemplate `json:"items"`
}
