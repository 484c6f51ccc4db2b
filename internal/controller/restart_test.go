package controller

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
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	"github.com/sidecar-dev/sidecar-injector/internal/api/v1alpha1"
	"github.com/sidecar-dev/sidecar-injector/internal/events"
	"github.com/sidecar-dev/sidecar-injector/internal/inject"
)

func TestWorkloadOf(t *testing.T) {
	ctl := func(apiVersion, kind, name string) []metav1.OwnerReference {
		return []metav1.OwnerReference{{APIVersion: apiVersion, Kind: kind, Name: name, Controller: ptr.To(true)}}
	}
	pod := func(owners []metav1.OwnerReference, labels map[string]string) *metav1.PartialObjectMetadata {
		return &metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", OwnerReferences: owners, Labels: labels}}
	}
	hash := map[string]string{appsv1.DefaultDeploymentUniqueLabelKey: "5d8f9c"}
	notController := ctl("apps/v1", "StatefulSet", "db")
	notController[0].Controller = nil
	for _, tc := range []struct {
		sentence string
		pod      *metav1.PartialObjectMetadata
		want     Workload
		ok       bool
	}{
		{"a pod of a Deployment's ReplicaSet belongs to the Deployment named by the ReplicaSet's name without its hash",
			pod(ctl("apps/v1", "ReplicaSet", "web-5d8f9c"), hash), Workload{"Deployment", "team-a", "web"}, true},
		{"a Deployment name with dashes keeps them", pod(ctl("apps/v1", "ReplicaSet", "my-web-app-5d8f9c"), hash),
			Workload{"Deployment", "team-a", "my-web-app"}, true},
		{"a pod of a StatefulSet belongs to it", pod(ctl("apps/v1", "StatefulSet", "db"), nil), Workload{"StatefulSet", "team-a", "db"}, true},
		{"a pod of a DaemonSet belongs to it", pod(ctl("apps/v1", "DaemonSet", "agent"), nil), Workload{"DaemonSet", "team-a", "agent"}, true},
		{"a pod of a ReplicaSet without the pod-template-hash label has no Deployment", pod(ctl("apps/v1", "ReplicaSet", "web-5d8f9c"), nil), Workload{}, false},
		{"a pod of a ReplicaSet whose name does not end in the hash has no Deployment", pod(ctl("apps/v1", "ReplicaSet", "standalone"), hash), Workload{}, false},
		{"a pod of a ReplicaSet named only by the hash has no Deployment", pod(ctl("apps/v1", "ReplicaSet", "-5d8f9c"), hash), Workload{}, false},
		{"a Job's pod is never restarted", pod(ctl("batch/v1", "Job", "migrate"), nil), Workload{}, false},
		{"a bare pod is never restarted", pod(nil, nil), Workload{}, false},
		{"an owner that is not the controller does not count", pod(notController, nil), Workload{}, false},
		{"a StatefulSet of another API group is not apps'", pod(ctl("example.com/v1", "StatefulSet", "db"), nil), Workload{}, false},
	} {
		got, ok := WorkloadOf(tc.pod)
		if got != tc.want || ok != tc.ok {
			t.Errorf("%s: got %v, %v; want %v, %v", tc.sentence, got, ok, tc.want, tc.ok)
		}
	}
}

// restartWorld is a cluster as the rolling-restart controller sees it: templates, namespaces and pods in a fake
// client (the cache and the API server at once), workload patches recorded instead of sent.
type restartWorld struct {
	t       *testing.T
	objs    []client.Object
	patches []string // "Deployment team-a/web <patch>"
	events  *capture
	now     time.Time
	client  client.Client
}

var restartT0 = time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)

func newRestartWorld(t *testing.T) *restartWorld {
	return &restartWorld{t: t, events: &capture{}, now: restartT0}
}

func (w *restartWorld) namespace(name string, restart bool) {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if restart {
		ns.Labels = map[string]string{v1alpha1.LabelRestart: v1alpha1.LabelRestartEnabled}
	}
	w.objs = append(w.objs, ns)
}

