// Package store keeps the compiled SidecarTemplates and the namespaces' labels in memory, fed by informer event
// handlers, so that the admission path never calls the API server and never scans the whole cluster.
package store

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"
	"sync/atomic"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"

	"github.com/sidecar-dev/sidecar-injector/internal/api/v1alpha1"
	"github.com/sidecar-dev/sidecar-injector/internal/inject"
)

// Templates is an index of templates by namespace, then name. It is safe for concurrent use: event handlers
// write, admissions read. Each template is compiled (inject.Compile) once per change of its spec, the first time
// a pod of a namespace it serves is admitted: the informer's initial list is taken in without compiling ten
// thousand templates before the webhook is ready, and templates of namespaces that never see a pod are never
// compiled. The first admission in a namespace after a change pays for compiling that namespace's templates
// (about 30 µs each).
//
// It implements toolscache.ResourceEventHandler for the StoredTemplates of its informer (TemplateInformer), and
// for *v1alpha1.SidecarTemplate objects (a cache without TemplateTransform, tests), which it stores the same way.
type Templates struct {
	injectorNamespace string
	// policyMode is set when the injector generates admission policies (serve --enable-policy-mode): a template
	// whose ServedByPolicy condition is True for its current generation is then marked served elsewhere
	// (inject.Template.ServedByPolicy), and the webhook leaves it to the policy.
	policyMode bool

	mu sync.RWMutex
	// byNamespace holds, per namespace that has templates, its templates by name and a snapshot of them.
	byNamespace map[string]*namespaceTemplates
	// cluster is the snapshot of the injector namespace's templates (the cluster-wide ones); replaced, never
	// modified, on every change there.
	cluster *snapshot

	// bare holds the indexes of namespaces without templates of their own that have seen pods: each shares the
	// cluster-wide layer but remembers its own namespace's verdict on namespaceSelectors. Bounded: emptied when
	// it reaches maxBare (namespaces come and go; this store does not watch them).
	bareMu sync.Mutex
	bare   map[string]*versionedIndex

	// informerCache is the template informer's own store (Register), which Reader reads: what the
	// informer's events reflect when they are handed on, before this store's handler has taken them in.
	informerCache toolscache.Indexer

	// history holds each template's revisions (revisions.go), under mu; replaced, never modified. It refers to
	// the cache's Revisions (shared, read-only), not copies, and their data is not decoded: at 10,100 templates a
	// decoded copy of every revision was 20 MiB of live heap, and most revisions are their template's current
	// spec, which compiling never decodes (inject.CompileRevisions). An earlier revision is decoded and compiled
	// when its template is compiled, i.e. when a pod of a namespace it serves is admitted (the compiled template
	// keeps it to recognise outdated sidecars), not for every template at a start.
	history map[types.NamespacedName][]*Revision
}

const maxBare = 4096

// entry is one template: the informer's current object, and what it compiles to once asked for.
type entry struct {
	// obj is the object in the informer's cache (shared and read-only): the store keeps no copy. Replaced
	// under the write lock on every update, so that an old version is never kept alive.
	obj *StoredTemplate
	// revs are the template's revisions when the entry was made; a change of them makes a new entry.
	revs     []inject.Revision
	compiled atomic.Pointer[inject.Template]
}

// template returns the compiled template, compiling it on first use.
func (e *entry) template(s *Templates) *inject.Template {
	if t := e.compiled.Load(); t != nil {
		return t
	}
	t := s.compileOne(e)
	if !e.compiled.CompareAndSwap(nil, t) {
		return e.compiled.Load() // another admission compiled it meanwhile: the same result, shared
	}
	return t
}

// peek returns the compiled template if it is compiled, else compiles it without keeping the result.
func (e *entry) peek(s *Templates) *inject.Template {
	if t := e.compiled.Load(); t != nil {
		return t
	}
	return s.compileOne(e)
}

// compileOne compiles e's template (its spec decoded for this) with its remembered revisions and marks it
// served by policy when it is. A spec that cannot be decoded (the store encoded it: not expected) makes the
// template invalid, with the reason as its error.
func (s *Templates) compileOne(e *entry) *inject.Template {
	t, err := e.obj.Decode()
	if err != nil {
		c := inject.CompileRevisions(&v1alpha1.SidecarTemplate{ObjectMeta: e.obj.ObjectMeta}, s.injectorNamespace, nil)
		c.Err = err
		return c
	}
	return inject.CompileRevisions(t, s.injectorNamespace, e.revs).WithServedByPolicy(s.servedByPolicy(e.obj))
}

