package webhook

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
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

// Answers encode their patch into recycled buffers (patchBuffers): concurrent admissions of different pods must
// each get exactly the patch a lone admission of the same pod gets, never bytes of another answer.
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