// template adds a template serving a proxy of the given image; maxConcurrent 0 leaves it absent.
func (w *restartWorld) template(ns string, restart v1alpha1.Restart, maxConcurrent int32) *v1alpha1.SidecarTemplate {
	st := &v1alpha1.SidecarTemplate{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "proxy", Generation: 2},
		Spec: v1alpha1.SidecarTemplateSpec{Containers: []corev1.Container{{Name: "proxy", Image: "proxy:2"}},
			UpdatePolicy: &v1alpha1.UpdatePolicy{Restart: restart}}}
	if maxConcurrent > 0 {
		st.Spec.UpdatePolicy.MaxConcurrent = ptr.To(maxConcurrent)
	}
	w.objs = append(w.objs, st)
	return st
}

func currentHash(st *v1alpha1.SidecarTemplate) string { return inject.Compile(st, injectorNS).Hash }

// podState is what a test says of a pod: the template version it carries, and whether it is Ready.
type podState struct {
	hash    string
	ready   bool
	mark    string // sidecar.dev/restarted-for
	created time.Time
}

// pod adds a pod carrying template st at state s, owned as owners say.
func (w *restartWorld) pod(st *v1alpha1.SidecarTemplate, ns, name string, s podState, labels map[string]string, owners ...metav1.OwnerReference) {
	record := fmt.Sprintf(`{"templates":[{"namespace":%q,"name":%q,"generation":1,"hash":%q,"containers":["proxy"]}]}`, st.Namespace, st.Name, s.hash)
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels, OwnerReferences: owners,
		Annotations: map[string]string{v1alpha1.AnnotationStatus: record}, CreationTimestamp: metav1.NewTime(cmpTime(s.created, restartT0.Add(-time.Hour)))}}
	if s.mark != "" {
		p.Annotations[v1alpha1.AnnotationRestartedFor] = s.mark
	}
	status := corev1.ConditionFalse
	if s.ready {
		status = corev1.ConditionTrue
	}
	p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: status, LastTransitionTime: p.CreationTimestamp}}
	w.objs = append(w.objs, p)
}

func cmpTime(a, b time.Time) time.Time {
	if a.IsZero() {
		return b
	}
	return a
}

// deploymentPods adds n pods of Deployment name (ReplicaSet name-<rs>) in ns.
func (w *restartWorld) deploymentPods(st *v1alpha1.SidecarTemplate, ns, name, rs string, n int, s podState) {
	for i := range n {
		w.pod(st, ns, fmt.Sprintf("%s-%s-%d", name, rs, i), s, map[string]string{"app": name, appsv1.DefaultDeploymentUniqueLabelKey: rs},
			metav1.OwnerReference{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: name + "-" + rs, Controller: ptr.To(true)})
	}
}

func owned(apiVersion, kind, name string) metav1.OwnerReference {
	return metav1.OwnerReference{APIVersion: apiVersion, Kind: kind, Name: name, Controller: ptr.To(true)}
}

// build makes the fake client; reconciler returns a controller on it, as a fresh process would have it.
func (w *restartWorld) build() {
	s := k8sruntime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		w.t.Fatal(err)
	}
	if err := v1alpha1.AddToScheme(s); err != nil {
		w.t.Fatal(err)
	}
	base := fake.NewClientBuilder().WithScheme(s).WithObjects(w.objs...).
		WithStatusSubresource(&v1alpha1.SidecarTemplate{}).
		WithIndex(&corev1.Pod{}, PodTemplateIndex, func(o client.Object) []string { return TemplateKeysOf(o.GetAnnotations()) }).
		Build()
	w.client = interceptor.NewClient(base, interceptor.Funcs{
		Patch: func(ctx context.Context, c client.WithWatch, obj client.Object, patch client.Patch, opts ...client.PatchOption) error {
			data, err := patch.Data(obj)
			if err != nil {
				return err
			}
			kind := strings.TrimPrefix(fmt.Sprintf("%T", obj), "*v1.")
			w.patches = append(w.patches, fmt.Sprintf("%s %s/%s %s", kind, obj.GetNamespace(), obj.GetName(), data))
			return nil
		},
	})
}

