package store

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/cache"

	"github.com/sidecar-dev/sidecar-injector/internal/api/v1alpha1"
	"github.com/sidecar-dev/sidecar-injector/internal/inject"
)

// A template's revisions are ControllerRevisions in its namespace, as DaemonSets and StatefulSets keep theirs:
// one per spec the template has had, numbered, owned by the template (so they are garbage-collected with it),
// labelled LabelTemplateRevision=<hash>. The controller writes them (controller.TemplateReconciler); the store
// hands them to the engine (inject.CompileRevisions). Their data is the template as it was: its generation and
// spec, encoded as a SidecarTemplate.

// RevisionName is the name of the ControllerRevision of template name with the given hash: the name, cut so
// that the whole stays a valid object name, and the hash.
func RevisionName(name, hash string) string {
	const maxName = 253
	if len(name)+1+len(hash) > maxName {
		name = strings.TrimRight(name[:maxName-1-len(hash)], ".-")
	}
	return name + "-" + hash
}

// NewRevision returns the ControllerRevision that remembers t's current spec as revision number.
func NewRevision(t *v1alpha1.SidecarTemplate, number int64, hash string) (*appsv1.ControllerRevision, error) {
	data, err := json.Marshal(&v1alpha1.SidecarTemplate{
		TypeMeta:   metav1.TypeMeta{APIVersion: v1alpha1.GroupVersion.String(), Kind: "SidecarTemplate"},
		ObjectMeta: metav1.ObjectMeta{Name: t.Name, Namespace: t.Namespace, Generation: t.Generation},
		Spec:       t.Spec,
	})
	if err != nil {
		return nil, fmt.Errorf("encode revision %d of %s/%s: %w", number, t.Namespace, t.Name, err)
	}
	return &appsv1.ControllerRevision{
		ObjectMeta: metav1.ObjectMeta{
			Name:      RevisionName(t.Name, hash),
			Namespace: t.Namespace,
			Labels:    map[string]string{v1alpha1.LabelTemplateRevision: hash},
			// Not blockOwnerDeletion: setting it needs the right to update the template's finalizers, and
			// nothing waits for revisions to be gone.
			OwnerReferences: []metav1.OwnerReference{{APIVersion: v1alpha1.GroupVersion.String(), Kind: "SidecarTemplate",
				Name: t.Name, UID: t.UID, Controller: ptr.To(true)}},
		},
		Data:     runtime.RawExtension{Raw: data},
		Revision: number,
	}, nil
}

// RevisionOwner returns the template (namespace/name) a revision belongs to: its controller owner of kind
// SidecarTemplate; ok is false for any other ControllerRevision.
func RevisionOwner(cr *appsv1.ControllerRevision) (types.NamespacedName, types.UID, bool) {
	o := metav1.GetControllerOfNoCopy(cr)
	if o == nil || o.Kind != "SidecarTemplate" || !strings.HasPrefix(o.APIVersion, v1alpha1.GroupVersion.Group+"/") {
		return types.NamespacedName{}, "", false
	}
	return types.NamespacedName{Namespace: cr.Namespace, Name: o.Name}, o.UID, true
}

// DecodeRevision returns the revision a ControllerRevision holds; ok is false when its data is not a template.
func DecodeRevision(cr *appsv1.ControllerRevision) (inject.Revision, bool) {
	return decodeRevision(cr.Revision, cr.Data.Raw)
}

// decodeRevision decodes revision number's data, a SidecarTemplate's JSON.
func decodeRevision(number int64, data []byte) (inject.Revision, bool) {
	var t v1alpha1.SidecarTemplate
	if len(data) == 0 || json.Unmarshal(data, &t) != nil {
		return inject.Revision{}, false
	}
	return inject.Revision{Number: number, Template: &t}, true
}

// RevisionObject is the ControllerRevision object the injector's cache and RevisionSelector are about.
func RevisionObject() *appsv1.ControllerRevision { return &appsv1.ControllerRevision{} }

// RevisionCache is the cache setting for ControllerRevisions: only those labelled as a template's, so that the
// injector does not keep every DaemonSet's and StatefulSet's history in memory.
func RevisionCache() cache.ByObject {
	sel, _ := metav1.LabelSelectorAsSelector(&metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
		{Key: v1alpha1.LabelTemplateRevision, Operator: metav1.LabelSelectorOpExists}}}) // a constant selector parses
	return cache.ByObject{Label: sel}
}

