// Package v1alpha1 contains the SidecarTemplate API, group sidecar.dev, version v1alpha1.
//
// +kubebuilder:object:generate=true
// +groupName=sidecar.dev
package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

var (
	// GroupVersion is the group and version of every type in this package.
	GroupVersion = schema.GroupVersion{Group: "sidecar.dev", Version: "v1alpha1"}

	// SchemeBuilder registers the types of this package with a runtime.Scheme. It uses apimachinery only, so
	// that importing the API does not pull in controller-runtime.
	SchemeBuilder = runtime.NewSchemeBuilder(addKnownTypes)

	// AddToScheme adds the types of this package to a runtime.Scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)

func addKnownTypes(s *runtime.Scheme) error {
	s.AddKnownTypes(GroupVersion, &SidecarTemplate{}, &SidecarTemplateList{})
	metav1.AddToGroupVersion(s, GroupVersion)
	return nil
}
