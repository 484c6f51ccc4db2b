package webhook

import (
	"testing"
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
