package hardening

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sidecar-dev/sidecar-injector/internal/api/v1alpha1"
	"github.com/sidecar-dev/sidecar-injector/internal/testenv"
)

// probeTemplate is a cluster-wide template that every load and liveness check requests.
const (
	probeTemplate  = "hardening-probe"
	probeContainer = "probe-sidecar"
)

var probeOnce sync.Once

// ensureProbeTemplate creates the cluster-wide probe template once and waits until addr serves it.
func ensureProbeTemplate(t *testing.T, addr string) {
	t.Helper()
	createProbeTemplate(t)
	testenv.Eventually(t, 10*time.Second, "the webhook serves the probe template", func() error { return admitProbe(newClient(), addr, "probe-wait") })
}

// createProbeTemplate creates the cluster-wide probe template unless an earlier test did, and reports whether
// this call created it.
func createProbeTemplate(t *testing.T) (created bool) {
	t.Helper()
	probeOnce.Do(func() {
		st := &v1alpha1.SidecarTemplate{
			ObjectMeta: metav1.ObjectMeta{Namespace: injectorNS, Name: probeTemplate},
			Spec: v1alpha1.SidecarTemplateSpec{
				Containers: []corev1.Container{{Name: probeContainer, Image: "example.com/probe:1"}},
				Volumes:    []corev1.Volume{{Name: "probe-data", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}},
			},
		}
		if err := k8s.Create(ctxFor(t), st); err != nil {
			t.Fatalf("create the probe template: %v", err)
		}
		created = true
	})
	return created
}

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// podJSON is a pod in namespace ns with one container "app", requesting the templates in inject.
func podJSON(ns, inject string, extra ...string) string {
	ann := ""
	if inject != "" {
		ann = fmt.Sprintf(`,"annotations":{"sidecar.dev/inject":%q}`, inject)
	}
	more := ""
	for _, e := range extra {
		more += "," + e
	}
	return fmt.Sprintf(`{"apiVersion":"v1","kind":"Pod","metadata":{"generateName":"web-","namespace":%q,"labels":{"app":"web"}%s},"spec":{"containers":[{"name":"app","image":"example.com/web:1"}],"futureField":{"kept":true}}%s}`, ns, ann, more)
}

// reviewJSON is an AdmissionReview v1 for the CREATE of object in ns.
func reviewJSON(uid, ns, object string) []byte {
	return []byte(fmt.Sprintf(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":%q,`+
		`"kind":{"group":"","version":"v1","kind":"Pod"},"resource":{"group":"","version":"v1","resource":"pods"},`+
		`"requestKind":{"group":"","version":"v1","kind":"Pod"},"requestResource":{"group":"","version":"v1","resource":"pods"},`+
		`"namespace":%q,"operation":"CREATE","userInfo":{"username":"load"},"object":%s,"oldObject":null,"dryRun":false,`+
		`"options":{"apiVersion":"meta.k8s.io/v1","kind":"CreateOptions"}}}`, uid, ns, object))
}

