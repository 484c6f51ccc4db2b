package loadgen

import (
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/sidecar-dev/sidecar-injector/internal/fixtures"
)

const uid = "0a1b2c3d-0000-4000-8000-000000000001"

func answer(uid string, allowed bool, patch string) []byte {
	resp := map[string]any{"uid": uid, "allowed": allowed}
	if patch != "" {
		resp["patchType"] = "JSONPatch"
		resp["patch"] = base64.StdEncoding.EncodeToString([]byte(patch))
	}
	b, _ := json.Marshal(map[string]any{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": resp})
	return b
}

func TestVerifier(t *testing.T) {
	pod, err := fixtures.Pod("realistic")
	if err != nil {
		t.Fatal(err)
	}
	addContainer := `[{"op":"add","path":"/spec/containers/-","value":{"name":"side","image":"side:1"}}]`
	for _, tc := range []struct {
		name    string
		status  int
		body    []byte
		expect  int
		wantErr string
	}{
		{"allowed without patch", 200, answer(uid, true, ""), 0, ""},
		{"patch that applies", 200, answer(uid, true, addContainer), 4, ""},
		{"wrong uid", 200, answer("0a1b2c3d-0000-4000-8000-000000000002", true, ""), 0, "uid"},
		{"not allowed", 200, answer(uid, false, ""), 0, "not allowed"},
		{"HTTP 500", 500, []byte("boom"), 0, "status 500"},
		{"not JSON", 200, []byte("<html>"), 0, "not JSON"},
		{"no response", 200, []byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}`), 0, "no response"},
		{"wrong kind", 200, []byte(`{"apiVersion":"v1","kind":"Status"}`), 0, "not an admission.k8s.io/v1"},
		{"patch that does not apply", 200, answer(uid, true, `[{"op":"replace","path":"/spec/nothing/here","value":1}]`), 0, "does not apply"},
		{"patch that is not a patch", 200, answer(uid, true, `{"op":"add"}`), 0, "not a JSON patch"},
		{"result that is not a Pod", 200, answer(uid, true, `[{"op":"add","path":"/spec/sidecars","value":[]}]`), 0, "does not decode as a Pod"},
		{"result of the wrong type", 200, answer(uid, true, `[{"op":"replace","path":"/spec/containers","value":"x"}]`), 0, "does not decode as a Pod"},
		{"patch missing when expected", 200, answer(uid, true, ""), 5, "no patch"},
		{"too few containers", 200, answer(uid, true, addContainer), 5, "has 4 containers, want 5"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := NewVerifier(pod, tc.expect)
			err := v.Verify(tc.status, tc.body, uid)
			// a second, identical answer takes the cached path and must give the same verdict
			err2 := v.Verify(tc.status, tc.body, uid)
			for _, e := range []error{err, err2} {
				switch {
				case tc.wantErr == "" && e != nil:
					t.Fatalf("unexpected error: %v", e)
				case tc.wantErr != "" && (e == nil || !strings.Contains(e.Error(), tc.wantErr)):
					t.Fatalf("error %v, want one containing %q", e, tc.wantErr)
				}
			}
		})
	}
}

func TestCheckLoopback(t *testing.T) {
	for _, ok := range []string{"https://127.0.0.1:9443/x", "https://[::1]:9443/", "https://localhost:1/", "https://127.3.2.1:5/"} {
		if _, err := CheckLoopback(ok); err != nil {
			t.Errorf("%s: %v", ok, err)
		}
	}
	for _, bad := range []string{"https://10.0.0.1:9443/", "https://example.com:443/", "http://127.0.0.1:80/", "https://127.0.0.1/", "https://0.0.0.0:1/"} {
		if _, err := CheckLoopback(bad); err == nil {
			t.Errorf("%s: accepted", bad)
		}
	}
}

// server answers like a webhook; echo=false answers with a uid of its own.
func server(t *testing.T, echo bool) (*httptest.Server, *x509.CertPool) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var ar struct {
			Request struct {
				UID string `json:"uid"`
			} `json:"request"`
		}
		if err := json.Unmarshal(body, &ar); err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		u := ar.Request.UID
		if !echo {
			u = "ffffffff-ffff-ffff-ffff-ffffffffffff"
		}
		_, _ = w.Write(answer(u, true, `[{"op":"add","path":"/metadata/labels/x","value":"y"}]`))
	}))
	srv.StartTLS()
	t.Cleanup(srv.Close)
	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate())
	return srv, pool
}

func TestRun(t *testing.T) {
	pod, _ := fixtures.Pod("small")
	body, err := fixtures.Review(pod)
	if err != nil {
		t.Fatal(err)
	}
	srv, pool := server(t, true)
	res, err := Run(Options{URL: srv.URL + "/mutate-v1-pod", RootCAs: pool, Body: body, Workers: 3, Warmup: 20 * time.Millisecond,
		Duration: 2 * time.Second, N: 200, ServerPID: os.Getpid(), ServerCPU: 0})
	if err != nil {
		t.Fatal(err)
	}
	if res.Errors != 0 || res.Requests < 200 || res.RPS <= 0 || res.P99 <= 0 || res.Max < res.P99 || res.ServerRSSKiB <= 0 {
		t.Fatalf("unexpected result: %+v", res)
	}
	if res.Seconds > 1.5 {
		t.Errorf("-n did not end the run early: %.2fs", res.Seconds)
	}

	bad, pool := server(t, false)
	res, err = Run(Options{URL: bad.URL, RootCAs: pool, Body: body, Workers: 2, Duration: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if res.Errors == 0 || res.Requests != 0 || !strings.Contains(res.FirstError, "uid") {
		t.Fatalf("a server that does not echo the uid must give errors and no measured requests: %+v", res)
	}

	if _, err := Run(Options{URL: "https://192.0.2.1:443/", Body: body, Workers: 1, Duration: time.Second}); err == nil {
		t.Fatal("a non-loopback target was accepted")
	}
	if _, err := Run(Options{URL: srv.URL, Body: []byte(`{"request":{"object":{}}}`), Workers: 1, Duration: time.Second}); err == nil {
		t.Fatal("a body without the uid placeholder was accepted")
	}
}

func TestNextUIDIsFreshAndInPlace(t *testing.T) {
	body := []byte(fmt.Sprintf(`{"uid":%q}`, fixtures.UIDPlaceholder))
	w := &worker{req: body, uidAt: 8, id: 3, prefix: 42}
	seen := map[string]bool{}
	for range 1000 {
		u := w.nextUID()
		if len(u) != 36 || seen[u] || !strings.Contains(string(w.req), u) || u[8] != '-' || u[13] != '-' || u[23] != '-' {
			t.Fatalf("bad uid %q in %s", u, w.req)
		}
		seen[u] = true
	}
}