func (w *restartWorld) reconciler() *RestartReconciler {
	return &RestartReconciler{Client: w.client, APIReader: w.client, InjectorNamespace: injectorNS,
		Events: events.NewRecorder(w.events), Now: func() time.Time { return w.now }}
}

func (w *restartWorld) reconcile(r *RestartReconciler, st *v1alpha1.SidecarTemplate) ctrl.Result {
	w.t.Helper()
	res, err := r.Reconcile(context.Background(), ctrl.Request{NamespacedName: types.NamespacedName{Namespace: st.Namespace, Name: st.Name}})
	if err != nil {
		w.t.Fatalf("reconcile: %v", err)
	}
	return res
}

// restarted returns the workloads patched so far ("Deployment team-a/web"), checking that each patch writes only
// the restart mark of the template's current version into the pod template.
func (w *restartWorld) restarted(st *v1alpha1.SidecarTemplate) []string {
	w.t.Helper()
	want := fmt.Sprintf(`{"spec":{"template":{"metadata":{"annotations":{%q:%q}}}}}`, v1alpha1.AnnotationRestartedFor,
		RestartMark(st.Namespace, st.Name, currentHash(st)))
	var out []string
	for _, p := range w.patches {
		kind, rest, _ := strings.Cut(p, " ")
		name, data, _ := strings.Cut(rest, " ")
		if data != want {
			w.t.Errorf("patch of %s %s = %s, want %s", kind, name, data, want)
		}
		out = append(out, kind+" "+name)
	}
	return out
}

func (w *restartWorld) condition(st *v1alpha1.SidecarTemplate) *metav1.Condition {
	w.t.Helper()
	var got v1alpha1.SidecarTemplate
	if err := w.client.Get(context.Background(), client.ObjectKeyFromObject(st), &got); err != nil {
		w.t.Fatal(err)
	}
	return meta.FindStatusCondition(got.Status.Conditions, v1alpha1.ConditionRollingRestart)
}

// A cluster-wide template restarts the Deployments, StatefulSets and DaemonSets of its outdated pods in namespaces
// labelled sidecar.dev/restart=enabled, and nothing else: not in other namespaces, not Jobs, bare pods or
// ReplicaSets without a Deployment, not workloads already on the current version.
func TestRollingRestartRestartsOnlyWorkloadsInNamespacesThatAllowIt(t *testing.T) {
	w := newRestartWorld(t)
	w.namespace("team-a", true)
	w.namespace("team-b", false)
	st := w.template(injectorNS, v1alpha1.RestartRolling, 10)
	old := podState{hash: "0ld", ready: true}
	cur := podState{hash: currentHash(st), ready: true}
	w.deploymentPods(st, "team-a", "web", "5d8f9c", 2, old)
	w.deploymentPods(st, "team-a", "current", "7c6b5a", 2, cur)
	w.pod(st, "team-a", "db-0", old, nil, owned("apps/v1", "StatefulSet", "db"))
	w.pod(st, "team-a", "agent-x1", old, nil, owned("apps/v1", "DaemonSet", "agent"))
	w.pod(st, "team-a", "migrate-x1", old, nil, owned("batch/v1", "Job", "migrate"))
	w.pod(st, "team-a", "bare", old, nil)
	w.pod(st, "team-a", "standalone-x1", old, map[string]string{"app": "standalone"}, owned("apps/v1", "ReplicaSet", "standalone"))
	w.deploymentPods(st, "team-b", "web", "5d8f9c", 2, old)
	w.build()

	res := w.reconcile(w.reconciler(), st)
	want := []string{"DaemonSet team-a/agent", "Deployment team-a/web", "StatefulSet team-a/db"}
	if got := w.restarted(st); !slices.Equal(got, want) {
		t.Errorf("restarted %v, want %v", got, want)
	}
	c := w.condition(st)
	if c == nil || c.Status != metav1.ConditionTrue || c.Reason != ReasonRestarting {
		t.Fatalf("RollingRestart condition %+v, want True %s", c, ReasonRestarting)
	}
	if !strings.Contains(c.Message, "5 outdated pod(s) are not restarted") {
		t.Errorf("the condition does not count the outdated pods left alone (Job, bare pod, ReplicaSet, 2 in team-b): %q", c.Message)
	}
	if res.RequeueAfter <= 0 {
		t.Errorf("with rollouts in flight the template is not looked at again (result %+v)", res)
	}
	if got := w.events.about(injectorNS + "/proxy"); len(got) != 3 || !strings.Contains(got[0], "Normal Restarted: restarted DaemonSet team-a/agent") {
		t.Errorf("events %q, want one Normal Restarted per workload", got)
	}
}

