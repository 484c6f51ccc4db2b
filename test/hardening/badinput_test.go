package hardening

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sidecar-dev/sidecar-injector/internal/server"
)

// answer is what a bad-input case expects back.
type answer struct {
	allowed  bool
	code     int32  // response.result.code; 0: not checked
	mentions string // in response.result.message
	uid      string // echoed uid; "" when none is expected
	patch    bool
}

// TestBadInputGetsAClearAnswerAndTheServerKeepsServing sends each bad input to the running server: it gets an
// AdmissionReview answer that says what is wrong (or allows a request the webhook does not handle) within the
// webhook timeout, a valid admission succeeds right after, and the live heap does not grow beyond a bound.
func TestBadInputGetsAClearAnswerAndTheServerKeepsServing(t *testing.T) {
	ensureProbeTemplate(t, srv.addr)
	valid := podJSON("load", probeTemplate)
	big := func(n int) string {
		return podJSON("load", probeTemplate, fmt.Sprintf(`"padding":%q`, strings.Repeat("x", n)))
	}
	cases := []struct {
		name        string
		contentType string
		body        []byte
		want        answer
	}{
		{"an empty body", "application/json", nil, answer{code: 400, mentions: "body is empty"}},
		{"invalid JSON", "application/json", []byte(`{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionRev`), answer{code: 400, mentions: "unexpected"}},
		{"JSON that is not an object", "application/json", []byte(`[1,2,3]`), answer{code: 400}},
		{"a wrong Content-Type", "text/plain", reviewJSON("ct", "load", valid), answer{code: 400, mentions: "contentType=text/plain"}},
		{"no Content-Type", "", reviewJSON("ct", "load", valid), answer{code: 400, mentions: "contentType"}},
		{"an AdmissionReview of another kind", "application/json", []byte(`{"apiVersion":"admission.k8s.io/v1","kind":"Pod","request":{"uid":"k"}}`), answer{code: 400, uid: "k", mentions: "not an AdmissionReview request"}},
		{"an admission.k8s.io/v1beta1 review (answered in kind)", "application/json",
			bytes.Replace(reviewJSON("beta", "load", valid), []byte("admission.k8s.io/v1"), []byte("admission.k8s.io/v1beta1"), 1), answer{allowed: true, uid: "beta", patch: true}},
		{"a request without a uid", "application/json", reviewJSON("", "load", valid), answer{code: 400, mentions: "request.uid is empty"}},
		{"an AdmissionReview without a request", "application/json", []byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}`), answer{code: 400, mentions: "uid"}},
		{"a Deployment (not handled: allowed unchanged)", "application/json",
			bytes.Replace(reviewJSON("dep", "load", `{"kind":"Deployment"}`), []byte(`"resource":{"group":"","version":"v1","resource":"pods"}`), []byte(`"resource":{"group":"apps","version":"v1","resource":"deployments"}`), 1),
			answer{allowed: true, uid: "dep"}},
		{"a pods request carrying a Deployment", "application/json",
			bytes.Replace(reviewJSON("kind", "load", valid), []byte(`"kind":{"group":"","version":"v1","kind":"Pod"}`), []byte(`"kind":{"group":"apps","version":"v1","kind":"Deployment"}`), 1),
			answer{code: 400, uid: "kind", mentions: "Deployment"}},
		{"a pod without an object", "application/json", reviewJSON("noobj", "load", "null"), answer{code: 400, uid: "noobj", mentions: "no object"}},
		{"a pod whose containers are a string", "application/json", reviewJSON("m1", "load", `{"metadata":{"annotations":{"sidecar.dev/inject":"hardening-probe"}},"spec":{"containers":"app"}}`), answer{code: 400, uid: "m1", mentions: "containers"}},
		{"a pod whose metadata is an array", "application/json", reviewJSON("m2", "load", `{"metadata":[1],"spec":{"containers":[{"name":"app"}]}}`), answer{code: 400, uid: "m2", mentions: "metadata"}},
		{"a pod whose annotations are numbers", "application/json", reviewJSON("m3", "load", `{"metadata":{"annotations":{"sidecar.dev/inject":7}},"spec":{"containers":[{"name":"app"}]}}`), answer{code: 400, uid: "m3", mentions: "annotations"}},
		{"a pod that is a string", "application/json", reviewJSON("m4", "load", `"pod"`), answer{code: 400, uid: "m4"}},
		{"a pod nested 10000 levels deep in an unknown field", "application/json",
			reviewJSON("deep", "load", podJSON("load", probeTemplate, `"future":`+strings.Repeat("[", 10000)+strings.Repeat("]", 10000))), answer{}},
		{"a 6.5 MiB pod (under the 7 MiB limit)", "application/json", reviewJSON("big", "load", big(6<<20+1<<19)), answer{allowed: true, uid: "big", patch: true}},
		{"a 10 MiB body", "application/json", reviewJSON("huge", "load", big(10<<20)), answer{code: http.StatusRequestEntityTooLarge, mentions: "too large"}},
	}
	c := newClient()
	before := heapInUse()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			status, ar, data, err := post(c, srv.addr, tc.contentType, bytes.NewReader(tc.body))
			took := time.Since(start)
			if err != nil {
				t.Fatalf("no answer: %v", err)
			}
			if took > webhookTimeout {
				t.Errorf("answered after %s, more than the webhook timeout", took)
			}
			if status != http.StatusOK || ar == nil {
				t.Fatalf("HTTP %d, body %.300q; want 200 and an AdmissionReview", status, data)
			}
			r := ar.Response
			if tc.name == "a pod nested 10000 levels deep in an unknown field" {
				// Either answer is clear; what matters is an answer and the server surviving.
				if !r.Allowed && (r.Result == nil || r.Result.Message == "") {
					t.Errorf("refused without a message")
				}
			} else {
				if r.Allowed != tc.want.allowed {
					t.Errorf("allowed = %v, want %v (%+v)", r.Allowed, tc.want.allowed, r.Result)
				}
				if tc.want.code != 0 && (r.Result == nil || r.Result.Code != tc.want.code) {
					t.Errorf("result = %+v, want code %d", r.Result, tc.want.code)
				}
				if tc.want.mentions != "" && (r.Result == nil || !strings.Contains(r.Result.Message, tc.want.mentions)) {
					t.Errorf("result = %+v, want a message mentioning %q", r.Result, tc.want.mentions)
				}
				if tc.want.patch != (len(r.Patch) > 0) {
					t.Errorf("patch = %.200s, want a patch: %v", r.Patch, tc.want.patch)
				}
			}
			if tc.want.uid != "" && string(r.UID) != tc.want.uid {
				t.Errorf("uid = %q, want %q echoed", r.UID, tc.want.uid)
			}
			if strings.Contains(string(data), "panic") {
				t.Errorf("the answer mentions a panic: %.300s", data)
			}
			assertServes(t, srv.addr, tc.name)
		})
	}
	after := heapInUse()
	t.Logf("live heap %.1f MiB before the bad input, %.1f MiB after", mib(before), mib(after))
	if after > before+32<<20 {
		t.Errorf("live heap grew by %.1f MiB over the bad input (bound: 32 MiB)", mib(after-before))
	}
}

func mib(b uint64) float64 { return float64(b) / (1 << 20) }

// TestAFloodOfConnectionsIsServed: 500 clients each open their own TLS connection and send an admission at
// once; every one is answered correctly within the webhook timeout. Then 500 TCP connections that never speak
// are held open: a valid admission still succeeds, and the server closes them within its ReadHeaderTimeout.
func TestAFloodOfConnectionsIsServed(t *testing.T) {
	ensureProbeTemplate(t, srv.addr)
	const n = 500
	before := heapInUse()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	start := time.Now()
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := newClient()
			defer c.CloseIdleConnections()
			if err := admitProbe(c, srv.addr, fmt.Sprintf("flood-%d", i)); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	took := time.Since(start)
	var failed []string
	for err := range errs {
		failed = append(failed, err.Error())
	}
	t.Logf("%d concurrent connections answered in %s", n, took.Round(time.Millisecond))
	if len(failed) > 0 {
		t.Fatalf("%d of %d concurrent admissions failed, e.g. %q", len(failed), n, failed[0])
	}

	// Idle connections.
	conns := make([]net.Conn, 0, n)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	openedAt := time.Now()
	for i := 0; i < n; i++ {
		c, err := net.DialTimeout("tcp", srv.addr, 5*time.Second)
		if err != nil {
			t.Fatalf("idle connection %d: %v", i, err)
		}
		conns = append(conns, c)
	}
	assertServes(t, srv.addr, fmt.Sprintf("%d idle connections", n))
	var closed sync.WaitGroup
	var stillOpen int
	var mu sync.Mutex
	for _, c := range conns {
		closed.Add(1)
		go func() {
			defer closed.Done()
			_ = c.SetReadDeadline(openedAt.Add(server.ReadHeaderTimeout + 5*time.Second))
			if _, err := io.Copy(io.Discard, c); err != nil {
				mu.Lock()
				stillOpen++
				mu.Unlock()
			}
		}()
	}
	closed.Wait()
	if stillOpen > 0 {
		t.Errorf("%d of %d silent connections still open %s after they were opened (ReadHeaderTimeout %s)", stillOpen, n, server.ReadHeaderTimeout+5*time.Second, server.ReadHeaderTimeout)
	}
	assertServes(t, srv.addr, "the idle connections were closed")
	after := heapInUse()
	t.Logf("live heap %.1f MiB before the flood, %.1f MiB after", mib(before), mib(after))
	if after > before+32<<20 {
		t.Errorf("live heap grew by %.1f MiB over the flood (bound: 32 MiB)", mib(after-before))
	}
}
