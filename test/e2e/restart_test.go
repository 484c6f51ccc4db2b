package e2e

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/sidecar-dev/sidecar-injector/internal/api/v1alpha1"
	"github.com/sidecar-dev/sidecar-injector/internal/controller"
	"github.com/sidecar-dev/sidecar-injector/internal/testenv"
)

// restartStoryLabel marks the story's namespaces (the cluster-wide template's namespaceSelector) and pods (its
// selector), so that the template serves nothing else on the cluster.
const restartStoryLabel = "e2e-restart-story"

// testRollingRestart: a cluster-wide template's proxy moves from v1 to v2, then the template asks for a rolling
// restart. In the namespace labelled sidecar.dev/restart=enabled, its two Deployments (3 and 2 replicas) are
// restarted one at a time (maxConcurrent 1) until every pod runs v2; the Deployment in the namespace without the
// label keeps its v1 pod, untouched.
func testRollingRestart(t *testing.T) {
	start := time.Now()
	allowed, other := namespace(t, "restart"), namespace(t, "norestart")
	labelNamespace(t, allowed, map[string]string{restartStoryLabel: "yes", v1alpha1.LabelRestart: v1alpha1.LabelRestartEnabled})
	labelNamespace(t, other, map[string]string{restartStoryLabel: "yes"})

	podLabels := map[string]string{restartStoryLabel: "yes"}
	st := &v1alpha1.SidecarTemplate{ObjectMeta: metav1.ObjectMeta{Namespace: injectorNS, Name: "restart-story"},
		Spec: v1alpha1.SidecarTemplateSpec{
			NamespaceSelector: &metav1.LabelSelector{MatchLabels: podLabels},
			Selector:          &metav1.LabelSelector{MatchLabels: podLabels},
			Containers:        []corev1.Container{proxySidecar("v1")}}}
	if err := k8s.Create(ctxFor(t, 30*time.Second), st); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = k8s.Delete(context.Background(), st) })

	deps := []*appsv1.Deployment{storyDeployment(allowed, "api", 2), storyDeployment(allowed, "web", 3), storyDeployment(other, "web", 1)}
	probe := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: allowed, GenerateName: "probe-", Labels: podLabels},
		Spec: corev1.PodSpec{Containers: []corev1.Container{container("probe", appImage)}}}
	testenv.Eventually(t, 30*time.Second, "the webhook serves the new cluster-wide template", func() error {
		p := probe.DeepCopy()
		if err := k8s.Create(context.Background(), p, client.DryRunAll); err != nil {
			return err
		}
		if !strings.Contains(p.Annotations[v1alpha1.AnnotationStatus], st.Name) {
			return fmt.Errorf("dry-run pod not injected (annotations %v)", p.Annotations)
		}
		return nil
	})
	for _, d := range deps {
		if err := k8s.Create(ctxFor(t, 30*time.Second), d); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range deps {
		waitRolledOut(t, d)
	}
	assertProxyVersion(t, allowed, "v1")
	assertProxyVersion(t, other, "v1")
	untouched := podUIDs(t, other)

	// v2, then the restart: the order a platform engineer would follow (or both in one edit).
	editTemplate(t, st, func(s *v1alpha1.SidecarTemplateSpec) { s.Containers = []corev1.Container{proxySidecar("v2")} })
	waitForColumns(t, injectorNS, st.Name, "6", "6")
	editTemplate(t, st, func(s *v1alpha1.SidecarTemplateSpec) {
		s.UpdatePolicy = &v1alpha1.UpdatePolicy{Restart: v1alpha1.RestartRolling, MaxConcurrent: ptr.To[int32](1)}
	})
	restartAt := time.Now()

	order := watchRollingRestart(t, st, deps, 1)
	took := time.Since(restartAt)
	if !slices.Equal(order, []string{"api", "web"}) {
		t.Errorf("restart order %v, want api then web (namespace, kind, name)", order)
	}
	for _, d := range deps[:2] {
		waitRolledOut(t, d)
	}
	assertProxyVersion(t, allowed, "v2")

	// The namespace without the label: its Deployment was never patched and its pod is the same v1 pod.
	var d appsv1.Deployment
	if err := k8s.Get(ctxFor(t, 30*time.Second), client.ObjectKeyFromObject(deps[2]), &d); err != nil {
		t.Fatal(err)
	}
	if v, ok := d.Spec.Template.Annotations[v1alpha1.AnnotationRestartedFor]; ok {
		t.Errorf("the Deployment in %s (no %s label) was restarted: %s=%q", other, v1alpha1.LabelRestart, v1alpha1.AnnotationRestartedFor, v)
	}
	if got := podUIDs(t, other); !slices.Equal(got, untouched) {
		t.Errorf("the pods in %s changed: %v, want %v", other, got, untouched)
	}
	assertProxyVersion(t, other, "v1")
	waitForColumns(t, injectorNS, st.Name, "6", "1")
	if c := restartCondition(t, st); !strings.Contains(c.Message, "1 outdated pod(s) are not restarted") {
		t.Errorf("the RollingRestart condition does not count the pod left alone: %q", c.Message)
	}
	logf(t, "rolling restart of 2 Deployments (5 pods), one at a time: %s; the whole story %s",
		took.Round(100*time.Millisecond), time.Since(start).Round(100*time.Millisecond))
}

