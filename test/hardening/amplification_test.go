package hardening

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/sidecar-dev/sidecar-injector/internal/api/v1alpha1"
	"github.com/sidecar-dev/sidecar-injector/internal/testenv"
)

// The amplification attack of issue 13: a 2 MiB pod with 100 application containers, whose annotation a
// template copies into every one of them (200 MiB of patch for one admission without limits).
const (
	ampNamespace  = "amplify"
	ampContainers = 100
	ampValueBytes = 2 << 20
	// ampWorkers attackers send ampPerWorker pods each, at once: a bounded flood.
	ampWorkers   = 8
	ampPerWorker = 12
)

// ampReview is the AdmissionReview of one attack pod.
func ampReview(uid string) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, `{"apiVersion":"v1","kind":"Pod","metadata":{"generateName":"amp-","namespace":%q,"annotations":{"sidecar.dev/inject":"amp","big":"%s"}},"spec":{"containers":[`,
		ampNamespace, strings.Repeat("x", ampValueBytes))
	for i := range ampContainers {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"name":"app-%d","image":"example.com/app:1"}`, i)
	}
	b.WriteString(`]}}`)
	return reviewJSON(uid, ampNamespace, b.String())
}

// ensureAmpTemplate creates, once, the namespace and the template that copies the annotation "big" into every
// application container's env.
var ampOnce sync.Once

func ensureAmpTemplate(t *testing.T) {
	t.Helper()
	ampOnce.Do(func() {
		createNamespace(t, ampNamespace)
		st := &v1alpha1.SidecarTemplate{ObjectMeta: metav1.ObjectMeta{Namespace: ampNamespace, Name: "amp"},
			Spec: v1alpha1.SidecarTemplateSpec{Env: []corev1.EnvVar{{Name: "BIG", Value: "{{ pod.annotations.big }}"}}}}
		if err := k8s.Create(ctxFor(t), st); err != nil {
			t.Fatalf("create the amplifying template: %v", err)
		}
	})
}

// peakRSS is the process's peak resident set size (VmHWM), from /proc.
func peakRSS(pid int) (uint64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			var kb uint64
			if _, err := fmt.Sscanf(strings.TrimSpace(v), "%d kB", &kb); err != nil {
				return 0, err
			}
			return kb * 1024, nil
		}
	}
	return 0, errors.New("no VmHWM")
}

// chartMemoryLimit is resources.limits.memory of the chart's values.yaml.
func chartMemoryLimit(t *testing.T) uint64 {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(root, "charts", "sidecar-injector", "values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var v struct {
		Resources corev1.ResourceRequirements `json:"resources"`
	}
	if err := yaml.Unmarshal(data, &v); err != nil {
		t.Fatal(err)
	}
	q, ok := v.Resources.Limits[corev1.ResourceMemory]
	if !ok || q.IsZero() {
		t.Fatal("the chart sets no memory limit")
	}
	return uint64(q.Value())
}

// flood is what one amplification flood saw.
type flood struct {
	denied, limitNamed, other atomic.Int64
	probesOK, probesFailed    atomic.Int64
	slowestProbe              atomic.Int64 // ns
	firstOther                atomic.Value
}

// amplify sends the bounded flood of attack pods to addr and, meanwhile, an ordinary admission every 100 ms.
func amplify(addr string, workers, perWorker int) *flood {
	f := &flood{}
	ctx, stop := context.WithCancel(context.Background())
	var probes sync.WaitGroup
	probes.Add(1)
	go func() {
		defer probes.Done()
		c := newClient()
		for i := 0; ctx.Err() == nil; i++ {
			start := time.Now()
			if err := admitProbe(c, addr, fmt.Sprintf("ordinary-%d", i)); err != nil {
				f.probesFailed.Add(1)
			} else {
				f.probesOK.Add(1)
			}
			if d := int64(time.Since(start)); d > f.slowestProbe.Load() {
				f.slowestProbe.Store(d)
			}
			select {
			case <-ctx.Done():
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	var attackers sync.WaitGroup
	for w := range workers {
		attackers.Add(1)
		go func() {
			defer attackers.Done()
			c := newClient()
			for i := range perWorker {
				status, ar, data, err := post(c, addr, "application/json", bytes.NewReader(ampReview(fmt.Sprintf("amp-%d-%d", w, i))))
				switch {
				case err == nil && status == 200 && ar != nil && !ar.Response.Allowed:
					f.denied.Add(1)
					if ar.Response.Result != nil && strings.Contains(ar.Response.Result.Message, `"amp"`) &&
						strings.Contains(ar.Response.Result.Message, "max-rendered-bytes") {
						f.limitNamed.Add(1)
					}
				default:
					f.other.Add(1)
					f.firstOther.CompareAndSwap(nil, fmt.Sprintf("HTTP %d, err %v: %.200s", status, err, data))
				}
			}
		}()
	}
	attackers.Wait()
	stop()
	probes.Wait()
	return f
}

// TestPeakMemoryUnderTheAmplificationAttackStaysUnderTheChartLimit floods the real binary (default limits) with
// the amplification pods and reads its peak RSS: it must stay under half the chart's memory limit (the other
// half is the informers' caches of a real cluster and the runtime's headroom), every attack pod must be denied
// with a message naming the template and the limit, and ordinary admissions sent meanwhile must all be answered
// within the webhook timeout. HARDENING_AMPLIFICATION_UNLIMITED=1 also measures, with the limits lifted, a
// small sample of the flood (the "before" figure; a few GiB of memory: not for CI).
func TestPeakMemoryUnderTheAmplificationAttackStaysUnderTheChartLimit(t *testing.T) {
	limit := chartMemoryLimit(t)
	ensureAmpTemplate(t)
	ensureProbeTemplate(t, srv.addr)
	p := startSubprocess(t)
	ensureProbeTemplate(t, p.addr)
	testenv.Eventually(t, 10*time.Second, "the binary serves the amplifying template", func() error {
		_, ar, data, err := post(newClient(), p.addr, "application/json", bytes.NewReader(ampReview("amp-wait")))
		if err != nil || ar == nil || ar.Response.Allowed {
			return fmt.Errorf("not denied yet: %v %.200s", err, data)
		}
		return nil
	})
	idle, err := peakRSS(p.cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	f := amplify(p.addr, ampWorkers, ampPerWorker)
	took := time.Since(start)
	peak, err := peakRSS(p.cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	n := ampWorkers * ampPerWorker
	t.Logf("amplification flood: %d pods of %.0f MiB (%d containers) from %d connections in %s; peak RSS %.1f MiB (%.1f MiB before the flood; chart limit %.0f MiB); ordinary admissions meanwhile: %d answered, %d failed, slowest %s",
		n, float64(len(ampReview("x")))/(1<<20), ampContainers, ampWorkers, took.Round(time.Millisecond), mib(peak), mib(idle), mib(limit),
		f.probesOK.Load(), f.probesFailed.Load(), time.Duration(f.slowestProbe.Load()).Round(time.Millisecond))
	if got := f.denied.Load(); got != int64(n) || f.limitNamed.Load() != int64(n) {
		t.Errorf("%d of %d attack pods denied, %d naming the template and max-rendered-bytes; other answers: %d (first: %v)",
			got, n, f.limitNamed.Load(), f.other.Load(), f.firstOther.Load())
	}
	if f.probesFailed.Load() > 0 || f.probesOK.Load() == 0 {
		t.Errorf("ordinary admissions during the flood: %d answered, %d failed", f.probesOK.Load(), f.probesFailed.Load())
	}
	if slowest := time.Duration(f.slowestProbe.Load()); slowest > webhookTimeout {
		t.Errorf("an ordinary admission took %s during the flood, over the webhook timeout %s", slowest, webhookTimeout)
	}
	if peak > limit/2 {
		t.Errorf("peak RSS %.1f MiB under the flood, over half the chart's memory limit (%.0f MiB)", mib(peak), mib(limit))
	}

	if os.Getenv("HARDENING_AMPLIFICATION_UNLIMITED") == "" {
		return
	}
	unlimited := startSubprocess(t, "--max-rendered-bytes", "1073741824", "--max-patch-bytes", "1073741824")
	ensureProbeTemplate(t, unlimited.addr)
	start = time.Now()
	f = amplify(unlimited.addr, 2, 2)
	peak, err = peakRSS(unlimited.cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("limits lifted: 4 pods from 2 connections in %s: peak RSS %.1f MiB; %d denied, %d other answers (first: %v); ordinary admissions: %d answered, %d failed, slowest %s",
		time.Since(start).Round(time.Millisecond), mib(peak), f.denied.Load(), f.other.Load(), f.firstOther.Load(),
		f.probesOK.Load(), f.probesFailed.Load(), time.Duration(f.slowestProbe.Load()).Round(time.Millisecond))
}
