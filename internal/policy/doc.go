// Package policy compiles SidecarTemplates into admissionregistration.k8s.io/v1 admission policies, so that the
// API server injects them itself, without the webhook (Policy mode). It is pure: templates in, objects out.
//
// # Design: a policy per scope, one mutation per template, in injection order
//
// The generated objects are MutatingAdmissionPolicies with one JSONPatch mutation per served template, in the
// webhook's injection order (order, namespace, name): one policy per namespace that has served templates of its
// own (those and the cluster-wide ones, bound to that namespace) and one for every other namespace (the
// cluster-wide ones), so that a pod meets exactly one policy, holding only the templates of its scope; and up to
// two ValidatingAdmissionPolicies (Deny for failurePolicy Fail, Warn for Ignore) that say why a template a pod
// wants was not applied.
//
// The alternatives, and why not:
//
//   - One policy per template. The API server applies MutatingAdmissionPolicies in no defined order (it keeps
//     them in a map), while the webhook's result depends on the order: where containers land, which of two
//     templates setting the same thing wins, the order of the record. The mutations of one policy are applied
//     in order, so one policy reproduces the webhook exactly.
//   - One generic policy with paramKind SidecarTemplate and a binding per template. Its CEL would interpret a
//     template at admission time: walk arbitrary nested containers and volumes to substitute per-pod values,
//     and compute the hash of the spec the record carries. CEL can do neither within its cost budget (it has
//     no hash function), and each pod would pay for interpreting every template. Compiling moves that work to
//     the time the template changes, and what remains per pod is a few string and list operations.
//
// Why a policy per namespace and not one for all: the API server converts the pod for every mutation of a policy
// it calls, applied or not (about 1.5 ms each, measured), so a pod must not meet other namespaces' templates. The
// price: a cluster-wide template is repeated in every namespace's policy, and a change to it regenerates them
// all (the controller does that).
//
// # What a mutation does
//
// A template's mutation applies when the pod is in the template's scope (its own namespace; for a cluster-wide
// template, the namespaces its namespaceSelector selects, except those where a namespaced template of the same
// name replaces it under its namespaceOverride: Allow; for a namespaced template, its namespace unless a
// cluster-wide template of its name serves it there under Deny: the engine's override rule), the pod wants it (requested in sidecar.dev/inject, or selected), the pod's record does not
// name it yet (idempotence under reinvocation), and nothing conflicts (a name the pod already has, a namespace
// setting it sets otherwise, a mount of a volume nobody provides, a required parameter it does not set). It then
// adds what the pod lacks, as the webhook does, and its entry to sidecar.dev/status, byte for byte the entry
// the webhook writes. The binding leaves out the namespaces that are never injected, and a match condition the
// pods that opt out.
//
// A template that applies but is not applied (a conflict) is caught by the validating policy, which sees the
// pod after every mutation: its record does not name the template. Fail denies the pod, Ignore warns.
//
// # What is not compiled
//
// What CEL cannot express exactly is not approximated: the template is reported not compilable, with a reason
// per construct (Unsupported), and stays on the webhook. See the Reason constants. Among them: a selector that
// reads a label some template adds. The webhook selects again on the labels the templates it applies add, until
// nothing new is selected, and applies the result in injection order; a policy's mutation sees only what the
// mutations before it added, and a reinvocation appends after everything, so the pods would differ.
//
// Pods that arrive with a record written elsewhere (a pod re-created from an exported manifest, or a forged
// record): a policy counts a template as injected as the webhook does (the record names it, and each sidecar and
// volume it adds is in the pod as the template renders it), but it keeps the record's entries of other
// templates, where the webhook drops those that do not apply when it rewrites the record.
package policy
