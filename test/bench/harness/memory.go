package main

// The memory measurement (-memory, `make bench-memory`): the injector's resident memory over the scale scenario,
// in a few minutes and without the throughput cells, so that it can be rerun after every change. Memory is what a
// shared, busy machine distorts least; the cells of `make bench` need a quiet one.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/sidecar-dev/sidecar-injector/internal/fixtures"
	"github.com/sidecar-dev/sidecar-injector/test/bench/loadgen"
)

// memoryVariant is one build (and environment) of the injector whose memory is measured: -memory-variant
// label=path[,NAME=VALUE...], e.g. before=/tmp/old/sidecar-injector or gomemlimit=bin/bench/bin/sidecar-injector,GOMEMLIMIT=80MiB.
type memoryVariant struct {
	label, binary string
	env           []string
}

type memoryVariants []memoryVariant

func (v *memoryVariants) String() string {
	var s []string
	for _, x := range *v {
		s = append(s, x.label)
	}
	return strings.Join(s, ",")
}

func (v *memoryVariants) Set(s string) error {
	label, rest, ok := strings.Cut(s, "=")
	if !ok || label == "" || rest == "" {
		return fmt.Errorf("%q: want label=path[,NAME=VALUE...]", s)
	}
	parts := strings.Split(rest, ",")
	for _, e := range parts[1:] {
		if !strings.Contains(e, "=") {
			return fmt.Errorf("%q: environment entry %q is not NAME=VALUE", s, e)
		}
	}
	*v = append(*v, memoryVariant{label: label, binary: parts[0], env: parts[1:]})
	return nil
}

// memoryRun is one start of one variant, measured once it settled and served admissions.
type memoryRun struct {
	Variant string `json:"variant"`
	// Start is "first start" (no template has a status yet: the controller writes every one) or "restart"
	// (every status current: the steady state after a rollout).
	Start    string  `json:"start"`
	ReadyMS  float64 `json:"ready_ms"`
	SettleS  float64 `json:"settle_s"`
	Settled  bool    `json:"settled"`
	ReadyKiB int64   `json:"rss_at_ready_kib"`
	// RSSKiB and HWMKiB (VmRSS, VmHWM: the peak) after the benchmark pod's admissions; AllNSKiB after one more
	// admission in every scale namespace (every namespace's templates compiled and indexed).
	RSSKiB   int64 `json:"rss_kib"`
	HWMKiB   int64 `json:"hwm_kib"`
	AllNSKiB int64 `json:"rss_all_namespaces_kib"`
	// From the Go runtime (/metrics, after the admissions in every namespace).
	HeapInuse    float64 `json:"heap_inuse_bytes"`
	HeapAlloc    float64 `json:"heap_alloc_bytes"`
	HeapReleased float64 `json:"heap_released_bytes"`
	NextGC       float64 `json:"next_gc_bytes"`
	GoSys        float64 `json:"go_sys_bytes"`
	CPUSeconds   float64 `json:"cpu_s"`
	// Where the RSS is, at the end: anonymous pages (the Go heap, stacks, the runtime's own structures) against
	// file-backed ones (the binary's pages touched so far), and the Go runtime's classes of the anonymous part.
	Breakdown memoryBreakdown `json:"breakdown"`
	// CPUPerAdmissionUS is the process's CPU per admission during the load (5 s at each concurrency): what a
	// tighter garbage collector costs (noisy on a busy machine).
	CPUPerAdmissionUS float64 `json:"cpu_per_admission_us"`
	Admissions        int     `json:"admissions"`
	Errors            int     `json:"errors"`
}

