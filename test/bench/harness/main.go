// Command harness runs the end-to-end benchmark behind `make bench` (hack/bench.sh builds the programs and
// calls it): it starts a kube-apiserver and etcd (controller-runtime's envtest, from $KUBEBUILDER_ASSETS),
// creates the two SidecarTemplates the benchmark pods receive, starts the real `sidecar-injector serve` and the
// two floor servers as separate processes pinned to CPU 0 with GOMAXPROCS=1, and drives each of them in turn
// with the load tool pinned to CPU 1: every pod size at every concurrency, the three servers interleaved. It
// then profiles the realistic case, creates the scale scenario's templates in a second API server, measures
// an injector serving them from a cold start beside the 2-template one and profiles it at that scale. It prints one table, the engine's Go benchmarks, and a
// PASS/FAIL line per goal.
package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/go-logr/logr"

	"github.com/sidecar-dev/sidecar-injector/internal/fixtures"
	"github.com/sidecar-dev/sidecar-injector/internal/server"
	"github.com/sidecar-dev/sidecar-injector/test/bench/loadgen"
)

type config struct {
	root, binDir, outDir string
	quick                bool
	duration, warmup     time.Duration
	concurrency          []int
	sizes                []string
	scaleNamespaces      int
	scalePerNS           int
	scaleCluster         int
	profile              bool
	profileDuration      time.Duration
	profileConcurrency   int
	profileSize          string
	goBench              bool
	goBenchTime          string
	pin                  bool
	strict               bool
	memory               bool
	memoryVariants       memoryVariants
}

func main() {
	var cfg config
	var conc, sizes string
	flag.StringVar(&cfg.root, "root", ".", "repository root")
	flag.StringVar(&cfg.binDir, "bin-dir", "", "directory holding sidecar-injector, floor, load and pprofserve (built by hack/bench.sh)")
	flag.StringVar(&cfg.outDir, "out", "bin/bench", "directory for logs, profiles and results.json")
	flag.BoolVar(&cfg.quick, "quick", false, "smoke run: short cells, reduced scale scenario, no profile")
	flag.DurationVar(&cfg.duration, "duration", 0, "measured window per cell (default 5s, quick 1s)")
	flag.DurationVar(&cfg.warmup, "warmup", 0, "warm-up per cell (default 1s, quick 300ms)")
	flag.StringVar(&conc, "concurrency", "1,8,64", "concurrency levels")
	flag.StringVar(&sizes, "sizes", "small,realistic,large", "pod sizes")
	flag.IntVar(&cfg.scaleNamespaces, "scale-namespaces", 0, "scale scenario: namespaces with templates (default 1000, quick 100; -1 skips the scenario)")
	flag.IntVar(&cfg.scalePerNS, "scale-per-namespace", 10, "scale scenario: templates per namespace")
	flag.IntVar(&cfg.scaleCluster, "scale-cluster", 100, "scale scenario: cluster-wide templates with selectors and namespace selectors")
	flag.BoolVar(&cfg.profile, "profile", true, "collect CPU and allocation profiles of the -profile-size pod, with 2 templates and at scale (not in quick mode)")
	flag.IntVar(&cfg.profileConcurrency, "profile-concurrency", 8, "concurrency of the profiled runs")
	flag.StringVar(&cfg.profileSize, "profile-size", "realistic", "pod size of the profiled runs (small, realistic, large)")
	flag.DurationVar(&cfg.profileDuration, "profile-duration", 10*time.Second, "length of the profiled run")
	flag.BoolVar(&cfg.goBench, "go-bench", true, "run the engine's Go benchmarks (BenchmarkInject)")
	flag.StringVar(&cfg.goBenchTime, "go-benchtime", "", "-benchtime of the Go benchmarks (default 1s, quick 100ms)")
	flag.BoolVar(&cfg.pin, "pin", true, "pin servers to CPU 0 and the load tool to CPU 1 with taskset")
	flag.BoolVar(&cfg.strict, "strict", false, "exit 1 when a goal fails")
	flag.BoolVar(&cfg.memory, "memory", false, "measure only the injector's memory over the scale scenario (memory.go), in a few minutes")
	flag.Var(&cfg.memoryVariants, "memory-variant", "with -memory: label=path[,NAME=VALUE...], a build and environment to measure; repeatable (default: bin-dir's sidecar-injector)")
	flag.Parse()
	cfg.concurrency = parseInts(conc)
	cfg.sizes = strings.Split(sizes, ",")
	if cfg.duration == 0 {
		cfg.duration = pick(cfg.quick, time.Second, 5*time.Second)
	}
	if cfg.warmup == 0 {
		cfg.warmup = pick(cfg.quick, 300*time.Millisecond, time.Second)
	}
	if cfg.scaleNamespaces == 0 {
		cfg.scaleNamespaces = pick(cfg.quick, 100, 1000)
	}
	if cfg.goBenchTime == "" {
		cfg.goBenchTime = pick(cfg.quick, "100ms", "1s")
	}
	if cfg.quick {
		cfg.profile = false
	}
	logf.SetLogger(logr.Discard())

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	h := &harness{cfg: cfg}
	code := 0
	run := h.run
	if cfg.memory {
		run = h.runMemory
	}
	if err := run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		code = 2
	}
	h.cleanup()
	if code == 0 && cfg.strict && h.failed {
		code = 1
	}
	os.Exit(code)
}

func pick[T any](quick bool, q, full T) T {
	if quick {
		return q
	}
	return full
}

