package controller

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
	crconfig "sigs.k8s.io/controller-runtime/pkg/config"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/sidecar-dev/sidecar-injector/internal/api/v1alpha1"
	"github.com/sidecar-dev/sidecar-injector/internal/events"
	"github.com/sidecar-dev/sidecar-injector/internal/fixtures"
	"github.com/sidecar-dev/sidecar-injector/internal/metrics"
	"github.com/sidecar-dev/sidecar-injector/internal/store"
)

// startWork counts what the controller did after a start, through its client.
type startWork struct {
	prefix       string       // of the namespaces counted: other tests' templates are not
	reconciles   atomic.Int64 // Gets of a template: each reconcile starts with one
	lists        atomic.Int64
	listedItems  atomic.Int64 // objects the cache copied out for those lists
	statusWrites atomic.Int64
	revisions    atomic.Int64 // ControllerRevisions created
	events       atomic.Int64
	last         atomic.Int64 // unix nanos of the last reconcile
}

func (w *startWork) String() string {
	return fmt.Sprintf("%d reconciles, %d status writes, %d revisions created, %d Ready events, %d lists copying %d objects",
		w.reconciles.Load(), w.statusWrites.Load(), w.revisions.Load(), w.events.Load(), w.lists.Load(), w.listedItems.Load())
}

func (w *startWork) Eventf(_, _ k8sruntime.Object, _, _, _, _ string, _ ...any) { w.events.Add(1) }

// noWatch lends the manager's client the Watch method that interceptor.NewClient asks for; the controller never
// calls it.
type noWatch struct{ client.Client }

func (noWatch) Watch(context.Context, client.ObjectList, ...client.ListOption) (watch.Interface, error) {
	return nil, errors.New("not watched through this client")
}

// counting wraps c so that w counts the controller's work.
func (w *startWork) counting(c client.Client) client.Client {
	return interceptor.NewClient(noWatch{c}, interceptor.Funcs{
		Get: func(ctx context.Context, c client.WithWatch, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
			if _, ok := obj.(*v1alpha1.SidecarTemplate); ok && strings.HasPrefix(key.Namespace, w.prefix) {
				w.reconciles.Add(1)
				w.last.Store(time.Now().UnixNano())
			}
			return c.Get(ctx, key, obj, opts...)
		},
		List: func(ctx context.Context, c client.WithWatch, list client.ObjectList, opts ...client.ListOption) error {
			err := c.List(ctx, list, opts...)
			w.lists.Add(1)
			w.listedItems.Add(int64(meta.LenList(list)))
			return err
		},
		Create: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.CreateOption) error {
			if _, ok := obj.(*appsv1.ControllerRevision); ok && strings.HasPrefix(obj.GetNamespace(), w.prefix) {
				w.revisions.Add(1)
			}
			return c.Create(ctx, obj, opts...)
		},
		SubResourceUpdate: func(ctx context.Context, c client.Client, sub string, obj client.Object, opts ...client.SubResourceUpdateOption) error {
			if strings.HasPrefix(obj.GetNamespace(), w.prefix) {
				w.statusWrites.Add(1)
			}
			return c.SubResource(sub).Update(ctx, obj, opts...)
		},
	})
}

// cpuSeconds is this process's user+system CPU time: the controller, its informers and client (the API server
// and etcd are other processes).
func cpuSeconds(t *testing.T) float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}

// scaleNamespaces is the scale of TestStartAtScale: $SIDECAR_SCALE_NAMESPACES namespaces of 10 templates each,
// plus one cluster-wide template per 10 namespaces; 20 (202 templates) unless set. The benchmark's scale is
// 1000 (10,100 templates).
func scaleNamespaces(t *testing.T) int {
	n := 20
	if s := os.Getenv("SIDECAR_SCALE_NAMESPACES"); s != "" {
		var err error
		if n, err = strconv.Atoi(s); err != nil || n < 1 {
			t.Fatalf("SIDECAR_SCALE_NAMESPACES=%q: want a positive number", s)
		}
	}
	return n
}

// TestStartAtScale starts the controller twice over many templates, as the injector starts after a rollout: the
// first start finds no status (every template gets exactly one write), the second finds every status current
// (no write at all). Neither start may copy the template list once per template (a quadratic start), and both
// report the work and CPU seconds they took, which is how the figures in the README were measured.
func TestStartAtScale(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	nsCount := scaleNamespaces(t)
	if os.Getenv("SIDECAR_SCALE_HEAP_PROFILE") != "" {
		runtime.MemProfileRate = 4096 // fine enough to tell the store's objects apart
	}
	fast := rest.CopyConfig(cfg)
	fast.QPS, fast.Burst = -1, 0 // as the injector: no client-side throttling, so creation is quick
	k8s, err := client.New(fast, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	injectorNS := fmt.Sprintf("injector-scale-%d", time.Now().UnixNano()%100000)
	var objs []client.Object
	objs = append(objs, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: injectorNS}})
	for i := range nsCount {
		objs = append(objs, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("%s-%04d", injectorNS, i),
			Labels: map[string]string{"team": fmt.Sprintf("t%03d", i%1000)}}})
	}
	var templates []client.Object
	for _, tpl := range fixtures.ScaleTemplates(nsCount, 10) {
		tpl.Namespace = injectorNS + tpl.Namespace[len("scale"):] // this run's namespaces
		templates = append(templates, tpl)
	}
	for _, tpl := range fixtures.ClusterTemplates(max(nsCount/10, 1)) {
		tpl.Namespace = injectorNS
		templates = append(templates, tpl)
	}
	createAll(ctx, t, k8s, objs)
	createAll(ctx, t, k8s, templates)
	n := int64(len(templates))

	first := startController(ctx, t, fast, injectorNS, n)
	t.Logf("first start, %d templates without status: %s; %.2f CPU s in %.1f s; live heap %.1f MiB", n, first.work, first.cpu, first.seconds, first.heapMiB)
	if got := first.work.statusWrites.Load(); got != n {
		t.Errorf("first start: %d status writes for %d templates without status, want one each", got, n)
	}
	if got := first.work.revisions.Load(); got != n {
		t.Errorf("first start: %d revisions created for %d templates without one, want one each", got, n)
	}
	second := startController(ctx, t, fast, injectorNS, n)
	t.Logf("second start, %d templates with current status: %s; %.2f CPU s in %.1f s; live heap %.1f MiB", n, second.work, second.cpu, second.seconds, second.heapMiB)
	if got := second.work.statusWrites.Load(); got != 0 {
		t.Errorf("second start: %d status writes, want none: every status was current", got)
	}
	if got := second.work.revisions.Load(); got != 0 {
		t.Errorf("second start: %d revisions created, want none: every template had its revision", got)
	}
	for _, w := range []*startWork{first.work, second.work} {
		// Each reconcile lists its pods (drift); anything near a list of every template per template is the
		// quadratic start this test is here to catch.
		if got := w.listedItems.Load(); got > 4*n {
			t.Errorf("a start copied %d objects out of the cache for %d templates (%s): a list per template", got, n, w)
		}
	}
}

