package controller

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/sidecar-dev/sidecar-injector/internal/api/v1alpha1"
	"github.com/sidecar-dev/sidecar-injector/internal/events"
	"github.com/sidecar-dev/sidecar-injector/internal/inject"
	"github.com/sidecar-dev/sidecar-injector/internal/store"
)

// RestartName is the rolling-restart controller's name (logs, metrics of controller-runtime).
const RestartName = "sidecartemplate-restart"

// Reasons of the RollingRestart condition and of the rolling restart's Events.
const (
	// ReasonRestarting: workloads whose pods run an outdated version are being restarted.
	ReasonRestarting = "Restarting"
	// ReasonUpToDate: no workload that may be restarted runs an outdated version.
	ReasonUpToDate = "UpToDate"
	// ReasonProgressDeadlineExceeded: a restarted workload did not progress within the deadline; no other
	// workload is restarted until it has rolled out or the template changes.
	ReasonProgressDeadlineExceeded = "ProgressDeadlineExceeded"
	// ReasonWaitingForCanary: a canary holds the current revision back from most new pods, so a restart
	// would mostly bring back the stable revision; nothing new is restarted until the canary is promoted.
	ReasonWaitingForCanary = "WaitingForCanary"
	// ReasonRestarted is the reason of the Event for each workload restarted.
	ReasonRestarted = "Restarted"
)

// DefaultProgressDeadline is how long a restarted workload may go without progress (a pod of it created or
// becoming Ready) before the rolling restart stops: the default progressDeadlineSeconds of a Deployment.
const DefaultProgressDeadline = 10 * time.Minute

// DefaultRestartPoll is how often a template with a rollout in flight is looked at again: pods' readiness is in
// their status, which the injector's cache does not hold (it watches pods' metadata only), so no event says that
// a pod became Ready.
const DefaultRestartPoll = 5 * time.Second

// The rolling restart's RBAC is not generated from markers: it is granted only when the chart's
// rollingRestart.enabled is true (charts/sidecar-injector/templates/rbac.yaml), and it is `patch` on
// deployments, statefulsets and daemonsets, nothing more. Without get, list or watch on them, a pod's workload
// is found from the pod alone: its controller reference names a StatefulSet or DaemonSet, or a ReplicaSet that a
// Deployment created, whose name is the Deployment's name, "-" and the pod's pod-template-hash label
// (WorkloadOf). Whether a restarted workload has rolled out is judged from its pods.

// Workload is a Deployment, StatefulSet or DaemonSet that a rolling restart may restart.
type Workload struct {
	Kind      string // Deployment, StatefulSet or DaemonSet
	Namespace string
	Name      string
}

func (w Workload) String() string { return w.Kind + " " + w.Namespace + "/" + w.Name }

func (w Workload) compare(o Workload) int {
	return cmp.Or(strings.Compare(w.Namespace, o.Namespace), strings.Compare(w.Kind, o.Kind), strings.Compare(w.Name, o.Name))
}

// WorkloadOf returns the workload that pod belongs to, when it is one a rolling restart may restart: the pod's
// controller is a StatefulSet or a DaemonSet, or a ReplicaSet named "<deployment>-<pod-template-hash>" as a
// Deployment names its ReplicaSets. A pod of a Job, of a ReplicaSet not named so, or without a controller has
// none. A ReplicaSet made by hand with a name and a label that look like a Deployment's would be taken for that
// Deployment's; the patch then fails (no such Deployment), or restarts that Deployment, in a namespace that allows
// restarts: the cost of not reading ReplicaSets.
func WorkloadOf(pod metav1.Object) (Workload, bool) {
	owner := metav1.GetControllerOfNoCopy(pod)
	if owner == nil {
		return Workload{}, false
	}
	if gv, err := schema.ParseGroupVersion(owner.APIVersion); err != nil || gv.Group != appsv1.GroupName {
		return Workload{}, false
	}
	switch owner.Kind {
	case "StatefulSet", "DaemonSet":
		return Workload{Kind: owner.Kind, Namespace: pod.GetNamespace(), Name: owner.Name}, true
	case "ReplicaSet":
		hash := pod.GetLabels()[appsv1.DefaultDeploymentUniqueLabelKey]
		name, ok := strings.CutSuffix(owner.Name, "-"+hash)
		if hash == "" || !ok || name == "" {
			return Workload{}, false
		}
		return Workload{Kind: "Deployment", Namespace: pod.GetNamespace(), Name: name}, true
	}
	return Workload{}, false
}