// newClient is an HTTPS client like the API server's: HTTP/1.1, keep-alive, trusting the test CA, bounded by
// the webhook timeout.
func newClient() *http.Client {
	return &http.Client{Timeout: webhookTimeout, Transport: &http.Transport{
		TLSClientConfig: tlsConfig(), MaxIdleConnsPerHost: 64, ForceAttemptHTTP2: false,
		DialContext: (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
	}}
}

// post sends body and returns the HTTP status and the decoded AdmissionReview (nil when the body is not one).
func post(c *http.Client, addr, contentType string, body io.Reader) (int, *admissionv1.AdmissionReview, []byte, error) {
	req, err := http.NewRequest(http.MethodPost, "https://"+addr+webhookPath, body)
	if err != nil {
		return 0, nil, nil, err
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return resp.StatusCode, nil, data, err
	}
	var ar admissionv1.AdmissionReview
	if json.Unmarshal(data, &ar) != nil || ar.Response == nil {
		return resp.StatusCode, nil, data, nil
	}
	return resp.StatusCode, &ar, data, nil
}

// admitProbe sends one valid admission requesting the probe template and checks the answer: 200, uid echoed,
// allowed, a patch that adds the probe container.
func admitProbe(c *http.Client, addr, uid string) error {
	status, ar, data, err := post(c, addr, "application/json", bytes.NewReader(reviewJSON(uid, "load", podJSON("load", probeTemplate))))
	if err != nil {
		return err
	}
	switch {
	case status != http.StatusOK || ar == nil:
		return fmt.Errorf("HTTP %d: %.300s", status, data)
	case string(ar.Response.UID) != uid:
		return fmt.Errorf("uid %q, want %q", ar.Response.UID, uid)
	case !ar.Response.Allowed:
		return fmt.Errorf("not allowed: %+v", ar.Response.Result)
	case !bytes.Contains(ar.Response.Patch, []byte(probeContainer)):
		return fmt.Errorf("patch %s does not add %s", ar.Response.Patch, probeContainer)
	}
	return nil
}

// assertServes fails the test unless addr answers a valid admission correctly, within the webhook timeout. It
// creates the probe template first if no earlier test did (and waits until addr serves it), so that a test run
// alone (-run) checks the same thing; a template that already existed gets no such grace.
func assertServes(t *testing.T, addr, after string) {
	t.Helper()
	if createProbeTemplate(t) {
		ensureProbeTemplate(t, addr)
	}
	start := time.Now()
	if err := admitProbe(newClient(), addr, "alive"); err != nil {
		t.Fatalf("after %s, a valid admission fails: %v", after, err)
	}
	if d := time.Since(start); d > webhookTimeout {
		t.Fatalf("after %s, a valid admission took %s", after, d)
	}
}

// heapInUse returns the live heap after a full GC.
func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// isRefused reports a request that never reached the server: the dial was refused (nothing written).
func isRefused(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial" || errors.Is(err, syscall.ECONNREFUSED) && !strings.Contains(err.Error(), "read")
}

// loadResult counts the outcomes of a load run.
type loadResult struct {
	ok, failed, refused atomic.Int64
	mu                  sync.Mutex
	errs                []string
	latencies           []time.Duration
}

func (r *loadResult) fail(err error) {
	r.failed.Add(1)
	r.mu.Lock()
	if len(r.errs) < 10 {
		r.errs = append(r.errs, err.Error())
	}
	r.mu.Unlock()
}

func (r *loadResult) p99() time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.latencies) == 0 {
		return 0
	}
	l := append([]time.Duration(nil), r.latencies...)
	sort.Slice(l, func(i, j int) bool { return l[i] < l[j] })
	return l[len(l)*99/100]
}

func (r *loadResult) String() string {
	return fmt.Sprintf("ok %d, failed %d, refused before sending %d, p99 %s, first errors %q", r.ok.Load(), r.failed.Load(), r.refused.Load(), r.p99(), r.errs)
}

// load sends valid admissions to addr from workers goroutines until ctx is done: as fast as they can when rate
// is 0, else rate per second in total. Each goroutine has its own keep-alive connection, as the API server's
// client pool. A dial refused (the server no longer listens) is counted apart from failures.
func load(ctx context.Context, addr string, workers int, rate float64) *loadResult {
	res := &loadResult{}
	var wg sync.WaitGroup
	var seq atomic.Int64
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := newClient()
			defer c.CloseIdleConnections()
			var interval time.Duration
			if rate > 0 {
				interval = time.Duration(float64(time.Second) * float64(workers) / rate)
			}
			next := time.Now()
			for ctx.Err() == nil {
				if interval > 0 {
					next = next.Add(interval)
					if d := time.Until(next); d > 0 {
						select {
						case <-ctx.Done():
							return
						case <-time.After(d):
						}
					}
				}
				uid := fmt.Sprintf("load-%d", seq.Add(1))
				start := time.Now()
				err := admitProbe(c, addr, uid)
				switch {
				case err == nil:
					res.ok.Add(1)
					res.mu.Lock()
					if len(res.latencies) < 200000 {
						res.latencies = append(res.latencies, time.Since(start))
					}
					res.mu.Unlock()
				case isRefused(err):
					res.refused.Add(1)
					time.Sleep(20 * time.Millisecond)
				default:
					res.fail(err)
				}
			}
		}()
	}
	wg.Wait()
	return res
}

