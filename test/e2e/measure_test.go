package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jsonpatch "github.com/evanphx/json-patch/v5"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/sidecar-dev/sidecar-injector/internal/api/v1alpha1"
	"github.com/sidecar-dev/sidecar-injector/internal/inject"
	"github.com/sidecar-dev/sidecar-injector/internal/testenv"
)

// The measurement is a load tool, not a test: it runs only with E2E_MEASURE=1 and asserts no timing (README,
// "Seen from the API server"). It creates the same pods through the real API server in three ways, in alternating
// rounds, bounded in count and time, and reads the API server's own metrics around each round: plain into a
// namespace the webhook is not called for, through the injector into one where it injects a template, and
// pre-injected (the injector's engine's patch applied by the client, created where the webhook is not called),
// which separates what the bigger pod costs from what the webhook call costs.
const (
	measurePods        = 300 // per round and path
	measureRounds      = 6   // each path goes first twice: a shared machine's bursts of other work spread over the paths
	measureConcurrency = 8
	measureTimeout     = 5 * time.Minute // the whole measurement, after the chart is installed
	measureLabel       = "e2e-measure"
	webhookName        = "inject.sidecar.dev" // the chart's webhook (templates/webhook.yaml)
)

// TestMeasureCreationsThroughTheAPIServer prints pod creations per second and the API server's view of the
// admission (its own histograms) with no injection, with the pod pre-injected and with the injector, same pods,
// same run. With E2E_MEASURE_PROFILE=DIR it also writes the API server's CPU profiles of the pre-injected and the
// injector path there (measure_profile_test.go).
func TestMeasureCreationsThroughTheAPIServer(t *testing.T) {
	if os.Getenv("E2E_MEASURE") == "" {
		t.Skip("a measurement, not a test: run with E2E_MEASURE=1 (under the cluster lock)")
	}
	installChart(t)
	// The suite's client is throttled to 50 requests/s (connect), which would cap both paths alike.
	fast := rest.CopyConfig(restConfig)
	fast.QPS, fast.Burst = -1, 0 // no client-side rate limit
	var err error
	if measureClient, err = client.New(fast, client.Options{Scheme: scheme}); err != nil {
		t.Fatal(err)
	}
	off := labelledNamespace(t, "measure-off", map[string]string{v1alpha1.LabelInjection: v1alpha1.LabelInjectionDisabled})
	on := namespace(t, "measure-on")
	createTemplate(t, on, "measure", logShipperSpec(false))
	// The same template in the other namespace, which the API server never sends to the webhook.
	if err := k8s.Create(ctxFor(t, 30*time.Second), &v1alpha1.SidecarTemplate{ObjectMeta: metav1.ObjectMeta{Namespace: off, Name: "measure"},
		Spec: logShipperSpec(false)}); err != nil {
		t.Fatal(err)
	}
	preInjected := preInjectedPod(t, off, on)
	phases := []*measurePhase{
		{name: "no injection (namespace not sent to the webhook)", ns: off, pod: measurePod},
		{name: "pre-injected (the engine's patch applied by the client, namespace not sent to the webhook)", ns: off, pod: preInjected, injected: true},
		{name: "injector (1 template, via its Service)", ns: on, pod: measurePod, injected: true},
	}
	// Warm the paths (connections, caches, the webhook's compiled template) before measuring.
	for _, ph := range phases {
		createMeasurePods(t, ph, 20, 0, nil)
		deleteMeasurePods(t, ph.ns)
	}
	deadline := time.Now().Add(measureTimeout)
	for round := range measureRounds {
		for k := range phases { // alternate who goes first
			ph := phases[(round+k)%len(phases)]
			if time.Now().After(deadline) {
				t.Fatalf("the measurement exceeded %s", measureTimeout)
			}
			measureRound(t, ph, round+1)
		}
	}
	reportMeasurement(t, phases)
	if dir := os.Getenv("E2E_MEASURE_PROFILE"); dir != "" {
		for _, ph := range phases[1:] {
			profileAPIServer(t, dir, ph)
		}
	}
	if on := phases[2]; on.webhook.count == 0 {
		t.Errorf("the API server recorded no call of %s during the injector's rounds: the measurement did not measure the webhook", webhookName)
	}
	for _, ph := range phases[:2] {
		if ph.webhook.count != 0 {
			t.Errorf("the API server called %s %d times for the namespace labelled %s=%s (%s)", webhookName, int(ph.webhook.count),
				v1alpha1.LabelInjection, v1alpha1.LabelInjectionDisabled, ph.name)
		}
	}
}

