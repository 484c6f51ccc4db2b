package inprocess

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	k8sevents "k8s.io/client-go/tools/events"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	crwebhook "sigs.k8s.io/controller-runtime/pkg/webhook"

	"github.com/sidecar-dev/sidecar-injector/internal/events"
	"github.com/sidecar-dev/sidecar-injector/internal/fixtures"
	"github.com/sidecar-dev/sidecar-injector/internal/inject"
	injmetrics "github.com/sidecar-dev/sidecar-injector/internal/metrics"
	"github.com/sidecar-dev/sidecar-injector/internal/server"
	"github.com/sidecar-dev/sidecar-injector/internal/webhook"
	"github.com/sidecar-dev/sidecar-injector/test/bench/floor/floorserver"
	"github.com/sidecar-dev/sidecar-injector/test/bench/loadgen"
)

// BenchmarkFixedCost measures, in one binary and one run, the review floor (test/bench/floor's handler and
// http.Server) and the injector's webhook path as serve mounts it (webhook.New with metrics, the Recorder and a
// logger at serve's default level, behind the webhook server's mux and http.Server: server.NewWebhookServer) on
// the same AdmissionReview bodies:
//
//   - SIZE/handler/SERVER: the HTTP handler alone, with an in-memory ResponseWriter and a request reused
//     between iterations (what is left is the handler's own cost);
//   - SIZE/tls-c1/SERVER: one keep-alive TLS 1.3 connection over loopback, one request at a time, the client a
//     raw connection writing prepared bytes (its cost is the same for both servers and counted in ns/op);
//   - SIZE/tls-c8/SERVER: the same with 8 connections at once (b.RunParallel).
//
// The ratio injector/floor of ns/op is the figure make bench's requests/s ratio follows, that of cpu-ns/op (the
// process's CPU time per request, steadier on a busy machine) its CPU per request; B/op and allocs/op say where
// the garbage collector's share comes from. Profile one server with -bench 'small/handler/injector'
// -cpuprofile.
func BenchmarkFixedCost(b *testing.B) {
	floor, err := floorserver.NewHandler("review")
	if err != nil {
		b.Fatal(err)
	}
	inj := servedInjector(b)
	servers := []struct {
		name    string
		handler http.Handler
		url     string
	}{
		{"floor", floor, startFloor(b, floor)},
		{"injector", inj.WebhookMux(), inj.url},
	}
	for _, size := range fixtures.Sizes {
		body := review(b, size)
		for _, s := range servers {
			b.Run(size+"/handler/"+s.name, func(b *testing.B) { serveInMemory(b, s.handler, body) })
		}
		for _, s := range servers {
			b.Run(size+"/tls-c1/"+s.name, func(b *testing.B) { serveTLS(b, s.url, body, 1) })
		}
		for _, s := range servers {
			b.Run(size+"/tls-c8/"+s.name, func(b *testing.B) { serveTLS(b, s.url, body, 8) })
		}
	}
}

// BenchmarkFixedCostRatio gives the ratios injector/floor directly, for a shared machine where other processes
// make separate runs of BenchmarkFixedCost disagree: it alternates the two servers in blocks of a few requests
// (in turn which goes first), so that both see the same disturbances, and reports the process's CPU time per
// request of each (floor-cpu-ns/req, injector-cpu-ns/req), cpu-ratio (injector/floor: CPU per request, goal
// <= 1.0) and rps-ratio (the injector's requests per second over the floor's, from wall time: goal >= 1.0
// realistic, >= 0.8 small). One op is one block of each server. handler: the handlers alone; tls-c1: one
// keep-alive TLS connection to each server, the client's CPU included in both.
func BenchmarkFixedCostRatio(b *testing.B) {
	floor, err := floorserver.NewHandler("review")
	if err != nil {
		b.Fatal(err)
	}
	floorURL := startFloor(b, floor)
	inj := servedInjector(b)
	for _, size := range fixtures.Sizes {
		body := review(b, size)
		b.Run(size+"/handler", func(b *testing.B) {
			paired(b, inMemoryRequests(b, floor, body), inMemoryRequests(b, inj.WebhookMux(), body))
		})
		b.Run(size+"/tls-c1", func(b *testing.B) {
			f, closeF := tlsRequests(b, floorURL, body)
			defer closeF()
			i, closeI := tlsRequests(b, inj.url, body)
			defer closeI()
			paired(b, f, i)
		})
	}
}

func paired(b *testing.B, floor, injector func() error) {
	const block = 16
	var cpu, wall [2]time.Duration
	fns := [2]func() error{floor, injector}
	round := 0
	for b.Loop() {
		for k := range 2 {
			i := (k + round) % 2
			c0, w0 := processCPU(b), time.Now()
			for range block {
				if err := fns[i](); err != nil {
					b.Fatal(err)
				}
			}
			wall[i] += time.Since(w0)
			cpu[i] += processCPU(b) - c0
		}
		round++
	}
	n := float64(b.N * block)
	b.ReportMetric(float64(cpu[0])/n, "floor-cpu-ns/req")
	b.ReportMetric(float64(cpu[1])/n, "injector-cpu-ns/req")
	b.ReportMetric(float64(cpu[1])/float64(cpu[0]), "cpu-ratio")
	b.ReportMetric(float64(wall[0])/float64(wall[1]), "rps-ratio")
}