// memoryBreakdown is where a process's resident memory is: /proc/PID/status's RssAnon and RssFile, and the Go
// runtime's memory classes (the go_memstats_* series of /metrics, read at the same moment).
type memoryBreakdown struct {
	RSSAnonKiB int64 `json:"rss_anon_kib"`
	RSSFileKiB int64 `json:"rss_file_kib"`
	// HeapInuse: spans holding objects (live or not yet collected); HeapFree: idle spans not yet returned to
	// the OS (heap_idle - heap_released); Stacks: goroutine stacks (stack_inuse); Runtime: the runtime's
	// metadata (mspan, mcache, GC, profiling buckets, other_sys).
	HeapInuse float64 `json:"heap_inuse_bytes"`
	HeapFree  float64 `json:"heap_free_bytes"`
	Stacks    float64 `json:"stacks_bytes"`
	Runtime   float64 `json:"runtime_bytes"`
}

// readBreakdown reads pid's memory breakdown from /proc and from the Go runtime's series in m.
func readBreakdown(pid int, m map[string]float64) (memoryBreakdown, error) {
	st, err := procStatus(pid)
	if err != nil {
		return memoryBreakdown{}, err
	}
	return memoryBreakdown{
		RSSAnonKiB: st["RssAnon"], RSSFileKiB: st["RssFile"],
		HeapInuse: m["go_memstats_heap_inuse_bytes"],
		HeapFree:  m["go_memstats_heap_idle_bytes"] - m["go_memstats_heap_released_bytes"],
		Stacks:    m["go_memstats_stack_inuse_bytes"],
		Runtime: m["go_memstats_mspan_inuse_bytes"] + m["go_memstats_mcache_inuse_bytes"] + m["go_memstats_gc_sys_bytes"] +
			m["go_memstats_buck_hash_sys_bytes"] + m["go_memstats_other_sys_bytes"],
	}, nil
}

// memoryIdle measures variant v with nothing but the base scenario's templates (the 2-template injector), idle
// once its controller is done and the process quiet: the baseline every scale pays.
func (h *harness) memoryIdle(ctx context.Context, v memoryVariant) (*memoryRun, error) {
	r := &memoryRun{Variant: v.label, Start: "idle"}
	p, _, _, err := h.startSettled(ctx, v, "idle", r, len(fixtures.Templates()), 60*time.Second, 60*time.Second)
	if err != nil {
		return nil, err
	}
	defer h.stop(p)
	if err := h.readEnd(r, p); err != nil {
		return nil, err
	}
	r.RSSKiB, r.AllNSKiB = r.Breakdown.RSSAnonKiB+r.Breakdown.RSSFileKiB, 0
	h.logf("memory: %s (idle, 2 templates): RSS %.1f MiB (anonymous %.1f, file %.1f), heap in use %.1f MiB",
		v.label, kib(r.RSSKiB), kib(r.Breakdown.RSSAnonKiB), kib(r.Breakdown.RSSFileKiB), r.HeapInuse/(1<<20))
	return r, nil
}

// startSettled starts variant v over the scale API server and waits (at most doneWithin) until its controller
// has reconciled the given number of templates, then (at most quietWithin) until it, the API server and etcd are
// quiet; r gets the time to Ready, the RSS then and the time to settle. It reports whether the controller was
// done; the caller stops p.
func (h *harness) startSettled(ctx context.Context, v memoryVariant, start string, r *memoryRun, templates int,
	doneWithin, quietWithin time.Duration) (p *proc, readyIn time.Duration, done bool, err error) {
	p, readyIn, err = h.startInjectorEnv(ctx, h.scaleAPI, "memory-"+v.label+"-"+strings.ReplaceAll(start, " ", "-"), v.binary, v.env)
	if err != nil {
		return nil, 0, false, err
	}
	startedAt := time.Now().Add(-readyIn)
	r.ReadyMS = float64(readyIn.Milliseconds())
	r.ReadyKiB, _ = loadgen.ProcessRSSKiB(p.cmd.Process.Pid)
	done = h.controllerDone(ctx, p, templates, doneWithin)
	_, quiet := h.settleAll(p, controlPlanePIDs(h.scaleAPI), quietWithin)
	r.SettleS, r.Settled = time.Since(startedAt).Seconds(), done && quiet
	return p, readyIn, done, nil
}

