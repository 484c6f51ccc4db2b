package webhook

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"

	"github.com/sidecar-dev/sidecar-injector/internal/inject"
)

// count reads sidecar_injector_webhook_requests_total{code} from the fixture's registry.
func (f *fixture) count(code string) float64 {
	f.t.Helper()
	mfs, err := f.metrics.Gather()
	if err != nil {
		f.t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "sidecar_injector_webhook_requests_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "code" && l.GetValue() == code {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

func TestEveryWebhookRequestIsCountedByTheCodeOfItsAnswer(t *testing.T) {
	f := newFixture(t)
	f.post("application/json", []byte(`{"kind":"Pod"}`))                // not an AdmissionReview
	f.admit(review{uid: "uid-denied", object: pod("no-such-template")}) // denied: still an answered admission
	for code, want := range map[string]float64{"400": 1, "200": 1} {
		if got := f.count(code); got != want {
			t.Errorf(`requests{code=%q} = %v, want %v (a denial is an answered admission, code 200)`, code, got, want)
		}
	}
}

// Answers encode their patch into recycled buffers (patchBuffers), are written from recycled buffers
// (answerBuffers) and their requests are read into and decoded from recycled buffers (bodyBuffers,
// reviewReaders): concurrent admissions of different pods must each get exactly the patch a lone admission of the
// same pod gets and their own uid, never bytes of another answer or request (run under -race too).
func TestConcurrentAnswersEachCarryTheirOwnPatch(t *testing.T) {
	f := newFixture(t)
	pods := []string{pod("log-shipper"), pod("metrics"), pod("log-shipper, metrics")}
	containers := [][]string{{"app", "log-shipper"}, {"app", "metrics-exporter"}, {"app", "metrics-exporter", "log-shipper"}}
	want := make([][]byte, len(pods))
	for i, p := range pods {
		resp := f.admit(review{uid: "uid-alone", object: p})
		if got := containerNames(applied(t, p, resp).Spec.Containers); !slices.Equal(got, containers[i]) {
			t.Fatalf("pod %d: containers %v, want %v", i, got, containers[i])
		}
		want[i] = resp.Patch
	}
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for w := range 8 {
		wg.Go(func() {
			for n := range 30 {
				i := (w + n) % len(pods)
				body := review{uid: fmt.Sprintf("uid-%d-%d", w, n), object: pods[i]}.json()
				resp, err := http.Post(f.url+Path, "application/json", strings.NewReader(body))
				if err != nil {
					errs <- err
					return
				}
				var out admissionv1.AdmissionReview
				err = json.NewDecoder(resp.Body).Decode(&out)
				resp.Body.Close()
				if uid := fmt.Sprintf("uid-%d-%d", w, n); err == nil && out.Response != nil && string(out.Response.UID) != uid {
					err = fmt.Errorf("the answer to %s names %s: it shares bytes with another answer", uid, out.Response.UID)
				}
				if err == nil && (out.Response == nil || !bytes.Equal(out.Response.Patch, want[i])) {
					err = fmt.Errorf("pod %d (uid-%d-%d): the patch differs from a lone admission's:\n%s\nwant\n%s", i, w, n, out.Response.Patch, want[i])
				}
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// An answer goes out in one piece with its Content-Length, not chunked (writeReview), and is exactly what
// encoding/json writes for it.
func TestAnAnswerCarriesItsContentLength(t *testing.T) {
	f := newFixture(t)
	resp, err := http.Post(f.url+Path, "application/json", strings.NewReader(review{uid: "uid-1", object: pod("log-shipper, metrics")}.json()))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if ct := resp.Header.Values("Content-Type"); len(ct) != 1 || ct[0] != "application/json" {
		t.Errorf("Content-Type %q, want exactly application/json", ct)
	}
	if len(resp.TransferEncoding) > 0 || resp.ContentLength != int64(len(data)) {
		t.Errorf("transfer encoding %v, Content-Length %d for %d bytes; want no chunking and the length", resp.TransferEncoding, resp.ContentLength, len(data))
	}
	var out admissionv1.AdmissionReview
	if err := json.Unmarshal(data, &out); err != nil || out.Response == nil || len(out.Response.Patch) == 0 {
		t.Fatalf("not an AdmissionReview with a patch: %v\n%s", err, data)
	}
	if want := encodingJSON(t, out.TypeMeta, out.Response); !bytes.Equal(data, want) {
		t.Errorf("the answer\n%s\nis not what encoding/json writes\n%s", data, want)
	}
}

// An admission's allocations outside the engine stay few: the body, the answer and the patch are written into
// recycled buffers, the review is read as tokens (decodeReview), the Content-Type is shared. The bound is the
// engine's own allocations for the same pod (inject.Inject alone) plus what the handler, controller-runtime's
// admission.Webhook and the metrics take per request today (12 beyond the engine's 67, measured), with room for 4
// more.
func TestAnAdmissionAllocatesLittleBeyondTheEngine(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector makes sync.Pool drop what is put back")
	}
	c := Config{Templates: fakeTemplates(compiledTemplates(t)), Namespaces: namespaces, InjectorNamespace: injectorNS, Metrics: newMetrics(t)}
	h, err := New(c)
	if err != nil {
		t.Fatal(err)
	}
	object := pod("log-shipper, metrics")
	body := []byte(review{uid: "uid-allocs", object: object}.json())
	engine := testing.AllocsPerRun(50, func() {
		if _, err := inject.Inject(inject.Request{Pod: []byte(object), Namespace: "team-a", NamespaceLabels: map[string]string{},
			InjectorNamespace: injectorNS, Index: c.Templates.Index("team-a"), OmitNotApplicable: true}); err != nil {
			t.Fatal(err)
		}
	})
	w := &discardWriter{h: http.Header{}}
	src := bytes.NewReader(body)
	r := httptest.NewRequest(http.MethodPost, Path, nil)
	r.Header.Set("Content-Type", "application/json")
	r.ContentLength = int64(len(body))
	serve := testing.AllocsPerRun(50, func() {
		src.Reset(body)
		r.Body = readCloser{src}
		clear(w.h)
		w.n = 0
		h.ServeHTTP(w, r)
	})
	if w.n == 0 || !bytes.Contains(w.last, []byte(`"patch":"`)) {
		t.Fatalf("no patched answer: %s", w.last)
	}
	t.Logf("an admission allocates %.0f times, the engine alone %.0f", serve, engine)
	if serve > engine+16 {
		t.Errorf("an admission allocates %.0f times, the engine alone %.0f: %.0f beyond it, want at most 16", serve, engine, serve-engine)
	}
}

type discardWriter struct {
	h    http.Header
	n    int
	last []byte
}

func (w *discardWriter) Header() http.Header { return w.h }
func (w *discardWriter) WriteHeader(int)     {}
func (w *discardWriter) Write(p []byte) (int, error) {
	w.n += len(p)
	w.last = append(w.last[:0], p...)
	return len(p), nil
}

type readCloser struct{ *bytes.Reader }

func (readCloser) Close() error { return nil }