// measureRound creates one round's pods of a path and adds the API server's, the injector's and the machine's
// figures of the round to the path's.
func measureRound(t *testing.T, ph *measurePhase, round int) {
	t.Helper()
	before, injBefore := apiserverMetrics(t), injectorMetrics(t)
	cpuBefore, conns := sampleCPU(injBefore), watchConnections(t)
	start := time.Now()
	createMeasurePods(t, ph, measurePods, round, nil)
	ph.seconds += time.Since(start).Seconds()
	ph.pods += measurePods
	used, opened := conns.connections()
	ph.conns, ph.newConns = max(ph.conns, used), ph.newConns+opened
	after, injAfter := apiserverMetrics(t), injectorMetrics(t)
	ph.cpu.add(cpuBefore, sampleCPU(injAfter))
	ph.injector.add(joined(injBefore), joined(injAfter), "sidecar_injector_webhook_request_duration_seconds")
	ph.webhook.add(before, after, "apiserver_admission_webhook_admission_duration_seconds", `name="`+webhookName+`"`, `operation="CREATE"`, `type="admit"`)
	ph.request.add(before, after, "apiserver_request_duration_seconds", `verb="POST"`, `resource="pods"`, `subresource=""`)
	deleteMeasurePods(t, ph.ns)
}

// reportMeasurement prints the paths' figures, and the differences that split the injector's cost: plain →
// pre-injected is what the bigger pod costs every process, pre-injected → injector what the webhook call costs.
func reportMeasurement(t *testing.T, phases []*measurePhase) {
	t.Helper()
	base := phases[0]
	loadavg, _ := os.ReadFile("/proc/loadavg")
	logf(t, "%d rounds of %d pods per path, %d at a time, alternating which path goes first; machine load average at the end: %s",
		measureRounds, measurePods, measureConcurrency, strings.TrimSpace(string(loadavg)))
	// On a shared machine the rates follow whatever else runs; the CPU the creation's own processes spend per pod
	// does much less, and on cores that only these processes used, it is what the rates would follow.
	logf(t, "| path | pods | pods/s | × no injection | × no injection by CPU per pod (all measured processes) | API server's webhook call p50 / p99 (ms, n) | the injector's own time p50 / p99 (ms) | pod POST p50 / p99 (ms) |")
	logf(t, "|---|---|---|---|---|---|---|---|")
	for _, ph := range phases {
		rate := float64(ph.pods) / ph.seconds
		byCPU := (base.cpu.measured() / float64(base.pods)) / (ph.cpu.measured() / float64(ph.pods))
		logf(t, "| %s | %d | %.0f | %.2f | %.2f | %s | %s | %s |", ph.name, ph.pods, rate, rate/(float64(base.pods)/base.seconds), byCPU,
			ph.webhook.quantiles(), ph.injector.quantiles(), ph.request.quantiles())
	}
	logf(t, "| path | webhook calls per pod | CPU ms per pod: %s | machine busy | injector CPU ms per pod: leader / follower(s) | the API server's connections to the injector: in use in a round (most) / opened during the rounds |", processColumns())
	logf(t, "|---|---|---|---|---|---|")
	for _, ph := range phases {
		logf(t, "| %s | %.2f | %s | %s | %d / %d |", ph.name, ph.webhook.count/float64(ph.pods), ph.cpu.perPod(ph.pods), ph.cpu.perReplica(ph.pods), ph.conns, ph.newConns)
	}
	logf(t, "| step | CPU ms per pod added: %s |", processColumns())
	logf(t, "|---|---|")
	logf(t, "| the bigger pod (no injection → pre-injected) | %s |", phases[1].cpu.minus(&phases[0].cpu, phases[1].pods, phases[0].pods))
	logf(t, "| the webhook call (pre-injected → injector) | %s |", phases[2].cpu.minus(&phases[1].cpu, phases[2].pods, phases[1].pods))
}

