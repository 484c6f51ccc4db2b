// Package loadgen is the load tool of the benchmark (test/bench/load is its command line): HTTP/1.1 keep-alive
// over TLS, one connection per worker, a fresh request uid for every request, every answer verified.
//
// Measurement. Each worker owns one pre-built request (headers and AdmissionReview body) and overwrites the
// 36-byte uid placeholder in place before each request, so building requests costs nothing. A request's latency
// runs from just before its bytes are written to just after the last byte of the answer is read. Every answer is
// then verified (status 200, apiVersion/kind, uid echoed, allowed, and a patch, when there is one, that applies to
// the request's pod with evanphx/json-patch and gives a document that decodes as a Pod; a patch byte-identical to
// one already applied to the same pod is not applied again, since the result is necessarily the same) by the
// worker's own verifying goroutine, while the worker sends its next request: verification is outside every
// latency figure and, at concurrency 1, no longer between two requests either. (It was, until the injector's
// answers, whose patches take 20–30 µs more to check than the floors' empty answers, measured 10% fewer
// requests/s at c=1 than the review floor with the same server-side latency and CPU.) Two answer buffers per
// worker bound what is in flight: a worker whose verifier falls behind waits for it. A request counts as
// measured only once its answer passed verification; anything else is an error: it is counted, never timed.
//
// A run is a warm-up (connections opened, TLS handshakes done, server caches warm), then the measured window:
// the requests that complete inside it are counted and timed. The run ends after Warmup+Duration or once N requests were
// measured, whichever is first.
package loadgen

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	jsonpatch "github.com/evanphx/json-patch/v5"
	corev1 "k8s.io/api/core/v1"

	"github.com/sidecar-dev/sidecar-injector/internal/fixtures"
)

// Options configures Run.
type Options struct {
	// URL is https://<loopback address>:<port>/<path>; other hosts are refused.
	URL string
	// RootCAs verifies the server's certificate.
	RootCAs *x509.CertPool
	// Body is the AdmissionReview to send; it must contain fixtures.UIDPlaceholder exactly once.
	Body []byte
	// Workers is the concurrency: one goroutine and one connection each.
	Workers int
	// Warmup is sent before the measured window and not counted (errors during it are).
	Warmup time.Duration
	// Duration bounds the measured window.
	Duration time.Duration
	// N, when > 0, ends the measured window once N requests were measured.
	N int
	// ExpectContainers, when > 0, requires a patch on every answer and that the patched pod has this many
	// containers (guards against a server that is fast because it injected nothing).
	ExpectContainers int
	// Timeout bounds one request; 0 means 10 s.
	Timeout time.Duration
	// ServerPID, when > 0, is the process whose CPU time (utime+stime of /proc/PID/stat) is sampled at the start
	// and the end of the measured window, and whose VmRSS is read at the end.
	ServerPID int
	// ServerCPU, when >= 0, is the CPU the server is pinned to: how busy it was during the window (/proc/stat),
	// minus the server's own CPU time, is reported as OtherCPUPct (other processes competing with the server).
	ServerCPU int
}

// Result is what a run measured. Latencies are in microseconds.
type Result struct {
	Requests     int     `json:"requests"`
	Errors       int     `json:"errors"`
	FirstError   string  `json:"first_error,omitempty"`
	Seconds      float64 `json:"seconds"`
	RPS          float64 `json:"rps"`
	P50          float64 `json:"p50_us"`
	P90          float64 `json:"p90_us"`
	P99          float64 `json:"p99_us"`
	Max          float64 `json:"max_us"`
	VerifyMeanUS float64 `json:"verify_mean_us"`
	// ServerCPUSeconds is the server's user+system CPU time during the measured window; ServerCPUPerReqUS
	// divides it by Requests. Resolution: one clock tick (10 ms).
	ServerCPUSeconds  float64 `json:"server_cpu_s,omitempty"`
	ServerCPUPerReqUS float64 `json:"server_cpu_per_req_us,omitempty"`
	ServerRSSKiB      int64   `json:"server_rss_kib,omitempty"`
	// OtherCPUPct is the share of the server's CPU that other processes used during the window (see
	// Options.ServerCPU); -1 when not measured.
	OtherCPUPct float64 `json:"other_cpu_pct"`
}