// A namespaced template never restarts anything outside its namespace, even where restarts are allowed (its
// record in another namespace's pod can only be forged there).
func TestRollingRestartOfANamespacedTemplateStaysInItsNamespace(t *testing.T) {
	w := newRestartWorld(t)
	w.namespace("team-a", true)
	w.namespace("team-b", true)
	st := w.template("team-a", v1alpha1.RestartRolling, 10)
	w.deploymentPods(st, "team-a", "web", "5d8f9c", 1, podState{hash: "0ld", ready: true})
	w.deploymentPods(st, "team-b", "web", "5d8f9c", 1, podState{hash: "0ld", ready: true})
	w.build()
	w.reconcile(w.reconciler(), st)
	if got, want := w.restarted(st), []string{"Deployment team-a/web"}; !slices.Equal(got, want) {
		t.Errorf("restarted %v, want %v", got, want)
	}
}

// A template without restart: Rolling restarts nothing, and a RollingRestart condition left from before goes.
func TestTemplatesThatDoNotAskForRestartsRestartNothing(t *testing.T) {
	for _, restart := range []v1alpha1.Restart{"", v1alpha1.RestartNever} {
		w := newRestartWorld(t)
		w.namespace("team-a", true)
		st := w.template("team-a", restart, 0)
		st.Status.Conditions = []metav1.Condition{{Type: v1alpha1.ConditionRollingRestart, Status: metav1.ConditionTrue, Reason: ReasonUpToDate, LastTransitionTime: metav1.Now()}}
		w.deploymentPods(st, "team-a", "web", "5d8f9c", 2, podState{hash: "0ld", ready: true})
		w.build()
		w.reconcile(w.reconciler(), st)
		if got := w.restarted(st); len(got) != 0 {
			t.Errorf("restart %q: restarted %v, want nothing", restart, got)
		}
		if c := w.condition(st); c != nil {
			t.Errorf("restart %q: the RollingRestart condition stays: %+v", restart, c)
		}
	}
}

