package store

import (
	"encoding/json"
	"fmt"
	"unique"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/sidecar-dev/sidecar-injector/internal/api/v1alpha1"
)

// StoredTemplate is a SidecarTemplate as the store's informer keeps it (TemplateTransform): its metadata and
// status typed (the controllers compare and write them, the informer keys and versions by them) and its spec
// encoded as JSON. A typed spec is mostly empty fields (corev1.Container alone is 408 bytes): decoded, the scale
// scenario's templates took 2,199 bytes each against about 1,000 this way (BenchmarkMemoryAtScale), and the
// garbage collector's headroom doubles that in RSS. The spec is decoded when the template is compiled, and for a
// reader that wants a typed copy (Decode; the controllers, through Templates.Reader). Read-only: the informer's.
type StoredTemplate struct {
	metav1.ObjectMeta
	Status v1alpha1.SidecarTemplateStatus
	// spec is the template's spec as JSON (never modified: shared by copies).
	spec []byte
}

// GetObjectKind makes a StoredTemplate a runtime.Object (with DeepCopyObject and its metadata, a client.Object,
// as the controllers' event sources hand objects on); its kind is not recorded.
func (t *StoredTemplate) GetObjectKind() schema.ObjectKind { return schema.EmptyObjectKind }

// DeepCopyObject copies t's metadata and status; the encoded spec, never modified, is shared.
func (t *StoredTemplate) DeepCopyObject() runtime.Object {
	return &StoredTemplate{ObjectMeta: *t.ObjectMeta.DeepCopy(), Status: *t.Status.DeepCopy(), spec: t.spec}
}

// Decode returns a typed copy of the template, its spec decoded: the caller may modify it.
func (t *StoredTemplate) Decode() (*v1alpha1.SidecarTemplate, error) {
	out := &v1alpha1.SidecarTemplate{
		TypeMeta:   metav1.TypeMeta{APIVersion: v1alpha1.GroupVersion.String(), Kind: "SidecarTemplate"},
		ObjectMeta: *t.ObjectMeta.DeepCopy(),
		Status:     *t.Status.DeepCopy(),
	}
	if err := json.Unmarshal(t.spec, &out.Spec); err != nil {
		return nil, fmt.Errorf("decode the stored spec of template %s/%s: %w", t.Namespace, t.Name, err)
	}
	return out, nil
}

// servedByPolicy is v1alpha1.SidecarTemplate.IsServedByPolicy (the one rule), for t.
func (t *StoredTemplate) servedByPolicy() bool {
	return (&v1alpha1.SidecarTemplate{ObjectMeta: metav1.ObjectMeta{Generation: t.Generation}, Status: t.Status}).IsServedByPolicy()
}

// TemplateTransform is the transform of the store's template informer: it turns each SidecarTemplate into a
// StoredTemplate, dropping what neither admissions nor the controllers read: managedFields and kubectl's
// last-applied-configuration annotation (a second copy of the whole spec in JSON, on every template that was
// kubectl-applied). A StoredTemplate given again (a transform must be idempotent) is returned as it is.
func TemplateTransform(obj any) (any, error) {
	if t, ok := obj.(*v1alpha1.SidecarTemplate); ok {
		return storedTemplate(t)
	}
	return obj, nil
}

// storedTemplate returns t's StoredTemplate; t's metadata and status are taken over, not copied (an informer's
// object, or a test's, is not used again).
func storedTemplate(t *v1alpha1.SidecarTemplate) (*StoredTemplate, error) {
	spec, err := json.Marshal(&t.Spec)
	if err != nil {
		return nil, fmt.Errorf("encode the spec of template %s/%s: %w", t.Namespace, t.Name, err)
	}
	out := &StoredTemplate{ObjectMeta: t.ObjectMeta, Status: t.Status, spec: spec}
	out.Namespace = unique.Make(t.Namespace).Value() // ten templates a namespace share one copy
	out.ManagedFields = nil
	if _, ok := out.Annotations[corev1.LastAppliedConfigAnnotation]; ok {
		out.Annotations = make(map[string]string, len(t.Annotations)-1)
		for k, v := range t.Annotations {
			if k != corev1.LastAppliedConfigAnnotation {
				out.Annotations[k] = v
			}
		}
		if len(out.Annotations) == 0 {
			out.Annotations = nil
		}
	}
	return out, nil
}
