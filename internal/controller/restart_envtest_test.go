package controller

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/sidecar-dev/sidecar-injector/internal/api/v1alpha1"
	"github.com/sidecar-dev/sidecar-injector/internal/metrics"
	"github.com/sidecar-dev/sidecar-injector/internal/testenv"
)

// On a real API server, with both controllers in a manager as the injector runs them: a cluster-wide template
// with restart: Rolling gets the restart patch sent to the Deployment of its outdated pods in the namespace
// labelled sidecar.dev/restart=enabled, and not to the one in the namespace without the label, until that
// namespace is labelled too. (No kube-controller-manager runs here: the pods are created as a ReplicaSet would.)
func TestTheRestartPatchIsSentOnlyWhereAllowed(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	k8s, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	const injector, on, off = "restart-injector", "restart-on", "restart-off"
	for _, ns := range []*corev1.Namespace{
		{ObjectMeta: metav1.ObjectMeta{Name: injector}},
		{ObjectMeta: metav1.ObjectMeta{Name: on, Labels: map[string]string{v1alpha1.LabelRestart: v1alpha1.LabelRestartEnabled}}},
		{ObjectMeta: metav1.ObjectMeta{Name: off}},
	} {
		if err := k8s.Create(ctx, ns); err != nil {
			t.Fatal(err)
		}
	}
	st := &v1alpha1.SidecarTemplate{ObjectMeta: metav1.ObjectMeta{Namespace: injector, Name: "mesh"},
		Spec: v1alpha1.SidecarTemplateSpec{Containers: []corev1.Container{{Name: "proxy", Image: "proxy:2"}},
			UpdatePolicy: &v1alpha1.UpdatePolicy{Restart: v1alpha1.RestartRolling, MaxConcurrent: ptr.To[int32](5)}}}
	if err := k8s.Create(ctx, st); err != nil {
		t.Fatal(err)
	}
	record := fmt.Sprintf(`{"templates":[{"namespace":%q,"name":"mesh","generation":1,"hash":"0ld","containers":["proxy"]}]}`, injector)
	labels := map[string]string{"app": "web"}
	for _, ns := range []string{on, off} {
		dep := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web"}, Spec: appsv1.DeploymentSpec{
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "app:1"}}}}}}
		if err := k8s.Create(ctx, dep); err != nil {
			t.Fatal(err)
		}
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web-5d8f9c-x1",
			Labels:      map[string]string{"app": "web", appsv1.DefaultDeploymentUniqueLabelKey: "5d8f9c"},
			Annotations: map[string]string{v1alpha1.AnnotationStatus: record},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "web-5d8f9c",
				UID: types.UID("rs-" + ns), Controller: ptr.To(true)}}},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "app:1"}, {Name: "proxy", Image: "proxy:1"}}}}
		if err := k8s.Create(ctx, pod); err != nil {
			t.Fatal(err)
		}
	}

	mgr := newTestManager(t, cfg, scheme)
	m, err := metrics.New(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	status := &TemplateReconciler{Client: mgr.GetClient(), InjectorNamespace: injector, Metrics: m, Pace: Unlimited}
	if err := status.SetupWithManager(ctx, mgr); err != nil {
		t.Fatal(err)
	}
	restart := &RestartReconciler{Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), InjectorNamespace: injector,
		Pace: Unlimited, Poll: 200 * time.Millisecond, Pods: status.Pods}
	if err := restart.SetupWithManager(mgr); err != nil {
		t.Fatal(err)
	}
	defer runManager(t, ctx, cancel, mgr)()

	var current v1alpha1.SidecarTemplate
	if err := k8s.Get(ctx, client.ObjectKeyFromObject(st), &current); err != nil {
		t.Fatal(err)
	}
	mark := RestartMark(injector, "mesh", restart.compile(&current).Hash)
	restartedFor := func(ns string) (string, error) {
		var d appsv1.Deployment
		err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "web"}, &d)
		return d.Spec.Template.Annotations[v1alpha1.AnnotationRestartedFor], err
	}
	testenv.Eventually(t, 30*time.Second, "the Deployment in "+on+" restarted and the template's condition says what was left", func() error {
		got, err := restartedFor(on)
		if err != nil || got != mark {
			return fmt.Errorf("%s annotation %q (err %v), want %q", v1alpha1.AnnotationRestartedFor, got, err, mark)
		}
		var t2 v1alpha1.SidecarTemplate
		if err := k8s.Get(ctx, client.ObjectKeyFromObject(st), &t2); err != nil {
			return err
		}
		c := meta.FindStatusCondition(t2.Status.Conditions, v1alpha1.ConditionRollingRestart)
		if c == nil || c.Reason != ReasonRestarting || !strings.Contains(c.Message, "1 outdated pod(s) are not restarted") {
			return fmt.Errorf("condition %+v", c)
		}
		return nil
	})
	// The look that patched the first wrote that condition: the namespace without the label was left alone.
	if got, err := restartedFor(off); err != nil || got != "" {
		t.Fatalf("the Deployment in %s (no %s label) got %q (err %v), want no restart", off, v1alpha1.LabelRestart, got, err)
	}

	// Labelling the namespace lets the rolling restart in.
	var ns corev1.Namespace
	if err := k8s.Get(ctx, client.ObjectKey{Name: off}, &ns); err != nil {
		t.Fatal(err)
	}
	ns.Labels = map[string]string{v1alpha1.LabelRestart: v1alpha1.LabelRestartEnabled}
	if err := k8s.Update(ctx, &ns); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 30*time.Second, "the Deployment in "+off+" restarted once its namespace allows it", func() error {
		if got, err := restartedFor(off); err != nil || got != mark {
			return fmt.Errorf("annotation %q (err %v), want %q", got, err, mark)
		}
		return nil
	})
}
