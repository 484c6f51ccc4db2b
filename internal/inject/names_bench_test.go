package inject

import (
	"fmt"
	"strings"
	"testing"
)

// namesPod is a pod whose sidecar.dev/inject lists n distinct names (an attacker's pod: no template needed).
func namesPod(n int) []byte {
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("name-%06d", i)
	}
	return []byte(`{"metadata":{"name":"p","annotations":{"sidecar.dev/inject":"` + strings.Join(names, ",") +
		`"}},"spec":{"containers":[{"name":"app","image":"a"}]}}`)
}

// BenchmarkRequestedNames: the cost of one admission whose sidecar.dev/inject lists many names, with the
// default limits (denied at the cap) and with the cap lifted (the parse and every NotFound decision run: linear
// in the number of names, which a quadratic de-duplication would show as a 64x jump from 10k to 80k).
func BenchmarkRequestedNames(b *testing.B) {
	ts := benchTemplates(b, 1)
	for _, n := range []int{1000, 10000, 80000} {
		pod := namesPod(n)
		for _, lim := range []struct {
			name string
			l    Limits
		}{{"default-limits", Limits{}}, {"no-name-cap", Limits{MaxRequestedNames: 1 << 30}}} {
			b.Run(fmt.Sprintf("names=%d/%s", n, lim.name), func(b *testing.B) {
				req := Request{Pod: pod, Namespace: "team-a", InjectorNamespace: injectorNS, Templates: ts,
					OmitNotApplicable: true, Limits: lim.l}
				b.SetBytes(int64(len(pod)))
				b.ReportAllocs()
				for b.Loop() {
					if r, err := Inject(req); err != nil || !r.Denied {
						b.Fatalf("want a denial: %v", err)
					}
				}
			})
		}
	}
}