// RestartMark is the value of the sidecar.dev/restarted-for annotation that a restart for the template's
// version hash writes on a workload's pod template.
func RestartMark(namespace, name, hash string) string {
	return TemplateKey(namespace, name) + "@" + hash
}

// RestartReconciler restarts, for each template with spec.updatePolicy.restart Rolling, the workloads whose pods
// run an outdated version of it, in namespaces labelled sidecar.dev/restart=enabled, at most maxConcurrent at a
// time, waiting for each to roll out; it stops, with a False RollingRestart condition and a Warning Event, when
// one does not progress within Deadline.
//
// What is in flight is derived, not stored: a restart writes RestartMark(template, hash) into the workload's pod
// template, so the pods it creates carry it. A workload whose pods carry the current mark was restarted for this
// version; it is in flight until all its pods run the current version, are Ready and none is terminating. Writing
// the same mark again changes nothing, so a workload is never restarted twice for one version: after the
// injector restarts between a patch and the first new pod (the only moment the pods do not tell), the workload
// is patched again with the same value, which starts no second rollout. The one cost of that moment: the
// workloads restarted then may briefly be more than maxConcurrent. Stored state (the template's status) would
// have to be written before every patch, which is one more write per workload and one more thing to disagree
// with the pods.
type RestartReconciler struct {
	// Client reads templates, namespaces and pods (metadata) from the manager's cache, and patches workloads
	// and the template's status; mgr.GetClient().
	Client client.Client
	// APIReader reads pods with their status (readiness), for the workloads that have rolled out as far as the
	// cache can tell; mgr.GetAPIReader().
	APIReader client.Reader
	// InjectorNamespace is the injector's own namespace (its templates are cluster-wide).
	InjectorNamespace string
	// Templates, when set, is the webhook's store, whose compiled templates give the current hash.
	Templates *store.Templates
	// Events, when set, receives the Restarted and ProgressDeadlineExceeded Events.
	Events *events.Recorder
	// Deadline is how long a restarted workload may go without progress; zero means DefaultProgressDeadline.
	Deadline time.Duration
	// Poll is how often a template with a rollout in flight is looked at again; zero means DefaultRestartPoll.
	Poll time.Duration
	// Pace bounds the controller's work like the status controller's; the zero value means DefaultPace.
	Pace Pace
	// Now replaces time.Now (tests).
	Now func() time.Time
	// Pods is the status controller's pod watch (TemplateReconciler.Pods, set by its SetupWithManager); required.
	Pods *PodWatch

	reconciles, writes *rate.Limiter
	mu                 sync.Mutex
	rollouts           map[types.NamespacedName]*rollout
}

// rollout is what this process remembers of one template's rolling restart, for one version (mark): when it
// restarted each workload (before the workload's new pods show the mark) and which workloads it has seen
// rolled out (so that their pods are not read again on each look). It is lost on a restart and rebuilt from pods.
type rollout struct {
	mark    string
	started map[Workload]time.Time
	done    map[Workload]bool
}