// readEnd reads the process's CPU, the Go runtime's figures and the memory breakdown into r.
func (h *harness) readEnd(r *memoryRun, p *proc) error {
	pid := p.cmd.Process.Pid
	r.CPUSeconds, _ = loadgen.ProcessCPUSeconds(pid)
	m, err := scrape("http://" + p.metrics + "/metrics")
	if err != nil {
		return err
	}
	r.HeapInuse, r.HeapAlloc, r.HeapReleased = m["go_memstats_heap_inuse_bytes"], m["go_memstats_heap_alloc_bytes"], m["go_memstats_heap_released_bytes"]
	r.NextGC, r.GoSys = m["go_memstats_next_gc_bytes"], m["go_memstats_sys_bytes"]
	st, err := procStatus(pid)
	if err != nil {
		return err
	}
	r.HWMKiB = max(r.HWMKiB, st["VmHWM"])
	r.Breakdown, err = readBreakdown(pid, m)
	return err
}

// runMemory creates the scale scenario in an API server and measures each variant over it: the first variant
// once from a first start (it writes every template's status), then every variant from a restart. Each run
// waits until the injector, the API server and etcd settle, sends the benchmark pod's admissions for a few
// seconds, then one admission in every scale namespace, and reads the process's RSS and the Go runtime's heap
// figures. With -profile, pprofserve (the same code plus /debug/pprof) is measured last and its heap profile
// kept: what the live heap is made of.
func (h *harness) runMemory(ctx context.Context) error {
	h.started = time.Now()
	cfg := h.cfg
	if err := os.MkdirAll(filepath.Join(cfg.outDir, "logs"), 0o755); err != nil {
		return err
	}
	variants := cfg.memoryVariants
	if len(variants) == 0 {
		variants = memoryVariants{{label: "injector", binary: filepath.Join(cfg.binDir, "sidecar-injector")}}
	}
	h.certDir = filepath.Join(cfg.outDir, "certs")
	if err := fixtures.WriteCerts(h.certDir); err != nil {
		return err
	}
	var err error
	if h.scaleAPI, err = h.startAPIServer(ctx, "scale-api"); err != nil {
		return err
	}
	idle, err := h.memoryIdle(ctx, variants[0])
	if err != nil {
		return err
	}
	sr, err := h.createScale(ctx)
	if err != nil {
		return err
	}
	runs := []memoryRun{*idle}
	measure := func(v memoryVariant, start string) error {
		r, err := h.memoryRun(ctx, v, start, sr)
		if err != nil {
			return err
		}
		runs = append(runs, *r)
		return nil
	}
	if err := measure(variants[0], "first start"); err != nil {
		return err
	}
	for _, v := range variants {
		if err := measure(v, "restart"); err != nil {
			return err
		}
	}
	var profile string
	if cfg.profile {
		pprofAddr, err := freeAddr()
		if err != nil {
			return err
		}
		// memprofilerate: a heap sample every 4 KiB instead of 512 KiB, fine enough to tell the store's objects apart.
		v := memoryVariant{label: "pprofserve", binary: filepath.Join(cfg.binDir, "pprofserve"),
			env: []string{"BENCH_PPROF_ADDR=" + pprofAddr, "GODEBUG=memprofilerate=4096"}}
		h.memoryProfileAddr = pprofAddr
		if err := measure(v, "restart"); err != nil {
			return err
		}
		profile = h.memoryProfileTop
	}
	h.reportMemory(sr, runs, profile)
	data, err := json.MarshalIndent(map[string]any{"scale": sr, "runs": runs, "load_average": loadAvg(), "notes": h.notes}, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(cfg.outDir, "memory.json"), data, 0o644)
}