// inMemoryRequests returns a function that serves review with h, as serveInMemory does.
func inMemoryRequests(b *testing.B, h http.Handler, review []byte) func() error {
	req, err := http.NewRequest(http.MethodPost, "https://127.0.0.1"+webhook.Path, nil)
	if err != nil {
		b.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.ContentLength = int64(len(review))
	rd := &body{}
	w := &memWriter{header: http.Header{}}
	return func() error {
		rd.Reset(review)
		req.Body = rd
		clear(w.header)
		w.code = 0
		w.body.Reset()
		h.ServeHTTP(w, req)
		if w.code != http.StatusOK {
			return fmt.Errorf("status %d: %s", w.code, w.body.Bytes())
		}
		return nil
	}
}

// tlsRequests returns a function that sends review over one keep-alive TLS connection, as serveTLS does.
func tlsRequests(b *testing.B, url string, review []byte) (func() error, func()) {
	u, err := loadgen.CheckLoopback(url)
	if err != nil {
		b.Fatal(err)
	}
	req := fmt.Appendf(nil, "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nAccept: application/json\r\nContent-Length: %d\r\n\r\n",
		u.RequestURI(), u.Host, len(review))
	req = append(req, review...)
	c := dial(b, u.Host, &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: testCerts(b).pool, ServerName: u.Hostname(), NextProtos: []string{"http/1.1"}})
	return func() error { return c.roundTrip(req) }, c.close
}

// The benchmark's servers answer every pod correctly over TLS (the load tool's verifier: uid, allowed, a patch
// that applies; for the injector, the pod with its two sidecars).
func TestTheFixedCostServersAnswerOverTLS(t *testing.T) {
	floor, err := floorserver.NewHandler("review")
	if err != nil {
		t.Fatal(err)
	}
	floorURL := startFloor(t, floor)
	inj := servedInjector(t)
	for _, size := range fixtures.Sizes {
		pod, err := fixtures.Pod(size)
		if err != nil {
			t.Fatal(err)
		}
		body, err := fixtures.Review(pod)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range []struct {
			url        string
			containers int
		}{{floorURL, 0}, {inj.url, fixtures.ContainersAfterInjection(size)}} {
			res, err := loadgen.Run(loadgen.Options{URL: c.url, RootCAs: testCerts(t).pool, Body: body, Workers: 2,
				Duration: 5 * time.Second, N: 20, ExpectContainers: c.containers})
			if err != nil {
				t.Fatal(err)
			}
			if res.Errors != 0 || res.Requests < 20 {
				t.Fatalf("%s pod at %s: %+v", size, c.url, res)
			}
		}
	}
}

type certs struct {
	cert tls.Certificate
	pool *x509.CertPool
	dir  string
}

var sharedCerts *certs

// testCerts writes a serving certificate for 127.0.0.1 once per test binary.
func testCerts(tb testing.TB) *certs {
	if sharedCerts != nil {
		return sharedCerts
	}
	dir, err := os.MkdirTemp("", "fixedcost-certs")
	if err != nil {
		tb.Fatal(err)
	}
	if err := fixtures.WriteCerts(dir); err != nil {
		tb.Fatal(err)
	}
	cert, pool, err := fixtures.LoadCerts(dir)
	if err != nil {
		tb.Fatal(err)
	}
	sharedCerts = &certs{cert: cert, pool: pool, dir: dir}
	return sharedCerts
}

// startFloor serves h as test/bench/floor does, on a loopback port, until the benchmark or test ends.
func startFloor(tb testing.TB, h http.Handler) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	srv := floorserver.NewServer(h, testCerts(tb).cert)
	go func() { _ = srv.ServeTLS(ln, "", "") }()
	tb.Cleanup(func() { _ = srv.Close() })
	return "https://" + ln.Addr().String() + webhook.Path
}

type injectorServer struct {
	crwebhook.Server
	url string
}