// SetupWithManager registers the controller. It shares the status controller's pod watch and index (Pods).
func (r *RestartReconciler) SetupWithManager(mgr ctrl.Manager) error {
	if r.APIReader == nil {
		return errors.New("RestartReconciler.APIReader is required")
	}
	if r.Pods == nil {
		return errors.New("RestartReconciler.Pods is required: the status controller's pod watch")
	}
	r.reconciles, r.writes = r.Pace.limiters()
	return ctrl.NewControllerManagedBy(mgr).
		Named(RestartName).
		// One worker, paced: it runs beside admissions, like the status controller (Pace).
		WithOptions(controller.Options{MaxConcurrentReconciles: 1}).
		For(&v1alpha1.SidecarTemplate{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		// Pods created (a rollout's new ones), deleted, or given another record move a rollout on.
		WatchesRawSource(r.Pods.Source(recordChanged())).
		// A namespace that allows restarts (or stops allowing them) concerns the templates its pods carry.
		WatchesMetadata(&corev1.Namespace{}, handler.EnqueueRequestsFromMapFunc(r.namespacePodTemplates),
			builder.WithPredicates(predicate.LabelChangedPredicate{}, notInitialList())).
		Complete(r)
}

// namespacePodTemplates maps a namespace to the templates that its pods' records name.
func (r *RestartReconciler) namespacePodTemplates(ctx context.Context, o client.Object) []reconcile.Request {
	pods := &metav1.PartialObjectMetadataList{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "PodList"}}
	if err := r.Client.List(ctx, pods, client.InNamespace(o.GetName()), client.UnsafeDisableDeepCopy); err != nil {
		logf.FromContext(ctx).Error(err, "list pods of a namespace whose labels changed")
		return nil
	}
	seen := map[reconcile.Request]bool{}
	var reqs []reconcile.Request
	for i := range pods.Items {
		for _, req := range podTemplates(ctx, &pods.Items[i]) {
			if !seen[req] {
				seen[req] = true
				reqs = append(reqs, req)
			}
		}
	}
	return reqs
}

// Reconcile implements reconcile.Reconciler.
func (r *RestartReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	if err := wait(ctx, r.reconciles); err != nil {
		return ctrl.Result{}, err
	}
	var t v1alpha1.SidecarTemplate
	if err := r.Client.Get(ctx, req.NamespacedName, &t); err != nil {
		if apierrors.IsNotFound(err) {
			r.forget(req.NamespacedName)
			return ctrl.Result{}, nil
		}
		return ctrl.Result{}, err
	}
	if p := t.Spec.UpdatePolicy; p == nil || p.Restart != v1alpha1.RestartRolling {
		r.forget(req.NamespacedName)
		return r.setCondition(ctx, &t, nil)
	}
	compiled := r.compile(&t)
	if compiled.Err != nil {
		return ctrl.Result{}, nil // never restart into a template that cannot be injected; Ready says why
	}
	step, err := r.plan(ctx, &t, compiled.Hash)
	if err != nil {
		return ctrl.Result{}, err
	}
	// While a canary holds the current revision back, new pods outside it get the stable revision: restarting
	// their workloads would not update them (canaryRunning, revisions.go).
	if step.canary = canaryRunning(&t); step.canary {
		step.slots = 0
	}
	cond := step.condition(&t)
	if len(step.stalled) == 0 {
		restarted, err := r.restart(ctx, &t, step)
		if err != nil {
			return ctrl.Result{}, err
		}
		if restarted > 0 {
			step.inFlight = append(step.inFlight, step.waiting[:restarted]...)
			step.waiting = step.waiting[restarted:]
			cond = step.condition(&t)
		}
	}
	res, err := r.setCondition(ctx, &t, &cond)
	if err != nil || res.RequeueAfter > 0 {
		return res, err
	}
	if len(step.inFlight) > 0 || len(step.stalled) > 0 {
		return ctrl.Result{RequeueAfter: r.poll()}, nil
	}
	return ctrl.Result{}, nil
}

func (r *RestartReconciler) compile(t *v1alpha1.SidecarTemplate) *inject.Template {
	if r.Templates != nil {
		if c := r.Templates.PeekTemplate(t.Namespace, t.Name); c != nil && c.Generation == t.Generation && t.Generation != 0 {
			return c
		}
	}
	return inject.Compile(t, r.InjectorNamespace)
}

func (r *RestartReconciler) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

func (r *RestartReconciler) poll() time.Duration { return cmpOr(r.Poll, DefaultRestartPoll) }
func (r *RestartReconciler) deadline() time.Duration {
	return cmpOr(r.Deadline, DefaultProgressDeadline)
}

func cmpOr(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

// maxConcurrent is the template's updatePolicy.maxConcurrent; absent means 1.
func maxConcurrent(t *v1alpha1.SidecarTemplate) int {
	if p := t.Spec.UpdatePolicy; p != nil && p.MaxConcurrent != nil && *p.MaxConcurrent > 0 {
		return int(*p.MaxConcurrent)
	}
	return 1
}

// memory returns this process's rollout of template key for mark, a fresh one when the mark has changed.
// Callers hold r.mu.
func (r *RestartReconciler) memory(key types.NamespacedName, mark string) *rollout {
	if r.rollouts == nil {
		r.rollouts = map[types.NamespacedName]*rollout{}
	}
	ro := r.rollouts[key]
	if ro == nil || ro.mark != mark {
		ro = &rollout{mark: mark, started: map[Workload]time.Time{}, done: map[Workload]bool{}}
		r.rollouts[key] = ro
	}
	return ro
}

func (r *RestartReconciler) forget(key types.NamespacedName) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.rollouts, key)
}