// CheckLoopback returns an error unless rawURL is an https URL whose host is a loopback address.
func CheckLoopback(rawURL string) (*url.URL, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, err
	}
	if u.Scheme != "https" {
		return nil, fmt.Errorf("%s: only https URLs are supported", rawURL)
	}
	host := u.Hostname()
	ip := net.ParseIP(host)
	if host == "localhost" {
		ip = net.IPv4(127, 0, 0, 1)
	}
	if ip == nil || !ip.IsLoopback() {
		return nil, fmt.Errorf("%s: refusing to send load to %q: only loopback addresses (127.0.0.0/8, ::1, localhost) are allowed", rawURL, host)
	}
	if u.Port() == "" {
		return nil, fmt.Errorf("%s: the URL needs a port", rawURL)
	}
	return u, nil
}

// Run sends the load and returns what it measured. It returns an error only when the run cannot be made at all
// (bad options); failed requests are counted in Result.Errors.
func Run(opts Options) (*Result, error) {
	u, err := CheckLoopback(opts.URL)
	if err != nil {
		return nil, err
	}
	if opts.Workers < 1 {
		return nil, errors.New("workers must be at least 1")
	}
	if opts.Duration <= 0 {
		return nil, errors.New("duration must be positive")
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 10 * time.Second
	}
	uidAt := bytes.Index(opts.Body, []byte(fixtures.UIDPlaceholder))
	if uidAt < 0 || bytes.Count(opts.Body, []byte(fixtures.UIDPlaceholder)) != 1 {
		return nil, fmt.Errorf("the body must contain the uid placeholder %s exactly once", fixtures.UIDPlaceholder)
	}
	pod, err := PodOf(opts.Body)
	if err != nil {
		return nil, err
	}
	path := u.RequestURI()
	header := fmt.Sprintf("POST %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: sidecar-injector-bench\r\nContent-Type: application/json\r\nAccept: application/json\r\nContent-Length: %d\r\n\r\n",
		path, u.Host, len(opts.Body))
	tlsConfig := &tls.Config{
		MinVersion: tls.VersionTLS13,
		RootCAs:    opts.RootCAs,
		ServerName: u.Hostname(),
		NextProtos: []string{"http/1.1"},
	}

	var prefix [8]byte
	if _, err := rand.Read(prefix[:]); err != nil {
		return nil, err
	}
	st := &state{base: time.Now(), done: make(chan struct{})}
	st.start.Store(1<<63 - 1)
	st.stop.Store(1<<63 - 1)
	workers := make([]*worker, opts.Workers)
	var wg sync.WaitGroup
	for i := range workers {
		req := make([]byte, 0, len(header)+len(opts.Body))
		req = append(append(req, header...), opts.Body...)
		w := &worker{
			id: uint64(i), prefix: binary.BigEndian.Uint64(prefix[:]), addr: u.Host, tls: tlsConfig, timeout: opts.Timeout,
			req: req, uidAt: len(header) + uidAt, verifier: NewVerifier(pod, opts.ExpectContainers), st: st, n: opts.N,
		}
		workers[i] = w
		wg.Go(w.run)
	}

	time.Sleep(opts.Warmup)
	var cpu0 float64
	if opts.ServerPID > 0 {
		if cpu0, err = ProcessCPUSeconds(opts.ServerPID); err != nil {
			st.stopNow()
			wg.Wait()
			return nil, err
		}
	}
	busy0, _ := cpuBusySeconds(opts.ServerCPU)
	start := time.Now()
	st.start.Store(int64(start.Sub(st.base)))
	select {
	case <-time.After(opts.Duration):
	case <-st.done:
	}
	end := time.Now()
	st.stop.Store(int64(end.Sub(st.base)))
	busy1, busyErr := cpuBusySeconds(opts.ServerCPU)
	res := &Result{Seconds: end.Sub(start).Seconds(), OtherCPUPct: -1}
	if opts.ServerPID > 0 {
		cpu1, err := ProcessCPUSeconds(opts.ServerPID)
		if err != nil {
			return nil, err
		}
		res.ServerCPUSeconds = cpu1 - cpu0
		if rss, err := ProcessRSSKiB(opts.ServerPID); err == nil {
			res.ServerRSSKiB = rss
		}
		if opts.ServerCPU >= 0 && busyErr == nil {
			res.OtherCPUPct = max(0, (busy1-busy0)-res.ServerCPUSeconds) / res.Seconds * 100
		}
	}
	st.stopNow()
	wg.Wait()

	var lat []int64
	var verifyNS, verified int64
	for _, w := range workers {
		lat = append(lat, w.lat...)
		res.Errors += w.errors + w.badAnswers
		for _, err := range []error{w.firstErr, w.firstBad} {
			if res.FirstError == "" && err != nil {
				res.FirstError = err.Error()
			}
		}
		verifyNS += w.verifyNS
		verified += w.verified
	}
	res.Requests = len(lat)
	if res.Seconds > 0 {
		res.RPS = float64(res.Requests) / res.Seconds
	}
	if verified > 0 {
		res.VerifyMeanUS = float64(verifyNS) / float64(verified) / 1e3
	}
	if len(lat) > 0 {
		slices.Sort(lat)
		q := func(p float64) float64 {
			i := int(p*float64(len(lat))+0.5) - 1
			return float64(lat[max(0, min(i, len(lat)-1))]) / 1e3
		}
		res.P50, res.P90, res.P99, res.Max = q(0.50), q(0.90), q(0.99), float64(lat[len(lat)-1])/1e3
	}
	if res.Requests > 0 && res.ServerCPUSeconds > 0 {
		res.ServerCPUPerReqUS = res.ServerCPUSeconds / float64(res.Requests) * 1e6
	}
	return res, nil
}