// measureClient creates the measured pods, without client-side throttling.
var measureClient client.Client

type measurePhase struct {
	name, ns string
	// pod makes the path's pod; injected says whether the created pod must carry the injector's record.
	pod      func(ns, name string) *corev1.Pod
	injected bool
	pods     int
	seconds  float64
	// webhook and request are the API server's view (its call of the webhook, the whole pod POST); injector is
	// the injector's own (sidecar_injector_webhook_request_duration_seconds, summed over its replicas).
	webhook, request, injector histogram
	cpu                        cpuCost // CPU seconds of the rounds (measure_cost_test.go)
	conns                      int     // the API server's connections to the injector in use in a round (the most)
	newConns                   int     // those it opened during the rounds
}

// labelledNamespace is namespace with labels set at creation, so that the API server's webhook selection sees
// them from the first pod on.
func labelledNamespace(t *testing.T, prefix string, labels map[string]string) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "e2e-" + prefix + "-", Labels: labels}}
	if err := k8s.Create(ctxFor(t, 30*time.Second), ns); err != nil {
		t.Fatalf("create namespace: %v", err)
	}
	t.Cleanup(func() {
		if err := k8s.Delete(context.Background(), ns); err != nil && !apierrors.IsNotFound(err) {
			t.Errorf("cleanup: delete namespace %s: %v", ns.Name, err)
		}
	})
	return ns.Name
}

