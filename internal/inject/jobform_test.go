package inject

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/sidecar-dev/sidecar-injector/internal/api/v1alpha1"
	"github.com/sidecar-dev/sidecar-injector/internal/fixtures"
)

// jobPayload is the spec's view of what a template adds to a pod that runs to completion under jobPolicy
// Native: its containers become native sidecars (init containers with restartPolicy Always) after its own init
// containers. Compile no longer encodes it; it is the reference that asNativeSidecars must reproduce.
func jobPayload(pl *payload) *payload {
	job := *pl
	job.Containers = nil
	job.InitContainers = slices.Clone(pl.InitContainers)
	always := corev1.ContainerRestartPolicyAlways
	job.TypedPlaceholders = make(map[string]string, len(pl.TypedPlaceholders))
	for path, v := range pl.TypedPlaceholders { // containers[i] become initContainers[len(initContainers)+i]
		if rest, ok := strings.CutPrefix(path, "containers["); ok {
			i, field, _ := strings.Cut(rest, "]")
			n, _ := strconv.Atoi(i)
			path = fmt.Sprintf("initContainers[%d]%s", len(pl.InitContainers)+n, field)
		}
		job.TypedPlaceholders[path] = v
	}
	for _, c := range pl.Containers {
		c.RestartPolicy = &always
		job.InitContainers = append(job.InitContainers, c)
	}
	return &job
}

// jobFormTemplates are the templates of every golden case, the random pods' fixed templates and the benchmark
// fixtures.
func jobFormTemplates(t *testing.T) []*v1alpha1.SidecarTemplate {
	files, err := filepath.Glob(filepath.Join(goldenDir, "*", "templates.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	sts := parseTemplates(t, []byte(fixedTemplatesYAML))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		sts = append(sts, parseTemplates(t, b)...)
	}
	sts = append(sts, fixtures.Templates()...)
	return append(sts, fixtures.ScaleTemplates(1, 2)...)
}

func TestTheJobFormIsTheOneEncodedFromTheSpec(t *testing.T) {
	compared, typed := 0, 0
	for _, st := range jobFormTemplates(t) {
		for _, place := range []v1alpha1.InitContainerPlacement{v1alpha1.InitContainerPlacementAuto,
			v1alpha1.InitContainerPlacementFirst, v1alpha1.InitContainerPlacementLast} {
			st := st.DeepCopy()
			st.Spec.InitContainerPlacement = place
			tpl := Compile(st, injectorNS)
			if tpl.job == nil {
				continue
			}
			pl := payloadOf(&st.Spec)
			want := newInstance(jobPayload(pl), place, len(pl.Containers))
			if got := tpl.jobInstance(); !reflect.DeepEqual(got, want) {
				t.Errorf("%s (initContainerPlacement %s): the job form built from base differs from the one encoded from the spec:\ngot  %s\nwant %s",
					tpl.Key(), place, rawItems(got.initContainers), rawItems(want.initContainers))
			}
			compared++
			if tpl.job.typed != nil {
				typed++
			}
		}
	}
	if compared < 30 || typed == 0 {
		t.Errorf("compared %d job forms, %d with typed placeholders: the test data no longer covers them", compared, typed)
	}
}

func rawItems(items []item) string {
	var b strings.Builder
	for _, it := range items {
		b.Write(it.raw)
		b.WriteByte(' ')
	}
	return b.String()
}

func TestTheJobFormIsBuiltOnlyWhenAPodThatRunsToCompletionNeedsIt(t *testing.T) {
	st := fixtures.ScaleTemplates(1, 1)[0]
	tpl := Compile(st, injectorNS)
	if tpl.job == nil {
		t.Fatalf("%s has containers and jobPolicy Native, yet no job form to build", tpl.Key())
	}
	const labels = "labels: {app.kubernetes.io/name: shop}" // the template's selector
	longRunning := Request{Pod: podJSON(t, "metadata: {name: web, "+labels+"}\nspec: {containers: [{name: app, image: app}]}"),
		Namespace: st.Namespace, InjectorNamespace: injectorNS, Templates: []*Template{tpl}}
	mustInject(t, longRunning)
	if tpl.job.in != nil {
		t.Fatal("a long-running pod's admission built the form for pods that run to completion")
	}
	job := longRunning
	job.Pod = podJSON(t, "metadata: {name: job, "+labels+"}\nspec: {restartPolicy: Never, containers: [{name: app, image: app}]}")
	var wg sync.WaitGroup
	for range 4 { // concurrent first uses build it once (go test -race)
		wg.Add(1)
		go func() { defer wg.Done(); mustInject(t, job) }()
	}
	wg.Wait()
	if tpl.job.in == nil || tpl.job.in == tpl.base {
		t.Fatal("a pod that runs to completion was served without the job form")
	}
	if len(tpl.job.in.containers) != 0 || len(tpl.job.in.initContainers) != 1 {
		t.Errorf("job form adds %d containers and %d init containers, want the one container as an init container",
			len(tpl.job.in.containers), len(tpl.job.in.initContainers))
	}
}

// mustInject injects req's one template into req's pod.
func mustInject(t *testing.T, req Request) {
	t.Helper()
	r, err := Inject(req)
	if err != nil {
		t.Error(err)
		return
	}
	if len(r.Decisions) != 1 || r.Decisions[0].Outcome != OutcomeInjected {
		t.Errorf("decisions %+v, want the template injected", r.Decisions)
	}
}

// BenchmarkCompiledTemplateMemory reports the heap a compiled scale template keeps (retained-B/template), and
// what it keeps once a pod that runs to completion has needed its job form (with-job-form-B/template), and
// what its render cache adds when full (full-render-cache-B/template: rendersPerTemplate renderings).
func BenchmarkCompiledTemplateMemory(b *testing.B) {
	sts := fixtures.ScaleTemplates(100, 10)
	for range b.N {
		before := liveHeap()
		compiled := compileAll(sts, injectorNS)
		retained := liveHeap() - before
		for _, c := range compiled {
			c.jobInstance()
		}
		withJob := liveHeap() - before
		// Every template's render cache full: as many pods with distinct names (its per-pod value) as it keeps.
		for _, c := range compiled {
			for i := range rendersPerTemplate {
				pv := &podValues{name: fmt.Sprintf("shop-%d", i), namespace: c.Namespace, serviceAccount: "default"}
				if _, err := c.instanceFor(pv, nil, DefaultLimits.MaxRenderedBytes); err != nil {
					b.Fatal(err)
				}
			}
		}
		withRenders := liveHeap() - before
		runtime.KeepAlive(compiled)
		b.ReportMetric(float64(retained)/float64(len(sts)), "retained-B/template")
		b.ReportMetric(float64(withJob)/float64(len(sts)), "with-job-form-B/template")
		b.ReportMetric(float64(withRenders-withJob)/float64(len(sts)), "full-render-cache-B/template")
	}
}

func liveHeap() int64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapAlloc)
}
