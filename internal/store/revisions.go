package store

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"unique"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
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

// RevisionOf returns the revision a ControllerRevision holds, as stored: its number, its hash label and its data,
// not decoded (inject.Revision: only an earlier revision is decoded, when its template is compiled; one whose
// data is not a template is left out then).
func RevisionOf(cr *appsv1.ControllerRevision) inject.Revision {
	return inject.Revision{Number: cr.Revision, Hash: cr.Labels[v1alpha1.LabelTemplateRevision], Data: cr.Data.Raw}
}

// RevisionObject is the ControllerRevision object the injector's cache and RevisionSelector are about.
func RevisionObject() *appsv1.ControllerRevision { return &appsv1.ControllerRevision{} }

// RevisionCache is the cache setting for ControllerRevisions: only those labelled as a template's, so that the
// injector does not keep every DaemonSet's and StatefulSet's history in memory, and each in its compact form
// (RevisionTransform).
func RevisionCache() cache.ByObject {
	sel, _ := metav1.LabelSelectorAsSelector(&metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
		{Key: v1alpha1.LabelTemplateRevision, Operator: metav1.LabelSelectorOpExists}}}) // a constant selector parses
	return cache.ByObject{Label: sel, Transform: RevisionTransform}
}

// Revision is a template's ControllerRevision as the injector's cache keeps it (RevisionTransform): what the
// store and the status controller read (the template it belongs to, its number, hash label and data) and what
// the informer itself needs (namespace, name, resourceVersion), nothing else. The whole object, kept as the API
// server sends it, was 1,438 bytes per template at the scale scenario's 10,100 (BenchmarkMemoryAtScale), most of
// it metadata: a labels map, an owner reference, timestamps. Only the store's event handlers read the cache's
// ControllerRevisions; a Get or List of them from the cache fails on this type ("cache had type
// *store.Revision"), as a typed read of templates does. Read-only: the informer's object.
type Revision struct {
	namespace, name, resourceVersion string
	// template and templateUID are the SidecarTemplate that controls the revision; empty when none does (such a
	// ControllerRevision is kept without data, and the store ignores it).
	template    string
	templateUID types.UID
	inject.Revision
}

// GetObjectMeta makes a Revision something the informer can key and version (meta.Accessor).
func (r *Revision) GetObjectMeta() metav1.Object {
	return &metav1.ObjectMeta{Namespace: r.namespace, Name: r.name, ResourceVersion: r.resourceVersion}
}

// GetObjectKind and DeepCopyObject make a Revision a runtime.Object, as the cache's informer stores them.
func (r *Revision) GetObjectKind() schema.ObjectKind { return schema.EmptyObjectKind }

// DeepCopyObject copies r; its data is shared, as it is never modified.
func (r *Revision) DeepCopyObject() runtime.Object { c := *r; return &c }

// RevisionTransform is the cache transform for ControllerRevisions (it replaces the cache's default one): it
// turns each into a Revision. An earlier revision's data is compiled from it; the current one's data is kept
// too, because it becomes an earlier revision when the spec changes, and by then the spec it held is gone from
// the template. A Revision given again (a transform must be idempotent) is returned as it is.
func RevisionTransform(obj any) (any, error) {
	cr, ok := obj.(*appsv1.ControllerRevision)
	if !ok {
		return obj, nil
	}
	return compactRevision(cr), nil
}

// compactRevision returns cr's Revision. Strings that are parts of others share their bytes: the template's
// name is usually the revision name's prefix and the hash its suffix (RevisionName), and a namespace is
// interned (a thousand namespaces, ten templates each).
func compactRevision(cr *appsv1.ControllerRevision) *Revision {
	r := &Revision{namespace: unique.Make(cr.Namespace).Value(), name: cr.Name, resourceVersion: cr.ResourceVersion}
	key, uid, ok := RevisionOwner(cr)
	if !ok {
		return r
	}
	r.template, r.templateUID = key.Name, uid
	if strings.HasPrefix(cr.Name, key.Name) {
		r.template = cr.Name[:len(key.Name)]
	}
	r.Revision = RevisionOf(cr)
	if strings.HasSuffix(cr.Name, r.Hash) {
		r.Hash = cr.Name[len(cr.Name)-len(r.Hash):]
	}
	return r
}

// revisionEvent takes in a ControllerRevision's change: the template's history is replaced and the template
// compiled again when next needed. It takes the cache's Revision, or a whole ControllerRevision (from a cache
// without RevisionTransform), which it makes a Revision first.
func (s *Templates) revisionEvent(obj any, deleted bool) {
	if tomb, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
		obj, deleted = tomb.Obj, true
	}
	if cr, ok := obj.(*appsv1.ControllerRevision); ok {
		obj = compactRevision(cr)
	}
	rev, ok := obj.(*Revision)
	if !ok || rev.templateUID == "" {
		return
	}
	key := types.NamespacedName{Namespace: rev.namespace, Name: rev.template}
	s.mu.Lock()
	defer s.mu.Unlock()
	h := s.history[key]
	i := slices.IndexFunc(h, func(r *Revision) bool { return r.name == rev.name })
	switch {
	case i >= 0 && deleted:
		h = slices.Delete(slices.Clone(h), i, i+1)
	case i >= 0 && h[i].same(rev):
		return // a resync or a change of metadata only: the template's compiled form stays
	case i >= 0:
		h = slices.Clone(h)
		h[i] = rev
	case !deleted:
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

// same reports whether o is r unchanged, for what compiling reads.
func (r *Revision) same(o *Revision) bool {
	return r.templateUID == o.templateUID && r.Number == o.Number && r.Hash == o.Hash && bytes.Equal(r.Data, o.Data)
}

// revisionsOf returns the revisions of t that belong to this very object; s.mu must be held.
func (s *Templates) revisionsOf(t *StoredTemplate) []inject.Revision {
	h := s.history[types.NamespacedName{Namespace: t.Namespace, Name: t.Name}]
	out := make([]inject.Revision, 0, len(h))
	for _, r := range h {
		if r.templateUID == t.UID {
			out = append(out, r.Revision)
		}
	}
	return out
}

// HeldRevision is what the status controller reads of a template's revision.
type HeldRevision struct {
	Name, Hash string
	Number     int64
}

// History returns the revisions that the store holds of the template namespace/name whose UID is uid, in no
// order. The status controller reads them here rather than through a cache index of its own on
// ControllerRevisions: such an index keeps a set per template (at 10,100 templates, about 5 MiB of live heap).
func (s *Templates) History(namespace, name string, uid types.UID) []HeldRevision {
	s.mu.RLock()
	h := s.history[types.NamespacedName{Namespace: namespace, Name: name}]
	s.mu.RUnlock()
	out := make([]HeldRevision, 0, len(h))
	for _, r := range h {
		if r.templateUID == uid {
			out = append(out, HeldRevision{Name: r.name, Hash: r.Hash, Number: r.Number})
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