// revisionEvent takes in a ControllerRevision's change: the template's history is replaced and the template
// compiled again when next needed.
func (s *Templates) revisionEvent(obj any, deleted bool) {
	if tomb, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
		obj, deleted = tomb.Obj, true
	}
	cr, ok := obj.(*appsv1.ControllerRevision)
	if !ok {
		return
	}
	key, uid, ok := RevisionOwner(cr)
	if !ok {
		return
	}
	// Checked here, so that a revision whose data is not a template is left out as soon as it is seen; decoded
	// again only when the template is compiled (storedRevision).
	_, ok = DecodeRevision(cr)
	s.mu.Lock()
	defer s.mu.Unlock()
	h := s.history[key]
	i := slices.IndexFunc(h, func(r storedRevision) bool { return r.name == cr.Name })
	rev := storedRevision{name: cr.Name, owner: uid, number: cr.Revision, data: cr.Data.Raw}
	switch {
	case i >= 0 && (deleted || !ok):
		h = slices.Delete(slices.Clone(h), i, i+1)
	case i >= 0:
		h = slices.Clone(h)
		h[i] = rev
	case !deleted && ok:
		h = append(slices.Clone(h), rev)
	default:
		return
	}
	if len(h) == 0 {
		delete(s.history, key)
	} else {
		s.history[key] = h
	}
	if ns := s.byNamespace[key.Namespace]; ns != nil {
		if e := ns.byName[key.Name]; e != nil {
			ns.byName[key.Name] = &entry{obj: e.obj, revs: s.revisionsOf(e.obj)}
			s.rebuildLocked(key.Namespace, ns)
		}
	}
}

// storedRevision is one revision the store holds for a template, with the UID of the template it belongs to
// (a template deleted and created again under the same name has other revisions). It keeps the revision's data
// as the informer's ControllerRevision holds it (shared, not copied) and decodes it only when the template is
// compiled, i.e. for namespaces that see pods: decoded once and kept, every template's revision would be a
// second typed copy of every template (about 2 KB each, README "Memory at scale").
type storedRevision struct {
	name   string
	owner  types.UID
	number int64
	data   []byte
}

// revisionsOf returns the revisions of t that belong to this very object; s.mu must be held.
func (s *Templates) revisionsOf(t *v1alpha1.SidecarTemplate) []storedRevision {
	h := s.history[types.NamespacedName{Namespace: t.Namespace, Name: t.Name}]
	if !slices.ContainsFunc(h, func(r storedRevision) bool { return r.owner != t.UID }) {
		return h // all of them, shared: a history is replaced, never modified
	}
	out := make([]storedRevision, 0, len(h))
	for _, r := range h {
		if r.owner == t.UID {
			out = append(out, r)
		}
	}
	return out
}

// decodeRevisions decodes revs for compiling; each decoded once already when it was stored (revisionEvent).
func decodeRevisions(revs []storedRevision) []inject.Revision {
	out := make([]inject.Revision, 0, len(revs))
	for _, r := range revs {
		if rev, ok := decodeRevision(r.number, r.data); ok {
			out = append(out, rev)
		}
	}
	return out
}

// RevisionHandler returns the event handler that feeds ControllerRevisions to the store.
func (s *Templates) RevisionHandler() toolscache.ResourceEventHandler {
	return toolscache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { s.revisionEvent(obj, false) },
		UpdateFunc: func(_, obj any) { s.revisionEvent(obj, false) },
		DeleteFunc: func(obj any) { s.revisionEvent(obj, true) },
	}
}

// RegisterRevisions feeds the store from the informer for template revisions in informers (a controller-runtime
// cache set up with RevisionCache).
func (s *Templates) RegisterRevisions(ctx context.Context, informers cache.Informers) (toolscache.ResourceEventHandlerRegistration, error) {
	inf, err := informers.GetInformer(ctx, RevisionObject(), cache.BlockUntilSynced(false))
	if err != nil {
		return nil, fmt.Errorf("cannot watch template revisions (ControllerRevisions): %w", err)
	}
	reg, err := inf.AddEventHandler(s.RevisionHandler())
	if err != nil {
		return nil, fmt.Errorf("cannot watch template revisions (ControllerRevisions): %w", err)
	}
	return reg, nil
}