// storyDeployment is a Deployment of the app asking its proxy sidecar for an answer, quick to replace.
func storyDeployment(ns, name string, replicas int32) *appsv1.Deployment {
	labels := map[string]string{"app": name, restartStoryLabel: "yes"}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(replicas),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{TerminationGracePeriodSeconds: ptr.To[int64](1),
					Containers: []corev1.Container{container("app", appImage, "get", "-url", proxyURL, "-stay")}},
			},
		},
	}
}

func labelNamespace(t *testing.T, name string, labels map[string]string) {
	t.Helper()
	var ns corev1.Namespace
	if err := k8s.Get(ctxFor(t, 30*time.Second), client.ObjectKey{Name: name}, &ns); err != nil {
		t.Fatal(err)
	}
	if ns.Labels == nil {
		ns.Labels = map[string]string{}
	}
	for k, v := range labels {
		ns.Labels[k] = v
	}
	if err := k8s.Update(ctxFor(t, 30*time.Second), &ns); err != nil {
		t.Fatal(err)
	}
}

// editTemplate changes a template's spec, retrying on a conflict with the injector's status writes.
func editTemplate(t *testing.T, st *v1alpha1.SidecarTemplate, edit func(*v1alpha1.SidecarTemplateSpec)) {
	t.Helper()
	testenv.Eventually(t, 30*time.Second, "edit template "+st.Name, func() error {
		var cur v1alpha1.SidecarTemplate
		if err := k8s.Get(context.Background(), client.ObjectKeyFromObject(st), &cur); err != nil {
			return err
		}
		edit(&cur.Spec)
		return k8s.Update(context.Background(), &cur)
	})
}

// restartState says whether the injector restarted d (its pod template carries the restart annotation) and, if
// so, whether the rollout has finished as the injector judges it: every pod of d runs the template's current
// version, is Ready, and none is terminating.
func restartState(dep *appsv1.Deployment) (restarted, finished bool, err error) {
	var d appsv1.Deployment
	if err := k8s.Get(context.Background(), client.ObjectKeyFromObject(dep), &d); err != nil {
		return false, false, err
	}
	mark := d.Spec.Template.Annotations[v1alpha1.AnnotationRestartedFor]
	if mark == "" {
		return false, false, nil
	}
	var pods corev1.PodList
	if err := k8s.List(context.Background(), &pods, client.InNamespace(d.Namespace), client.MatchingLabels(d.Spec.Selector.MatchLabels)); err != nil {
		return true, false, err
	}
	if int32(len(pods.Items)) != *d.Spec.Replicas {
		return true, false, nil
	}
	for _, p := range pods.Items {
		ready := slices.ContainsFunc(p.Status.Conditions, func(c corev1.PodCondition) bool {
			return c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue
		})
		if p.DeletionTimestamp != nil || !ready || p.Annotations[v1alpha1.AnnotationRestartedFor] != mark {
			return true, false, nil
		}
	}
	return true, true, nil
}