func parseInts(s string) []int {
	var out []int
	for f := range strings.SplitSeq(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			fmt.Fprintf(os.Stderr, "bench: bad concurrency %q\n", f)
			os.Exit(2)
		}
		out = append(out, n)
	}
	return out
}

// Server kinds, in the table's order.
// scaleSettledPods label the scale scenario's passes once every process settled.
var scaleSettledPods = []string{"scale@settled#1", "scale@settled#2"}

const (
	injector    = "injector"
	reviewFloor = "review-floor"
	podFloor    = "pod-floor"
	// scaleReadyPod labels the scale scenario's first pass (the realistic pod), from the injector's Ready on;
	// scaleSettledPods the two passes once everything settled.
	scaleReadyPod = "scale@ready"
	// twoTemplates is, in the scale scenario's cells, the injector with 2 templates measured beside the one
	// with every scale template.
	twoTemplates = "injector-2tpl"
)

type harness struct {
	cfg     config
	certDir string
	// api serves the 2-template cells; scaleAPI, a second API server started for the scale scenario, holds the
	// same 2 templates plus the scale templates. Two API servers let the 2-template injector keep running
	// beside the scale one, so that the scale goal compares cells measured side by side in one window.
	api, scaleAPI *apiServer

	mu      sync.Mutex
	apis    []*apiServer // started, to stop
	procs   []*proc
	cells   []cell
	failed  bool
	notes   []string
	started time.Time

	// memoryProfileAddr is pprofserve's /debug/pprof address in -memory mode; memoryProfileTop the top of its
	// heap profile.
	memoryProfileAddr, memoryProfileTop string
	memoryLiveHeap                      float64
}

// apiServer is one kube-apiserver and etcd (envtest) and how the injector and the harness reach it.
type apiServer struct {
	name       string
	env        *envtest.Environment
	kubeconfig string
	k8s        client.Client
}

type proc struct {
	name string
	cmd  *exec.Cmd
	log  *os.File
	addr string // webhook host:port
	// health and metrics are the injector's probe and metrics addresses ("" for a floor).
	health, metrics string
	done            chan struct{}
}

type cell struct {
	Pod         string          `json:"pod"`
	Concurrency int             `json:"concurrency"`
	Server      string          `json:"server"`
	Result      *loadgen.Result `json:"result"`
}

func (h *harness) note(format string, args ...any) {
	h.notes = append(h.notes, fmt.Sprintf(format, args...))
}

func (h *harness) logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "[%6.1fs] "+format+"\n", append([]any{time.Since(h.started).Seconds()}, args...)...)
}

func (h *harness) run(ctx context.Context) error {
	h.started = time.Now()
	cfg := h.cfg
	if err := os.MkdirAll(filepath.Join(cfg.outDir, "logs"), 0o755); err != nil {
		return err
	}
	if cfg.pin {
		if _, err := exec.LookPath("taskset"); err != nil {
			return errors.New("taskset not found (util-linux); install it or pass -pin=false")
		}
		if runtime.NumCPU() < 2 {
			return errors.New("pinning needs 2 CPUs; pass -pin=false")
		}
	}
	for _, b := range []string{"sidecar-injector", "floor", "load", "pprofserve"} {
		if _, err := os.Stat(filepath.Join(cfg.binDir, b)); err != nil {
			return fmt.Errorf("-bin-dir: %w (hack/bench.sh builds them)", err)
		}
	}
	h.logf("machine: %d CPUs, load average %s", runtime.NumCPU(), loadAvg())

	var goBench []goBenchLine
	var goBenchErr error
	if cfg.goBench {
		h.logf("engine Go benchmarks (BenchmarkInject, -benchtime=%s, pinned to CPU 0)", cfg.goBenchTime)
		goBench, goBenchErr = h.runGoBench(ctx)
	}

	h.certDir = filepath.Join(cfg.outDir, "certs")
	var err error
	if err = fixtures.WriteCerts(h.certDir); err != nil {
		return err
	}
	if h.api, err = h.startAPIServer(ctx, "api"); err != nil {
		return err
	}

	inj, readyIn, err := h.startInjector(ctx, h.api, "injector", cfg.binDir+"/sidecar-injector", "")
	if err != nil {
		return err
	}
	h.logf("injector ready %s after start", readyIn.Round(time.Millisecond))
	review, err := h.startFloor(ctx, "review")
	if err != nil {
		return err
	}
	pod, err := h.startFloor(ctx, "pod")
	if err != nil {
		return err
	}
	servers := map[string]*proc{injector: inj, reviewFloor: review, podFloor: pod}
	order := []string{injector, reviewFloor, podFloor}
	h.settle(inj)

	i := 0
	for _, size := range cfg.sizes {
		for _, c := range cfg.concurrency {
			for k := range order { // rotate who goes first, so no server always follows the same one
				name := order[(i+k)%len(order)]
				if err := h.measure(ctx, size, size, c, name, servers[name]); err != nil {
					return err
				}
			}
			i++
		}
	}

	var profiles []string
	if cfg.profile {
		p, err := h.profile(ctx, h.api, cfg.profileSize, "2 templates")
		if err != nil {
			h.note("profiles: %v", err)
		} else {
			profiles = p
		}
	}

	var scale *scaleResult
	if cfg.scaleNamespaces > 0 {
		scale, err = h.runScale(ctx, inj, review)
		if err != nil {
			return err
		}
		if cfg.profile {
			// The same profile with every scale template in the cache: what the scale goal's gap is made of.
			p, err := h.profile(ctx, h.scaleAPI, "scale", fmt.Sprintf("%d templates", scale.Templates+len(fixtures.Templates())))
			if err != nil {
				h.note("scale profiles: %v", err)
			} else {
				profiles = append(profiles, p...)
			}
		}
	}

	h.report(goBench, goBenchErr, scale, profiles)
	return h.writeResults(goBench, scale)
}