// loadFor runs load for d and returns the result with the achieved rate.
func loadFor(d time.Duration, addr string, workers int, rate float64) (*loadResult, float64) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	start := time.Now()
	r := load(ctx, addr, workers, rate)
	return r, float64(r.ok.Load()) / time.Since(start).Seconds()
}

// rss returns the resident set size of a process, from /proc.
func rss(pid int) (uint64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(line, "VmRSS:") {
			var kb uint64
			if _, err := fmt.Sscanf(strings.TrimSpace(strings.TrimPrefix(line, "VmRSS:")), "%d kB", &kb); err != nil {
				return 0, err
			}
			return kb * 1024, nil
		}
	}
	return 0, errors.New("no VmRSS")
}

// slowClients are started by TestMain against the main server and run for the whole suite: each needs one of the
// server's timeouts to elapse.
type slowClients struct {
	done    chan struct{}
	results map[string]slowResult
}

type slowResult struct {
	closedAfter time.Duration
	err         error
}

// startSlowClients opens: a TCP connection that never starts TLS; a TLS connection that sends its request
// headers one byte every 500 ms (slowloris); a TLS connection that sends full headers announcing a 100 kB body
// and then 10 bytes every 500 ms. Each records how long the server kept it open.
func startSlowClients(addr string) *slowClients {
	s := &slowClients{done: make(chan struct{}), results: map[string]slowResult{}}
	var mu sync.Mutex
	var wg sync.WaitGroup
	run := func(name string, f func() (time.Duration, error)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d, err := f()
			mu.Lock()
			s.results[name] = slowResult{d, err}
			mu.Unlock()
		}()
	}
	const give = 60 * time.Second // the client gives up after this (bounded)
	// waitClosed reads until the server closes the connection (or give passes).
	waitClosed := func(c net.Conn, start time.Time) (time.Duration, error) {
		_ = c.SetReadDeadline(start.Add(give))
		_, err := io.Copy(io.Discard, c)
		d := time.Since(start)
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			return d, fmt.Errorf("still open after %s", give)
		}
		return d, nil
	}
	run("no TLS handshake", func() (time.Duration, error) {
		start := time.Now()
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			return 0, err
		}
		defer c.Close()
		return waitClosed(c, start)
	})
	trickle := func(c net.Conn, data []byte, every time.Duration, chunk int, stop <-chan struct{}) {
		for i := 0; i < len(data); i += chunk {
			end := min(i+chunk, len(data))
			if _, err := c.Write(data[i:end]); err != nil {
				return
			}
			select {
			case <-stop:
				return
			case <-time.After(every):
			}
		}
	}
	run("slowloris headers", func() (time.Duration, error) {
		start := time.Now()
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, tlsConfig())
		if err != nil {
			return 0, err
		}
		defer c.Close()
		stop := make(chan struct{})
		defer close(stop)
		hdr := []byte("POST " + webhookPath + " HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n" + strings.Repeat("X-Slow: y\r\n", 100))
		go trickle(c, hdr, 500*time.Millisecond, 1, stop)
		return waitClosed(c, start)
	})
	run("slow body", func() (time.Duration, error) {
		start := time.Now()
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, tlsConfig())
		if err != nil {
			return 0, err
		}
		defer c.Close()
		stop := make(chan struct{})
		defer close(stop)
		if _, err := c.Write([]byte("POST " + webhookPath + " HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n")); err != nil {
			return 0, err
		}
		go trickle(c, bytes.Repeat([]byte(" "), 100000), 500*time.Millisecond, 10, stop)
		return waitClosed(c, start)
	})
	go func() { wg.Wait(); close(s.done) }()
	return s
}

// createNamespace creates a namespace that the webhook configuration selects.
func createNamespace(t *testing.T, name string) {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"hardening": "true"}}}
	if err := k8s.Create(ctxFor(t), ns); err != nil {
		t.Fatalf("create namespace %s: %v", name, err)
	}
}