// state is shared by the workers: the measured window, in nanoseconds since base.
type state struct {
	base     time.Time
	start    atomic.Int64
	stop     atomic.Int64
	halt     atomic.Bool
	measured atomic.Int64
	done     chan struct{}
	doneOnce sync.Once
}

func (s *state) stopNow() { s.halt.Store(true) }

type worker struct {
	id, prefix, seq uint64
	addr            string
	tls             *tls.Config
	timeout         time.Duration
	req             []byte
	uidAt           int
	verifier        *Verifier
	st              *state
	n               int

	// Written by the worker's goroutine only.
	errors   int
	firstErr error
	// Written by its verifying goroutine only; read once both have ended.
	lat        []int64
	badAnswers int
	firstBad   error
	verifyNS   int64
	verified   int64
}

// fail counts a request that got no answer (the worker's goroutine).
func (w *worker) fail(err error) {
	w.errors++
	if w.firstErr == nil {
		w.firstErr = err
	}
}

// failVerify counts an answer that failed verification (the verifying goroutine's own counters, so that the two
// goroutines never write the same field).
func (w *worker) failVerify(err error) {
	w.badAnswers++
	if w.firstBad == nil {
		w.firstBad = err
	}
}

func (w *worker) run() {
	var conn *tls.Conn
	var br *bufio.Reader
	jobs := make(chan answered, answerBuffers-1)
	free := make(chan *bytes.Buffer, answerBuffers)
	for range answerBuffers {
		free <- new(bytes.Buffer)
	}
	verifying := make(chan struct{})
	go w.verify(jobs, free, verifying)
	defer func() {
		if conn != nil {
			conn.Close()
		}
		close(jobs)
		<-verifying
	}()
	for !w.st.halt.Load() {
		if conn == nil {
			c, err := tls.DialWithDialer(&net.Dialer{Timeout: w.timeout}, "tcp", w.addr, w.tls)
			if err != nil {
				w.fail(fmt.Errorf("connect: %w", err))
				time.Sleep(20 * time.Millisecond)
				continue
			}
			conn, br = c, bufio.NewReaderSize(c, 64<<10)
		}
		body := <-free
		a := answered{uid: w.nextUID(), body: body}
		a.t0 = time.Since(w.st.base)
		_ = conn.SetDeadline(time.Now().Add(w.timeout))
		status, closeAfter, err := roundTrip(conn, br, w.req, body)
		a.t1, a.status = time.Since(w.st.base), status
		if err != nil {
			free <- body
			if !w.st.halt.Load() {
				w.fail(fmt.Errorf("request: %w", err))
			}
			conn.Close()
			conn = nil
			continue
		}
		if closeAfter {
			conn.Close()
			conn = nil
		}
		jobs <- a
	}
}