// ---------------------------------------------------------------- control plane and objects

// startAPIServer starts a kube-apiserver and etcd and creates the namespaces and the 2 templates every
// injector of the benchmark serves.
func (h *harness) startAPIServer(ctx context.Context, name string) (*apiServer, error) {
	a := &apiServer{name: name}
	a.env = &envtest.Environment{
		CRDDirectoryPaths:     []string{filepath.Join(h.cfg.root, "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
		Scheme:                server.NewScheme(),
	}
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		a.env.BinaryAssetsDirectory = filepath.Join(h.cfg.root, "bin")
	}
	t0 := time.Now()
	cfg, err := a.env.Start()
	if err != nil {
		return nil, fmt.Errorf("start kube-apiserver and etcd (KUBEBUILDER_ASSETS or bin/): %w", err)
	}
	h.mu.Lock()
	h.apis = append(h.apis, a)
	h.mu.Unlock()
	h.logf("%s: kube-apiserver and etcd up in %s", name, time.Since(t0).Round(time.Millisecond))
	user, err := a.env.AddUser(envtest.User{Name: "bench-injector", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return nil, err
	}
	kc, err := user.KubeConfig()
	if err != nil {
		return nil, err
	}
	a.kubeconfig = filepath.Join(h.cfg.outDir, name+".kubeconfig")
	if err := os.WriteFile(a.kubeconfig, kc, 0o600); err != nil {
		return nil, err
	}
	fast := rest.CopyConfig(cfg)
	fast.QPS, fast.Burst = 5000, 10000
	if a.k8s, err = client.New(fast, client.Options{Scheme: server.NewScheme()}); err != nil {
		return nil, err
	}
	return a, a.createBase(ctx)
}

func (a *apiServer) createBase(ctx context.Context) error {
	for _, ns := range []*corev1.Namespace{
		{ObjectMeta: metav1.ObjectMeta{Name: fixtures.InjectorNamespace}},
		{ObjectMeta: metav1.ObjectMeta{Name: fixtures.Namespace, Labels: fixtures.NamespaceLabels}},
	} {
		if err := a.k8s.Create(ctx, ns); err != nil {
			return fmt.Errorf("create namespace %s: %w", ns.Name, err)
		}
	}
	for _, t := range fixtures.Templates() {
		if err := a.k8s.Create(ctx, t); err != nil {
			return fmt.Errorf("create SidecarTemplate %s/%s: %w", t.Namespace, t.Name, err)
		}
	}
	return nil
}

// createParallel creates objs with workers goroutines and returns how long it took.
func (a *apiServer) createParallel(ctx context.Context, objs []client.Object, workers int) (time.Duration, error) {
	t0 := time.Now()
	var next atomic.Int64
	var firstErr error
	var once sync.Once
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= len(objs) || ctx.Err() != nil {
					return
				}
				for attempt := 0; ; attempt++ {
					err := a.k8s.Create(ctx, objs[i])
					if err == nil {
						break
					}
					if attempt < 5 && ctx.Err() == nil {
						time.Sleep(time.Duration(attempt+1) * 100 * time.Millisecond)
						continue
					}
					once.Do(func() { firstErr = fmt.Errorf("create %s: %w", client.ObjectKeyFromObject(objs[i]), err) })
					return
				}
			}
		})
	}
	wg.Wait()
	return time.Since(t0), firstErr
}

// ---------------------------------------------------------------- processes

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// start runs binary with args as a separate process, pinned to CPU 0 with GOMAXPROCS=1 (when pinning).
func (h *harness) start(name, binary string, args []string, extraEnv ...string) (*proc, error) {
	logFile, err := os.Create(filepath.Join(h.cfg.outDir, "logs", name+".log"))
	if err != nil {
		return nil, err
	}
	argv := append([]string{binary}, args...)
	if h.cfg.pin {
		argv = append([]string{"taskset", "-c", "0"}, argv...)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(append(os.Environ(), "GOMAXPROCS=1"), extraEnv...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, err
	}
	p := &proc{name: name, cmd: cmd, log: logFile, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(p.done) }()
	h.mu.Lock()
	h.procs = append(h.procs, p)
	h.mu.Unlock()
	return p, nil
}

func (h *harness) stop(p *proc) {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
	p.log.Close()
}

func (h *harness) cleanup() {
	h.mu.Lock()
	procs := h.procs
	h.mu.Unlock()
	for _, p := range procs {
		h.stop(p)
	}
	for _, a := range h.apis {
		if err := a.env.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "bench: stop envtest (%s): %v\n", a.name, err)
		}
	}
}

// startInjector starts the injector (or pprofserve, which runs the same command) and returns when /readyz
// answers 200 and the webhook completes a TLS handshake; the duration is from process start.
func (h *harness) startInjector(ctx context.Context, api *apiServer, name, binary string, pprofAddr string) (*proc, time.Duration, error) {
	var env []string
	if pprofAddr != "" {
		env = append(env, "BENCH_PPROF_ADDR="+pprofAddr)
	}
	return h.startInjectorEnv(ctx, api, name, binary, env)
}