// podUIDs lists the UIDs of a namespace's pods, sorted.
func podUIDs(t *testing.T, ns string) []string {
	t.Helper()
	var pods corev1.PodList
	if err := k8s.List(ctxFor(t, 30*time.Second), &pods, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	var uids []string
	for _, p := range pods.Items {
		uids = append(uids, string(p.UID))
	}
	slices.Sort(uids)
	return uids
}

// watchRollingRestart follows the rolling restart of st over deps until its RollingRestart condition says
// UpToDate for the template's generation and every Deployment it restarted has finished, failing as soon as more
// than maxConcurrent roll at once; it returns the Deployments in the order they were restarted.
func watchRollingRestart(t *testing.T, st *v1alpha1.SidecarTemplate, deps []*appsv1.Deployment, maxConcurrent int) []string {
	t.Helper()
	var order []string
	mostRolling := 0
	testenv.Eventually(t, 2*rolloutDeadline, "the rolling restart of "+st.Name+" finishes", func() error {
		rolling := 0
		for _, d := range deps {
			restarted, finished, err := restartState(d)
			if err != nil {
				return err
			}
			if restarted && !slices.Contains(order, d.Name) {
				order = append(order, d.Name)
			}
			if restarted && !finished {
				rolling++
			}
		}
		mostRolling = max(mostRolling, rolling)
		if mostRolling > maxConcurrent {
			t.Fatalf("%d Deployments rolling at once, want at most maxConcurrent %d (restart order %v)", mostRolling, maxConcurrent, order)
		}
		if rolling > 0 {
			return fmt.Errorf("%d rolling (restarted %v)", rolling, order)
		}
		var cur v1alpha1.SidecarTemplate
		if err := k8s.Get(context.Background(), client.ObjectKeyFromObject(st), &cur); err != nil {
			return err
		}
		c := meta.FindStatusCondition(cur.Status.Conditions, v1alpha1.ConditionRollingRestart)
		if c == nil || c.ObservedGeneration != cur.Generation || c.Reason != controller.ReasonUpToDate {
			return fmt.Errorf("restarted %v; condition %+v", order, c)
		}
		return nil
	})
	return order
}

// restartCondition returns the template's RollingRestart condition, failing when it has none.
func restartCondition(t *testing.T, st *v1alpha1.SidecarTemplate) *metav1.Condition {
	t.Helper()
	var cur v1alpha1.SidecarTemplate
	if err := k8s.Get(ctxFor(t, 30*time.Second), client.ObjectKeyFromObject(st), &cur); err != nil {
		t.Fatal(err)
	}
	c := meta.FindStatusCondition(cur.Status.Conditions, v1alpha1.ConditionRollingRestart)
	if c == nil {
		t.Fatalf("template %s has no RollingRestart condition", st.Name)
	}
	logf(t, "RollingRestart condition: %s: %s", c.Reason, c.Message)
	return c
}

// waitForRestartCondition waits until the template's RollingRestart condition has reason and its message says msg.
func waitForRestartCondition(t *testing.T, st *v1alpha1.SidecarTemplate, reason, msg string) {
	t.Helper()
	testenv.Eventually(t, 60*time.Second, "RollingRestart condition "+reason, func() error {
		var cur v1alpha1.SidecarTemplate
		if err := k8s.Get(context.Background(), client.ObjectKeyFromObject(st), &cur); err != nil {
			return err
		}
		c := meta.FindStatusCondition(cur.Status.Conditions, v1alpha1.ConditionRollingRestart)
		if c == nil || c.Reason != reason || !strings.Contains(c.Message, msg) {
			return fmt.Errorf("condition %+v", c)
		}
		logf(t, "RollingRestart condition: %s: %s", c.Reason, c.Message)
		return nil
	})
}