// maxConcurrent workloads at a time (1 when absent); the next starts when one has rolled out: all its pods on the
// current version, Ready, none terminating. A new process (the injector restarted, or another replica became
// leader) finds what is in flight from the pods, and restarts nothing twice.
func TestRollingRestartRestartsAtMostMaxConcurrentWorkloadsAtATime(t *testing.T) {
	for _, tc := range []struct {
		maxConcurrent int32
		first         []string
	}{
		{0, []string{"Deployment team-a/a"}},
		{2, []string{"Deployment team-a/a", "Deployment team-a/b"}},
	} {
		t.Run(fmt.Sprintf("maxConcurrent %d", tc.maxConcurrent), func(t *testing.T) {
			w := newRestartWorld(t)
			w.namespace("team-a", true)
			st := w.template("team-a", v1alpha1.RestartRolling, tc.maxConcurrent)
			old := podState{hash: "0ld", ready: true}
			for _, name := range []string{"c", "a", "b"} {
				w.deploymentPods(st, "team-a", name, "1a2b3c", 2, old)
			}
			w.build()
			r := w.reconciler()
			w.reconcile(r, st)
			if got := w.restarted(st); !slices.Equal(got, tc.first) {
				t.Fatalf("first look restarted %v, want %v", got, tc.first)
			}
			w.reconcile(r, st)
			if got := w.restarted(st); !slices.Equal(got, tc.first) {
				t.Fatalf("a second look while they roll restarted %v, want still only %v", got, tc.first)
			}
		})
	}

	// One by one, through the pods' states, with a new process in between.
	w := newRestartWorld(t)
	w.namespace("team-a", true)
	st := w.template("team-a", v1alpha1.RestartRolling, 0)
	mark := RestartMark(st.Namespace, st.Name, currentHash(st))
	w.deploymentPods(st, "team-a", "b", "1a2b3c", 2, podState{hash: "0ld", ready: true})
	// a is half-way: one new pod Ready, one not yet.
	w.deploymentPods(st, "team-a", "a", "9f8e7d", 1, podState{hash: currentHash(st), mark: mark, ready: true, created: restartT0})
	w.pod(st, "team-a", "a-9f8e7d-new", podState{hash: currentHash(st), mark: mark, created: restartT0}, map[string]string{"app": "a", appsv1.DefaultDeploymentUniqueLabelKey: "9f8e7d"},
		owned("apps/v1", "ReplicaSet", "a-9f8e7d"))
	w.build()
	w.reconcile(w.reconciler(), st) // a new process: a is in flight by its pods' mark
	if got := w.restarted(st); len(got) != 0 {
		t.Fatalf("a new process restarted %v while a rolls out, want nothing", got)
	}
	if c := w.condition(st); c == nil || c.Reason != ReasonRestarting || !strings.Contains(c.Message, "Deployment team-a/a") {
		t.Fatalf("condition %+v, want Restarting naming Deployment team-a/a", c)
	}
	// a's last pod becomes Ready: a has rolled out, b is next.
	var p corev1.Pod
	if err := w.client.Get(context.Background(), client.ObjectKey{Namespace: "team-a", Name: "a-9f8e7d-new"}, &p); err != nil {
		t.Fatal(err)
	}
	if err := w.client.Delete(context.Background(), &p); err != nil {
		t.Fatal(err)
	}
	p.ResourceVersion = ""
	p.Status.Conditions[0].Status = corev1.ConditionTrue
	if err := w.client.Create(context.Background(), &p); err != nil {
		t.Fatal(err)
	}
	w.reconcile(w.reconciler(), st)
	if got, want := w.restarted(st), []string{"Deployment team-a/b"}; !slices.Equal(got, want) {
		t.Fatalf("after a rolled out: restarted %v, want %v (condition %+v)", got, want, w.condition(st))
	}
}

// A restarted workload that does not progress within the deadline stops the rolling restart: the condition turns
// False with reason ProgressDeadlineExceeded naming it, a Warning Event says so once, and no other workload is
// restarted while it stays stuck.
func TestRollingRestartStopsWhenARolloutDoesNotProgressInTime(t *testing.T) {
	w := newRestartWorld(t)
	w.namespace("team-a", true)
	st := w.template("team-a", v1alpha1.RestartRolling, 0)
	mark := RestartMark(st.Namespace, st.Name, currentHash(st))
	w.deploymentPods(st, "team-a", "stuck", "9f8e7d", 1, podState{hash: currentHash(st), mark: mark, ready: false, created: restartT0})
	w.deploymentPods(st, "team-a", "stuck", "1a2b3c", 1, podState{hash: "0ld", ready: true})
	w.deploymentPods(st, "team-a", "waiting", "1a2b3c", 2, podState{hash: "0ld", ready: true})
	w.build()
	r := w.reconciler()
	r.Deadline = 5 * time.Minute

	w.now = restartT0.Add(4 * time.Minute)
	w.reconcile(r, st)
	if c := w.condition(st); c == nil || c.Status != metav1.ConditionTrue || c.Reason != ReasonRestarting {
		t.Fatalf("within the deadline: condition %+v, want True %s", c, ReasonRestarting)
	}
	w.now = restartT0.Add(5*time.Minute + time.Second)
	res := w.reconcile(r, st)
	c := w.condition(st)
	if c == nil || c.Status != metav1.ConditionFalse || c.Reason != ReasonProgressDeadlineExceeded || !strings.Contains(c.Message, "Deployment team-a/stuck") {
		t.Fatalf("past the deadline: condition %+v, want False %s naming Deployment team-a/stuck", c, ReasonProgressDeadlineExceeded)
	}
	w.now = w.now.Add(time.Minute)
	w.reconcile(r, st)
	if got := w.restarted(st); len(got) != 0 {
		t.Errorf("restarted %v while a rollout is stuck, want nothing", got)
	}
	var warnings []string
	for _, e := range w.events.about("team-a/proxy") {
		if strings.Contains(e, "Warning "+ReasonProgressDeadlineExceeded) {
			warnings = append(warnings, e)
		}
	}
	if len(warnings) != 1 {
		t.Errorf("Warning Events %q, want exactly one", warnings)
	}
	if res.RequeueAfter <= 0 {
		t.Errorf("a stopped rolling restart is not looked at again, so it cannot go on once fixed (result %+v)", res)
	}
}