// startInjectorEnv is startInjector with env added to the process's environment.
func (h *harness) startInjectorEnv(ctx context.Context, api *apiServer, name, binary string, env []string) (*proc, time.Duration, error) {
	webhookAddr, err1 := freeAddr()
	metricsAddr, err2 := freeAddr()
	healthAddr, err3 := freeAddr()
	if err := errors.Join(err1, err2, err3); err != nil {
		return nil, 0, err
	}
	host, port, _ := net.SplitHostPort(webhookAddr)
	t0 := time.Now()
	p, err := h.start(name, binary, []string{"serve",
		"--kubeconfig=" + api.kubeconfig, "--cert-dir=" + h.certDir,
		"--webhook-host=" + host, "--webhook-port=" + port,
		"--metrics-bind-address=" + metricsAddr, "--health-probe-bind-address=" + healthAddr,
		"--namespace=" + fixtures.InjectorNamespace,
	}, env...)
	if err != nil {
		return nil, 0, err
	}
	p.addr, p.health, p.metrics = webhookAddr, healthAddr, metricsAddr
	hc := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(60 * time.Second)
	var last error
	for time.Now().Before(deadline) && ctx.Err() == nil {
		select {
		case <-p.done:
			return nil, 0, fmt.Errorf("%s exited before it was ready; see %s", name, p.log.Name())
		default:
		}
		if last = h.ready(hc, p); last == nil {
			return p, time.Since(t0), nil
		}
		time.Sleep(5 * time.Millisecond)
	}
	return nil, 0, fmt.Errorf("%s not ready after 60s: %v (log: %s)", name, last, p.log.Name())
}

func (h *harness) ready(hc *http.Client, p *proc) error {
	resp, err := hc.Get("http://" + p.health + "/readyz")
	if err != nil {
		return err
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("/readyz: %s: %s", resp.Status, bytes.TrimSpace(body))
	}
	return h.handshake(p.addr)
}

func (h *harness) handshake(addr string) error {
	ca, err := os.ReadFile(filepath.Join(h.certDir, fixtures.CAFile))
	if err != nil {
		return err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: time.Second}, "tcp", addr, &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"})
	if err != nil {
		return err
	}
	return conn.Close()
}

func (h *harness) startFloor(ctx context.Context, mode string) (*proc, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	p, err := h.start(mode+"-floor", filepath.Join(h.cfg.binDir, "floor"), []string{"-mode=" + mode, "-addr=" + addr, "-cert-dir=" + h.certDir})
	if err != nil {
		return nil, err
	}
	p.addr = addr
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline) && ctx.Err() == nil; time.Sleep(10 * time.Millisecond) {
		if h.handshake(addr) == nil {
			return p, nil
		}
	}
	return nil, fmt.Errorf("%s floor did not start; see %s", mode, p.log.Name())
}

// settle waits (at most 120 s) until p used less than 2% of a CPU over a second: the injector's status
// controller reconciles every template after a start, which is not what the cells measure. It returns how long
// that took and whether p did settle.
func (h *harness) settle(p *proc) (time.Duration, bool) {
	return h.settleAll(p, nil, 120*time.Second)
}

// settleAll waits (at most limit) until p used less than 2% of a CPU over a second and the processes others
// (an API server and its etcd, another injector) less than 5% together: the scale cells must not measure them
// working off the scale injector's start. It returns how long that took and whether all did settle; when they
// did not, it says so in a note.
func (h *harness) settleAll(p *proc, others []int, limit time.Duration) (time.Duration, bool) {
	t0 := time.Now()
	pids := append([]int{p.cmd.Process.Pid}, others...)
	prev := make([]float64, len(pids))
	for i, pid := range pids {
		prev[i], _ = loadgen.ProcessCPUSeconds(pid)
	}
	for time.Since(t0) < limit {
		time.Sleep(time.Second)
		own, rest := 0.0, 0.0
		for i, pid := range pids {
			cur, err := loadgen.ProcessCPUSeconds(pid)
			if err != nil {
				h.note("settle: %v", err)
				return time.Since(t0), false
			}
			if i == 0 {
				own += cur - prev[i]
			} else {
				rest += cur - prev[i]
			}
			prev[i] = cur
		}
		if own <= 0.02 && rest <= 0.05 {
			return time.Since(t0), true
		}
	}
	h.note("%s (or its API server, etcd, the other injector) was still busy %s after start; the cells after it include that work",
		p.name, time.Since(t0).Round(time.Second))
	return time.Since(t0), false
}

// controlPlanePIDs finds the processes of a's kube-apiserver and etcd by the directories envtest gave them
// (envtest does not expose their pids).
func controlPlanePIDs(a *apiServer) []int {
	marks := []string{"--cert-dir=" + a.env.ControlPlane.APIServer.CertDir, "--data-dir=" + a.env.ControlPlane.Etcd.DataDir}
	entries, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		for _, m := range marks {
			if slices.Contains(strings.Split(string(cmdline), "\x00"), m) {
				pids = append(pids, pid)
				break
			}
		}
	}
	return pids
}

// ---------------------------------------------------------------- load