// servedByPolicy reports whether a generated MutatingAdmissionPolicy serves obj: policy mode is on and obj's
// ServedByPolicy condition is True for its current generation (a condition of an older generation describes a
// spec the policy may not serve yet, and the webhook serves the template meanwhile).
func (s *Templates) servedByPolicy(obj *StoredTemplate) bool {
	return s.policyMode && obj.servedByPolicy()
}

// EnablePolicyMode makes the store mark the templates that admission policies serve (see policyMode). Call it
// before the store is fed.
func (s *Templates) EnablePolicyMode() { s.policyMode = true }

// namespaceTemplates is one namespace's templates.
type namespaceTemplates struct {
	byName map[string]*entry
	// own is this namespace's templates, in no order; replaced, never modified.
	own []*entry
	// indexed caches the namespace's Index: own over the cluster-wide templates; rebuilt lazily when either
	// side changes.
	indexed atomic.Pointer[versionedIndex]
}

// snapshot is an immutable list of the cluster-wide templates; version counts its changes.
type snapshot struct {
	version   uint64
	templates []*entry
	// index is the cluster-wide snapshot's inject.Index, built on first use.
	index atomic.Pointer[inject.Index]
}

// versionedIndex is a namespace's index and the version of the cluster-wide snapshot under it.
type versionedIndex struct {
	version uint64
	index   *inject.Index
}

// NewTemplates returns an empty store. injectorNamespace is the injector's own namespace: its templates are
// cluster-wide.
func NewTemplates(injectorNamespace string) *Templates {
	return &Templates{
		injectorNamespace: injectorNamespace,
		byNamespace:       map[string]*namespaceTemplates{},
		cluster:           &snapshot{},
		bare:              map[string]*versionedIndex{},
		history:           map[types.NamespacedName][]*Revision{},
	}
}

// InjectorNamespace returns the namespace whose templates are cluster-wide.
func (s *Templates) InjectorNamespace() string { return s.injectorNamespace }

// Index returns the candidates for a pod in namespace indexed for admission (inject.Index): the namespace's own
// templates over the cluster-wide ones, whose index all namespaces share. It is built at most once per change of
// either side, and only for namespaces that see pods; the returned index is read-only.
func (s *Templates) Index(namespace string) *inject.Index {
	s.mu.RLock()
	defer s.mu.RUnlock()
	// Built under the read lock, which holds back only the event handlers: a handler's change cannot slip in
	// between reading the templates and caching the index built from them.
	cluster := s.clusterIndex()
	ns := s.byNamespace[namespace]
	if namespace == s.injectorNamespace {
		return cluster
	}
	if ns == nil {
		return s.bareIndex(namespace, cluster)
	}
	if c := ns.indexed.Load(); c != nil && c.version == s.cluster.version {
		return c.index
	}
	x := cluster.ForNamespace(namespace, s.compile(ns.own))
	ns.indexed.Store(&versionedIndex{version: s.cluster.version, index: x})
	return x
}

// clusterIndex returns the cluster-wide layer's index, building it on first use; s.mu must be held (for reading).
func (s *Templates) clusterIndex() *inject.Index {
	cluster := s.cluster.index.Load()
	if cluster == nil {
		cluster = inject.NewClusterIndex(s.injectorNamespace, s.compile(s.cluster.templates))
		if !s.cluster.index.CompareAndSwap(nil, cluster) {
			cluster = s.cluster.index.Load()
		}
	}
	return cluster
}

// Peek is Index for a reader that is not an admission (the status controller, which looks at every namespace
// after a start): it returns the index admissions use when there is one, else one built for this call, whose
// templates are compiled for it and not kept. Without it the controller would leave every template of the
// cluster compiled, and an index per namespace, in memory for good; admissions only need those of namespaces
// that see pods. The cluster-wide layer, which every admission needs, is built and kept as by Index.
func (s *Templates) Peek(namespace string) *inject.Index {
	s.mu.RLock()
	defer s.mu.RUnlock()
	cluster := s.clusterIndex()
	if namespace == s.injectorNamespace {
		return cluster
	}
	ns := s.byNamespace[namespace]
	if ns == nil {
		return cluster.ForNamespace(namespace, nil)
	}
	if c := ns.indexed.Load(); c != nil && c.version == s.cluster.version {
		return c.index
	}
	own := make([]*inject.Template, len(ns.own))
	for i, e := range ns.own {
		own[i] = e.peek(s)
	}
	return cluster.ForNamespace(namespace, own)
}