// restartStep is one look at a template's rolling restart.
type restartStep struct {
	mark string
	// inFlight are the workloads restarted for this version that have not rolled out yet; stalled are those of
	// them without progress within the deadline.
	inFlight, stalled []Workload
	// pinned are the workloads restarted for this version whose new pods still run an earlier one.
	pinned []Workload
	// waiting are the outdated workloads not restarted yet, in the order they will be (namespace, kind, name).
	waiting []Workload
	// slots is how many of waiting may be restarted now.
	slots int
	// canary is true while a canary holds the current revision back: nothing new is restarted.
	canary bool
	// left counts the outdated pods that will not be restarted: their namespace does not allow it, or they
	// have no Deployment, StatefulSet or DaemonSet.
	left int
}

// workloadPods is what the cache says of one workload's pods that carry the template.
type workloadPods struct {
	outdated, terminating int
	// pinned counts the pods that carry the mark of the current version yet run an earlier one: the restart
	// happened and did not help, because the pod template itself carries an earlier revision's sidecar (a
	// manifest rendered offline with `inject`, admitted as a stale revision).
	pinned   int
	marked   bool              // a pod carries the restart mark of the current version
	progress time.Time         // the newest creation of a pod carrying the mark
	labels   map[string]string // the labels all its pods share, but those of one revision
}

// revisionLabels differ between the pods of two revisions of one workload.
var revisionLabels = []string{appsv1.DefaultDeploymentUniqueLabelKey, appsv1.ControllerRevisionHashLabelKey,
	appsv1.StatefulSetPodNameLabel, "pod-template-generation"}