func (h *harness) loadArgs(size string, c int, p *proc, server string, duration time.Duration) []string {
	args := []string{filepath.Join(h.cfg.binDir, "load"), "-json",
		"-url=https://" + p.addr + "/mutate-v1-pod?timeout=10s",
		"-ca=" + filepath.Join(h.certDir, fixtures.CAFile),
		"-pod=" + size, "-c=" + strconv.Itoa(c),
		"-duration=" + duration.String(), "-warmup=" + h.cfg.warmup.String(),
		"-server-pid=" + strconv.Itoa(p.cmd.Process.Pid),
	}
	if server == injector {
		args = append(args, "-expect-containers="+strconv.Itoa(fixtures.ContainersAfterInjection(size)))
	}
	if h.cfg.pin {
		args = append(args, "-server-cpu=0")
		args = append([]string{"taskset", "-c", "1"}, args...)
	}
	return args
}

func (h *harness) runLoad(ctx context.Context, args []string) (*loadgen.Result, error) {
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var res loadgen.Result
	if jerr := json.Unmarshal(stdout.Bytes(), &res); jerr != nil {
		return nil, fmt.Errorf("load tool: %v: %s", err, bytes.TrimSpace(stderr.Bytes()))
	}
	return &res, nil
}

func (h *harness) measure(ctx context.Context, label, size string, c int, server string, p *proc) error {
	res, err := h.runLoad(ctx, h.loadArgs(size, c, p, server, h.cfg.duration))
	if err != nil {
		return err
	}
	h.logf("%-16s c=%-3d %-15s %8.0f req/s  p99 %7.2fms  cpu %6.0fµs/req  rss %6.1f MiB  other %3.0f%%  errors %d %s",
		label, c, server, res.RPS, res.P99/1e3, res.ServerCPUPerReqUS, float64(res.ServerRSSKiB)/1024, res.OtherCPUPct, res.Errors, res.FirstError)
	if res.Errors > 0 {
		h.failed = true
	}
	h.cells = append(h.cells, cell{Pod: label, Concurrency: c, Server: server, Result: res})
	return nil
}

func (h *harness) find(pod string, c int, server string) *loadgen.Result {
	for _, x := range h.cells {
		if x.Pod == pod && x.Concurrency == c && x.Server == server {
			return x.Result
		}
	}
	return nil
}

// ---------------------------------------------------------------- profiles

// profile runs pprofserve (the injector plus /debug/pprof) against the templates in api, loads
// it with the -profile-size pod (default realistic) at -profile-concurrency, and writes a CPU profile and an allocation profile of that window into
// profiles/ with tag in the file names. It returns the top of both, titled with scenario.
func (h *harness) profile(ctx context.Context, api *apiServer, tag, scenario string) ([]string, error) {
	pprofAddr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	bin := filepath.Join(h.cfg.binDir, "pprofserve")
	p, _, err := h.startInjector(ctx, api, "pprofserve-"+tag, bin, pprofAddr)
	if err != nil {
		return nil, err
	}
	defer h.stop(p)
	h.settle(p)
	dir := filepath.Join(h.cfg.outDir, "profiles")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	size := h.cfg.profileSize
	h.logf("profiling the %s pod at c=%d, %s, for %s (pprofserve = serve + /debug/pprof)", size, h.cfg.profileConcurrency, scenario, h.cfg.profileDuration)
	d := h.cfg.profileDuration
	loadDone := make(chan error, 1)
	go func() {
		_, err := h.runLoad(ctx, h.loadArgs(size, h.cfg.profileConcurrency, p, injector, d+2*time.Second))
		loadDone <- err
	}()
	time.Sleep(h.cfg.warmup + 500*time.Millisecond)
	base := "http://" + pprofAddr + "/debug/pprof/"
	fetch := func(url, file string) error {
		resp, err := (&http.Client{Timeout: d + 30*time.Second}).Get(url)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s: %s", url, resp.Status)
		}
		f, err := os.Create(file)
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = io.Copy(f, resp.Body)
		return err
	}
	allocs0, allocs1, cpu := filepath.Join(dir, tag+"-allocs-before.pb.gz"), filepath.Join(dir, tag+"-allocs-after.pb.gz"), filepath.Join(dir, tag+"-cpu.pb.gz")
	if err := fetch(base+"allocs", allocs0); err != nil {
		return nil, err
	}
	if err := fetch(base+"profile?seconds="+strconv.Itoa(int(d.Seconds())), cpu); err != nil {
		return nil, err
	}
	if err := fetch(base+"allocs", allocs1); err != nil {
		return nil, err
	}
	// The runtime's own account of its memory (heap in use, idle, released; stacks; GC metadata), to tell the
	// resident memory apart.
	memstats := filepath.Join(dir, tag+"-memstats.txt")
	if err := fetch(base+"heap?debug=1", memstats); err != nil {
		return nil, err
	}
	if text, err := os.ReadFile(memstats); err == nil {
		if i := bytes.Index(text, []byte("\n# runtime.MemStats")); i >= 0 {
			_ = os.WriteFile(memstats, text[i+1:], 0o644)
		}
	}
	if err := <-loadDone; err != nil {
		return nil, err
	}
	var out []string
	for _, q := range []struct {
		title, file string
		args        []string
	}{
		{fmt.Sprintf("CPU (%s pod, %s, c=%d)", size, scenario, h.cfg.profileConcurrency), tag + "-cpu-top.txt", []string{"-top", "-nodecount=20", bin, cpu}},
		{"alloc_space (same run)", tag + "-alloc-space-top.txt", []string{"-top", "-nodecount=20", "-sample_index=alloc_space", "-base", allocs0, bin, allocs1}},
	} {
		cmd := exec.CommandContext(ctx, "go", append([]string{"tool", "pprof"}, q.args...)...)
		text, err := cmd.CombinedOutput()
		if err != nil {
			return nil, fmt.Errorf("go tool pprof: %v: %s", err, text)
		}
		if err := os.WriteFile(filepath.Join(dir, q.file), text, 0o644); err != nil {
			return nil, err
		}
		out = append(out, "--- "+q.title+": "+filepath.Join(dir, q.file)+"\n"+string(text))
	}
	return out, nil
}