// PeekTemplate is Get for a reader that is not an admission: the compiled template when it is compiled
// already, else compiled for this call and not kept (see Peek); nil when the store has no such template.
func (s *Templates) PeekTemplate(namespace, name string) *inject.Template {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if ns := s.byNamespace[namespace]; ns != nil {
		if e := ns.byName[name]; e != nil {
			return e.peek(s)
		}
	}
	return nil
}

// bareIndex returns the index of namespace, which has no templates of its own: the cluster-wide layer, with its
// own memory of the namespace's labels. s.mu must be held (for reading).
func (s *Templates) bareIndex(namespace string, cluster *inject.Index) *inject.Index {
	s.bareMu.Lock()
	defer s.bareMu.Unlock()
	if c := s.bare[namespace]; c != nil && c.version == s.cluster.version {
		return c.index
	}
	if len(s.bare) >= maxBare {
		clear(s.bare)
	}
	x := cluster.ForNamespace(namespace, nil)
	s.bare[namespace] = &versionedIndex{version: s.cluster.version, index: x}
	return x
}

// compile returns the compiled templates of entries, compiling those not compiled yet.
func (s *Templates) compile(entries []*entry) []*inject.Template {
	out := make([]*inject.Template, len(entries))
	for i, e := range entries {
		out[i] = e.template(s)
	}
	return out
}

// Get returns the compiled template namespace/name, or nil.
func (s *Templates) Get(namespace, name string) *inject.Template {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if ns := s.byNamespace[namespace]; ns != nil {
		if e := ns.byName[name]; e != nil {
			return e.template(s)
		}
	}
	return nil
}

// Len returns the number of templates in the store.
func (s *Templates) Len() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	n := 0
	for _, ns := range s.byNamespace {
		n += len(ns.byName)
	}
	return n
}

// Set stores t (its metadata and status not copied: t must not be modified afterwards, as for any object of an
// informer's cache), replacing the template of the same namespace and name. It is compiled when first needed.
func (s *Templates) Set(t *v1alpha1.SidecarTemplate) {
	if st := s.stored(t); st != nil {
		s.set(st)
	}
}

// stored returns obj as a StoredTemplate: the informer's own, or a typed template encoded; nil for any other
// object, or a template that cannot be encoded (not expected: it was decoded from JSON).
func (s *Templates) stored(obj any) *StoredTemplate {
	switch t := obj.(type) {
	case *StoredTemplate:
		return t
	case *v1alpha1.SidecarTemplate:
		st, err := storedTemplate(t)
		if err != nil {
			utilruntime.HandleError(err)
			return nil
		}
		return st
	}
	return nil
}

// set is Set for the informer's StoredTemplate.
func (s *Templates) set(t *StoredTemplate) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ns := s.byNamespace[t.Namespace]
	if ns == nil {
		ns = &namespaceTemplates{byName: map[string]*entry{}}
		s.byNamespace[t.Namespace] = ns
	}
	ns.byName[t.Name] = &entry{obj: t, revs: s.revisionsOf(t)}
	s.rebuildLocked(t.Namespace, ns)
}

// refresh points the entry of t at t, the informer's newer object for the same spec (a status or metadata
// change): the compiled template stays, and the older object is not kept alive. It reports false when the store
// has no entry for t.
func (s *Templates) refresh(t *StoredTemplate) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ns := s.byNamespace[t.Namespace]; ns != nil {
		if e := ns.byName[t.Name]; e != nil {
			e.obj = t
			return true
		}
	}
	return false
}

// Delete removes the template namespace/name, if present.
func (s *Templates) Delete(namespace, name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ns := s.byNamespace[namespace]
	if ns == nil {
		return
	}
	if _, ok := ns.byName[name]; !ok {
		return
	}
	delete(ns.byName, name)
	if len(ns.byName) == 0 {
		delete(s.byNamespace, namespace)
	}
	s.rebuildLocked(namespace, ns)
}

