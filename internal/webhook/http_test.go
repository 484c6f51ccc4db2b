package webhook

import (
	"bytes"
	"encoding/json"
	"fmt"
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