// ---------------------------------------------------------------- scale

type scaleResult struct {
	Templates     int     `json:"templates"`
	Namespaces    int     `json:"namespaces"`
	Cluster       int     `json:"cluster_templates"`
	CreateSeconds float64 `json:"create_seconds"`
	ReadySeconds  float64 `json:"ready_seconds"`
	SettleSeconds float64 `json:"settle_seconds"`
	// Settled: the scale injector, its API server and etcd and the 2-template injector were quiet before the
	// settled passes; without it they are reported but not a pass.
	Settled bool  `json:"settled"`
	RSSKiB  int64 `json:"rss_kib"`
	Reduced bool  `json:"reduced"`
}

// runScale starts a second API server, creates the scale scenario's namespaces and templates in it, starts an
// injector against it (timing its readiness), and measures that injector, the 2-template one (two, still
// serving the first API server) and the review floor side by side, rotating who goes first at each
// concurrency: the scale goal compares the first two within one window, so that the machine's drift between
// the main table and this phase (the floors alone move by 20-30% over a run) does not decide it.
func (h *harness) runScale(ctx context.Context, two, review *proc) (*scaleResult, error) {
	cfg := h.cfg
	sr, err := h.createScale(ctx)
	if err != nil {
		return nil, err
	}
	// The API server is answering (it just served every create); the injector starts now.
	inj, readyIn, err := h.startInjector(ctx, h.scaleAPI, "injector-scale", filepath.Join(cfg.binDir, "sidecar-injector"), "")
	if err != nil {
		return nil, err
	}
	sr.ReadySeconds = readyIn.Seconds()
	h.logf("scale: injector ready %s after start", readyIn.Round(time.Millisecond))
	// The 2-template injector has served every cell of the main table; the scale one has served nothing yet.
	// The first pass starts at once: admissions from the first second after Ready, while the status
	// controller works off its start (the chart's single CPU serves both). Its first cell is measured after one
	// unmeasured run of the new process, as every other cell is.
	if _, err := h.runLoad(ctx, h.loadArgs("realistic", 8, inj, injector, 3*time.Second)); err != nil {
		return nil, err
	}
	servers := map[string]*proc{injector: inj, twoTemplates: two, reviewFloor: review}
	if err := h.scalePass(ctx, scaleReadyPod, servers); err != nil {
		return nil, err
	}
	// Then twice more once every process that the scale start set to work is quiet, so that a pass cannot
	// be decided by the luck of what else ran.
	cp := controlPlanePIDs(h.scaleAPI)
	others := append(cp, two.cmd.Process.Pid)
	settled, ok := h.settleAll(inj, others, 600*time.Second)
	if len(cp) < 2 {
		h.note("scale: found %d of the scale API server's 2 processes (kube-apiserver, etcd): their quiet is unknown, so the settled passes are not a pass", len(cp))
		ok = false
	}
	sr.SettleSeconds, sr.Settled = settled.Seconds()+sr.ReadySeconds, ok
	h.logf("scale: injector, API server, etcd and the other injector settled=%v %.1fs after start (%d processes watched)",
		ok, sr.SettleSeconds, len(others)+1)
	for _, pass := range scaleSettledPods {
		if err := h.scalePass(ctx, pass, servers); err != nil {
			return nil, err
		}
	}
	if rss, err := loadgen.ProcessRSSKiB(inj.cmd.Process.Pid); err == nil {
		sr.RSSKiB = rss
	}
	h.stop(inj) // CPU 0 is the profile's next
	h.stop(two)
	return sr, nil
}

// scalePass measures the scale injector, the 2-template one and the review floor at every concurrency under
// label, rotating who goes first.
func (h *harness) scalePass(ctx context.Context, label string, servers map[string]*proc) error {
	order := []string{injector, twoTemplates, reviewFloor}
	for i, c := range h.cfg.concurrency {
		for k := range order {
			name := order[(i+k)%len(order)]
			if err := h.measure(ctx, label, "realistic", c, name, servers[name]); err != nil {
				return err
			}
		}
	}
	return nil
}

// ---------------------------------------------------------------- Go benchmarks

type goBenchLine struct {
	Name     string  `json:"name"`
	NsOp     float64 `json:"ns_op"`
	BytesOp  float64 `json:"b_op"`
	AllocsOp float64 `json:"allocs_op"`
}

var benchLine = regexp.MustCompile(`^(Benchmark\S+?)(?:-\d+)?\s+\d+\s+([\d.]+) ns/op.*?\s([\d.]+) B/op\s+([\d.]+) allocs/op`)

