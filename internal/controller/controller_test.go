package controller

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/client-go/util/retry"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/sidecar-dev/sidecar-injector/internal/api/v1alpha1"
	"github.com/sidecar-dev/sidecar-injector/internal/events"
	"github.com/sidecar-dev/sidecar-injector/internal/inject"
	"github.com/sidecar-dev/sidecar-injector/internal/metrics"
	"github.com/sidecar-dev/sidecar-injector/internal/store"
	"github.com/sidecar-dev/sidecar-injector/internal/testenv"
)

// The envtest suite: a real kube-apiserver and etcd (KUBEBUILDER_ASSETS, else <repo>/bin; without them the package
// is skipped, or fails when CI is set: internal/testenv), the CRD from config/crd/bases, and the controller running
// in a manager as the injector runs it.

var (
	cfg    *rest.Config
	scheme = k8sruntime.NewScheme()
)

func TestMain(m *testing.M) {
	os.Exit(runSuite(m))
}

func runSuite(m *testing.M) int {
	logf.SetLogger(logr.Discard())
	assets, code, ok := testenv.RequireMain("controller")
	if !ok {
		return code
	}
	crds, err := crdDir()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	for _, add := range []func(*k8sruntime.Scheme) error{clientgoscheme.AddToScheme, v1alpha1.AddToScheme} {
		if err := add(scheme); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	env := &envtest.Environment{
		CRDDirectoryPaths:     []string{crds},
		ErrorIfCRDPathMissing: true,
		Scheme:                scheme,
		BinaryAssetsDirectory: assets,
	}
	if cfg, err = env.Start(); err != nil {
		_ = env.Stop()
		fmt.Fprintf(os.Stderr, "start envtest (kube-apiserver and etcd from %s): %v\n", assets, err)
		return 1
	}
	defer func() {
		if err := env.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "stop envtest: %v\n", err)
		}
	}()
	return m.Run()
}

// capture records events with what they regard.
type capture struct {
	mu     sync.Mutex
	events []string // "namespace/name type reason: note"
}

func (c *capture) Eventf(regarding, _ k8sruntime.Object, eventtype, reason, _, note string, args ...any) {
	ref := regarding.(*corev1.ObjectReference)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.events = append(c.events, fmt.Sprintf("%s/%s %s %s: %s", ref.Namespace, ref.Name, eventtype, reason, fmt.Sprintf(note, args...)))
}

func (c *capture) about(name string) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, e := range c.events {
		if strings.HasPrefix(e, name+" ") {
			out = append(out, e)
		}
	}
	return out
}

const testInjectorNS = "sidecar-injector"