// answerBuffers is how many answers a worker may hold at once: the one being read and the one being verified.
const answerBuffers = 2

// answered is one answer handed from a worker to its verifying goroutine.
type answered struct {
	uid    string
	status int
	body   *bytes.Buffer
	t0, t1 time.Duration
}

// verify checks the answers a worker hands over, in order, and counts and times those that pass; it returns each
// buffer to free and closes done once jobs is closed and drained.
func (w *worker) verify(jobs <-chan answered, free chan<- *bytes.Buffer, done chan<- struct{}) {
	defer close(done)
	for a := range jobs {
		v0 := time.Now()
		err := w.verifier.Verify(a.status, a.body.Bytes(), a.uid)
		w.verifyNS += int64(time.Since(v0))
		w.verified++
		free <- a.body
		if err != nil {
			w.failVerify(err)
			continue
		}
		if int64(a.t1) >= w.st.start.Load() && int64(a.t1) <= w.st.stop.Load() {
			w.lat = append(w.lat, int64(a.t1-a.t0))
			if m := w.st.measured.Add(1); w.n > 0 && m >= int64(w.n) {
				w.st.doneOnce.Do(func() { close(w.st.done) })
			}
		}
	}
}

// nextUID writes a fresh uid (8-4-4-4-12 hex digits: a random prefix per run, the worker, a sequence number)
// over the placeholder and returns it.
func (w *worker) nextUID() string {
	w.seq++
	const hexdigits = "0123456789abcdef"
	var raw [16]byte
	binary.BigEndian.PutUint64(raw[:8], w.prefix^(w.id<<8))
	binary.BigEndian.PutUint64(raw[8:], w.seq)
	dst := w.req[w.uidAt : w.uidAt+36]
	j := 0
	for i, b := range raw {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			dst[j] = '-'
			j++
		}
		dst[j], dst[j+1] = hexdigits[b>>4], hexdigits[b&0xf]
		j += 2
	}
	return string(dst)
}

// roundTrip writes one request and reads its answer's body into body.
func roundTrip(conn net.Conn, br *bufio.Reader, req []byte, body *bytes.Buffer) (status int, closeAfter bool, err error) {
	if _, err := conn.Write(req); err != nil {
		return 0, false, err
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return 0, false, err
	}
	body.Reset()
	_, err = io.Copy(body, resp.Body)
	resp.Body.Close()
	if err != nil {
		return 0, false, err
	}
	return resp.StatusCode, resp.Close, nil
}

// PodOf returns request.object of an AdmissionReview.
func PodOf(review []byte) ([]byte, error) {
	var ar struct {
		Request *struct {
			Object json.RawMessage `json:"object"`
		} `json:"request"`
	}
	if err := json.Unmarshal(review, &ar); err != nil {
		return nil, fmt.Errorf("the body is not JSON: %w", err)
	}
	if ar.Request == nil || len(ar.Request.Object) == 0 {
		return nil, errors.New("the body has no request.object")
	}
	return ar.Request.Object, nil
}

// Verifier checks the answers to requests carrying one pod. It is not safe for concurrent use (one per
// worker).
type Verifier struct {
	pod              []byte
	expectContainers int
	// verified is the last patch that was applied to pod and checked; a byte-identical patch needs no second
	// application.
	verified []byte
}

// NewVerifier returns a verifier for answers about pod. expectContainers > 0 requires a patch and that the
// patched pod has that many containers.
func NewVerifier(pod []byte, expectContainers int) *Verifier {
	return &Verifier{pod: pod, expectContainers: expectContainers}
}

type reviewAnswer struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Response   *struct {
		UID       string  `json:"uid"`
		Allowed   bool    `json:"allowed"`
		Patch     []byte  `json:"patch"`
		PatchType *string `json:"patchType"`
		Status    *struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
		} `json:"status"`
	} `json:"response"`
}