// createScale creates the scale scenario's namespaces and templates in the scale API server, starting it first
// unless it runs already (-memory starts it earlier, to measure the 2-template injector idle over it).
func (h *harness) createScale(ctx context.Context) (*scaleResult, error) {
	cfg := h.cfg
	sr := &scaleResult{Namespaces: cfg.scaleNamespaces, Cluster: cfg.scaleCluster, Reduced: cfg.scaleNamespaces*cfg.scalePerNS < 10000}
	if h.scaleAPI == nil {
		var err error
		if h.scaleAPI, err = h.startAPIServer(ctx, "scale-api"); err != nil {
			return nil, err
		}
	}
	var nss []client.Object
	for i := range cfg.scaleNamespaces {
		nss = append(nss, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: fixtures.ScaleNamespace(i), Labels: map[string]string{"team": fmt.Sprintf("t%03d", i%1000)}}})
	}
	var tpls []client.Object
	for _, t := range fixtures.ScaleTemplates(cfg.scaleNamespaces, cfg.scalePerNS) {
		tpls = append(tpls, t)
	}
	for _, t := range fixtures.ClusterTemplates(cfg.scaleCluster) {
		tpls = append(tpls, t)
	}
	sr.Templates = len(tpls)
	h.logf("scale: creating %d namespaces and %d SidecarTemplates (%d cluster-wide)", len(nss), len(tpls), cfg.scaleCluster)
	t0 := time.Now()
	if _, err := h.scaleAPI.createParallel(ctx, nss, 32); err != nil {
		return nil, err
	}
	if _, err := h.scaleAPI.createParallel(ctx, tpls, 32); err != nil {
		return nil, err
	}
	sr.CreateSeconds = time.Since(t0).Seconds()
	h.logf("scale: created in %.1fs (%.0f objects/s)", sr.CreateSeconds, float64(len(nss)+len(tpls))/sr.CreateSeconds)
	return sr, nil
}

// memoryRun starts variant v over the scale API server, lets it settle, sends admissions and measures it.
func (h *harness) memoryRun(ctx context.Context, v memoryVariant, start string, sr *scaleResult) (*memoryRun, error) {
	r := &memoryRun{Variant: v.label, Start: start}
	p, readyIn, ok, err := h.startSettled(ctx, v, start, r, sr.Templates+len(fixtures.Templates()), 900*time.Second, 120*time.Second)
	if err != nil {
		return nil, err
	}
	defer h.stop(p)
	pid := p.cmd.Process.Pid
	h.logf("memory: %s (%s) ready in %s, settled=%v %.0fs after start", v.label, start, readyIn.Round(time.Millisecond), ok, r.SettleS)

	// The scale cells' load: the realistic pod at every concurrency (64 connections hold buffers and goroutines).
	cpu := 0.0
	for _, c := range h.cfg.concurrency {
		res, err := h.runLoad(ctx, h.loadArgs("realistic", c, p, injector, 5*time.Second))
		if err != nil {
			return nil, err
		}
		r.Admissions += res.Requests
		r.Errors += res.Errors
		cpu += res.ServerCPUSeconds
		if res.Errors > 0 {
			h.failed = true
			h.note("memory: %s: %d admissions failed at c=%d: %s", v.label, res.Errors, c, res.FirstError)
		}
	}
	if r.Admissions > 0 {
		r.CPUPerAdmissionUS = cpu * 1e6 / float64(r.Admissions)
	}
	st, err := procStatus(pid)
	if err != nil {
		return nil, err
	}
	r.RSSKiB, r.HWMKiB = st["VmRSS"], st["VmHWM"]
	n, err := h.admitEveryNamespace(ctx, p, sr)
	r.Admissions += n
	if err != nil {
		h.failed = true
		r.Errors++
		h.note("memory: %s: admissions in the scale namespaces: %v", v.label, err)
	}
	if st, err = procStatus(pid); err != nil {
		return nil, err
	}
	r.AllNSKiB = st["VmRSS"]
	r.HWMKiB = max(r.HWMKiB, st["VmHWM"])
	if err := h.readEnd(r, p); err != nil {
		return nil, err
	}
	h.logf("memory: %s (%s): RSS %.1f MiB (every namespace admitted: %.1f MiB), peak %.1f MiB, heap in use %.1f MiB",
		v.label, start, kib(r.RSSKiB), kib(r.AllNSKiB), kib(r.HWMKiB), r.HeapInuse/(1<<20))
	if h.memoryProfileAddr != "" && v.label == "pprofserve" {
		if err := h.heapProfile(ctx, v.binary); err != nil {
			h.note("memory: heap profile: %v", err)
		}
	}
	return r, nil
}

