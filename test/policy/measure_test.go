package policy_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/sidecar-dev/sidecar-injector/internal/api/v1alpha1"
	"github.com/sidecar-dev/sidecar-injector/internal/policy"
)

// The measurement is a load tool, not a test: it runs only with POLICY_MEASURE=1 and asserts no timing. It
// creates the same pod with the same two templates through each API server, bounded in count and
// concurrency, and reads the API server's own admission metrics around each phase.
const (
	measurePods        = 400
	measureConcurrency = 8
)

// TestMeasureAdmissionThroughTheAPIServer prints pod creations per second and the API server's admission
// latency with no injection, with the webhook and with the policy.
func TestMeasureAdmissionThroughTheAPIServer(t *testing.T) {
	if os.Getenv("POLICY_MEASURE") == "" {
		t.Skip("a measurement, not a test: run with POLICY_MEASURE=1")
	}
	templates := readTemplates(t, "testdata/random-templates.yaml", "bench")
	var two []*v1alpha1.SidecarTemplate
	for _, st := range templates {
		if st.Name == "log-shipper" || st.Name == "proxy" && st.Namespace != injectorNS {
			st = st.DeepCopy()
			st.Namespace = "bench"
			two = append(two, st)
		}
	}
	for _, c := range []*cluster{webhookCluster, policyCluster} {
		c.ensureNamespace(t, "bench", nil)
		c.ensureNamespace(t, "bench-off", map[string]string{v1alpha1.LabelInjection: v1alpha1.LabelInjectionDisabled})
	}
	webhookCluster.replaceTemplates(t, two)
	stored, _ := policyCluster.replaceTemplates(t, two)
	res, err := policy.Compile(stored, policy.Options{InjectorNamespace: injectorNS})
	if err != nil || len(res.Served) != 2 {
		t.Fatalf("compile: %v, served %v", err, res.Served)
	}
	webhookCluster.waitForSentinelTemplate(t, "measure")
	policyCluster.applyPolicies(t, res, "measure")
	// Warm both paths (connections, compiled CEL, caches) before measuring.
	for _, c := range []*cluster{webhookCluster, policyCluster} {
		createPods(t, c, "bench", 20)
	}

	t.Logf("| path | pods | pods/s | admission, all mutating steps (ms) | MutatingAdmissionWebhook plugin (ms) | MutatingAdmissionPolicy plugin (ms) |")
	t.Logf("|---|---|---|---|---|---|")
	for _, ph := range []struct {
		name string
		c    *cluster
		ns   string
	}{
		{"no injection (webhook cluster, namespace disabled: webhook still called)", webhookCluster, "bench-off"},
		{"no injection (policy cluster, namespace not bound)", policyCluster, "bench-off"},
		{"webhook (2 templates)", webhookCluster, "bench"},
		{"policy (2 templates)", policyCluster, "bench"},
		{"policy (2 templates, 20 more served in another namespace)", policyCluster, "bench"},
	} {
		if strings.Contains(ph.name, "20 more") {
			withOthers(t, two)
		}
		before := scrape(t, ph.c)
		start := time.Now()
		createPods(t, ph.c, ph.ns, measurePods)
		elapsed := time.Since(start)
		after := scrape(t, ph.c)
		t.Logf("| %s | %d | %.0f | %s | %s | %s |", ph.name, measurePods, float64(measurePods)/elapsed.Seconds(),
			meanMS(before, after, "apiserver_admission_step_admission_duration_seconds", `operation="CREATE"`, `type="admit"`),
			meanMS(before, after, "apiserver_admission_controller_admission_duration_seconds", `name="MutatingAdmissionWebhook"`, `operation="CREATE"`),
			meanMS(before, after, "apiserver_admission_controller_admission_duration_seconds", `name="MutatingAdmissionPolicy"`, `operation="CREATE"`))
	}
}

