package webhook

import (
	"reflect"
	"testing"

	"github.com/sidecar-dev/sidecar-injector/internal/inject"
)

// The handler gives the engine its limits, the declared image tolerance and the request's context, so that the
// engine denies what exceeds the limits, recognises sidecars as the platform declared, and stops once the API
// server has given up.
func TestTheEngineGetsTheLimitsAndTheRequestsContext(t *testing.T) {
	limits := inject.Limits{MaxRequestedNames: 1}
	images := inject.ImageTolerance{Mirrors: []string{"mirror.example"}, DigestPinning: true}
	var got inject.Request
	f := newFixture(t, func(h *Config) {
		h.Limits = limits
		h.Images = images
		h.Engine = func(req inject.Request) (*inject.Result, error) {
			got = req
			return inject.Inject(req)
		}
	})
	resp := f.admit(review{uid: "u1", object: pod("a, b")})
	if !reflect.DeepEqual(got.Images, images) {
		t.Errorf("the engine got image tolerance %+v, want %+v", got.Images, images)
	}
	if got.Limits != limits || got.Context == nil {
		t.Fatalf("the engine got limits %+v and context %v, want %+v and the request's", got.Limits, got.Context, limits)
	}
	if resp.Allowed || resp.Result == nil || resp.Result.Message == "" {
		t.Fatalf("a pod over max-requested-names must be denied with a message: %+v", resp)
	}
}