// controllerDone waits (at most limit) until the status controller has reconciled at least templates
// templates and its queue is empty, from the injector's own metrics (controller-runtime's): a CPU-quiet second
// alone can fall between the paced reconciles of a restart.
func (h *harness) controllerDone(ctx context.Context, p *proc, templates int, limit time.Duration) bool {
	url := "http://" + p.metrics + "/metrics"
	for deadline := time.Now().Add(limit); time.Now().Before(deadline) && ctx.Err() == nil; time.Sleep(2 * time.Second) {
		m, err := scrapeAll(url)
		if err != nil {
			continue
		}
		done := sumSeries(m, "controller_runtime_reconcile_total", `controller="sidecartemplate-status"`)
		depth := sumSeries(m, "workqueue_depth", `name="sidecartemplate-status"`)
		if done >= float64(templates) && depth == 0 {
			return true
		}
	}
	h.note("%s: the status controller had not reconciled every template %s after start", p.name, limit)
	return false
}

// admitEveryNamespace sends one admission of the realistic pod, requesting one template, in every scale
// namespace, so that the injector compiles and indexes every namespace's templates (a cluster whose every
// namespace sees pods), and checks each answer: allowed, with the requested template and the 5 selecting ones.
func (h *harness) admitEveryNamespace(ctx context.Context, p *proc, sr *scaleResult) (int, error) {
	ca, err := os.ReadFile(filepath.Join(h.certDir, fixtures.CAFile))
	if err != nil {
		return 0, err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}}}
	defer hc.CloseIdleConnections()
	url := "https://" + p.addr + "/mutate-v1-pod?timeout=10s"
	n := 0
	for i := range sr.Namespaces {
		// tpl-01 is requested, the namespace's even-numbered templates select the pod's labels, and so does the
		// cluster-wide template i when i is a multiple of 3 (its namespaceSelector is this namespace's team label).
		want := 3 + 1 + (h.cfg.scalePerNS+1)/2
		if i < sr.Cluster && i%3 == 0 {
			want++
		}
		if ctx.Err() != nil {
			return n, ctx.Err()
		}
		pod, err := fixtures.PodObject("realistic", "tpl-01")
		if err != nil {
			return n, err
		}
		pod.Namespace = fixtures.ScaleNamespace(i)
		raw, err := json.Marshal(pod)
		if err != nil {
			return n, err
		}
		review, err := fixtures.Review(raw)
		if err != nil {
			return n, err
		}
		uid := fmt.Sprintf("00000000-0000-4000-8000-%012d", i)
		review = bytes.Replace(review, []byte(fixtures.UIDPlaceholder), []byte(uid), 1)
		// fixtures.Review asks for the benchmark's namespace; the request must name the pod's.
		reqNS := []byte(`"namespace":"` + fixtures.Namespace + `"`)
		if bytes.Count(review, reqNS) != 1 {
			return n, errors.New("fixtures.Review no longer names the request's namespace once: update admitEveryNamespace")
		}
		review = bytes.Replace(review, reqNS, []byte(`"namespace":"`+pod.Namespace+`"`), 1)
		resp, err := hc.Post(url, "application/json", bytes.NewReader(review))
		if err != nil {
			return n, err
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return n, err
		}
		n++
		if err := loadgen.NewVerifier(raw, want).Verify(resp.StatusCode, body, uid); err != nil {
			return n, fmt.Errorf("namespace %s: %w", pod.Namespace, err)
		}
	}
	return n, nil
}

