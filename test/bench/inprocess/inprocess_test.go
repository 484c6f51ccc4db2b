// Package inprocess measures the admission path in one process: BenchmarkAdmission runs the webhook's HTTP
// handler with the real handler and engine beside the review floor (test/bench/floor/floorserver: it only decodes
// and re-encodes the AdmissionReview with encoding/json), without TLS and HTTP; BenchmarkFixedCost
// (fixedcost_test.go) runs the handler chain the webhook server mounts beside the floor's, alone and over
// loopback TLS. They isolate what the injector adds per request from what the network costs, and give profiles
// (go test -bench . -cpuprofile) of exactly that.
package inprocess

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"runtime/metrics"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	admissionv1 "k8s.io/api/admission/v1"

	"github.com/sidecar-dev/sidecar-injector/internal/api/v1alpha1"
	"github.com/sidecar-dev/sidecar-injector/internal/fixtures"
	"github.com/sidecar-dev/sidecar-injector/internal/inject"
	injmetrics "github.com/sidecar-dev/sidecar-injector/internal/metrics"
	"github.com/sidecar-dev/sidecar-injector/internal/webhook"
	"github.com/sidecar-dev/sidecar-injector/test/bench/floor/floorserver"
)

type templates struct{ index *inject.Index }

func (t templates) Index(string) *inject.Index { return t.index }

type namespaces struct{}

func (namespaces) NamespaceLabels(string) (map[string]string, bool) {
	return fixtures.NamespaceLabels, true
}

func review(tb testing.TB, size string) []byte {
	pod, err := fixtures.Pod(size)
	if err != nil {
		tb.Fatal(err)
	}
	body, err := fixtures.Review(pod)
	if err != nil {
		tb.Fatal(err)
	}
	return bytes.ReplaceAll(body, []byte(fixtures.UIDPlaceholder), []byte("0b3a7c1e-7f4e-4f52-9a4c-2d1f6e8b9c0a"))
}

func injector(tb testing.TB, extra ...*v1alpha1.SidecarTemplate) http.Handler {
	var ts []*inject.Template
	for _, t := range append(fixtures.Templates(), extra...) {
		ts = append(ts, inject.Compile(t, fixtures.InjectorNamespace))
	}
	// Indexed once, as the store does.
	idx := templates{inject.NewIndex(fixtures.Namespace, fixtures.InjectorNamespace, ts)}
	m, err := injmetrics.New(prometheus.NewRegistry())
	if err != nil {
		tb.Fatal(err)
	}
	h, err := webhook.New(webhook.Config{Templates: idx, Namespaces: namespaces{}, InjectorNamespace: fixtures.InjectorNamespace, Metrics: m})
	if err != nil {
		tb.Fatal(err)
	}
	return h
}

func serve(b *testing.B, h http.Handler, body []byte, check func(*testing.B, []byte)) {
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		req := httptest.NewRequest(http.MethodPost, webhook.Path, bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			b.Fatalf("status %d: %s", rec.Code, rec.Body)
		}
		if check != nil {
			check(b, rec.Body.Bytes())
		}
	}
}

func BenchmarkAdmission(b *testing.B) {
	inj := injector(b)
	floor, err := floorserver.NewHandler("review")
	if err != nil {
		b.Fatal(err)
	}
	for _, size := range fixtures.Sizes {
		body := review(b, size)
		b.Run(size+"/injector", func(b *testing.B) {
			serve(b, inj, body, nil)
		})
		b.Run(size+"/review-floor", func(b *testing.B) {
			serve(b, floor, body, nil)
		})
	}
	// The scale scenario's candidates: the pod's 2 templates and 100 cluster-wide ones that do not apply.
	scaled := injector(b, fixtures.ClusterTemplates(100)...)
	body := review(b, "realistic")
	b.Run("realistic+100cluster/injector", func(b *testing.B) {
		gc0 := gcCPUSeconds()
		serve(b, scaled, body, nil)
		b.ReportMetric((gcCPUSeconds()-gc0)*1e6/float64(b.N), "gc-µs/op")
	})
}

// The benchmark's injector really injects: its answer for each pod is a patch that adds the two sidecars.
func TestTheInjectorUnderBenchmarkInjects(t *testing.T) {
	inj := injector(t)
	for _, size := range fixtures.Sizes {
		req := httptest.NewRequest(http.MethodPost, webhook.Path, bytes.NewReader(review(t, size)))
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		inj.ServeHTTP(rec, req)
		var rev admissionv1.AdmissionReview
		if err := json.Unmarshal(rec.Body.Bytes(), &rev); err != nil || rev.Response == nil {
			t.Fatalf("%s: not an AdmissionReview: %v\n%s", size, err, rec.Body)
		}
		if !rev.Response.Allowed || len(rev.Response.Patch) == 0 {
			t.Fatalf("%s: allowed=%v, patch %q", size, rev.Response.Allowed, rev.Response.Patch)
		}
		for _, name := range fixtures.TemplateNames {
			if !bytes.Contains(rev.Response.Patch, []byte(name)) {
				t.Errorf("%s: the patch does not add template %s: %s", size, name, rev.Response.Patch)
			}
		}
	}
}

// scaleHeap holds a typed copy of every template of the scale scenario (10,100), as the injector's informer
// does: the live heap that every garbage collection marks at scale. BenchmarkAdmissionBesideScaleHeap runs the
// realistic pod beside it, so that `GOGC=50 go test -bench` against `GOGC=100` shows what a smaller heap
// headroom costs each admission (collections happen in proportion to bytes allocated over GOGC, each marks the
// whole live heap).
var scaleHeap []*v1alpha1.SidecarTemplate

func BenchmarkAdmissionBesideScaleHeap(b *testing.B) {
	if scaleHeap == nil {
		scaleHeap = append(fixtures.ScaleTemplates(1000, 10), fixtures.ClusterTemplates(100)...)
	}
	inj := injector(b, fixtures.ClusterTemplates(100)...)
	body := review(b, "realistic")
	b.Run("realistic+100cluster/injector", func(b *testing.B) {
		gc0 := gcCPUSeconds()
		serve(b, inj, body, nil)
		// The runtime's own account of the collector's CPU (background marking and assists), per admission.
		b.ReportMetric((gcCPUSeconds()-gc0)*1e6/float64(b.N), "gc-µs/op")
	})
	if len(scaleHeap) != 10100 {
		b.Fatalf("scale heap of %d templates, want 10100", len(scaleHeap))
	}
}

func gcCPUSeconds() float64 {
	s := []metrics.Sample{{Name: "/cpu/classes/gc/total:cpu-seconds"}}
	metrics.Read(s)
	return s[0].Value.Float64()
}
