package store

import (
	"context"
	"errors"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/labels"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/sidecar-dev/sidecar-injector/internal/api/v1alpha1"
)

// Reader returns c with its reads of SidecarTemplates (Get, and List by namespace) served from the template
// informer that feeds the store (Register), each a typed copy decoded from the informer's StoredTemplate; every
// other read and every write is c's. The controllers read templates through it: the cache keeps templates only
// in the store's form, so a typed read of the cache fails ("cache had type *store.StoredTemplate") instead of
// keeping a typed copy of every template beside them. Before Register, a read of templates fails.
func (s *Templates) Reader(c client.Client) client.Client { return &templateReader{Client: c, s: s} }

type templateReader struct {
	client.Client
	s *Templates
}

// errNoInformer: Reader's reads before the store was registered with an informer.
var errNoInformer = errors.New("the template store is not registered with the cache's template informer yet")

func (r *templateReader) indexer() (toolscache.Indexer, error) {
	r.s.mu.RLock()
	defer r.s.mu.RUnlock()
	if r.s.informerCache == nil {
		return nil, errNoInformer
	}
	return r.s.informerCache, nil
}

// Get implements client.Reader.
func (r *templateReader) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	out, ok := obj.(*v1alpha1.SidecarTemplate)
	if !ok {
		return r.Client.Get(ctx, key, obj, opts...)
	}
	idx, err := r.indexer()
	if err != nil {
		return err
	}
	item, exists, err := idx.GetByKey(key.String())
	if err != nil {
		return err
	}
	if !exists {
		return apierrors.NewNotFound(v1alpha1.GroupVersion.WithResource("sidecartemplates").GroupResource(), key.Name)
	}
	t, err := typedTemplate(item)
	if err != nil {
		return err
	}
	*out = *t
	return nil
}

// List implements client.Reader: in one namespace or all, optionally by label; other options are refused.
func (r *templateReader) List(ctx context.Context, list client.ObjectList, opts ...client.ListOption) error {
	out, ok := list.(*v1alpha1.SidecarTemplateList)
	if !ok {
		return r.Client.List(ctx, list, opts...)
	}
	o := (&client.ListOptions{}).ApplyOptions(opts)
	if o.FieldSelector != nil || o.Limit != 0 || o.Continue != "" {
		return fmt.Errorf("listing SidecarTemplates from the store: only by namespace and labels, not %+v", o)
	}
	idx, err := r.indexer()
	if err != nil {
		return err
	}
	var items []any
	if o.Namespace != "" {
		items, err = idx.ByIndex(toolscache.NamespaceIndex, o.Namespace)
	} else {
		items = idx.List()
	}
	if err != nil {
		return err
	}
	out.Items = make([]v1alpha1.SidecarTemplate, 0, len(items))
	for _, item := range items {
		t, err := typedTemplate(item)
		if err != nil {
			return err
		}
		if o.LabelSelector != nil && !o.LabelSelector.Matches(labels.Set(t.Labels)) {
			continue
		}
		out.Items = append(out.Items, *t)
	}
	return nil
}

// typedTemplate returns a typed copy of one of the informer's templates: decoded from the store's form, or
// copied when the cache keeps them typed (no TemplateTransform).
func typedTemplate(item any) (*v1alpha1.SidecarTemplate, error) {
	switch t := item.(type) {
	case *StoredTemplate:
		return t.Decode()
	case *v1alpha1.SidecarTemplate:
		return t.DeepCopy(), nil
	}
	return nil, fmt.Errorf("the template informer holds a %T", item)
}
