// Package inject is the injection engine: a pure function from a pod (as the raw JSON of the admission request)
// and the candidate SidecarTemplates to an add-only JSON patch, a decision for every template and the admission
// warnings. It does no I/O; the webhook, the controller and the offline commands share it.
//
// The one entry point is Inject; templates come from Compile (once per template version) and, on the webhook's
// path, an Index per namespace. README.md beside this file follows one admission through the files and lists
// what to change to add a template field.
package inject
