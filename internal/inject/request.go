package inject

import "context"

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
	// nothing on the admission path reads them. explain and the tests keep them. A JobPolicySkip decision is
	// kept: it is about a template that applies to the pod, and metrics count it.
	OmitNotApplicable bool
	// Limits bound what this admission may ask for and produce; zero fields take DefaultLimits.
	Limits Limits
	// Images is what the platform declares its image policy may do to a sidecar's image (registry mirrors,
	// digest pinning); the zero value: the pod's image must be exactly the rendered one.
	Images ImageTolerance
	// Context, when set, is the request's: once it is done (the API server gave up waiting), Inject stops
	// between templates and returns its error. Nil never stops.
	Context context.Context
}
