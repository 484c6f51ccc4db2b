package floorserver

import (
	"crypto/tls"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/sidecar-dev/sidecar-injector/internal/fixtures"
	"github.com/sidecar-dev/sidecar-injector/test/bench/loadgen"
)

// TestFloorAnswersEveryPod runs both floors over TLS and checks their answers with the load tool's verifier.
func TestFloorAnswersEveryPod(t *testing.T) {
	dir := t.TempDir()
	if err := fixtures.WriteCerts(dir); err != nil {
		t.Fatal(err)
	}
	cert, pool, err := fixtures.LoadCerts(dir)
	if err != nil {
		t.Fatal(err)
	}

	for _, mode := range []string{"review", "pod"} {
		h, err := NewHandler(mode)
		if err != nil {
			t.Fatal(err)
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		srv := NewServer(h, cert)
		go func() { _ = srv.ServeTLS(ln, "", "") }()
		t.Cleanup(func() { _ = srv.Close() })
		url := "https://" + ln.Addr().String() + "/mutate-v1-pod"

		for _, size := range fixtures.Sizes {
			pod, err := fixtures.Pod(size)
			if err != nil {
				t.Fatal(err)
			}
			body, err := fixtures.Review(pod)
			if err != nil {
				t.Fatal(err)
			}
			res, err := loadgen.Run(loadgen.Options{URL: url, RootCAs: pool, Body: body, Workers: 2, Duration: 2 * time.Second, N: 20})
			if err != nil {
				t.Fatal(err)
			}
			if res.Errors != 0 || res.Requests < 20 {
				t.Fatalf("%s floor, %s pod: %+v", mode, size, res)
			}
		}

		// HTTP/2 is not offered, TLS 1.2 is refused.
		c, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{RootCAs: pool, NextProtos: []string{"h2", "http/1.1"}})
		if err != nil {
			t.Fatal(err)
		}
		if p := c.ConnectionState().NegotiatedProtocol; p == "h2" {
			t.Errorf("%s floor negotiated h2", mode)
		}
		c.Close()
		if c, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{RootCAs: pool, MaxVersion: tls.VersionTLS12}); err == nil {
			c.Close()
			t.Errorf("%s floor accepted TLS 1.2", mode)
		}

		// A body that is not an AdmissionReview request is a 400.
		hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
		for _, bad := range []string{`{}`, `not json`} {
			resp, err := hc.Post(url, "application/json", strings.NewReader(bad))
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusBadRequest {
				t.Errorf("%s floor answered %q with %d", mode, bad, resp.StatusCode)
			}
		}
	}
	if _, err := NewHandler("other"); err == nil {
		t.Error("an unknown mode was accepted")
	}
}

func TestPodModeRejectsAnObjectThatIsNotAPod(t *testing.T) {
	h, _ := NewHandler("pod")
	body, _ := fixtures.Review([]byte(`{"spec":{"containers":"nope"}}`))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/", strings.NewReader(string(body))))
	if rec.Code != http.StatusBadRequest {
		t.Fatalf("status %d, want 400", rec.Code)
	}
}
