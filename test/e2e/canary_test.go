package e2e

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/sidecar-dev/sidecar-injector/internal/api/v1alpha1"
	"github.com/sidecar-dev/sidecar-injector/internal/controller"
	"github.com/sidecar-dev/sidecar-injector/internal/testenv"
	"github.com/sidecar-dev/sidecar-injector/test/internal/offline"
)

// testCanaryThenRestart: a template's proxy moves from revision 1 (v1) to revision 2 (v2) under a 50% canary.
// The rolling restart waits for the promotion; the Deployments' own rollouts meanwhile get new ReplicaSets that
// split by owner as the canary decides (every pod of one ReplicaSet the same revision, the same answer for a new
// pod of it). A Deployment rendered offline with revision 1 keeps rolling out: its pods are admitted with a
// warning and counted outdated. Promoting lets the rolling restart bring every other Deployment to v2, one at a
// time; the pre-rendered one is restarted once, still gets revision 1 from its own pod template, and is named in
// the condition instead of stopping the restarts.
func testCanaryThenRestart(t *testing.T) {
	start := time.Now()
	ns := namespace(t, "canary")
	labelNamespace(t, ns, map[string]string{v1alpha1.LabelRestart: v1alpha1.LabelRestartEnabled})
	const name = "canary-proxy"
	group := map[string]string{"story": "canary"}
	createTemplate(t, ns, name, v1alpha1.SidecarTemplateSpec{
		Selector:     &metav1.LabelSelector{MatchLabels: group},
		Containers:   []corev1.Container{proxySidecar("v1")},
		UpdatePolicy: &v1alpha1.UpdatePolicy{Restart: v1alpha1.RestartRolling}})
	st := &v1alpha1.SidecarTemplate{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	rev1 := waitForRevisions(t, st, 1, 1)

	// Three Deployments injected by the webhook, one rendered offline at revision 1 (as a GitOps repo has it).
	var deps []*appsv1.Deployment
	for _, n := range []string{"a", "b", "c"} {
		deps = append(deps, groupDeployment(ns, n, group))
	}
	gitops := renderDeploymentOffline(t, rev1, groupDeployment(ns, "gitops", group))
	for _, d := range append(slices.Clone(deps), gitops) {
		if err := k8s.Create(ctxFor(t, 30*time.Second), d); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range append(slices.Clone(deps), gitops) {
		waitRolledOut(t, d)
	}
	assertProxyVersion(t, ns, "v1")

	// Revision 2 under a 50% canary: nothing is restarted, the condition says what it waits for.
	editTemplate(t, st, func(s *v1alpha1.SidecarTemplateSpec) {
		s.Containers = []corev1.Container{proxySidecar("v2")}
		s.UpdatePolicy.Canary = &v1alpha1.Canary{Percent: ptr.To[int32](50)}
	})
	waitForRevisions(t, st, 2, 1)
	waitForRestartCondition(t, st, controller.ReasonWaitingForCanary, "wait until the canary is promoted")

	// Rollouts of their own (kubectl rollout restart) of a, b and gitops; c keeps its revision 1 pod. Each new
	// ReplicaSet gets one revision for all its pods, the one a new pod of it gets too; over 20 owners both
	// revisions are given out.
	rolled := []*appsv1.Deployment{deps[0], deps[1], gitops}
	for _, d := range rolled {
		restart(t, d)
	}
	for _, d := range rolled {
		waitRolledOut(t, d)
	}
	split := map[string][]string{}
	for _, d := range deps[:2] {
		v := ownerVersion(t, ns, d)
		split[v] = append(split[v], d.Name)
	}
	synthetic := map[string]int{}
	for i := range 20 {
		synthetic[dryRunVersion(t, ns, fmt.Sprintf("owner-%d-5d8f9c", i), group, nil)]++
	}
	if synthetic["v1"] == 0 || synthetic["v2"] == 0 {
		t.Errorf("a 50%% canary over 20 new owners gave %v; want both v1 (stable) and v2", synthetic)
	}
	logf(t, "50%% canary: Deployments %v, 20 more owners (dry run) %v", split, synthetic)

	// The pre-rendered Deployment rolled out at revision 1: admitted (and counted, below).
	if v := ownerVersion(t, ns, gitops); v != "v1" {
		t.Errorf("the pre-rendered Deployment's new pods run %s, want its own v1", v)
	}
	// Promote: the rolling restart brings the Deployments on v1 to v2, one at a time; gitops is restarted once.
	editTemplate(t, st, func(s *v1alpha1.SidecarTemplateSpec) { s.UpdatePolicy.Canary.Percent = ptr.To[int32](100) })
	restartAt := time.Now()
	order := watchRollingRestart(t, st, append(slices.Clone(deps), gitops), 1)
	took := time.Since(restartAt)
	if !slices.Contains(order, "c") || !slices.Contains(order, "gitops") {
		t.Errorf("the rolling restart restarted %v; want c (still on revision 1) and gitops among them", order)
	}
	for _, d := range deps {
		if v := ownerVersion(t, ns, d); v != "v2" {
			t.Errorf("Deployment %s runs %s after the rolling restart, want v2", d.Name, v)
		}
	}
	if v := ownerVersion(t, ns, gitops); v != "v1" {
		t.Errorf("the pre-rendered Deployment runs %s, want v1 (its pod template pins it)", v)
	}
	waitForColumns(t, ns, name, "4", "1")
	// Its next pods are still admitted (revision 1 is remembered), with a warning now that revision 2 is stable
	// (under the canary its owner could be in the stable share, which was revision 1: no warning then).
	var warnings []string
	dryRunVersion(t, ns, "gitops-5d8f9c", gitops.Spec.Template.Labels, func(p *corev1.Pod) {
		p.Annotations, p.Spec = gitops.Spec.Template.Annotations, *gitops.Spec.Template.Spec.DeepCopy()
	}, &warnings)
	if !slices.ContainsFunc(warnings, func(w string) bool { return strings.Contains(w, "revision 1") && strings.Contains(w, "revision 2") }) {
		t.Errorf("a pre-rendered pod is admitted with warnings %q; want one naming revision 1 and revision 2", warnings)
	}

	if c := restartCondition(t, st); !strings.Contains(c.Message, "Deployment "+ns+"/gitops still create(s) pods of an earlier version") {
		t.Errorf("the RollingRestart condition does not name the pre-rendered Deployment: %q", c.Message)
	}
	logf(t, "promotion to all Deployments on v2 by rolling restart of %v: %s; the whole story %s",
		order, took.Round(100*time.Millisecond), time.Since(start).Round(100*time.Millisecond))
}

func groupDeployment(ns, name string, group map[string]string) *appsv1.Deployment {
	d := storyDeployment(ns, name, 1)
	for k, v := range group {
		d.Spec.Template.Labels[k] = v
	}
	return d
}

// waitForRevisions waits until the template's status shows these current and stable revisions, and returns it.
func waitForRevisions(t *testing.T, st *v1alpha1.SidecarTemplate, current, stable int64) *v1alpha1.SidecarTemplate {
	t.Helper()
	var cur v1alpha1.SidecarTemplate
	testenv.Eventually(t, 60*time.Second, fmt.Sprintf("template %s at revision %d, stable %d", st.Name, current, stable), func() error {
		if err := k8s.Get(context.Background(), client.ObjectKeyFromObject(st), &cur); err != nil {
			return err
		}
		if s := cur.Status; cur.Status.ObservedGeneration != cur.Generation || s.CurrentRevision != current || s.StableRevision != stable {
			return fmt.Errorf("generation %d, status %+v", cur.Generation, s)
		}
		return nil
	})
	return &cur
}

// renderDeploymentOffline runs `sidecar-injector inject` on the Deployment with the template, as a GitOps
// pipeline does, and returns the Deployment it writes.
func renderDeploymentOffline(t *testing.T, tpl *v1alpha1.SidecarTemplate, d *appsv1.Deployment) *appsv1.Deployment {
	t.Helper()
	in := d.DeepCopy()
	in.APIVersion, in.Kind = "apps/v1", "Deployment"
	var rendered appsv1.Deployment
	offline.Render(t, tpl, in, d.Namespace, injectorNS, &rendered)
	return &rendered
}

// ownerVersion returns the proxy version every pod of the Deployment runs (failing when they differ), and checks
// that a new pod of the same ReplicaSet would get the same.
func ownerVersion(t *testing.T, ns string, d *appsv1.Deployment) string {
	t.Helper()
	var pods corev1.PodList
	if err := k8s.List(ctxFor(t, 30*time.Second), &pods, client.InNamespace(ns), client.MatchingLabels{"app": d.Name}); err != nil {
		t.Fatal(err)
	}
	versions := map[string]bool{}
	var owner *metav1.OwnerReference
	for _, p := range pods.Items {
		if p.DeletionTimestamp != nil {
			continue
		}
		versions[proxyVersion(p.Spec.Containers)] = true
		owner = metav1.GetControllerOf(&p)
	}
	if len(versions) != 1 || owner == nil {
		t.Fatalf("Deployment %s: pods run proxy versions %v, want one", d.Name, versions)
	}
	v := slices.Collect(maps.Keys(versions))[0]
	// A new pod of the ReplicaSet, as the ReplicaSet would create it from the pod template.
	newPod := func(p *corev1.Pod) {
		p.OwnerReferences[0].UID = owner.UID
		p.Annotations, p.Spec = maps.Clone(d.Spec.Template.Annotations), *d.Spec.Template.Spec.DeepCopy()
	}
	if got := dryRunVersion(t, ns, owner.Name, d.Spec.Template.Labels, newPod); got != v {
		t.Errorf("a new pod of ReplicaSet %s would get %s, its pods run %s", owner.Name, got, v)
	}
	return v
}

func proxyVersion(cs []corev1.Container) string {
	for _, c := range cs {
		if c.Name == "proxy" {
			for i, a := range c.Args {
				if a == "-name" && i+1 < len(c.Args) {
					return c.Args[i+1]
				}
			}
		}
	}
	return "none"
}

// dryRunVersion creates, as a dry run, a pod of ReplicaSet owner with the labels and returns the proxy version
// the webhook gives it; warnings, when given, receives the admission warnings.
func dryRunVersion(t *testing.T, ns, owner string, labels map[string]string, edit func(*corev1.Pod), warnings ...*[]string) string {
	t.Helper()
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, GenerateName: owner + "-", Labels: labels,
		OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: owner,
			UID: types.UID("uid-" + owner), Controller: ptr.To(true)}}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{container("app", appImage)}}}
	if edit != nil {
		edit(p)
	}
	// A client of its own records the admission warnings (the shared one would log them).
	rec := &warningRecorder{}
	cfg := rest.CopyConfig(restConfig)
	cfg.WarningHandler, cfg.WarningHandlerWithContext = nil, rec
	c, err := client.New(cfg, client.Options{Scheme: scheme, Mapper: k8s.RESTMapper()})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Create(ctxFor(t, 30*time.Second), p, client.DryRunAll); err != nil {
		t.Fatalf("dry-run pod of %s: %v", owner, err)
	}
	for _, w := range warnings {
		*w = rec.all()
	}
	return proxyVersion(p.Spec.Containers)
}

type warningRecorder struct {
	mu   sync.Mutex
	msgs []string
}

func (r *warningRecorder) HandleWarningHeaderWithContext(_ context.Context, _ int, _ string, msg string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.msgs = append(r.msgs, msg)
}

func (r *warningRecorder) all() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.msgs)
}