// withOthers serves 20 more templates in another namespace: with a policy per namespace, a pod of bench does
// not meet them (before that split, each cost it about 1.5 ms per call of the policy plugin).
func withOthers(t *testing.T, two []*v1alpha1.SidecarTemplate) {
	all := slices.Clone(two)
	for i := range 20 {
		st := two[0].DeepCopy()
		st.Namespace, st.Name = "bench-other", fmt.Sprintf("other-%02d", i)
		all = append(all, st)
	}
	policyCluster.ensureNamespace(t, "bench-other", nil)
	stored, _ := policyCluster.replaceTemplates(t, all)
	res, err := policy.Compile(stored, policy.Options{InjectorNamespace: injectorNS})
	if err != nil || len(res.Served) != 22 {
		t.Fatalf("compile: %v, served %d", err, len(res.Served))
	}
	policyCluster.applyPolicies(t, res, "measure-22")
	createPods(t, policyCluster, "bench", 20)
}

// createPods creates n copies of a realistic pod (three containers) in ns, measureConcurrency at a time, and
// deletes them all afterwards.
func createPods(t *testing.T, c *cluster, ns string, n int) {
	t.Helper()
	var next atomic.Int64
	var wg sync.WaitGroup
	var firstErr atomic.Value
	run := fmt.Sprintf("m%d", time.Now().UnixNano()%1e6)
	for range measureConcurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := next.Add(1); i <= int64(n); i = next.Add(1) {
				if err := c.c.Create(context.Background(), benchPod(ns, fmt.Sprintf("%s-%d", run, i))); err != nil {
					firstErr.CompareAndSwap(nil, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if err := firstErr.Load(); err != nil {
		t.Fatalf("create pods in %s: %v", ns, err)
	}
	if err := c.c.DeleteAllOf(ctxFor(t), &corev1.Pod{}, client.InNamespace(ns), client.GracePeriodSeconds(0)); err != nil {
		t.Fatalf("delete pods in %s: %v", ns, err)
	}
}

func benchPod(ns, name string) *corev1.Pod {
	env := []corev1.EnvVar{{Name: "MODE", Value: "production"}, {Name: "REGION", Value: "eu-west-1"}}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{"app": "web", "tier": "front"},
			Annotations: map[string]string{v1alpha1.AnnotationInject: "log-shipper, proxy"}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{
			{Name: "app", Image: "registry.example.com/web:1.2.3", Env: env, Ports: []corev1.ContainerPort{{ContainerPort: 8080}}},
			{Name: "worker", Image: "registry.example.com/worker:1.2.3", Env: env},
			{Name: "cache", Image: "redis:7", Ports: []corev1.ContainerPort{{ContainerPort: 6379}}},
		}},
	}
}

// scrape returns the API server's /metrics.
func scrape(t *testing.T, c *cluster) []byte {
	t.Helper()
	cs, err := kubernetes.NewForConfig(c.cfg)
	if err != nil {
		t.Fatal(err)
	}
	b, err := cs.RESTClient().Get().AbsPath("/metrics").DoRaw(ctxFor(t))
	if err != nil {
		t.Fatalf("%s cluster: /metrics: %v", c.name, err)
	}
	return b
}

// meanMS is the mean of a histogram's observations between two scrapes, over the series whose labels contain
// every one of want, in milliseconds; "-" when there were none. The text format is read by hand: only _sum and
// _count lines are needed.
func meanMS(before, after []byte, metric string, want ...string) string {
	sum := total(after, metric+"_sum", want) - total(before, metric+"_sum", want)
	count := total(after, metric+"_count", want) - total(before, metric+"_count", want)
	if count <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f (n=%.0f)", 1000*sum/count, count)
}

func total(scraped []byte, series string, want []string) float64 {
	var out float64
	sc := bufio.NewScanner(bytes.NewReader(scraped))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, series+"{") {
			continue
		}
		labels, value, ok := strings.Cut(line[len(series):], "} ")
		if !ok {
			continue
		}
		match := true
		for _, w := range want {
			match = match && strings.Contains(labels, w)
		}
		if v, err := strconv.ParseFloat(strings.TrimSpace(value), 64); err == nil && match {
			out += v
		}
	}
	return out
}
