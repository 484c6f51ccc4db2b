package v1alpha1

// Every annotation and label key the product reads or writes is defined here and nowhere else.
const (
	// AnnotationInject on a pod requests templates by name, comma-separated; "false" opts the pod out of every
	// template, selector-matched ones included.
	AnnotationInject = "sidecar.dev/inject"

	// AnnotationStatus on a pod records what the webhook injected. Written by the webhook only.
	AnnotationStatus = "sidecar.dev/status"

	// LabelInjection on a namespace: the value LabelInjectionDisabled turns all injection off there.
	LabelInjection = "sidecar.dev/injection"

	// LabelInjectionDisabled is the value of LabelInjection that turns injection off.
	LabelInjectionDisabled = "disabled"

	// LabelRestart on a namespace: the value LabelRestartEnabled lets the injector restart the namespace's
	// workloads whose pods run an outdated version of a template with updatePolicy.restart Rolling.
	LabelRestart = "sidecar.dev/restart"

	// LabelRestartEnabled is the value of LabelRestart that allows restarts.
	LabelRestartEnabled = "enabled"

	// AnnotationRestartedFor on a workload's pod template is what the injector's rolling restart writes, like
	// kubectl's restartedAt: "<template namespace>/<template name>@<template hash>". The value names the
	// version the restart is for, not a time, so that writing it again changes nothing and never starts a
	// second rollout; its pods carry it, which tells the injector, also after its own restart, that the
	// workload is already rolling for that version.
	AnnotationRestartedFor = "sidecar.dev/restarted-for"

	// ParamAnnotationSuffix builds the pod annotation that sets a template parameter:
	// "<template name>" + ParamAnnotationSuffix + "<parameter name>", e.g. "log-shipper.param.sidecar.dev/level".
	ParamAnnotationSuffix = ".param.sidecar.dev/"

	// ReservedPrefix is the key prefix that templates may not set in pod annotations or labels.
	ReservedPrefix = "sidecar.dev/"

	// LabelTemplateRevision on a ControllerRevision marks it as a revision of a SidecarTemplate (its controller
	// owner); the value is the revision's hash, as pods' sidecar.dev/status records it.
	LabelTemplateRevision = "sidecar.dev/template-revision"

	// OptOutValue is the value of AnnotationInject that opts a pod out.
	OptOutValue = "false"
)

// SystemNamespaces are never injected, whatever their pods request.
var SystemNamespaces = []string{"kube-system", "kube-public", "kube-node-lease"}