// servedInjector builds the webhook path as server.Run does (webhook.New with metrics, a Recorder and serve's
// default logger; no client authentication, as in make bench) and starts the real webhook server with it on a
// loopback port, until the benchmark or test ends.
func servedInjector(tb testing.TB) injectorServer {
	var ts []*inject.Template
	for _, t := range fixtures.Templates() {
		ts = append(ts, inject.Compile(t, fixtures.InjectorNamespace))
	}
	m, err := injmetrics.New(prometheus.NewRegistry())
	if err != nil {
		tb.Fatal(err)
	}
	log := zap.New(zap.WriteTo(io.Discard)) // serve's logger: JSON, info level
	logf.SetLogger(log)                     // the certificate watcher logs through controller-runtime's
	h, err := webhook.New(webhook.Config{
		Templates:         templates{inject.NewIndex(fixtures.Namespace, fixtures.InjectorNamespace, ts)},
		Namespaces:        namespaces{},
		InjectorNamespace: fixtures.InjectorNamespace,
		Metrics:           m,
		Recorder:          events.NewRecorder(k8sevents.NewFakeRecorder(100)),
		Log:               log.WithName("admission"),
	})
	if err != nil {
		tb.Fatal(err)
	}
	port := freePort(tb)
	srv := server.NewWebhookServer(server.Options{WebhookHost: "127.0.0.1", WebhookPort: port, CertDir: testCerts(tb).dir}, log)
	srv.Register(webhook.Path, h)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Start(ctx) }()
	tb.Cleanup(func() { cancel(); <-done })
	deadline := time.Now().Add(10 * time.Second)
	for srv.StartedChecker()(nil) != nil {
		if time.Now().After(deadline) {
			tb.Fatal("the webhook server did not start within 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	return injectorServer{Server: srv, url: "https://127.0.0.1:" + strconv.Itoa(port) + webhook.Path}
}

func freePort(tb testing.TB) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// memWriter is a ResponseWriter reused between iterations, so that the benchmark measures the handler.
type memWriter struct {
	header http.Header
	code   int
	body   bytes.Buffer
}

func (w *memWriter) Header() http.Header { return w.header }

func (w *memWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
}

func (w *memWriter) Write(p []byte) (int, error) {
	w.WriteHeader(http.StatusOK)
	return w.body.Write(p)
}

type body struct{ bytes.Reader }

func (*body) Close() error { return nil }

func serveInMemory(b *testing.B, h http.Handler, review []byte) {
	req, err := http.NewRequest(http.MethodPost, "https://127.0.0.1"+webhook.Path, nil)
	if err != nil {
		b.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.ContentLength = int64(len(review))
	var rd body
	w := &memWriter{header: http.Header{}}
	b.ReportAllocs()
	b.SetBytes(int64(len(review)))
	defer reportCPU(b)()
	for b.Loop() {
		rd.Reset(review)
		req.Body = &rd
		clear(w.header)
		w.code = 0
		w.body.Reset()
		h.ServeHTTP(w, req)
		if w.code != http.StatusOK {
			b.Fatalf("status %d: %s", w.code, w.body.Bytes())
		}
	}
}

// serveTLS sends review over conns keep-alive TLS connections, as the load tool does (prepared request bytes,
// http.ReadResponse), and checks that every answer is HTTP 200.
func serveTLS(b *testing.B, url string, review []byte, conns int) {
	u, err := loadgen.CheckLoopback(url)
	if err != nil {
		b.Fatal(err)
	}
	req := fmt.Appendf(nil, "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nAccept: application/json\r\nContent-Length: %d\r\n\r\n",
		u.RequestURI(), u.Host, len(review))
	req = append(req, review...)
	cfg := &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: testCerts(b).pool, ServerName: u.Hostname(), NextProtos: []string{"http/1.1"}}
	b.ReportAllocs()
	b.SetBytes(int64(len(review)))
	b.SetParallelism(max(1, conns/runtime.GOMAXPROCS(0)))
	if conns == 1 {
		c := dial(b, u.Host, cfg)
		defer c.close()
		defer reportCPU(b)() // after the handshake
		for b.Loop() {
			if err := c.roundTrip(req); err != nil {
				b.Fatal(err)
			}
		}
		return
	}
	defer reportCPU(b)() // with the handshakes of the connections
	b.RunParallel(func(pb *testing.PB) {
		c := dial(b, u.Host, cfg)
		defer c.close()
		for pb.Next() {
			if err := c.roundTrip(req); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// reportCPU starts counting the process's CPU time (user and system, all threads: the server, the client and
// the garbage collector); the function it returns reports it per operation as cpu-ns/op. On a shared machine it
// is steadier than ns/op, which grows with the time the process waits for a core.
func reportCPU(b *testing.B) func() {
	start := processCPU(b)
	return func() { b.ReportMetric(float64(processCPU(b)-start)/float64(b.N), "cpu-ns/op") }
}

func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

type client struct {
	conn *tls.Conn
	br   *bufio.Reader
}

func dial(b *testing.B, addr string, cfg *tls.Config) *client {
	c, err := tls.Dial("tcp", addr, cfg)
	if err != nil {
		b.Fatal(err)
	}
	return &client{conn: c, br: bufio.NewReaderSize(c, 64<<10)}
}

func (c *client) close() { _ = c.conn.Close() }

func (c *client) roundTrip(req []byte) error {
	if _, err := c.conn.Write(req); err != nil {
		return err
	}
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		return err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err == nil && resp.StatusCode != http.StatusOK {
		err = errors.New(resp.Status)
	}
	return err
}