// plan looks at the pods that carry t (from the cache's index) and decides what is in flight, stalled and
// waiting.
func (r *RestartReconciler) plan(ctx context.Context, t *v1alpha1.SidecarTemplate, hash string) (*restartStep, error) {
	pods := &metav1.PartialObjectMetadataList{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "PodList"}}
	opts := []client.ListOption{client.MatchingFields{PodTemplateIndex: TemplateKey(t.Namespace, t.Name)}, client.UnsafeDisableDeepCopy}
	if r.InjectorNamespace == "" || t.Namespace != r.InjectorNamespace {
		opts = append(opts, client.InNamespace(t.Namespace)) // a namespaced template only serves its namespace
	}
	if err := r.Client.List(ctx, pods, opts...); err != nil {
		return nil, fmt.Errorf("list pods carrying %s/%s: %w", t.Namespace, t.Name, err)
	}
	step := &restartStep{mark: RestartMark(t.Namespace, t.Name, hash)}
	workloads, err := r.groupPods(ctx, pods.Items, t, hash, step)
	if err != nil {
		return nil, err
	}

	key := types.NamespacedName{Namespace: t.Namespace, Name: t.Name}
	r.mu.Lock()
	ro := r.memory(key, step.mark)
	started, done := maps.Clone(ro.started), maps.Clone(ro.done)
	r.mu.Unlock()

	for _, w := range slices.SortedFunc(maps.Keys(workloads), Workload.compare) {
		wp := workloads[w]
		startedAt, restarted := started[w]
		if wp.pinned > 0 {
			// Restarted for this version, and its new pods still run an earlier one: restarting cannot update
			// it, so it is neither waited for (it would stop every other restart at the deadline) nor restarted
			// again.
			step.pinned = append(step.pinned, w)
			continue
		}
		if !wp.marked && !restarted {
			if wp.outdated > 0 {
				step.waiting = append(step.waiting, w)
			}
			continue
		}
		if wp.outdated == 0 && wp.terminating == 0 && done[w] {
			continue
		}
		progress := latest(startedAt, wp.progress)
		if wp.outdated == 0 && wp.terminating == 0 {
			// As far as the cache can tell it has rolled out: its pods' readiness decides.
			ready, readyProgress, err := r.rolledOut(ctx, w, wp.labels, t, hash)
			if err != nil {
				return nil, err
			}
			if ready {
				r.mu.Lock()
				ro.done[w] = true
				delete(ro.started, w)
				r.mu.Unlock()
				continue
			}
			progress = latest(progress, readyProgress)
		}
		step.inFlight = append(step.inFlight, w)
		if !progress.IsZero() && r.now().Sub(progress) > r.deadline() {
			step.stalled = append(step.stalled, w)
		}
	}
	step.slots = max(maxConcurrent(t)-len(step.inFlight), 0)
	return step, nil
}

// groupPods groups the pods by workload, in namespaces that allow restarts, and counts in step.left the outdated
// pods that will not be restarted.
func (r *RestartReconciler) groupPods(ctx context.Context, pods []metav1.PartialObjectMetadata, t *v1alpha1.SidecarTemplate, hash string, step *restartStep) (map[Workload]*workloadPods, error) {
	allowed := map[string]bool{}
	workloads := map[Workload]*workloadPods{}
	for i := range pods {
		p := &pods[i]
		recorded, ok := recordedHash(p.Annotations, t.Namespace, t.Name)
		if !ok {
			continue
		}
		outdated := recorded != hash
		w, ok := WorkloadOf(p)
		if ok {
			if _, known := allowed[p.Namespace]; !known {
				a, err := r.restartsAllowed(ctx, p.Namespace)
				if err != nil {
					return nil, err
				}
				allowed[p.Namespace] = a
			}
			ok = allowed[p.Namespace]
		}
		if !ok {
			if outdated && p.DeletionTimestamp == nil {
				step.left++
			}
			continue
		}
		wp := workloads[w]
		if wp == nil {
			wp = &workloadPods{labels: maps.Clone(p.Labels)}
			for _, k := range revisionLabels {
				delete(wp.labels, k)
			}
			workloads[w] = wp
		}
		maps.DeleteFunc(wp.labels, func(k, v string) bool { return p.Labels[k] != v })
		if p.DeletionTimestamp != nil {
			wp.terminating++
			continue
		}
		if outdated {
			wp.outdated++
		}
		if p.Annotations[v1alpha1.AnnotationRestartedFor] == step.mark {
			if outdated {
				wp.pinned++
			}
			wp.marked = true
			wp.progress = latest(wp.progress, p.CreationTimestamp.Time)
		}
	}
	return workloads, nil
}

