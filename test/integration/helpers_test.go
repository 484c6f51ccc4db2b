package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/sidecar-dev/sidecar-injector/internal/api/v1alpha1"
	"github.com/sidecar-dev/sidecar-injector/internal/testenv"
)

// Deadlines. Every wait in this package is a poll (testenv.Eventually, every testenv.PollInterval) bounded by one of
// these; none is a sleep used as a barrier.
const (
	// cacheDeadline bounds how long the webhook may take to see a template change. The product promises "within
	// a second or two"; the extra margin absorbs a loaded 2-core CI machine.
	cacheDeadline = 5 * time.Second
	// startDeadline bounds how long the webhook server may take to become ready.
	startDeadline = 30 * time.Second
)

// ctxFor returns a context that ends with the test, bounded by a generous deadline so that a hung API call
// fails the test instead of the whole package.
func ctxFor(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// createNamespace creates a fresh namespace named prefix-<random> with the given labels and returns its name.
// Every story uses its own namespaces, so stories do not see each other's templates or pods.
func createNamespace(t *testing.T, prefix string, labels map[string]string) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: prefix + "-", Labels: labels}}
	if err := k8s.Create(ctxFor(t), ns); err != nil {
		t.Fatalf("create namespace %s-*: %v", prefix, err)
	}
	return ns.Name
}

// createTemplate creates a SidecarTemplate and fails the test if the API server rejects it.
func createTemplate(t *testing.T, ns, name string, spec v1alpha1.SidecarTemplateSpec) *v1alpha1.SidecarTemplate {
	t.Helper()
	st := &v1alpha1.SidecarTemplate{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: spec}
	if err := k8s.Create(ctxFor(t), st); err != nil {
		t.Fatalf("create SidecarTemplate %s/%s: %v", ns, name, err)
	}
	return st
}

// deleteAfter deletes obj when the test ends (used for objects in shared namespaces such as kube-system and the
// injector's namespace, which outlive the story).
func deleteAfter(t *testing.T, obj client.Object) {
	t.Helper()
	t.Cleanup(func() {
		if err := k8s.Delete(context.Background(), obj); err != nil && !apierrors.IsNotFound(err) {
			t.Errorf("cleanup: delete %s %s/%s: %v", obj.GetObjectKind().GroupVersionKind().Kind, obj.GetNamespace(), obj.GetName(), err)
		}
	})
}

// podOpt modifies a pod built by newPod.
type podOpt func(*corev1.Pod)

func withAnnotation(k, v string) podOpt {
	return func(p *corev1.Pod) {
		if p.Annotations == nil {
			p.Annotations = map[string]string{}
		}
		p.Annotations[k] = v
	}
}

func withInject(names string) podOpt { return withAnnotation(v1alpha1.AnnotationInject, names) }

func withLabel(k, v string) podOpt {
	return func(p *corev1.Pod) {
		if p.Labels == nil {
			p.Labels = map[string]string{}
		}
		p.Labels[k] = v
	}
}

// newPod returns a minimal valid pod with one container named "app".
func newPod(ns, name string, opts ...podOpt) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: corev1.PodSpec{
			Containers: []corev1.Container{{Name: "app", Image: "registry.example/app:1.0"}},
		},
	}
	for _, o := range opts {
		o(p)
	}
	return p
}

// warningRecorder collects the warnings the API server returns (admission warnings included).
type warningRecorder struct {
	mu   sync.Mutex
	msgs []string
}

func (w *warningRecorder) HandleWarningHeader(_ int, _ string, msg string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.msgs = append(w.msgs, msg)
}

func (w *warningRecorder) HandleWarningHeaderWithContext(_ context.Context, code int, agent, msg string) {
	w.HandleWarningHeader(code, agent, msg)
}

func (w *warningRecorder) all() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.msgs)
}

// warningClient returns a client whose responses' warnings land in the returned recorder.
func warningClient(t *testing.T) (client.Client, *warningRecorder) {
	t.Helper()
	rec := &warningRecorder{}
	cfg := rest.CopyConfig(restConfig)
	cfg.WarningHandler = nil
	cfg.WarningHandlerWithContext = rec
	c, err := client.New(cfg, client.Options{Scheme: k8s.Scheme(), Mapper: k8s.RESTMapper()})
	if err != nil {
		t.Fatalf("client with warning capture: %v", err)
	}
	return c, rec
}

// createPod creates the pod through the API server (and so through the webhook) and returns the pod as stored.
// It fails the test if the create is rejected.
func createPod(t *testing.T, pod *corev1.Pod) *corev1.Pod {
	t.Helper()
	out, err := tryCreatePod(t, pod, false)
	if err != nil {
		t.Fatalf("create pod %s/%s: %v", pod.Namespace, pod.Name, err)
	}
	return out
}

// tryCreatePod creates (or, with dryRun, pretends to create) a copy of pod and returns what the API server
// answered: the pod as admitted, or the error.
func tryCreatePod(t *testing.T, pod *corev1.Pod, dryRun bool) (*corev1.Pod, error) {
	t.Helper()
	p := pod.DeepCopy()
	var opts []client.CreateOption
	if dryRun {
		opts = append(opts, client.DryRunAll)
	}
	// A context per call (not ctxFor): this runs in polling loops.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := k8s.Create(ctx, p, opts...)
	return p, err
}

