package inject

import (
	"slices"
	"strings"

	"gomodules.xyz/jsonpatch/v2"

	"github.com/sidecar-dev/sidecar-injector/internal/api/v1alpha1"
)

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
	ReasonShadowed                  Reason = "Shadowed"                  // a namespaced template of the same name replaces it (namespaceOverride: Allow)
	ReasonOverrideDenied            Reason = "OverrideDenied"            // namespaced, but the cluster-wide template of its name does not allow replacing it
	ReasonServedByPolicy            Reason = "ServedByPolicy"            // a MutatingAdmissionPolicy serves it, not the webhook
	ReasonOptedOut                  Reason = "OptedOut"                  // the pod says sidecar.dev/inject: "false"
	ReasonNamespaceDisabled         Reason = "NamespaceDisabled"         // namespace labelled sidecar.dev/injection=disabled
	ReasonSystemNamespace           Reason = "SystemNamespace"           // kube-system, kube-public, kube-node-lease
	ReasonInjectorNamespace         Reason = "InjectorNamespace"         // the injector's own namespace
	ReasonNotFound                  Reason = "NotFound"                  // requested, but no such template serves the pod
	ReasonInvalid                   Reason = "Invalid"                   // the template is invalid
	ReasonConflict                  Reason = "Conflict"                  // a name or setting clashes with the pod
	ReasonMissingParameter          Reason = "MissingParameter"          // a required parameter is not set by the pod
	ReasonInvalidParameter          Reason = "InvalidParameter"          // the pod sets a typed parameter of the wrong type or out of bounds
	ReasonPodDenied                 Reason = "PodDenied"                 // could be injected, but another template denies the pod
	ReasonLimitExceeded             Reason = "LimitExceeded"             // the template's work for this pod exceeds one of the Limits
	ReasonJobPolicySkip             Reason = "JobPolicySkip"             // the pod runs to completion and the template's jobPolicy is Skip
	ReasonOutdated                  Reason = "Outdated"                  // the pod's sidecar is an earlier revision's, kept (or denied: stalePods Deny)
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
	// Revision is the number of the template's revision the pod gets or has (0: not numbered).
	Revision int64 `json:"revision,omitempty"`
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
	return r.AppendPatchJSON(nil)
}

// AppendPatchJSON is PatchJSON appended to b (a recycled buffer, say); b unchanged when there is no patch.
func (r *Result) AppendPatchJSON(b []byte) ([]byte, error) {
	if len(r.Patch) == 0 {
		return b, nil
	}
	return appendPatch(slices.Grow(b, patchSizeHint(r.Patch)), r.Patch)
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

func (r *Result) skipAll(req Request, templates []*Template, reason Reason) {
	r.PodSkipReason = reason
	if req.OmitNotApplicable {
		return
	}
	r.Decisions = make([]Decision, 0, len(templates))
	for _, t := range templates {
		r.Decisions = append(r.Decisions, Decision{Namespace: t.Namespace, Name: t.Name, Outcome: OutcomeNotApplicable, Reason: reason})
	}
}

func (r *Result) fail(d *Decision, policy v1alpha1.FailurePolicy, reason Reason, msg string) {
	d.Reason, d.Message, d.Added = reason, msg, nil
	if policy == v1alpha1.FailurePolicyIgnore {
		d.Outcome = OutcomeSkipped
		r.Warnings = append(r.Warnings, msg+" (failurePolicy Ignore: the pod is admitted without this template)")
		return
	}
	d.Outcome = OutcomeDenied
	r.Denied = true
}

// denyMessage names every template that denied the pod, in decision order.
func (r *Result) denyMessage() string {
	var msgs []string
	for _, d := range r.Decisions {
		if d.Outcome == OutcomeDenied {
			msgs = append(msgs, d.Message)
		}
	}
	return strings.Join(msgs, "; ")
}
