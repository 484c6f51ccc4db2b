package cli

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sidecar-dev/sidecar-injector/internal/api/v1alpha1"
)

func TestCheckAcceptsOnlyAPodThatCameBackInjected(t *testing.T) {
	pod := func(status string, containers ...string) *corev1.Pod {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{}}}
		if status != "" {
			p.Annotations[v1alpha1.AnnotationStatus] = status
		}
		for _, c := range containers {
			p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: c})
		}
		return p
	}
	const record = `{"templates":[{"namespace":"sidecar-injector","name":"probe","generation":1,"hash":"ab","containers":["probe"]}]}`
	for _, tc := range []struct {
		name      string
		pod       *corev1.Pod
		container string
		wantErr   string // empty: accepted
	}{
		{"a pod with the record and the container is injected", pod(record, "app", "probe"), "probe", ""},
		{"without --container the record is enough", pod(record, "app", "probe"), "", ""},
		{"a pod without a record was not injected", pod("", "app"), "", "without the sidecar.dev/status annotation"},
		{"a record that is not JSON is not the webhook's", pod("{", "app"), "", "is not the webhook's record"},
		{"a record naming another template does not count", pod(`{"templates":[{"name":"other"}]}`, "app", "probe"), "", `does not name template "probe"`},
		{"a missing container is named with the ones present", pod(record, "app"), "probe", `no container "probe" (it has app)`},
	} {
		err := injectedWith(tc.pod, "probe", tc.container)
		switch {
		case tc.wantErr == "" && err != nil:
			t.Errorf("%s: got %v", tc.name, err)
		case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
			t.Errorf("%s: err = %v, want one containing %q", tc.name, err, tc.wantErr)
		}
	}
}