type startResult struct {
	work    *startWork
	cpu     float64
	seconds float64 // from the manager's start to the last reconcile
	heapMiB float64 // live heap added by the manager: informers, store, controller
}

// startController runs the controller (with the webhook's store, as the injector does) until it has reconciled
// every one of n templates and then been idle for 2 s, and stops it.
func startController(ctx context.Context, t *testing.T, cfg *rest.Config, injectorNS string, n int64) startResult {
	t.Helper()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	w := &startWork{prefix: injectorNS}
	heap0 := heapInUse()
	if p := os.Getenv("SIDECAR_SCALE_CPU_PROFILE"); p != "" { // where a start's CPU goes
		f, err := os.Create(fmt.Sprintf("%s.%d", p, time.Now().UnixNano()))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			t.Fatal(err)
		}
		defer pprof.StopCPUProfile()
	}
	cpu0 := cpuSeconds(t)
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                 scheme,
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		Controller:             crconfig.Controller{SkipNameValidation: ptr.To(true)}, // started twice
		// As serve's cache (internal/server): templates in the store's form (read through templates.Reader).
		Cache: cache.Options{DefaultTransform: func(obj any) (any, error) {
			if _, ok := obj.(*v1alpha1.SidecarTemplate); ok {
				return store.TemplateTransform(obj)
			}
			return cache.TransformStripManagedFields()(obj)
		}, ByObject: map[client.Object]cache.ByObject{store.RevisionObject(): store.RevisionCache()}},
	})
	if err != nil {
		t.Fatal(err)
	}
	m, err := metrics.New(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	templates := store.NewTemplates(injectorNS)
	if _, err := templates.Register(ctx, mgr.GetCache()); err != nil {
		t.Fatal(err)
	}
	if _, err := templates.RegisterRevisions(ctx, mgr.GetCache()); err != nil {
		t.Fatal(err)
	}
	r := &TemplateReconciler{Client: w.counting(templates.Reader(mgr.GetClient())), InjectorNamespace: injectorNS, Templates: templates,
		Events: events.NewRecorder(w), Metrics: m}
	if os.Getenv("SIDECAR_SCALE_UNPACED") != "" { // the same CPU seconds, sooner (measurements only)
		r.Pace = Unlimited
	}
	if err := r.SetupWithManager(ctx, mgr); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- mgr.Start(ctx) }()
	deadline := time.Now().Add(10 * time.Minute)
	for {
		time.Sleep(200 * time.Millisecond)
		idle := time.Since(time.Unix(0, w.last.Load()))
		if w.reconciles.Load() >= n && idle > 2*time.Second {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the controller did not settle in 10 minutes: %s; %.2f CPU s", w, cpuSeconds(t)-cpu0)
		}
	}
	cpu := cpuSeconds(t) - cpu0
	heap := heapInUse()
	if p := os.Getenv("SIDECAR_SCALE_HEAP_PROFILE"); p != "" {
		writeHeapProfile(t, p)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("manager: %v", err)
	}
	return startResult{work: w, cpu: cpu, seconds: time.Unix(0, w.last.Load()).Sub(start).Seconds(), heapMiB: (float64(heap) - float64(heap0)) / (1 << 20)}
}

// heapInUse is the live heap after a collection.
func heapInUse() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// writeHeapProfile writes the heap profile to path ($SIDECAR_SCALE_HEAP_PROFILE: what the live heap is made of).
func writeHeapProfile(t *testing.T, path string) {
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := pprof.WriteHeapProfile(f); err != nil {
		t.Fatal(err)
	}
}

// createAll creates objs with 16 clients at once.
func createAll(ctx context.Context, t *testing.T, k8s client.Client, objs []client.Object) {
	t.Helper()
	var wg sync.WaitGroup
	next := atomic.Int64{}
	errs := make(chan error, 16)
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := next.Add(1) - 1; i < int64(len(objs)); i = next.Add(1) - 1 {
				if err := k8s.Create(ctx, objs[i]); err != nil {
					errs <- fmt.Errorf("create %s/%s: %w", objs[i].GetNamespace(), objs[i].GetName(), err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}
