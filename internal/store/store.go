// Package store keeps the compiled SidecarTemplates and the namespaces' labels in memory, fed by informer event
// handlers, so that the admission path never calls the API server and never scans the whole cluster.
package store

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"

	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"

	"github.com/sidecar-dev/sidecar-injector/internal/api/v1alpha1"
	"github.com/sidecar-dev/sidecar-injector/internal/inject"
)

// Templates is an index of compiled templates by namespace, then name. It is safe for concurrent use: event
// handlers write, admissions read. Each template is compiled once per change (inject.Compile), when the event
// arrives, never on the admission path.
//
// It implements toolscache.ResourceEventHandler for *v1alpha1.SidecarTemplate objects.
type Templates struct {
	injectorNamespace string

	mu sync.RWMutex
	// byNamespace holds, per namespace that has templates, its templates by name and a snapshot of them.
	byNamespace map[string]*namespaceTemplates
	// cluster is the snapshot of the injector namespace's templates (the cluster-wide ones); replaced, never
	// modified, on every change there.
	cluster *snapshot
}

// namespaceTemplates is one namespace's templates.
type namespaceTemplates struct {
	byName map[string]*inject.Template
	// own is this namespace's templates in injection order; replaced, never modified.
	own []*inject.Template
	// indexed caches the namespace's Index: own over the cluster-wide templates; rebuilt lazily when either
	// side changes.
	indexed atomic.Pointer[versionedIndex]
}

// snapshot is an immutable list of templates. version identifies the cluster-wide snapshot it was built with.
type snapshot struct {
	version   uint64
	templates []*inject.Template
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
	cluster := s.cluster.index.Load()
	if cluster == nil {
		cluster = inject.NewClusterIndex(s.injectorNamespace, s.cluster.templates)
		if !s.cluster.index.CompareAndSwap(nil, cluster) {
			cluster = s.cluster.index.Load()
		}
	}
	ns := s.byNamespace[namespace]
	if ns == nil || namespace == s.injectorNamespace {
		return cluster
	}
	if c := ns.indexed.Load(); c != nil && c.version == s.cluster.version {
		return c.index
	}
	x := cluster.ForNamespace(namespace, ns.own)
	ns.indexed.Store(&versionedIndex{version: s.cluster.version, index: x})
	return x
}

// Get returns the compiled template namespace/name, or nil.
func (s *Templates) Get(namespace, name string) *inject.Template {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if ns := s.byNamespace[namespace]; ns != nil {
		return ns.byName[name]
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

// Set compiles t and stores it, replacing the template of the same namespace and name.
func (s *Templates) Set(t *v1alpha1.SidecarTemplate) {
	compiled := inject.Compile(t, s.injectorNamespace) // outside the lock: readers are never held up by it
	s.mu.Lock()
	defer s.mu.Unlock()
	ns := s.byNamespace[t.Namespace]
	if ns == nil {
		ns = &namespaceTemplates{byName: map[string]*inject.Template{}}
		s.byNamespace[t.Namespace] = ns
	}
	ns.byName[t.Name] = compiled
	s.rebuildLocked(t.Namespace, ns)
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
	own := make([]*inject.Template, 0, len(ns.byName))
	for _, t := range ns.byName {
		own = append(own, t)
	}
	slices.SortFunc(own, injectionOrder)
	ns.own = own
	ns.indexed.Store(nil)
	if namespace == s.injectorNamespace {
		// Every namespace's combined list is now stale; they notice by the version and rebuild on next use.
		s.cluster = &snapshot{version: s.cluster.version + 1, templates: own}
	}
}

// injectionOrder is the engine's order: spec.order, then namespace, then name.
func injectionOrder(a, b *inject.Template) int {
	return cmp.Or(cmp.Compare(a.Order, b.Order), cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
}

// unchanged reports whether an update event carries nothing that Compile would see differently: a resync, or
// a change of status or metadata only (the spec changes the generation).
func unchanged(prev *inject.Template, oldT, newT *v1alpha1.SidecarTemplate) bool {
	if prev == nil {
		return false
	}
	if oldT.ResourceVersion != "" && oldT.ResourceVersion == newT.ResourceVersion {
		return true
	}
	return newT.Generation != 0 && newT.Generation == oldT.Generation && prev.Generation == newT.Generation
}

// OnAdd implements toolscache.ResourceEventHandler.
func (s *Templates) OnAdd(obj any, _ bool) {
	if t, ok := obj.(*v1alpha1.SidecarTemplate); ok {
		s.Set(t)
	}
}

// OnUpdate implements toolscache.ResourceEventHandler.
func (s *Templates) OnUpdate(oldObj, newObj any) {
	newT, ok := newObj.(*v1alpha1.SidecarTemplate)
	if !ok {
		return
	}
	if oldT, ok := oldObj.(*v1alpha1.SidecarTemplate); ok && unchanged(s.Get(newT.Namespace, newT.Name), oldT, newT) {
		return
	}
	s.Set(newT)
}

// OnDelete implements toolscache.ResourceEventHandler; it understands the informer's tombstones.
func (s *Templates) OnDelete(obj any) {
	if tomb, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
		if t, ok := tomb.Obj.(*v1alpha1.SidecarTemplate); ok {
			s.Delete(t.Namespace, t.Name)
			return
		}
		if ns, name, err := toolscache.SplitMetaNamespaceKey(tomb.Key); err == nil {
			s.Delete(ns, name)
		}
		return
	}
	if t, ok := obj.(*v1alpha1.SidecarTemplate); ok {
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
	reg, err := inf.AddEventHandler(s)
	if err != nil {
		return nil, fmt.Errorf("cannot watch SidecarTemplates: %w", err)
	}
	return reg, nil
}