// rebuildLocked replaces the snapshot of namespace after a change. s.mu must be held for writing.
func (s *Templates) rebuildLocked(namespace string, ns *namespaceTemplates) {
	ns.own = slices.Collect(maps.Values(ns.byName))
	ns.indexed.Store(nil)
	if namespace == s.injectorNamespace {
		// Every namespace's index is now stale; they notice by the version and rebuild on next use.
		s.cluster = &snapshot{version: s.cluster.version + 1, templates: ns.own}
	}
}

// sameSpec reports whether an update event carries nothing that Compile would see differently: a resync, or a
// change of status or metadata only (a change of the spec changes the generation) that leaves the stable
// revision (status.stableRevision, which pods outside a canary get) as it was.
func sameSpec(oldT, newT *StoredTemplate) bool {
	if oldT.ResourceVersion != "" && oldT.ResourceVersion == newT.ResourceVersion {
		return true
	}
	return newT.Generation != 0 && newT.Generation == oldT.Generation &&
		newT.Status.StableRevision == oldT.Status.StableRevision && newT.UID == oldT.UID
}

// OnAdd implements toolscache.ResourceEventHandler.
func (s *Templates) OnAdd(obj any, _ bool) {
	if t := s.stored(obj); t != nil {
		s.set(t)
	}
}

// OnUpdate implements toolscache.ResourceEventHandler.
func (s *Templates) OnUpdate(oldObj, newObj any) {
	newT := s.stored(newObj)
	if newT == nil {
		return
	}
	if oldT := s.stored(oldObj); oldT != nil && sameSpec(oldT, newT) &&
		s.servedByPolicy(oldT) == s.servedByPolicy(newT) && s.refresh(newT) {
		return
	}
	s.set(newT)
}

// OnDelete implements toolscache.ResourceEventHandler; it understands the informer's tombstones.
func (s *Templates) OnDelete(obj any) {
	if tomb, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
		if ns, name, err := toolscache.SplitMetaNamespaceKey(tomb.Key); err == nil {
			s.Delete(ns, name)
		}
		return
	}
	switch t := obj.(type) {
	case *StoredTemplate:
		s.Delete(t.Namespace, t.Name)
	case *v1alpha1.SidecarTemplate:
		s.Delete(t.Namespace, t.Name)
	}
}

var _ toolscache.ResourceEventHandler = (*Templates)(nil)

// Register feeds the store from the informer for SidecarTemplates in informers (a controller-runtime cache).
// The returned registration's HasSynced tells when the store has seen every template of the initial list.
func (s *Templates) Register(ctx context.Context, informers cache.Informers) (toolscache.ResourceEventHandlerRegistration, error) {
	inf, err := informers.GetInformer(ctx, &v1alpha1.SidecarTemplate{}, cache.BlockUntilSynced(false))
	if err != nil {
		return nil, fmt.Errorf("cannot watch SidecarTemplates: %w", err)
	}
	indexed, ok := inf.(interface{ GetIndexer() toolscache.Indexer })
	if !ok {
		return nil, fmt.Errorf("cannot read SidecarTemplates: the cache's informer (%T) does not expose its indexer", inf)
	}
	s.mu.Lock()
	s.informerCache = indexed.GetIndexer()
	s.mu.Unlock()
	reg, err := inf.AddEventHandler(s)
	if err != nil {
		return nil, fmt.Errorf("cannot watch SidecarTemplates: %w", err)
	}
	return reg, nil
}

// CaughtUp reports whether the store holds, for each of namespaces, exactly the templates the informer's own
// store holds now (the same objects). The informer updates its store before it hands an event to any handler,
// and each handler (this store's, a controller's) receives events on its own goroutine: a controller woken by a
// template's deletion can look at this store before this store has taken the deletion in, and would decide on
// the template that is gone (a clash it no longer has) with nothing left to wake it again. Without a registered
// informer (tests that feed the store directly) it reports true.
func (s *Templates) CaughtUp(namespaces ...string) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.informerCache == nil {
		return true
	}
	for _, namespace := range namespaces {
		items, err := s.informerCache.ByIndex(toolscache.NamespaceIndex, namespace)
		if err != nil {
			return false
		}
		ns := s.byNamespace[namespace]
		held := 0
		if ns != nil {
			held = len(ns.byName)
		}
		if held != len(items) {
			return false
		}
		for _, item := range items {
			t, ok := item.(metav1.Object)
			if !ok {
				return false
			}
			e := ns.byName[t.GetName()]
			if e == nil || e.obj.ResourceVersion != t.GetResourceVersion() {
				return false
			}
		}
	}
	return true
}