// createMeasurePods creates up to n of the path's gated pods (never scheduled: the kubelet does no work),
// measureConcurrency at a time, until n are created or stop is set, checks that each came back injected or not as
// the path expects, and returns how many it created.
func createMeasurePods(t *testing.T, ph *measurePhase, n, round int, stop *atomic.Bool) int {
	t.Helper()
	var next, created atomic.Int64
	var wg sync.WaitGroup
	var firstErr atomic.Value
	for range measureConcurrency {
		wg.Go(func() {
			for i := next.Add(1); i <= int64(n) && (stop == nil || !stop.Load()); i = next.Add(1) {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				pod := ph.pod(ph.ns, fmt.Sprintf("m%d-%d", round, i))
				err := measureClient.Create(ctx, pod)
				cancel()
				if err == nil {
					created.Add(1)
					if _, injected := pod.Annotations[v1alpha1.AnnotationStatus]; injected != ph.injected {
						err = fmt.Errorf("pod %s/%s: injected=%v, want %v (containers %v)", ph.ns, pod.Name, injected, ph.injected, containerNames(pod.Spec.Containers))
					}
				}
				if err != nil {
					firstErr.CompareAndSwap(nil, err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err := firstErr.Load(); err != nil {
		t.Fatalf("create pods in %s (%s): %v", ph.ns, ph.name, err)
	}
	return int(created.Load())
}

// preInjectedPod returns a maker of the pod the injector makes of measurePod with the SidecarTemplate
// "measure" of ns, as a client would send it: the engine's patch (internal/inject, the webhook's own code, on
// the template as the cluster stores it) applied to measurePod, and nothing the API server adds (defaults, the
// service account token's volume and mounts): created where the webhook is not called, it costs every process
// what the injector's pod costs, and the API server does for it all it does for measurePod, but the call.
// It checks that the pod has the containers and volumes of a pod the webhook injects in injectedNS.
func preInjectedPod(t *testing.T, ns, injectedNS string) func(ns, name string) *corev1.Pod {
	t.Helper()
	var st v1alpha1.SidecarTemplate
	if err := k8s.Get(ctxFor(t, 30*time.Second), client.ObjectKey{Namespace: ns, Name: "measure"}, &st); err != nil {
		t.Fatal(err)
	}
	pod := measurePod(ns, "pre-injected")
	raw, err := json.Marshal(pod)
	if err != nil {
		t.Fatal(err)
	}
	// NamespaceLabels nil: the engine is asked what it would add, not whether ns is served.
	res, err := inject.Inject(inject.Request{Pod: raw, Namespace: ns, InjectorNamespace: injectorNS, Templates: []*inject.Template{inject.Compile(&st, injectorNS)}})
	if err != nil || len(res.Patch) == 0 {
		t.Fatalf("the engine did not inject %s/measure into measurePod (err %v, decisions %+v)", ns, err, res)
	}
	ops, err := json.Marshal(res.Patch)
	if err != nil {
		t.Fatal(err)
	}
	patch, err := jsonpatch.DecodePatch(ops)
	if err != nil {
		t.Fatal(err)
	}
	patched, err := patch.Apply(raw)
	if err != nil {
		t.Fatalf("apply the engine's patch to measurePod: %v", err)
	}
	var made corev1.Pod
	if err := json.Unmarshal(patched, &made); err != nil {
		t.Fatal(err)
	}
	injected := measurePod(injectedNS, "injected")
	if err := k8s.Create(ctxFor(t, 30*time.Second), injected); err != nil {
		t.Fatal(err)
	}
	if err := k8s.Delete(ctxFor(t, 30*time.Second), injected, client.GracePeriodSeconds(0)); err != nil {
		t.Fatal(err)
	}
	if got, want := containerNames(made.Spec.Containers), containerNames(injected.Spec.Containers); !slices.Equal(got, want) {
		t.Fatalf("the pre-injected pod's containers are %v, the webhook's pod's %v", got, want)
	}
	if got, want := len(made.Spec.Volumes)+1, len(injected.Spec.Volumes); got != want { // +1: the token's volume
		t.Fatalf("the pre-injected pod has %d volumes and the token's to come, the webhook's pod %d", got-1, want)
	}
	return func(ns, name string) *corev1.Pod {
		pod := made.DeepCopy()
		pod.Namespace, pod.Name = ns, name
		return pod
	}
}

// measurePod is a realistic application pod: three containers with env and ports, asking for "measure" (the
// plain path's and the injector's pod).
func measurePod(ns, name string) *corev1.Pod {
	env := []corev1.EnvVar{{Name: "MODE", Value: "production"}, {Name: "REGION", Value: "eu-west-1"}}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{measureLabel: "true", "app": "web"},
			Annotations: map[string]string{v1alpha1.AnnotationInject: "measure"}},
		Spec: corev1.PodSpec{
			SchedulingGates: []corev1.PodSchedulingGate{{Name: "sidecar.dev/e2e-measure"}},
			Containers: []corev1.Container{
				{Name: "app", Image: appImage, Env: env, Ports: []corev1.ContainerPort{{ContainerPort: 8080}}},
				{Name: "worker", Image: appImage, Env: env},
				{Name: "cache", Image: appImage, Ports: []corev1.ContainerPort{{ContainerPort: 6379}}},
			},
		},
	}
}

func deleteMeasurePods(t *testing.T, ns string) {
	t.Helper()
	if err := k8s.DeleteAllOf(ctxFor(t, 60*time.Second), &corev1.Pod{}, client.InNamespace(ns), client.MatchingLabels{measureLabel: "true"},
		client.GracePeriodSeconds(0)); err != nil {
		t.Fatalf("delete the measurement's pods: %v", err)
	}
	testenv.Eventually(t, 60*time.Second, "the measurement's pods in "+ns+" are gone", func() error {
		var pods corev1.PodList
		if err := k8s.List(context.Background(), &pods, client.InNamespace(ns), client.MatchingLabels{measureLabel: "true"}); err != nil {
			return err
		}
		if len(pods.Items) > 0 {
			return fmt.Errorf("%d left", len(pods.Items))
		}
		return nil
	})
}

// apiserverMetrics returns the API server's /metrics.
func apiserverMetrics(t *testing.T) []byte {
	t.Helper()
	b, err := clientset.RESTClient().Get().AbsPath("/metrics").DoRaw(ctxFor(t, 30*time.Second))
	if err != nil {
		t.Fatalf("the API server's /metrics: %v", err)
	}
	return b
}

// replicaScrape is one injector replica's /metrics.
type replicaScrape struct {
	pod     string
	metrics []byte
}

// leader tells whether the replica held the status controller's lease when scraped: controller-runtime sets
// leader_election_master_status to 1 once a replica wins it (and writes no series on one that never did).
func (s replicaScrape) leader() bool {
	return counterSum(s.metrics, "leader_election_master_status") > 0
}

// joined concatenates the replicas' scrapes, for the metrics summed over replicas.
func joined(scrapes []replicaScrape) []byte {
	var all []byte
	for _, s := range scrapes {
		all = append(append(all, s.metrics...), '\n')
	}
	return all
}

// injectorMetrics returns the /metrics of every injector pod, read through the API server's pod proxy.
func injectorMetrics(t *testing.T) []replicaScrape {
	t.Helper()
	var pods corev1.PodList
	if err := k8s.List(ctxFor(t, 30*time.Second), &pods, client.InNamespace(injectorNS), injectorSelector); err != nil {
		t.Fatal(err)
	}
	var all []replicaScrape
	for _, p := range pods.Items {
		port := int32(0)
		for _, cp := range p.Spec.Containers[0].Ports {
			if cp.Name == "metrics" {
				port = cp.ContainerPort
			}
		}
		if port == 0 || p.Status.PodIP == "" {
			continue
		}
		b, err := clientset.CoreV1().RESTClient().Get().AbsPath(fmt.Sprintf("/api/v1/namespaces/%s/pods/%s:%d/proxy/metrics", injectorNS, p.Name, port)).
			DoRaw(ctxFor(t, 30*time.Second))
		if err != nil {
			t.Fatalf("the injector's /metrics (pod %s): %v", p.Name, err)
		}
		all = append(all, replicaScrape{pod: p.Name, metrics: b})
	}
	return all
}

// histogram accumulates the observations of a Prometheus histogram between scrapes: cumulative counts per
// upper bound (seconds), summed over the series whose labels contain every wanted one.
type histogram struct {
	buckets map[float64]float64
	count   float64
}

func (h *histogram) add(before, after []byte, metric string, want ...string) {
	if h.buckets == nil {
		h.buckets = map[float64]float64{}
	}
	b, a := bucketCounts(before, metric, want), bucketCounts(after, metric, want)
	for le, n := range a {
		h.buckets[le] += n - b[le]
	}
	h.count = h.buckets[math.Inf(1)]
}

// quantiles formats the p50 and p99 (ms), interpolated within buckets as Prometheus' histogram_quantile does.
func (h *histogram) quantiles() string {
	if h.count == 0 {
		return "- (not called)"
	}
	return fmt.Sprintf("%.1f / %.1f (n=%.0f)", 1000*h.quantile(0.5), 1000*h.quantile(0.99), h.count)
}

func (h *histogram) quantile(q float64) float64 {
	les := make([]float64, 0, len(h.buckets))
	for le := range h.buckets {
		les = append(les, le)
	}
	sort.Float64s(les)
	rank := q * h.count
	lower, below := 0.0, 0.0
	for _, le := range les {
		n := h.buckets[le]
		if n >= rank {
			if math.IsInf(le, 1) {
				return lower // beyond the last finite bound: that bound is all a histogram can say
			}
			if n == below {
				return le
			}
			return lower + (le-lower)*(rank-below)/(n-below)
		}
		lower, below = le, n
	}
	return lower
}

// bucketCounts reads metric_bucket{...,le="X"} lines of a text exposition, summing series that match want.
func bucketCounts(scraped []byte, metric string, want []string) map[float64]float64 {
	out := map[float64]float64{}
	sc := bufio.NewScanner(bytes.NewReader(scraped))
	sc.Buffer(make([]byte, 1<<20), 4<<20)
	prefix := metric + "_bucket{"
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, prefix) {
			continue
		}
		labels, value, ok := strings.Cut(line[len(prefix):], "} ")
		if !ok || !containsAll(labels, want) {
			continue
		}
		_, rest, ok := strings.Cut(labels, `le="`)
		if !ok {
			continue
		}
		leText, _, _ := strings.Cut(rest, `"`)
		le, err1 := strconv.ParseFloat(leText, 64) // "+Inf" parses as +Inf
		n, err2 := strconv.ParseFloat(strings.TrimSpace(value), 64)
		if err1 == nil && err2 == nil {
			out[le] += n
		}
	}
	return out
}

func containsAll(s string, want []string) bool {
	for _, w := range want {
		if !strings.Contains(s, w) {
			return false
		}
	}
	return true
}
