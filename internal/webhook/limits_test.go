package webhook

import (
	"testing"

	"github.com/sidecar-dev/sidecar-injector/internal/inject"
)

// The handler gives the engine its limits and the request's context, so that the engine denies what exceeds the
// limits and stops once the API server has given up.
func TestTheEngineGetsTheLimitsAndTheRequestsContext(t *testing.T) {
	limits := inject.Limits{MaxRequestedNames: 1}
	var got inject.Request
	f := newFixture(t, func(h *Config) {
		h.Limits = limits
		h.Engine = func(req inject.Request) (*inject.Result, error) {
			got = req
			return inject.Inject(req)
		}
	})
	resp := f.admit(review{uid: "u1", object: pod("a, b")})
	if got.Limits != limits || got.Context == nil {
		t.Fatalf("the engine got limits %+v and context %v, want %+v and the request's", got.Limits, got.Context, limits)
	}
	if resp.Allowed || resp.Result == nil || resp.Result.Message == "" {
		t.Fatalf("a pod over max-requested-names must be denied with a message: %+v", resp)
	}
}