func TestController(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	k8s, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	for _, ns := range []string{testInjectorNS, "team-a", "team-b"} {
		if err := k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
			t.Fatal(err)
		}
	}

	// As serve runs it: the cache keeps templates in the store's form, and the controller reads them, and
	// their revisions, through the store.
	mgr := newStoreTestManager(t, cfg, scheme)
	rec := &capture{}
	m, err := metrics.New(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	templates := store.NewTemplates(testInjectorNS)
	if _, err := templates.Register(ctx, mgr.GetCache()); err != nil {
		t.Fatal(err)
	}
	if _, err := templates.RegisterRevisions(ctx, mgr.GetCache()); err != nil {
		t.Fatal(err)
	}
	r := &TemplateReconciler{Client: templates.Reader(mgr.GetClient()), InjectorNamespace: testInjectorNS,
		Templates: templates, Events: events.NewRecorder(rec), Metrics: m}
	if err := r.SetupWithManager(ctx, mgr); err != nil {
		t.Fatal(err)
	}
	defer runManager(t, ctx, cancel, mgr)()

	container := func(name, image string) corev1.Container { return corev1.Container{Name: name, Image: image} }
	create := func(st *v1alpha1.SidecarTemplate) {
		t.Helper()
		if err := k8s.Create(ctx, st); err != nil {
			t.Fatalf("create template %s/%s: %v", st.Namespace, st.Name, err)
		}
	}
	// good: valid, request-only, with a parameter pods must set (not a reason to be unready).
	create(&v1alpha1.SidecarTemplate{ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", Name: "good"},
		Spec: v1alpha1.SidecarTemplateSpec{
			Containers: []corev1.Container{container("shipper", "fluent-bit:3.1")},
			Env:        []corev1.EnvVar{{Name: "SINK", Value: "{{ params.sink }}"}},
			Parameters: []v1alpha1.TemplateParameter{{Name: "sink"}},
		}})
	// host: the schema accepts it, but a namespaced template may not set hostNetwork.
	create(&v1alpha1.SidecarTemplate{ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", Name: "host"},
		Spec: v1alpha1.SidecarTemplateSpec{Containers: []corev1.Container{container("agent", "agent:1")}, HostNetwork: ptr.To(true)}})
	// undeclared: uses a parameter it does not declare.
	create(&v1alpha1.SidecarTemplate{ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", Name: "undeclared"},
		Spec: v1alpha1.SidecarTemplateSpec{Env: []corev1.EnvVar{{Name: "X", Value: "{{ params.nope }}"}}}})
	// a-first and b-second select overlapping pods and both add container "proxy": b-second loses.
	create(&v1alpha1.SidecarTemplate{ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", Name: "a-first"},
		Spec: v1alpha1.SidecarTemplateSpec{Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			Containers: []corev1.Container{container("proxy", "envoy:1")}}})
	create(&v1alpha1.SidecarTemplate{ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", Name: "b-second"},
		Spec: v1alpha1.SidecarTemplateSpec{Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"tier": "front"}},
			Containers: []corev1.Container{container("proxy", "nginx:1")}}})

	get := func(name string) *v1alpha1.SidecarTemplate {
		t.Helper()
		var st v1alpha1.SidecarTemplate
		if err := k8s.Get(ctx, types.NamespacedName{Namespace: "team-a", Name: name}, &st); err != nil {
			t.Fatal(err)
		}
		return &st
	}
	expectReady := func(name string, status metav1.ConditionStatus, reason string, msgParts ...string) {
		t.Helper()
		testenv.Eventually(t, 20*time.Second, "template "+name, func() error {
			st := get(name)
			if st.Status.ObservedGeneration != st.Generation {
				return fmt.Errorf("observedGeneration %d, generation %d", st.Status.ObservedGeneration, st.Generation)
			}
			c := meta.FindStatusCondition(st.Status.Conditions, v1alpha1.ConditionReady)
			if c == nil {
				return errors.New("no Ready condition")
			}
			if c.Status != status || c.Reason != reason || c.ObservedGeneration != st.Generation {
				return fmt.Errorf("Ready=%s reason %s (generation %d): %s; want Ready=%s reason %s", c.Status, c.Reason, c.ObservedGeneration, c.Message, status, reason)
			}
			for _, p := range msgParts {
				if !strings.Contains(c.Message, p) {
					return fmt.Errorf("message %q lacks %q", c.Message, p)
				}
			}
			return nil
		})
	}
	expectReady("good", metav1.ConditionTrue, ReasonReady, `must set parameter "sink" (annotation good.param.sidecar.dev/sink)`)
	expectReady("host", metav1.ConditionFalse, ReasonInvalid, "spec.hostNetwork can only be set by a cluster-wide template")
	expectReady("undeclared", metav1.ConditionFalse, ReasonInvalid, "params.nope")
	expectReady("a-first", metav1.ConditionTrue, ReasonReady)
	expectReady("b-second", metav1.ConditionFalse, ReasonNameClash, `container name "proxy" clashes with template team-a/a-first`)

	// Pods carrying records. The hash is the one the webhook computes from the stored (defaulted) template.
	good := get("good")
	hash := inject.Compile(good, testInjectorNS).Hash
	record := func(ns, name, h string) string {
		return fmt.Sprintf(`{"templates":[{"namespace":%q,"name":%q,"generation":1,"hash":%q,"containers":["shipper"]}]}`, ns, name, h)
	}
	pod := func(ns, name, rec string, finalizers ...string) *corev1.Pod {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Finalizers: finalizers},
			Spec: corev1.PodSpec{Containers: []corev1.Container{container("app", "app:1")}}}
		if rec != "" {
			p.Annotations = map[string]string{v1alpha1.AnnotationStatus: rec}
		}
		if err := k8s.Create(ctx, p); err != nil {
			t.Fatalf("create pod %s/%s: %v", ns, name, err)
		}
		return p
	}
	pod("team-a", "current-1", record("team-a", "good", hash))
	pod("team-a", "current-2", record("team-a", "good", hash))
	pod("team-a", "old-1", record("team-a", "good", "0123456789abcdef"))
	pod("team-a", "plain", "")
	pod("team-b", "forged", record("team-a", "good", hash)) // another tenant's pod cannot inflate team-a's counts
	leaving := pod("team-a", "leaving", record("team-a", "good", hash), "test.sidecar.dev/hold")
	if err := k8s.Delete(ctx, leaving); err != nil {
		t.Fatal(err)
	}
	defer func() { // let the pod go
		p := &corev1.Pod{}
		if err := k8s.Get(context.Background(), client.ObjectKeyFromObject(leaving), p); err == nil {
			p.Finalizers = nil
			_ = k8s.Update(context.Background(), p)
		}
	}()

	expectDrift := func(want Drift) {
		t.Helper()
		testenv.Eventually(t, 20*time.Second, "drift of team-a/good", func() error {
			st := get("good")
			got, err := r.Drift(ctx, st, inject.Compile(st, testInjectorNS).Hash)
			if err != nil {
				return err
			}
			if got.Injected != want.Injected || got.Outdated != want.Outdated {
				return fmt.Errorf("drift %+v, want %+v", got, want)
			}
			// The status shows the same counts (kubectl get sct prints them).
			if st.Status.InjectedPods != want.Injected || st.Status.OutdatedPods != want.Outdated {
				return fmt.Errorf("status injectedPods=%d outdatedPods=%d, want %+v", st.Status.InjectedPods, st.Status.OutdatedPods, want)
			}
			return nil
		})
	}
	expectDrift(Drift{Injected: 3, Outdated: 1})

	// A new version of the template: every pod now runs an older one.
	// The controller writes status concurrently: retry on conflict, as any client of the API must.
	if err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		good = get("good")
		good.Spec.Containers[0].Image = "fluent-bit:3.2"
		return k8s.Update(ctx, good)
	}); err != nil {
		t.Fatal(err)
	}
	expectReady("good", metav1.ConditionTrue, ReasonReady)
	if g := get("good"); g.Generation != 2 || g.Status.ObservedGeneration != 2 {
		t.Errorf("after an update: generation %d, observedGeneration %d, want 2 and 2", g.Generation, g.Status.ObservedGeneration)
	}
	expectDrift(Drift{Injected: 3, Outdated: 3})

	// A pod goes away (unscheduled pods are deleted at once): the counts follow.
	if err := k8s.Delete(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", Name: "old-1"}}); err != nil {
		t.Fatal(err)
	}
	expectDrift(Drift{Injected: 2, Outdated: 2})

	// Fixing the invalid template makes it Ready, with an Event each time Ready changed.
	if err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		host := get("host")
		host.Spec.HostNetwork = nil
		return k8s.Update(ctx, host)
	}); err != nil {
		t.Fatal(err)
	}
	expectReady("host", metav1.ConditionTrue, ReasonReady)
	testenv.Eventually(t, 20*time.Second, "events on team-a/host", func() error {
		got := rec.about("team-a/host")
		if len(got) != 2 || !strings.HasPrefix(got[0], "team-a/host Warning Invalid: spec.hostNetwork") ||
			got[1] != "team-a/host Normal Ready: the template can be injected" {
			return fmt.Errorf("events %q", got)
		}
		return nil
	})

	// Deleting the template that came first resolves the clash of the other one.
	if err := k8s.Delete(ctx, get("a-first")); err != nil {
		t.Fatal(err)
	}
	expectReady("b-second", metav1.ConditionTrue, ReasonReady)

	// A cluster-wide template selecting every pod clashes with team-a's b-second (reported on b-second only);
	// a namespaceSelector that excludes team-a resolves it through the namespace's labels.
	create(&v1alpha1.SidecarTemplate{ObjectMeta: metav1.ObjectMeta{Namespace: testInjectorNS, Name: "mesh"},
		Spec: v1alpha1.SidecarTemplateSpec{Selector: &metav1.LabelSelector{},
			NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"mesh": "on"}},
			Containers:        []corev1.Container{container("proxy", "envoy:1")}}})
	expectReady("b-second", metav1.ConditionTrue, ReasonReady)
	ns := &corev1.Namespace{}
	if err := k8s.Get(ctx, types.NamespacedName{Name: "team-a"}, ns); err != nil {
		t.Fatal(err)
	}
	ns.Labels = map[string]string{"mesh": "on"}
	if err := k8s.Update(ctx, ns); err != nil {
		t.Fatal(err)
	}
	expectReady("b-second", metav1.ConditionFalse, ReasonNameClash, "clashes with cluster-wide template sidecar-injector/mesh")
	testenv.Eventually(t, 20*time.Second, "mesh stays ready", func() error {
		var mesh v1alpha1.SidecarTemplate
		if err := k8s.Get(ctx, types.NamespacedName{Namespace: testInjectorNS, Name: "mesh"}, &mesh); err != nil {
			return err
		}
		if c := meta.FindStatusCondition(mesh.Status.Conditions, v1alpha1.ConditionReady); c == nil || c.Status != metav1.ConditionTrue {
			return fmt.Errorf("mesh Ready: %+v", c)
		}
		return nil
	})

	// A new pod carrying the template changes the counts, and the status with them.
	pod("team-a", "current-3", record("team-a", "good", "whatever"))
	expectDrift(Drift{Injected: 3, Outdated: 3})

	// No status write when nothing changed: a pod whose record changes (another old hash) re-reconciles good,
	// but the counts stay the same, so the template is not written. Checked over a bounded window.
	before := get("good").ResourceVersion
	var p3 corev1.Pod
	if err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if err := k8s.Get(ctx, types.NamespacedName{Namespace: "team-a", Name: "current-3"}, &p3); err != nil {
			return err
		}
		p3.Annotations[v1alpha1.AnnotationStatus] = record("team-a", "good", "another-old-hash")
		return k8s.Update(ctx, &p3)
	}); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(1500 * time.Millisecond); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if after := get("good").ResourceVersion; after != before {
			t.Fatalf("a pod event changed the template (resourceVersion %s -> %s) though its status did not change", before, after)
		}
	}
}

// crdDir is config/crd/bases, or $SIDECAR_CRD_DIR (to try the controller against another version of the CRD).
func crdDir() (string, error) {
	if d := os.Getenv("SIDECAR_CRD_DIR"); d != "" {
		return d, nil
	}
	return testenv.CRDDir()
}