// heapProfile fetches the live heap's profile from pprofserve, after a collection (gc=1), and keeps its top.
func (h *harness) heapProfile(ctx context.Context, binary string) error {
	dir := filepath.Join(h.cfg.outDir, "profiles")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	file := filepath.Join(dir, "memory-heap.pb.gz")
	resp, err := (&http.Client{Timeout: time.Minute}).Get("http://" + h.memoryProfileAddr + "/debug/pprof/heap?gc=1")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return errors.New(resp.Status)
	}
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	f.Close()
	if resp, err := (&http.Client{Timeout: time.Minute}).Get("http://" + h.memoryProfileAddr + "/debug/pprof/heap?gc=1&debug=1"); err == nil {
		// The runtime.MemStats the text profile ends with are read after the collection gc=1 asks for.
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if _, rest, ok := bytes.Cut(body, []byte("\n# HeapAlloc = ")); ok {
			n, _, _ := bytes.Cut(rest, []byte("\n"))
			h.memoryLiveHeap, _ = strconv.ParseFloat(string(n), 64)
		}
	}
	text, err := exec.CommandContext(ctx, "go", "tool", "pprof", "-top", "-nodecount=25", "-sample_index=inuse_space", binary, file).CombinedOutput()
	if err != nil {
		return fmt.Errorf("go tool pprof: %v: %s", err, text)
	}
	top := filepath.Join(dir, "memory-heap-top.txt")
	h.memoryProfileTop = "--- live heap (inuse_space) of pprofserve after the admissions: " + top + "\n" + string(text)
	return os.WriteFile(top, text, 0o644)
}

func (h *harness) reportMemory(sr *scaleResult, runs []memoryRun, profile string) {
	w := os.Stdout
	fmt.Fprintf(w, "\nsidecar-injector memory at scale: %d SidecarTemplates (%d cluster-wide) in %d namespaces; GOMAXPROCS=1; load average at the end %s\n",
		sr.Templates, sr.Cluster, sr.Namespaces, loadAvg())
	fmt.Fprintf(w, "RSS: VmRSS after the benchmark pod's admissions (5 s at each c=%v); all-ns: after one more admission in every scale namespace;\n", h.cfg.concurrency)
	fmt.Fprintln(w, "peak: VmHWM; heap: the Go runtime's heap spans in use / allocated objects, live or not yet collected (heap_alloc) / next GC goal, at the end")
	fmt.Fprintln(w)
	hdr := fmt.Sprintf("%-22s %-12s %8s %9s %8s %9s %8s %8s %9s %9s %9s %7s %9s %6s",
		"variant", "start", "ready ms", "settled s", "RSS MiB", "all-ns MiB", "peak MiB", "ready MiB", "heap MiB", "alloc MiB", "goal MiB", "CPU s", "µs/adm", "errors")
	fmt.Fprintln(w, hdr)
	fmt.Fprintln(w, strings.Repeat("-", len(hdr)))
	for _, r := range runs {
		settled := fmt.Sprintf("%.0f", r.SettleS)
		if !r.Settled {
			settled += "!"
		}
		fmt.Fprintf(w, "%-22s %-12s %8.0f %9s %8.1f %10.1f %8.1f %9.1f %9.1f %9.1f %9.1f %7.1f %9.0f %6d\n",
			r.Variant, r.Start, r.ReadyMS, settled, kib(r.RSSKiB), kib(r.AllNSKiB), kib(r.HWMKiB), kib(r.ReadyKiB),
			r.HeapInuse/(1<<20), r.HeapAlloc/(1<<20), r.NextGC/(1<<20), r.CPUSeconds, r.CPUPerAdmissionUS, r.Errors)
	}
	fmt.Fprintln(w, "\nwhere the RSS is at the end (all-ns): anonymous = Go heap in use + free heap kept + stacks + runtime metadata (+ what")
	fmt.Fprintln(w, "the runtime has not touched or cgo); file = the binary's pages touched so far")
	bhdr := fmt.Sprintf("%-22s %-12s %8s %8s %8s %9s %9s %8s %8s", "variant", "start", "RSS MiB", "anon MiB", "file MiB", "heap MiB", "free MiB", "stk MiB", "rt MiB")
	fmt.Fprintln(w, bhdr)
	fmt.Fprintln(w, strings.Repeat("-", len(bhdr)))
	for _, r := range runs {
		b := r.Breakdown
		fmt.Fprintf(w, "%-22s %-12s %8.1f %8.1f %8.1f %9.1f %9.1f %8.1f %8.1f\n", r.Variant, r.Start, kib(b.RSSAnonKiB+b.RSSFileKiB),
			kib(b.RSSAnonKiB), kib(b.RSSFileKiB), b.HeapInuse/(1<<20), b.HeapFree/(1<<20), b.Stacks/(1<<20), b.Runtime/(1<<20))
	}
	for _, r := range runs {
		if r.Variant != "pprofserve" && r.Start != "idle" {
			h.verdict(w, r.Errors == 0 && r.RSSKiB > 0 && r.RSSKiB < 100*1024, "%-22s %-12s RSS %.1f MiB < 100 MiB (every answer verified: %d errors)",
				r.Variant, r.Start, kib(r.RSSKiB), r.Errors)
		}
	}
	for _, n := range h.notes {
		fmt.Fprintln(w, "note:", n)
	}
	if h.memoryLiveHeap > 0 {
		fmt.Fprintf(w, "live heap of pprofserve after a forced collection (its heap profile's HeapAlloc): %.1f MiB\n", h.memoryLiveHeap/(1<<20))
	}
	if profile != "" {
		fmt.Fprintln(w, "\n"+profile)
	}
	fmt.Fprintf(w, "logs, profiles and memory.json in %s\n", h.cfg.outDir)
}

