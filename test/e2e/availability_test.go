package e2e

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/sidecar-dev/sidecar-injector/internal/api/v1alpha1"
	"github.com/sidecar-dev/sidecar-injector/internal/testenv"
)

// The load of the availability phases: a bounded number of pod creations at a steady rate, each checked for its
// sidecar. The pods carry a scheduling gate, so they are admitted (which is what is measured) but never run.
const (
	loadRate     = 4                // pods per second
	loadMax      = 60 * time.Second // per phase, whatever the disruption takes
	loadTail     = 5 * time.Second  // load that goes on after the injector is whole again
	loadLabel    = "e2e-load"
	schedulingNo = "e2e.sidecar.dev/never"
)

var injectorSelector = client.MatchingLabels{"app.kubernetes.io/name": "sidecar-injector", "app.kubernetes.io/instance": release}

// loadResult counts one phase's pod creations.
type loadResult struct {
	created, failed int
	errors          []string // the first few failures
}

func testAvailability(t *testing.T) {
	ns := namespace(t, "avail")
	createTemplate(t, ns, "avail", v1alpha1.SidecarTemplateSpec{Containers: []corev1.Container{container("sidecar", proxyImage)}})
	injector := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: injectorNS, Name: release}}
	tagImage(t, injectorRepo+":"+injectorTag, injectorRepo+":"+upgradeTag)
	phases := []struct {
		name    string
		disrupt func(t *testing.T)
	}{
		{"one injector pod deleted", func(t *testing.T) {
			var pods corev1.PodList
			if err := k8s.List(ctxFor(t, 30*time.Second), &pods, client.InNamespace(injectorNS), injectorSelector); err != nil || len(pods.Items) == 0 {
				t.Fatalf("list the injector's pods: %d, %v", len(pods.Items), err)
			}
			if err := k8s.Delete(ctxFor(t, 30*time.Second), &pods.Items[0]); err != nil {
				t.Fatal(err)
			}
			waitRolledOut(t, injector)
		}},
		{"helm upgrade to a new image tag", func(t *testing.T) {
			helm(t, "upgrade", release, chartDir(), "--namespace", injectorNS, "--reuse-values",
				"--set", "image.tag="+upgradeTag, "--wait", "--timeout", rolloutDeadline.String())
			waitRolledOut(t, injector)
			assertInjectorImage(t, injectorRepo+":"+upgradeTag)
		}},
		{"kubectl rollout restart of the injector", func(t *testing.T) {
			restart(t, injector)
			waitRolledOut(t, injector)
		}},
	}
	for _, ph := range phases {
		res := underLoad(t, ns, ph.disrupt)
		logf(t, "availability, %s: %d pods created at %d/s, %d failed", ph.name, res.created, loadRate, res.failed)
		if res.failed > 0 {
			t.Errorf("%s: %d of %d pod creations failed, want 0; first errors:\n%v", ph.name, res.failed, res.created+res.failed, res.errors)
		}
		if res.created == 0 {
			t.Errorf("%s: no pod was created: the load did not run", ph.name)
		}
		deleteLoadPods(t, ns)
	}
}

// underLoad creates pods at loadRate while disrupt runs and for loadTail after it, at most loadMax in all.
func underLoad(t *testing.T, ns string, disrupt func(t *testing.T)) loadResult {
	t.Helper()
	var (
		mu  sync.Mutex
		res loadResult
		wg  sync.WaitGroup
	)
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(time.Second / loadRate)
		defer tick.Stop()
		deadline := time.After(loadMax)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-deadline:
				return
			case <-tick.C:
			}
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				err := createLoadPod(ns, i)
				mu.Lock()
				defer mu.Unlock()
				if err == nil {
					res.created++
					return
				}
				res.failed++
				if len(res.errors) < 5 {
					res.errors = append(res.errors, err.Error())
				}
			}(i)
		}
	}()
	func() {
		// A disruption that fails the test still stops the load.
		defer func() {
			select {
			case <-done:
			case <-time.After(loadTail):
			}
			close(stop)
			<-done
			wg.Wait()
		}()
		disrupt(t)
	}()
	return res
}

// createLoadPod creates one gated pod that asks for the template and checks that it came back injected.
func createLoadPod(ns string, i int) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("load-%d-%d", time.Now().UnixNano(), i),
			Labels: map[string]string{loadLabel: "true"}, Annotations: map[string]string{v1alpha1.AnnotationInject: "avail"}},
		Spec: corev1.PodSpec{
			SchedulingGates: []corev1.PodSchedulingGate{{Name: schedulingNo}},
			Containers:      []corev1.Container{container("app", appImage, "write")},
		},
	}
	if err := k8s.Create(ctx, pod); err != nil {
		return err
	}
	if !slices.Contains(containerNames(pod.Spec.Containers), "sidecar") {
		return fmt.Errorf("pod %s was created without its sidecar: containers %v", pod.Name, containerNames(pod.Spec.Containers))
	}
	return nil
}

func deleteLoadPods(t *testing.T, ns string) {
	t.Helper()
	if err := k8s.DeleteAllOf(ctxFor(t, 60*time.Second), &corev1.Pod{}, client.InNamespace(ns), client.MatchingLabels{loadLabel: "true"},
		client.GracePeriodSeconds(0)); err != nil {
		t.Errorf("delete the load's pods: %v", err)
	}
}

// assertInjectorImage checks that every injector pod runs image.
func assertInjectorImage(t *testing.T, image string) {
	t.Helper()
	testenv.Eventually(t, 30*time.Second, "every injector pod runs "+image, func() error {
		var pods corev1.PodList
		if err := k8s.List(context.Background(), &pods, client.InNamespace(injectorNS), injectorSelector); err != nil {
			return err
		}
		for _, p := range pods.Items {
			if got := p.Spec.Containers[0].Image; got != image {
				return fmt.Errorf("pod %s runs %s", p.Name, got)
			}
		}
		return nil
	})
}