func latest(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// recordedHash returns the hash that a pod's record gives for the template namespace/name.
func recordedHash(annotations map[string]string, namespace, name string) (string, bool) {
	st := readRecord(annotations)
	if st == nil {
		return "", false
	}
	for _, e := range st.Templates {
		if e.Namespace == namespace && e.Name == name {
			return e.Hash, true
		}
	}
	return "", false
}

// restartsAllowed reports whether the namespace is labelled sidecar.dev/restart=enabled (from the cache).
func (r *RestartReconciler) restartsAllowed(ctx context.Context, namespace string) (bool, error) {
	ns := &metav1.PartialObjectMetadata{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Namespace"}}
	if err := r.Client.Get(ctx, types.NamespacedName{Name: namespace}, ns); err != nil {
		if apierrors.IsNotFound(err) {
			return false, nil
		}
		return false, fmt.Errorf("get namespace %s: %w", namespace, err)
	}
	return ns.Labels[v1alpha1.LabelRestart] == v1alpha1.LabelRestartEnabled, nil
}

// rolledOut reads the workload's pods from the API server (the cache has no readiness) and reports whether all
// of them run the current version and are Ready, none terminating; and the latest progress it sees (a pod
// created or becoming Ready). The pods are listed by the labels they all share, so only the workload's
// neighbours with the same labels are read besides its own.
func (r *RestartReconciler) rolledOut(ctx context.Context, w Workload, labels map[string]string, t *v1alpha1.SidecarTemplate, hash string) (bool, time.Time, error) {
	var pods corev1.PodList
	if err := r.APIReader.List(ctx, &pods, client.InNamespace(w.Namespace), client.MatchingLabels(labels)); err != nil {
		return false, time.Time{}, fmt.Errorf("list the pods of %s: %w", w, err)
	}
	var progress time.Time
	n, done := 0, true
	for i := range pods.Items {
		p := &pods.Items[i]
		if pw, ok := WorkloadOf(p); !ok || pw != w {
			continue
		}
		n++
		progress = latest(progress, p.CreationTimestamp.Time)
		if recorded, ok := recordedHash(p.Annotations, t.Namespace, t.Name); p.DeletionTimestamp != nil || ok && recorded != hash {
			done = false
			continue
		}
		ready := false
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
				ready = true
				progress = latest(progress, c.LastTransitionTime.Time)
			}
		}
		done = done && ready
	}
	return done && n > 0, progress, nil
}

// restart patches the first step.slots waiting workloads and returns how many it restarted. A workload that
// does not exist (a ReplicaSet that only looked like a Deployment's, a workload being deleted) is skipped.
func (r *RestartReconciler) restart(ctx context.Context, t *v1alpha1.SidecarTemplate, step *restartStep) (int, error) {
	log := logf.FromContext(ctx)
	patch := fmt.Appendf(nil, `{"spec":{"template":{"metadata":{"annotations":{%q:%q}}}}}`, v1alpha1.AnnotationRestartedFor, step.mark)
	restarted := 0
	for restarted < step.slots && restarted < len(step.waiting) {
		w := step.waiting[restarted]
		if err := wait(ctx, r.writes); err != nil {
			return restarted, err
		}
		obj, err := workloadObject(w)
		if err != nil {
			return restarted, err
		}
		if err := r.Client.Patch(ctx, obj, client.RawPatch(types.MergePatchType, patch)); err != nil {
			if apierrors.IsNotFound(err) {
				log.Info("not restarted: no such workload", "workload", w.String())
				step.waiting = slices.Delete(step.waiting, restarted, restarted+1)
				continue
			}
			return restarted, fmt.Errorf("restart %s: %w", w, err)
		}
		r.mu.Lock()
		r.memory(types.NamespacedName{Namespace: t.Namespace, Name: t.Name}, step.mark).started[w] = r.now()
		r.mu.Unlock()
		log.Info("restarted", "workload", w.String(), "for", step.mark)
		r.Events.TemplateRestart(t, false, ReasonRestarted, fmt.Sprintf("restarted %s: its pods run an outdated version of the template", w))
		restarted++
	}
	return restarted, nil
}

func workloadObject(w Workload) (client.Object, error) {
	om := metav1.ObjectMeta{Namespace: w.Namespace, Name: w.Name}
	switch w.Kind {
	case "Deployment":
		return &appsv1.Deployment{ObjectMeta: om}, nil
	case "StatefulSet":
		return &appsv1.StatefulSet{ObjectMeta: om}, nil
	case "DaemonSet":
		return &appsv1.DaemonSet{ObjectMeta: om}, nil
	}
	return nil, fmt.Errorf("cannot restart a %s", w.Kind)
}