func kib(k int64) float64 { return float64(k) / 1024 }

// procStatus returns the kB fields of /proc/PID/status (VmRSS, VmHWM, ...).
func procStatus(pid int) (map[string]int64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return nil, err
	}
	out := map[string]int64{}
	for line := range strings.SplitSeq(string(data), "\n") {
		name, rest, ok := strings.Cut(line, ":")
		f := strings.Fields(rest)
		if !ok || len(f) != 2 || f[1] != "kB" {
			continue
		}
		if v, err := strconv.ParseInt(f[0], 10, 64); err == nil {
			out[name] = v
		}
	}
	if out["VmRSS"] == 0 {
		return nil, fmt.Errorf("/proc/%d/status: no VmRSS", pid)
	}
	return out, nil
}

// scrape returns the samples of a Prometheus text exposition, keyed by name and labels as written
// (`name{a="b"}`; unlabelled ones by name alone), and checks that it has the Go runtime's figures.
func scrape(url string) (map[string]float64, error) {
	m, err := scrapeAll(url)
	if err != nil {
		return nil, err
	}
	if _, ok := m["go_memstats_heap_inuse_bytes"]; !ok {
		return nil, fmt.Errorf("%s: no go_memstats_heap_inuse_bytes", url)
	}
	return m, nil
}

// sumSeries adds up the series of metric whose labels contain label.
func sumSeries(m map[string]float64, metric, label string) float64 {
	total := 0.0
	for k, v := range m {
		if rest, ok := strings.CutPrefix(k, metric+"{"); ok && strings.Contains(rest, label) {
			total += v
		}
	}
	return total
}

func scrapeAll(url string) (map[string]float64, error) {
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: %s", url, resp.Status)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		i := strings.LastIndexByte(line, ' ')
		if i < 0 || strings.HasPrefix(line, "#") {
			continue
		}
		name, value := line[:i], line[i+1:]
		if v, err := strconv.ParseFloat(strings.TrimSpace(value), 64); err == nil {
			out[name] = v
		}
	}
	return out, sc.Err()
}
