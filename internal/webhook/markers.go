package webhook

// This file holds only the kubebuilder markers from which `make manifests` generates config/webhook and
// config/rbac. They live beside the webhook code so that a change of path or permissions is reviewed with it.

// The webhook configuration. Why each option:
//   - failurePolicy=fail: a pod that should carry a sidecar (a proxy, a secrets agent) must not start without
//     it because the injector was unreachable. Per-template failure policies are decided inside the webhook.
//   - sideEffects=None: the webhook only reads; the API server then also calls it for dry-run requests, which
//     get the same patch (SPEC guarantee 5).
//   - verbs=create only: SPEC says only pod CREATE is mutated; not registering UPDATE keeps every other
//     request off the admission path entirely.
//   - reinvocationPolicy=IfNeeded: a later mutating webhook may add containers that need our mounts and env;
//     the engine is idempotent (SPEC guarantee 2), so a second call adds only what is missing.
//   - serviceName/serviceNamespace: the injector's Service in its own namespace, so the generated manifest is
//     usable as it is; the Helm chart templates its own copy.
//
// +kubebuilder:webhookconfiguration:mutating=true,name=sidecar-injector
// +kubebuilder:webhook:path=/mutate-v1-pod,mutating=true,failurePolicy=fail,sideEffects=None,groups="",resources=pods,verbs=create,versions=v1,name=inject.sidecar.dev,admissionReviewVersions=v1,reinvocationPolicy=IfNeeded,timeoutSeconds=10,serviceName=sidecar-injector,serviceNamespace=sidecar-injector

// The least the injector needs, no wildcards:
//   - sidecartemplates: read and watch them to build the template index the webhook serves from.
//   - sidecartemplates/status: the controller writes observedGeneration and the Ready condition.
//   - namespaces: read labels for sidecar.dev/injection=disabled and cluster-wide namespaceSelectors.
//   - events (core and events.k8s.io): record why a template is invalid; controller-runtime's recorder uses
//     one API or the other depending on version, and patch is used to aggregate repeated events.
//   - pods: read-only, for the drift controller that finds pods running an older template version.
//
// +kubebuilder:rbac:groups=sidecar.dev,resources=sidecartemplates,verbs=get;list;watch
// +kubebuilder:rbac:groups=sidecar.dev,resources=sidecartemplates/status,verbs=get;update;patch
// +kubebuilder:rbac:groups="",resources=namespaces,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=events,verbs=create;patch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch
// +kubebuilder:rbac:groups="",resources=pods,verbs=get;list;watch