// condition is the RollingRestart condition that the step reports.
func (s *restartStep) condition(t *v1alpha1.SidecarTemplate) metav1.Condition {
	cond := metav1.Condition{Type: v1alpha1.ConditionRollingRestart, Status: metav1.ConditionTrue, ObservedGeneration: t.Generation}
	names := func(ws []Workload) string {
		s := make([]string, len(ws))
		for i, w := range ws {
			s[i] = w.String()
		}
		return strings.Join(s, ", ")
	}
	switch {
	case len(s.stalled) > 0:
		cond.Status, cond.Reason = metav1.ConditionFalse, ReasonProgressDeadlineExceeded
		cond.Message = fmt.Sprintf("stopped: %s did not progress in time (its pods are not all Ready on the current version); "+
			"fix it, or roll it back, and the rolling restart goes on", names(s.stalled))
	case s.canary && len(s.waiting) > 0:
		cond.Reason = ReasonWaitingForCanary
		cond.Message = fmt.Sprintf("%d outdated workload(s) wait until the canary is promoted (spec.updatePolicy.canary.percent 100, or no canary)", len(s.waiting))
		if len(s.inFlight) > 0 {
			cond.Message += "; restarting " + names(s.inFlight)
		}
	case len(s.inFlight) > 0:
		cond.Reason = ReasonRestarting
		cond.Message = fmt.Sprintf("restarting %s; %d more outdated workload(s) waiting", names(s.inFlight), len(s.waiting))
	default:
		cond.Reason = ReasonUpToDate
		cond.Message = "no workload that may be restarted runs an outdated version"
	}
	if len(s.pinned) > 0 {
		cond.Message += fmt.Sprintf("; %s still create(s) pods of an earlier version after a restart: the pod template "+
			"carries that version's sidecar (rendered offline with inject?); render it again", names(s.pinned))
	}
	if s.left > 0 {
		cond.Message += fmt.Sprintf("; %d outdated pod(s) are not restarted: their namespace is not labelled %s=%s, or they belong to no Deployment, StatefulSet or DaemonSet",
			s.left, v1alpha1.LabelRestart, v1alpha1.LabelRestartEnabled)
	}
	return cond
}

// setCondition sets (cond) or removes (nil) the RollingRestart condition, with an optimistic lock: the status
// controller writes the same status. A new False condition is also an Event.
func (r *RestartReconciler) setCondition(ctx context.Context, t *v1alpha1.SidecarTemplate, cond *metav1.Condition) (ctrl.Result, error) {
	orig := t.DeepCopy()
	prev := meta.FindStatusCondition(orig.Status.Conditions, v1alpha1.ConditionRollingRestart) // orig's: t's changes below
	if cond == nil {
		if prev == nil {
			return ctrl.Result{}, nil
		}
		meta.RemoveStatusCondition(&t.Status.Conditions, v1alpha1.ConditionRollingRestart)
	} else {
		if prev != nil && prev.Status == cond.Status && prev.Reason == cond.Reason && prev.Message == cond.Message &&
			prev.ObservedGeneration == cond.ObservedGeneration {
			return ctrl.Result{}, nil
		}
		meta.SetStatusCondition(&t.Status.Conditions, *cond)
	}
	if err := wait(ctx, r.writes); err != nil {
		return ctrl.Result{}, err
	}
	if err := r.Client.Status().Patch(ctx, t, client.MergeFromWithOptions(orig, client.MergeFromWithOptimisticLock{})); err != nil {
		if apierrors.IsConflict(err) || apierrors.IsNotFound(err) {
			return ctrl.Result{RequeueAfter: time.Second}, nil
		}
		return ctrl.Result{}, fmt.Errorf("update status: %w", err)
	}
	if cond != nil && cond.Status == metav1.ConditionFalse && (prev == nil || prev.Status != cond.Status || prev.Reason != cond.Reason) {
		r.Events.TemplateRestart(t, true, cond.Reason, cond.Message)
	}
	return ctrl.Result{}, nil
}
