package integration

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/sidecar-dev/sidecar-injector/internal/api/v1alpha1"
	"github.com/sidecar-dev/sidecar-injector/internal/testenv"
	"github.com/sidecar-dev/sidecar-injector/test/internal/offline"
)

// A workload rendered offline with `sidecar-injector inject` at revision 1 of a template keeps being admitted
// after the template moves to revision 2: unchanged, with a warning, counted as outdated. A look-alike of its
// sidecar is still a conflict, and stalePods: Deny denies it. Then a 50% canary of revision 3 splits pod owners,
// the same revision for every pod of one owner.
func TestTemplateRevisionsStaleSidecarsAndCanary(t *testing.T) {
	ns := createNamespace(t, "revisions", nil)
	proxy := func(image string) v1alpha1.SidecarTemplateSpec {
		return v1alpha1.SidecarTemplateSpec{Containers: []corev1.Container{{Name: "proxy", Image: image}},
			Volumes: []corev1.Volume{{Name: "proxy-certs", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}}}
	}
	createTemplate(t, ns, "proxy", proxy("registry.example/proxy:1"))
	key := types.NamespacedName{Namespace: ns, Name: "proxy"}
	status := func(what string, ok func(s v1alpha1.SidecarTemplateStatus) bool) *v1alpha1.SidecarTemplate {
		t.Helper()
		var st v1alpha1.SidecarTemplate
		testenv.Eventually(t, startDeadline, what, func() error {
			if err := k8s.Get(ctxFor(t), key, &st); err != nil {
				return err
			}
			if st.Status.ObservedGeneration != st.Generation || !ok(st.Status) {
				return fmt.Errorf("status %+v at generation %d", st.Status, st.Generation)
			}
			return nil
		})
		return &st
	}
	edit := func(change func(*v1alpha1.SidecarTemplateSpec)) {
		t.Helper()
		testenv.Eventually(t, cacheDeadline, "edit template proxy", func() error {
			var st v1alpha1.SidecarTemplate
			if err := k8s.Get(ctxFor(t), key, &st); err != nil {
				return err
			}
			change(&st.Spec)
			return k8s.Update(ctxFor(t), &st)
		})
	}
	v1 := status("revision 1", func(s v1alpha1.SidecarTemplateStatus) bool { return s.CurrentRevision == 1 })

	// Offline, as a GitOps pipeline does: the template as the cluster has it, a pod of ReplicaSet web-1.
	offline := renderOffline(t, v1, newPod(ns, "web-1-a", withInject("proxy"), ownedByName("web-1")))
	if c := findContainer(offline.Spec.Containers, "proxy"); c == nil || c.Image != "registry.example/proxy:1" {
		t.Fatalf("offline inject did not render revision 1: %v", containerNames(offline.Spec.Containers))
	}

	edit(func(s *v1alpha1.SidecarTemplateSpec) { s.Containers[0].Image = "registry.example/proxy:2" })
	status("revision 2", func(s v1alpha1.SidecarTemplateStatus) bool { return s.CurrentRevision == 2 && s.StableRevision == 2 })

	// Admitted as it is (the webhook may take a moment to see revision 2 and its history), with the warning.
	var admitted *corev1.Pod
	var warnings []string
	testenv.Eventually(t, cacheDeadline, "the pre-rendered pod is admitted with a warning", func() error {
		c, rec := warningClient(t)
		p := offline.DeepCopy()
		p.Name = fmt.Sprintf("web-1-%d", len(warnings))
		if err := c.Create(ctxFor(t), p); err != nil {
			return err
		}
		admitted, warnings = p, rec.all()
		if !slices.ContainsFunc(warnings, func(w string) bool { return strings.Contains(w, "revision 1") && strings.Contains(w, "revision 2") }) {
			return fmt.Errorf("admitted with warnings %q", warnings)
		}
		return nil
	})
	if c := findContainer(admitted.Spec.Containers, "proxy"); c == nil || c.Image != "registry.example/proxy:1" || len(admitted.Spec.Containers) != 2 {
		t.Errorf("the stale pod was changed: containers %+v", admitted.Spec.Containers)
	}
	if admitted.Annotations[v1alpha1.AnnotationStatus] != offline.Annotations[v1alpha1.AnnotationStatus] {
		t.Errorf("the record changed: %s -> %s", offline.Annotations[v1alpha1.AnnotationStatus], admitted.Annotations[v1alpha1.AnnotationStatus])
	}
	st := status("the stale pod counted as outdated, on revision 1", func(s v1alpha1.SidecarTemplateStatus) bool {
		return s.OutdatedPods >= 1 && strings.Contains(s.PodsPerRevision, "1=")
	})
	t.Logf("kubectl get sct: revision %d, stable %d, pods per revision %q, outdated %d", st.Status.CurrentRevision,
		st.Status.StableRevision, st.Status.PodsPerRevision, st.Status.OutdatedPods)

	// A look-alike no revision rendered is a conflict, whatever its record says.
	forged := offline.DeepCopy()
	forged.Name = "forged"
	findContainer(forged.Spec.Containers, "proxy").Image = "registry.example/evil:1"
	_, err := tryCreatePod(t, forged, false)
	expectDenied(t, forged, err, `container name "proxy" already exists in pod`)

	// stalePods: Deny is not a new revision; the webhook denies and says what to do.
	edit(func(s *v1alpha1.SidecarTemplateSpec) {
		s.UpdatePolicy = &v1alpha1.UpdatePolicy{StalePods: v1alpha1.StalePodsDeny}
	})
	denied := offline.DeepCopy()
	denied.Name = "web-1-denied"
	testenv.Eventually(t, cacheDeadline, "stalePods Deny denies the pre-rendered pod", func() error {
		_, err := tryCreatePod(t, denied, true)
		if err == nil || !strings.Contains(err.Error(), "stalePods is Deny") {
			return fmt.Errorf("got %v", err)
		}
		return nil
	})
	_, err = tryCreatePod(t, denied, false)
	expectDenied(t, denied, err, "revision 1", "revision 2", "sidecar-injector inject")
	status("stalePods is no new revision", func(s v1alpha1.SidecarTemplateStatus) bool { return s.CurrentRevision == 2 })

	// Revision 3 under a 50% canary: owners split, stable is revision 2.
	edit(func(s *v1alpha1.SidecarTemplateSpec) {
		s.UpdatePolicy = &v1alpha1.UpdatePolicy{Canary: &v1alpha1.Canary{Percent: ptrTo[int32](50)}}
		s.Containers[0].Image = "registry.example/proxy:3"
	})
	status("revision 3 under a canary", func(s v1alpha1.SidecarTemplateStatus) bool { return s.CurrentRevision == 3 && s.StableRevision == 2 })
	imageOf := func(owner string, i int) string {
		t.Helper()
		got, err := tryCreatePod(t, newPod(ns, fmt.Sprintf("%s-%d", owner, i), withInject("proxy"), ownedByName(owner)), true)
		if err != nil {
			t.Fatalf("pod of %s: %v", owner, err)
		}
		return findContainer(got.Spec.Containers, "proxy").Image
	}
	testenv.Eventually(t, cacheDeadline, "the webhook serves revision 3 to some owners", func() error {
		for o := range 20 {
			if imageOf(fmt.Sprintf("api-%d", o), 0) == "registry.example/proxy:3" {
				return nil
			}
		}
		return fmt.Errorf("no owner got revision 3")
	})
	split := map[string]int{}
	for o := range 20 {
		owner := fmt.Sprintf("api-%d", o)
		first := imageOf(owner, 0)
		for i := 1; i < 3; i++ {
			if got := imageOf(owner, i); got != first {
				t.Errorf("owner %s: pod %d got %s, its first pod %s", owner, i, got, first)
			}
		}
		split[first]++
	}
	if split["registry.example/proxy:2"] == 0 || split["registry.example/proxy:3"] == 0 || len(split) != 2 {
		t.Errorf("a 50%% canary over 20 owners gave %v; want both revision 2 (stable) and 3", split)
	}
	t.Logf("50%% canary over 20 owners: %v", split)
}

// ownedByName makes the pod one of ReplicaSet name's (a ReplicaSet that need not exist: nothing here collects
// garbage).
func ownedByName(name string) podOpt {
	return func(p *corev1.Pod) {
		p.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: name,
			UID: types.UID("uid-" + name), Controller: ptrTo(true)}}
	}
}

// renderOffline runs `sidecar-injector inject` on the pod with the template and returns the pod it writes.
func renderOffline(t *testing.T, tpl *v1alpha1.SidecarTemplate, pod *corev1.Pod) *corev1.Pod {
	t.Helper()
	p := pod.DeepCopy()
	p.APIVersion, p.Kind = "v1", "Pod"
	var rendered corev1.Pod
	offline.Render(t, tpl, p, pod.Namespace, injectorNS, &rendered)
	return &rendered
}
