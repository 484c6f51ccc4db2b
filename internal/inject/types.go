// Package inject is the injection engine: a pure function from a pod (as the raw JSON of the admission request)
// and the candidate SidecarTemplates to an add-only JSON patch, a decision for every template and the admission
// warnings. It does no I/O; the webhook and the offline commands share it.
package inject

import (
	"gomodules.xyz/jsonpatch/v2"
)

// Request is everything the engine needs to decide about one pod.
type Request struct {
	// Pod is the pod exactly as the admission request carries it (request.object.raw). The patch is computed
	// against these bytes, so fields unknown to this build's k8s.io/api are never touched.
	Pod []byte
	// Namespace is the namespace the pod is created in (the request's namespace; the pod's metadata.namespace
	// may be empty).
	Namespace string
	// NamespaceLabels are the labels of Namespace; nil when unknown.
	NamespaceLabels map[string]string
	// InjectorNamespace is the injector's own namespace: its templates are cluster-wide and its pods are never
	// injected.
	InjectorNamespace string
	// Templates are the candidates, in any order. Templates outside the pod's namespace and the injector's
	// namespace are ignored, whatever the caller passes (tenancy is enforced here, not only by the caller).
	Templates []*Template
	// Index, when set, replaces Templates: the candidates indexed for the pod's namespace (NewIndex; the store
	// keeps one per namespace). With OmitNotApplicable the engine then looks only at the templates the pod
	// requests or whose selector it may match; without it (every decision wanted), or when the index was built
	// for another namespace, it goes through all of the index's templates as it would through Templates.
	Index *Index
	// OmitNotApplicable leaves NotApplicable decisions out of the result. The webhook sets it: with many
	// cluster-wide templates, a decision for each one that does not apply is most of the engine's work, and
	// nothing on the admission path reads them. explain and the tests keep them.
	OmitNotApplicable bool
}

// Outcome is what happened to one template for one pod.
type Outcome string

const (
	// OutcomeInjected: the template was added to the pod by this patch.
	OutcomeInjected Outcome = "Injected"
	// OutcomeAlreadyInjected: the pod already contains what the template adds (reinvocation, or a pod fed back).
	OutcomeAlreadyInjected Outcome = "AlreadyInjected"
	// OutcomeNotApplicable: the template is not for this pod (not requested, selector does not match, ...).
	OutcomeNotApplicable Outcome = "NotApplicable"
	// OutcomeSkipped: the template should have been injected but could not be; its failurePolicy is Ignore, so
	// the pod is admitted without it and a warning says why.
	OutcomeSkipped Outcome = "Skipped"
	// OutcomeDenied: the template should have been injected but could not be; its failurePolicy is Fail, so the
	// pod is denied.
	OutcomeDenied Outcome = "Denied"
)

// Reason explains an Outcome. The set is fixed and documented in the README; metrics use it as a label.
type Reason string

const (
	ReasonRequested                 Reason = "Requested"                 // named in sidecar.dev/inject
	ReasonSelected                  Reason = "SelectorMatched"           // its selector matches the pod's labels
	ReasonAlreadyInjected           Reason = "AlreadyInjected"           // the pod already has what it adds
	ReasonNotRequested              Reason = "NotRequested"              // no selector and not named by the pod
	ReasonSelectorMismatch          Reason = "SelectorMismatch"          // its selector does not match the pod
	ReasonNamespaceSelectorMismatch Reason = "NamespaceSelectorMismatch" // cluster-wide, namespace not selected
	ReasonOutOfScope                Reason = "OutOfScope"                // lives in another tenant's namespace
	ReasonShadowed                  Reason = "Shadowed"                  // a namespaced template of the same name wins
	ReasonOptedOut                  Reason = "OptedOut"                  // the pod says sidecar.dev/inject: "false"
	ReasonNamespaceDisabled         Reason = "NamespaceDisabled"         // namespace labelled sidecar.dev/injection=disabled
	ReasonSystemNamespace           Reason = "SystemNamespace"           // kube-system, kube-public, kube-node-lease
	ReasonInjectorNamespace         Reason = "InjectorNamespace"         // the injector's own namespace
	ReasonNotFound                  Reason = "NotFound"                  // requested, but no such template serves the pod
	ReasonInvalid                   Reason = "Invalid"                   // the template is invalid
	ReasonConflict                  Reason = "Conflict"                  // a name or setting clashes with the pod
	ReasonMissingParameter          Reason = "MissingParameter"          // a required parameter is not set by the pod
	ReasonPodDenied                 Reason = "PodDenied"                 // could be injected, but another template denies the pod
)

// Decision is the engine's verdict on one template for one pod.
type Decision struct {
	// Namespace and Name identify the template; Namespace is empty for a requested name that matched nothing.
	Namespace string  `json:"namespace,omitempty"`
	Name      string  `json:"name"`
	Outcome   Outcome `json:"outcome"`
	Reason    Reason  `json:"reason"`
	// Message is a sentence for people; for Skipped and Denied it names the template, the field and the name.
	Message string `json:"message,omitempty"`
	// Added lists what this template added (Injected) or had added before (AlreadyInjected).
	Added *Added `json:"added,omitempty"`
}

// Added names what one template put into a pod. It is also the per-template record in sidecar.dev/status.
type Added struct {
	Containers     []string `json:"containers,omitempty"`
	InitContainers []string `json:"initContainers,omitempty"`
	Volumes        []string `json:"volumes,omitempty"`
}

// Result is the engine's answer for one pod.
type Result struct {
	// Patch is an RFC 6902 patch against Request.Pod; empty when nothing is to change. It only adds, with one
	// exception: the injector's own record annotation, sidecar.dev/status, is replaced when it changes.
	Patch []jsonpatch.Operation
	// Decisions has one entry per candidate template in scope and per requested name, in injection order
	// (order, namespace, name), requested names that matched nothing last.
	Decisions []Decision
	// Warnings are returned to the client as admission warnings.
	Warnings []string
	// Denied is set when a template with failurePolicy Fail could not be applied; DenyMessage says why,
	// naming every such template. A denied result has no patch.
	Denied      bool
	DenyMessage string
	// PodSkipReason is set when the pod as a whole is out of reach (system namespace, opt-out, ...).
	PodSkipReason Reason
}

// PatchJSON encodes the patch as the JSON the admission response carries; nil when there is no patch.
func (r *Result) PatchJSON() ([]byte, error) {
	if len(r.Patch) == 0 {
		return nil, nil
	}
	return appendPatch(make([]byte, 0, patchSizeHint(r.Patch)), r.Patch)
}

// Injected returns the decisions whose outcome is Injected.
func (r *Result) Injected() []Decision {
	var out []Decision
	for _, d := range r.Decisions {
		if d.Outcome == OutcomeInjected {
			out = append(out, d)
		}
	}
	return out
}

// Status is the JSON stored in the pod's sidecar.dev/status annotation.
type Status struct {
	Templates []StatusEntry `json:"templates"`
}

// StatusEntry records one injected template.
type StatusEntry struct {
	Namespace  string `json:"namespace"`
	Name       string `json:"name"`
	Generation int64  `json:"generation"`
	// Hash is a hash of the template's spec at injection time; a pod whose hash differs from the template's
	// current one runs an older version of it (drift).
	Hash string `json:"hash"`
	Added
}