func (h *harness) runGoBench(ctx context.Context) ([]goBenchLine, error) {
	args := []string{"go", "test", "-run=^$", "-bench=BenchmarkInject", "-benchmem", "-benchtime=" + h.cfg.goBenchTime, "./internal/inject"}
	if h.cfg.pin {
		args = append([]string{"taskset", "-c", "0"}, args...)
	}
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	cmd.Dir = h.cfg.root
	cmd.Env = append(os.Environ(), "GOMAXPROCS=1")
	out, err := cmd.CombinedOutput()
	_ = os.WriteFile(filepath.Join(h.cfg.outDir, "logs", "go-bench.txt"), out, 0o644)
	var lines []goBenchLine
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		m := benchLine.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		l := goBenchLine{Name: strings.TrimPrefix(m[1], "BenchmarkInject/")}
		l.NsOp, _ = strconv.ParseFloat(m[2], 64)
		l.BytesOp, _ = strconv.ParseFloat(m[3], 64)
		l.AllocsOp, _ = strconv.ParseFloat(m[4], 64)
		lines = append(lines, l)
	}
	if err != nil {
		return lines, fmt.Errorf("go test -bench: %v (output in %s/logs/go-bench.txt)", err, h.cfg.outDir)
	}
	return lines, nil
}

// ---------------------------------------------------------------- report

func ratio(a, b float64) string {
	if b == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f", a/b)
}

func (h *harness) report(goBench []goBenchLine, goBenchErr error, scale *scaleResult, profiles []string) {
	cfg := h.cfg
	w := os.Stdout
	mode := "full"
	if cfg.quick {
		mode = "quick"
	}
	fmt.Fprintf(w, "\nsidecar-injector benchmark (%s: %s per cell after %s warm-up; servers GOMAXPROCS=1", mode, cfg.duration, cfg.warmup)
	if cfg.pin {
		fmt.Fprint(w, " on CPU 0, load tool on CPU 1")
	}
	fmt.Fprintf(w, "; load average at the end %s)\n", loadAvg())
	fmt.Fprintln(w, "ratios (×rf) are to the review floor of the same pod and concurrency in the same run; other% is the share of")
	fmt.Fprintln(w, "the servers' CPU used by other processes during the cell (machine noise: the higher, the less a cell means)")
	fmt.Fprintln(w)
	hdr := fmt.Sprintf("%-16s %4s %-15s %9s %6s %8s %8s %6s %9s %6s %8s %6s %6s %7s",
		"pod", "c", "server", "req/s", "×rf", "p50 ms", "p99 ms", "×rf", "CPU µs/r", "×rf", "RSS MiB", "×rf", "errors", "other%")
	fmt.Fprintln(w, hdr)
	fmt.Fprintln(w, strings.Repeat("-", len(hdr)))
	rows := append([]string{}, cfg.sizes...)
	if scale != nil {
		rows = append(append(rows, scaleReadyPod), scaleSettledPods...)
	}
	for _, pod := range rows {
		for _, c := range cfg.concurrency {
			ref := h.find(pod, c, reviewFloor)
			for _, s := range []string{injector, twoTemplates, podFloor, reviewFloor} {
				label := pod
				r := h.find(pod, c, s)
				if r == nil || ref == nil {
					continue
				}
				other := "-"
				if r.OtherCPUPct >= 0 {
					other = fmt.Sprintf("%.0f", r.OtherCPUPct)
				}
				fmt.Fprintf(w, "%-16s %4d %-15s %9.0f %6s %8.2f %8.2f %6s %9.0f %6s %8.1f %6s %6d %7s\n",
					label, c, s, r.RPS, ratio(r.RPS, ref.RPS), r.P50/1e3, r.P99/1e3, ratio(r.P99, ref.P99),
					r.ServerCPUPerReqUS, ratio(r.ServerCPUPerReqUS, ref.ServerCPUPerReqUS),
					float64(r.ServerRSSKiB)/1024, ratio(float64(r.ServerRSSKiB), float64(ref.ServerRSSKiB)), r.Errors, other)
			}
		}
	}
	if scale != nil {
		red := ""
		if scale.Reduced {
			red = " (REDUCED scale: quick mode)"
		}
		fmt.Fprintf(w, "\nscale%s: %d SidecarTemplates in %d namespaces + %d cluster-wide (created in %.1fs); injector ready %.0fms after start, settled after %.1fs; RSS %.1f MiB after the run\n",
			red, scale.Templates-scale.Cluster, scale.Namespaces, scale.Cluster, scale.CreateSeconds, scale.ReadySeconds*1000, scale.SettleSeconds, float64(scale.RSSKiB)/1024)
	}

	if cfg.goBench {
		h.reportGoBench(w, goBench, goBenchErr)
	}
	fmt.Fprintln(w, "\ngoals (from the ratios above)")
	h.goals(w, scale)
	for _, n := range h.notes {
		fmt.Fprintln(w, "note:", n)
	}
	if len(profiles) > 0 {
		fmt.Fprintln(w, "\nprofiles")
		for _, p := range profiles {
			fmt.Fprintln(w, p)
		}
	}
	fmt.Fprintf(w, "logs, profiles and results.json in %s\n", cfg.outDir)
}

func (h *harness) reportGoBench(w io.Writer, goBench []goBenchLine, goBenchErr error) {
	fmt.Fprintln(w, "\nengine Go benchmarks (BenchmarkInject, GOMAXPROCS=1, -benchtime="+h.cfg.goBenchTime+")")
	if len(goBench) > 0 {
		fmt.Fprintf(w, "%-40s %12s %10s %10s\n", "case", "ns/op", "B/op", "allocs/op")
		for _, l := range goBench {
			fmt.Fprintf(w, "%-40s %12.0f %10.0f %10.0f\n", l.Name, l.NsOp, l.BytesOp, l.AllocsOp)
		}
	}
	if goBenchErr != nil {
		fmt.Fprintln(w, "  ERROR:", goBenchErr)
	} else if len(goBench) == 0 {
		fmt.Fprintln(w, "  no benchmark lines found")
	}
}

