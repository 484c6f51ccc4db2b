package inject_test

import (
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	corev1 "k8s.io/api/core/v1"

	"github.com/sidecar-dev/sidecar-injector/internal/api/v1alpha1"
	"github.com/sidecar-dev/sidecar-injector/internal/inject"
)

// One template, compiled once; one pod that asks for it by name.
func ExampleInject() {
	t := inject.Compile(&v1alpha1.SidecarTemplate{
		ObjectMeta: metav1.ObjectMeta{Name: "log-shipper", Namespace: "team-a", Generation: 1},
		Spec: v1alpha1.SidecarTemplateSpec{
			Containers: []corev1.Container{{Name: "shipper", Image: "fluent/fluent-bit:3.2"}},
		},
	}, "sidecar-injector")
	pod := []byte(`{"metadata":{"name":"web","annotations":{"sidecar.dev/inject":"log-shipper"}},
		"spec":{"containers":[{"name":"app","image":"nginx"}]}}`)

	res, err := inject.Inject(inject.Request{Pod: pod, Namespace: "team-a", InjectorNamespace: "sidecar-injector",
		Templates: []*inject.Template{t}})
	if err != nil {
		fmt.Println("the pod cannot be read:", err)
		return
	}
	for _, d := range res.Decisions {
		fmt.Println(d.Name, d.Outcome, d.Reason, d.Added.Containers)
	}
	for _, op := range res.Patch {
		fmt.Println(op.Operation, op.Path)
	}
	// Output:
	// log-shipper Injected Requested [shipper]
	// add /metadata/annotations/sidecar.dev~1status
	// add /spec/containers/-
}
