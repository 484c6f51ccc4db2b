package store

import (
	"context"
	"fmt"
	"maps"
	"sync"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
)

// Namespaces keeps the labels of every namespace, fed by a metadata-only informer (metav1.PartialObjectMetadata
// of v1 Namespace), so that the admission path reads them from memory. It is safe for concurrent use.
//
// It implements toolscache.ResourceEventHandler for metav1.Object values (PartialObjectMetadata or
// corev1.Namespace).
type Namespaces struct {
	mu     sync.RWMutex
	labels map[string]map[string]string
}

// NewNamespaces returns an empty namespace index.
func NewNamespaces() *Namespaces {
	return &Namespaces{labels: map[string]map[string]string{}}
}

// NamespaceObject returns the object to ask a controller-runtime cache for to get a metadata-only informer of
// namespaces.
func NamespaceObject() *metav1.PartialObjectMetadata {
	o := &metav1.PartialObjectMetadata{}
	o.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Namespace"))
	return o
}

// NamespaceLabels returns the labels of namespace name and whether the namespace is known. The map is shared:
// callers must not modify it.
func (n *Namespaces) NamespaceLabels(name string) (map[string]string, bool) {
	n.mu.RLock()
	defer n.mu.RUnlock()
	l, ok := n.labels[name]
	return l, ok
}

// Set records the labels of namespace name (copied).
func (n *Namespaces) Set(name string, labels map[string]string) {
	l := maps.Clone(labels)
	if l == nil {
		l = map[string]string{}
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	n.labels[name] = l
}

// Delete forgets namespace name.
func (n *Namespaces) Delete(name string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	delete(n.labels, name)
}

// Len returns the number of known namespaces.
func (n *Namespaces) Len() int {
	n.mu.RLock()
	defer n.mu.RUnlock()
	return len(n.labels)
}

// OnAdd implements toolscache.ResourceEventHandler.
func (n *Namespaces) OnAdd(obj any, _ bool) {
	if o, ok := obj.(metav1.Object); ok {
		n.Set(o.GetName(), o.GetLabels())
	}
}

// OnUpdate implements toolscache.ResourceEventHandler; only a change of labels is recorded.
func (n *Namespaces) OnUpdate(_, newObj any) {
	o, ok := newObj.(metav1.Object)
	if !ok {
		return
	}
	if cur, known := n.NamespaceLabels(o.GetName()); known && maps.Equal(cur, o.GetLabels()) {
		return
	}
	n.Set(o.GetName(), o.GetLabels())
}

// OnDelete implements toolscache.ResourceEventHandler; it understands the informer's tombstones.
func (n *Namespaces) OnDelete(obj any) {
	if tomb, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
		if o, ok := tomb.Obj.(metav1.Object); ok {
			n.Delete(o.GetName())
		} else {
			n.Delete(tomb.Key) // cluster-scoped: the key is the name
		}
		return
	}
	if o, ok := obj.(metav1.Object); ok {
		n.Delete(o.GetName())
	}
}

var _ toolscache.ResourceEventHandler = (*Namespaces)(nil)

// Register feeds the index from a metadata-only informer for namespaces in informers (a controller-runtime
// cache). The returned registration's HasSynced tells when every namespace of the initial list is known.
func (n *Namespaces) Register(ctx context.Context, informers cache.Informers) (toolscache.ResourceEventHandlerRegistration, error) {
	inf, err := informers.GetInformer(ctx, NamespaceObject(), cache.BlockUntilSynced(false))
	if err != nil {
		return nil, fmt.Errorf("cannot watch namespaces: %w", err)
	}
	reg, err := inf.AddEventHandler(n)
	if err != nil {
		return nil, fmt.Errorf("cannot watch namespaces: %w", err)
	}
	return reg, nil
}
