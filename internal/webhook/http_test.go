package webhook

import (
	"testing"

	crmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
)

// count reads sidecar_injector_webhook_requests_total{code} from the registry serve's metrics live in.
func count(t *testing.T, code string) float64 {
	t.Helper()
	mfs, err := crmetrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
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
	bad0, ok0 := count(t, "400"), count(t, "200")
	f.post("application/json", []byte(`{"kind":"Pod"}`))                // not an AdmissionReview
	f.admit(review{uid: "uid-denied", object: pod("no-such-template")}) // denied: still an answered admission
	if got := count(t, "400") - bad0; got != 1 {
		t.Errorf(`code="400" went up by %v, want 1`, got)
	}
	if got := count(t, "200") - ok0; got != 1 {
		t.Errorf(`code="200" went up by %v, want 1 (a denial is an answered admission)`, got)
	}
}