func (h *harness) verdict(w io.Writer, ok bool, format string, args ...any) {
	v := "PASS"
	if !ok {
		v = "FAIL"
		h.failed = true
	}
	fmt.Fprintf(w, "%s  %s\n", v, fmt.Sprintf(format, args...))
}

func (h *harness) goals(w io.Writer, scale *scaleResult) {
	errs := 0
	for _, c := range h.cells {
		errs += c.Result.Errors
	}
	h.verdict(w, errs == 0, "every answer verified: %d errors", errs)
	for _, c := range h.cfg.concurrency {
		inj, rf, pf := h.find("realistic", c, injector), h.find("realistic", c, reviewFloor), h.find("realistic", c, podFloor)
		if inj == nil || rf == nil || pf == nil {
			continue
		}
		h.verdict(w, inj.RPS >= rf.RPS && inj.RPS > pf.RPS, "realistic c=%-2d requests/s %.0f ≥ 1.0× review floor (%.2f×) and above the pod floor (%.0f, %.2f×)",
			c, inj.RPS, inj.RPS/rf.RPS, pf.RPS, inj.RPS/pf.RPS)
		h.verdict(w, inj.P99 <= 2.5*rf.P99, "realistic c=%-2d p99 %.2fms ≤ 2.5× review floor's (%.2f×)", c, inj.P99/1e3, inj.P99/rf.P99)
		h.verdict(w, rf.ServerCPUPerReqUS > 0 && inj.ServerCPUPerReqUS <= rf.ServerCPUPerReqUS, "realistic c=%-2d CPU %.0fµs/request ≤ 1.0× review floor's (%.2f×)",
			c, inj.ServerCPUPerReqUS, inj.ServerCPUPerReqUS/rf.ServerCPUPerReqUS)
	}
	for _, c := range h.cfg.concurrency {
		inj, rf := h.find("small", c, injector), h.find("small", c, reviewFloor)
		if inj == nil || rf == nil {
			continue
		}
		h.verdict(w, inj.RPS >= 0.8*rf.RPS, "small     c=%-2d requests/s %.0f ≥ 0.8× review floor (%.2f×; CPU %.2f×)", c, inj.RPS, inj.RPS/rf.RPS,
			inj.ServerCPUPerReqUS/rf.ServerCPUPerReqUS)
	}
	for _, c := range h.cfg.concurrency {
		inj, rf := h.find("large", c, injector), h.find("large", c, reviewFloor)
		if inj == nil || rf == nil {
			continue
		}
		h.verdict(w, inj.RPS >= 0.45*rf.RPS, "large     c=%-2d requests/s %.0f ≥ 0.45× review floor (%.2f×)", c, inj.RPS, inj.RPS/rf.RPS)
	}
	if scale == nil {
		return
	}
	red := ""
	if scale.Reduced {
		red = " [reduced scale]"
	}
	for _, pass := range append([]string{scaleReadyPod}, scaleSettledPods...) {
		unsettled := ""
		if pass != scaleReadyPod && !scale.Settled {
			unsettled = " [NOT SETTLED: not a pass]"
		}
		for _, c := range h.cfg.concurrency {
			s, two := h.find(pass, c, injector), h.find(pass, c, twoTemplates)
			if s == nil || two == nil {
				continue
			}
			main := ""
			if m := h.find("realistic", c, injector); m != nil && m.RPS > 0 {
				main = fmt.Sprintf("; %.2f× the main table's %.0f", s.RPS/m.RPS, m.RPS)
			}
			h.verdict(w, s.RPS >= 0.9*two.RPS && unsettled == "", "%-15s c=%-2d requests/s %.0f ≥ 0.9× the 2-template injector's %.0f beside it (%.2f×%s)%s%s",
				pass, c, s.RPS, two.RPS, s.RPS/two.RPS, main, red, unsettled)
			h.verdict(w, two.ServerCPUPerReqUS > 0 && s.ServerCPUPerReqUS <= 1.2*two.ServerCPUPerReqUS && unsettled == "",
				"%-15s c=%-2d CPU %.0fµs/request ≤ 1.2× the 2-template injector's %.0f (%.2f×)%s%s",
				pass, c, s.ServerCPUPerReqUS, two.ServerCPUPerReqUS, s.ServerCPUPerReqUS/two.ServerCPUPerReqUS, red, unsettled)
		}
	}
	h.verdict(w, scale.RSSKiB > 0 && scale.RSSKiB < 100*1024, "scale     RSS %.1f MiB < 100 MiB%s", float64(scale.RSSKiB)/1024, red)
	h.verdict(w, scale.ReadySeconds < 2, "scale     ready %.0fms after start (API server answering) < 2s%s", scale.ReadySeconds*1000, red)
}

func (h *harness) writeResults(goBench []goBenchLine, scale *scaleResult) error {
	data, err := json.MarshalIndent(map[string]any{
		"quick": h.cfg.quick, "duration": h.cfg.duration.String(), "cells": h.cells, "scale": scale, "go_bench": goBench,
		"load_average": loadAvg(), "notes": h.notes,
	}, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(h.cfg.outDir, "results.json"), data, 0o644)
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}