// createPodWithWarnings creates the pod and returns it with the warnings the API server sent back.
func createPodWithWarnings(t *testing.T, pod *corev1.Pod) (*corev1.Pod, []string) {
	t.Helper()
	c, rec := warningClient(t)
	p := pod.DeepCopy()
	if err := c.Create(ctxFor(t), p); err != nil {
		t.Fatalf("create pod %s/%s: %v", pod.Namespace, pod.Name, err)
	}
	return p, rec.all()
}

// statusRecord is the part of the sidecar.dev/status annotation the suite checks.
type statusRecord struct {
	Templates []struct {
		Namespace      string   `json:"namespace"`
		Name           string   `json:"name"`
		Generation     int64    `json:"generation"`
		Hash           string   `json:"hash"`
		Containers     []string `json:"containers"`
		InitContainers []string `json:"initContainers"`
		Volumes        []string `json:"volumes"`
	} `json:"templates"`
}

// injectedTemplates returns "namespace/name" for every template the pod's sidecar.dev/status names, in record
// order, or nil when the pod has no record. It fails the test when the record is not valid JSON.
func injectedTemplates(t *testing.T, pod *corev1.Pod) []string {
	t.Helper()
	rec := parseStatus(t, pod)
	if rec == nil {
		return nil
	}
	var out []string
	for _, tpl := range rec.Templates {
		out = append(out, tpl.Namespace+"/"+tpl.Name)
	}
	return out
}

func parseStatus(t *testing.T, pod *corev1.Pod) *statusRecord {
	t.Helper()
	raw, ok := pod.Annotations[v1alpha1.AnnotationStatus]
	if !ok {
		return nil
	}
	var rec statusRecord
	if err := json.Unmarshal([]byte(raw), &rec); err != nil {
		t.Fatalf("pod %s/%s: %s is not valid JSON: %v: %s", pod.Namespace, pod.Name, v1alpha1.AnnotationStatus, err, raw)
	}
	return &rec
}

func containerNames(cs []corev1.Container) []string {
	out := make([]string, 0, len(cs))
	for _, c := range cs {
		out = append(out, c.Name)
	}
	return out
}

func volumeNames(vs []corev1.Volume) []string {
	out := make([]string, 0, len(vs))
	for _, v := range vs {
		out = append(out, v.Name)
	}
	return out
}

func findContainer(cs []corev1.Container, name string) *corev1.Container {
	for i := range cs {
		if cs[i].Name == name {
			return &cs[i]
		}
	}
	return nil
}

// waitUntilServed polls with dry-run pods until the webhook injects template ns/name into a pod in podNS that
// requests it (plus opts). Templates reach the webhook through its cache, so every story waits for its
// templates to be visible before asserting anything, negative assertions included (otherwise "not injected"
// would pass merely because the cache is behind).
func waitUntilServed(t *testing.T, podNS, tplNS, tplName string, opts ...podOpt) {
	t.Helper()
	want := tplNS + "/" + tplName
	probe := newPod(podNS, "probe-"+tplName, append([]podOpt{withInject(tplName)}, opts...)...)
	probe.Spec.Containers[0].Name = "probe-main"
	testenv.Eventually(t, cacheDeadline, fmt.Sprintf("webhook serves template %s to namespace %s", want, podNS), func() error {
		got, err := tryCreatePod(t, probe, true)
		if err != nil {
			return err
		}
		if !slices.Contains(injectedTemplates(t, got), want) {
			return fmt.Errorf("dry-run pod received %v", injectedTemplates(t, got))
		}
		return nil
	})
}

// expectDenied asserts that err is an admission denial whose message contains every one of wants, and that
// the pod was not stored.
func expectDenied(t *testing.T, pod *corev1.Pod, err error, wants ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("pod %s/%s was admitted; want it denied with %q", pod.Namespace, pod.Name, wants)
	}
	for _, w := range wants {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("denial of pod %s/%s: message %q does not contain %q", pod.Namespace, pod.Name, err.Error(), w)
		}
	}
	if !strings.Contains(err.Error(), "admission webhook") {
		t.Errorf("pod %s/%s: error %q does not come from an admission webhook", pod.Namespace, pod.Name, err)
	}
	var stored corev1.Pod
	if gerr := k8s.Get(ctxFor(t), client.ObjectKeyFromObject(pod), &stored); !apierrors.IsNotFound(gerr) {
		t.Errorf("denied pod %s/%s: get returned %v, want NotFound", pod.Namespace, pod.Name, gerr)
	}
}

// expectUntouched asserts that the webhook left an admitted pod as it was sent: same containers, init
// containers and volumes, and no record.
func expectUntouched(t *testing.T, sent, got *corev1.Pod) {
	t.Helper()
	if g, w := containerNames(got.Spec.Containers), containerNames(sent.Spec.Containers); !slices.Equal(g, w) {
		t.Errorf("pod %s/%s: containers %v, want untouched %v", got.Namespace, got.Name, g, w)
	}
	if g, w := containerNames(got.Spec.InitContainers), containerNames(sent.Spec.InitContainers); !slices.Equal(g, w) {
		t.Errorf("pod %s/%s: init containers %v, want untouched %v", got.Namespace, got.Name, g, w)
	}
	if g, w := volumeNames(got.Spec.Volumes), volumeNames(sent.Spec.Volumes); !slices.Equal(g, w) {
		t.Errorf("pod %s/%s: volumes %v, want untouched %v", got.Namespace, got.Name, g, w)
	}
	if s, ok := got.Annotations[v1alpha1.AnnotationStatus]; ok {
		t.Errorf("pod %s/%s: has %s %s, want none", got.Namespace, got.Name, v1alpha1.AnnotationStatus, s)
	}
}

func ptrTo[T any](v T) *T { return &v }