// While a canary holds the current revision back, most new pods would get the stable revision again: nothing is
// restarted, and the condition says what it waits for. Promoting (percent 100) lets the restarts go on.
func TestRollingRestartWaitsForTheCanaryToBePromoted(t *testing.T) {
	for _, tc := range []struct {
		percent   *int32
		restarted []string
		reason    string
	}{
		{nil, nil, ReasonWaitingForCanary},
		{ptr.To[int32](50), nil, ReasonWaitingForCanary},
		{ptr.To[int32](100), []string{"Deployment team-a/web"}, ReasonRestarting},
	} {
		w := newRestartWorld(t)
		w.namespace("team-a", true)
		st := w.template("team-a", v1alpha1.RestartRolling, 0)
		st.Spec.UpdatePolicy.Canary = &v1alpha1.Canary{Percent: tc.percent}
		w.deploymentPods(st, "team-a", "web", "5d8f9c", 2, podState{hash: "0ld", ready: true})
		w.build()
		w.reconcile(w.reconciler(), st)
		if got := w.restarted(st); !slices.Equal(got, tc.restarted) {
			t.Errorf("canary percent %v: restarted %v, want %v", ptr.Deref(tc.percent, -1), got, tc.restarted)
		}
		if c := w.condition(st); c == nil || c.Reason != tc.reason {
			t.Errorf("canary percent %v: condition %+v, want reason %s", ptr.Deref(tc.percent, -1), c, tc.reason)
		}
	}
}

// A Deployment whose pod template carries an earlier revision's sidecar (rendered offline with inject) still
// creates outdated pods after its restart: it is not restarted again, not waited for (which would stop every other
// restart at the deadline), and the condition names it.
func TestAWorkloadPinnedToAnEarlierRevisionIsRestartedOnceAndNotWaitedFor(t *testing.T) {
	w := newRestartWorld(t)
	w.namespace("team-a", true)
	st := w.template("team-a", v1alpha1.RestartRolling, 0)
	mark := RestartMark(st.Namespace, st.Name, currentHash(st))
	w.deploymentPods(st, "team-a", "gitops", "9f8e7d", 2, podState{hash: "0ld", ready: true, mark: mark, created: restartT0})
	w.deploymentPods(st, "team-a", "web", "1a2b3c", 2, podState{hash: "0ld", ready: true})
	w.build()
	w.reconcile(w.reconciler(), st)
	if got, want := w.restarted(st), []string{"Deployment team-a/web"}; !slices.Equal(got, want) {
		t.Errorf("restarted %v, want %v (the pinned Deployment neither again nor waited for)", got, want)
	}
	if c := w.condition(st); c == nil || c.Reason != ReasonRestarting || !strings.Contains(c.Message, "Deployment team-a/gitops still create(s) pods of an earlier version") {
		t.Errorf("condition %+v, want Restarting, naming the pinned Deployment", c)
	}
}
