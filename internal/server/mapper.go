package server

import (
	"net/http"

	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"
)

// newMapper is controller-runtime's lazy REST mapper, with the mapping of ControllerRevisions (apps/v1, a kind
// every API server serves) known in advance. The cache is told to keep only the templates' revisions
// (cache.Options.ByObject), and controller-runtime asks the mapper about every ByObject kind when the manager is
// made: without this the server could not even be set up (and say what is wrong with its options) before the
// API server answers. Hand-written because the mapper that controller-runtime builds has no way to be told a
// mapping.
func newMapper(c *rest.Config, httpClient *http.Client) (meta.RESTMapper, error) {
	m, err := apiutil.NewDynamicRESTMapper(c, httpClient)
	if err != nil {
		return nil, err
	}
	return revisionMapper{m}, nil
}

type revisionMapper struct{ meta.RESTMapper }

var controllerRevision = appsv1.SchemeGroupVersion.WithKind("ControllerRevision")

func (m revisionMapper) RESTMapping(gk schema.GroupKind, versions ...string) (*meta.RESTMapping, error) {
	if gk == controllerRevision.GroupKind() && (len(versions) == 0 || versions[0] == controllerRevision.Version) {
		return &meta.RESTMapping{GroupVersionKind: controllerRevision, Scope: meta.RESTScopeNamespace,
			Resource: appsv1.SchemeGroupVersion.WithResource("controllerrevisions")}, nil
	}
	return m.RESTMapper.RESTMapping(gk, versions...)
}