// Verify checks one answer: HTTP status 200, an admission.k8s.io/v1 AdmissionReview whose response echoes uid
// and allows the pod, and a patch (when present) of type JSONPatch that applies to the pod and gives a Pod.
func (v *Verifier) Verify(status int, body []byte, uid string) error {
	if status != http.StatusOK {
		return fmt.Errorf("HTTP status %d: %s", status, truncate(body))
	}
	var ar reviewAnswer
	if err := json.Unmarshal(body, &ar); err != nil {
		return fmt.Errorf("the answer is not JSON: %w: %s", err, truncate(body))
	}
	if ar.APIVersion != "admission.k8s.io/v1" || ar.Kind != "AdmissionReview" {
		return fmt.Errorf("the answer is a %s %s, not an admission.k8s.io/v1 AdmissionReview", ar.APIVersion, ar.Kind)
	}
	r := ar.Response
	if r == nil {
		return errors.New("the answer has no response")
	}
	if r.UID != uid {
		return fmt.Errorf("the answer's uid is %q, the request's %q", r.UID, uid)
	}
	if !r.Allowed {
		msg := ""
		if r.Status != nil {
			msg = strconv.Itoa(r.Status.Code) + " " + r.Status.Message
		}
		return fmt.Errorf("the pod was not allowed: %s", msg)
	}
	if len(r.Patch) == 0 {
		if v.expectContainers > 0 {
			return errors.New("the answer has no patch")
		}
		return nil
	}
	if r.PatchType == nil || *r.PatchType != "JSONPatch" {
		return fmt.Errorf("the answer has a patch of type %v, not JSONPatch", deref(r.PatchType))
	}
	if bytes.Equal(r.Patch, v.verified) {
		return nil
	}
	p, err := jsonpatch.DecodePatch(r.Patch)
	if err != nil {
		return fmt.Errorf("the patch is not a JSON patch: %w", err)
	}
	patched, err := p.Apply(v.pod)
	if err != nil {
		return fmt.Errorf("the patch does not apply to the pod: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(patched))
	dec.DisallowUnknownFields()
	var pod corev1.Pod
	if err := dec.Decode(&pod); err != nil {
		return fmt.Errorf("the patched pod does not decode as a Pod: %w", err)
	}
	if v.expectContainers > 0 && len(pod.Spec.Containers) != v.expectContainers {
		return fmt.Errorf("the patched pod has %d containers, want %d", len(pod.Spec.Containers), v.expectContainers)
	}
	v.verified = slices.Clone(r.Patch)
	return nil
}

func deref(p *string) string {
	if p == nil {
		return "<none>"
	}
	return *p
}

func truncate(b []byte) string {
	if len(b) > 300 {
		return string(b[:300]) + "..."
	}
	return string(b)
}

// ProcessCPUSeconds returns the user+system CPU time of process pid (all its threads) from /proc/PID/stat, in
// seconds (clock ticks of 10 ms: USER_HZ is 100 on Linux).
func ProcessCPUSeconds(pid int) (float64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) is in parentheses and may contain spaces: count fields after the last ')'.
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	f := strings.Fields(s[i+1:])
	// After ')' come field 3 (state) onwards; utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: too few fields", pid)
	}
	ut, err1 := strconv.ParseUint(f[11], 10, 64)
	stt, err2 := strconv.ParseUint(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("/proc/%d/stat: %w", pid, err)
	}
	return float64(ut+stt) / 100, nil
}

// ProcessRSSKiB returns VmRSS of process pid from /proc/PID/status, in KiB.
func ProcessRSSKiB(pid int) (int64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(rest)
			if len(f) == 0 {
				break
			}
			return strconv.ParseInt(f[0], 10, 64)
		}
	}
	return 0, fmt.Errorf("/proc/%d/status: no VmRSS", pid)
}

// cpuBusySeconds returns the non-idle time of CPU n since boot from /proc/stat (user, nice, system, irq, softirq,
// steal), in seconds.
func cpuBusySeconds(n int) (float64, error) {
	if n < 0 {
		return 0, errors.New("no CPU")
	}
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, err
	}
	prefix := "cpu" + strconv.Itoa(n) + " "
	for line := range strings.SplitSeq(string(data), "\n") {
		rest, ok := strings.CutPrefix(line, prefix)
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) < 8 {
			break
		}
		var busy uint64
		for i, v := range f[:8] { // user nice system idle iowait irq softirq steal
			if i == 3 || i == 4 {
				continue
			}
			x, err := strconv.ParseUint(v, 10, 64)
			if err != nil {
				return 0, err
			}
			busy += x
		}
		return float64(busy) / 100, nil
	}
	return 0, fmt.Errorf("/proc/stat: no line for cpu%d", n)
}
