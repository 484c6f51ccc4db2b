// Package metrics defines the injector's Prometheus metrics, all named sidecar_injector_*. New registers one set
// on the registry it is given: the server passes controller-runtime's, which the manager serves on
// --metrics-bind-address, and hands the *Metrics to the webhook and the controller; tests pass their own.
//
// Label values are bounded by the number of SidecarTemplates and the fixed sets of results, outcomes and
// reasons: no label ever carries a pod name, a pod namespace or any other value a pod's author chooses.
package metrics

import (
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sidecar-dev/sidecar-injector/internal/inject"
)

// Admission results, the values of the result label of sidecar_injector_admissions_total.
const (
	ResultInjected  = "injected"  // at least one template was injected
	ResultUnchanged = "unchanged" // admitted, nothing injected (nothing applied, already injected, skipped)
	ResultDenied    = "denied"    // a template with failurePolicy Fail could not be applied
	ResultError     = "error"     // the pod could not be read
)

// Results lists every value of the result label.
var Results = []string{ResultInjected, ResultUnchanged, ResultDenied, ResultError}

// notFoundTemplate is the template label of a decision for a requested name that matched no template: the name
// comes from the pod's annotation, so it is not used as a label value.
const notFoundTemplate = ""

// Metrics is one set of the injector's collectors, safe for concurrent use.
type Metrics struct {
	admissions *prometheus.CounterVec
	decisions  *prometheus.CounterVec
	duration   prometheus.Histogram
	templates  *prometheus.GaugeVec
	requests   *prometheus.CounterVec
	latency    prometheus.Histogram

	// The children of admissions by result and of requests by code (100-599), resolved once: an admission
	// does not format, hash and look up its labels again (BenchmarkFixedCost, test/bench/inprocess). A code's
	// child is created on its first request, so that only codes that happened are exported.
	admissionsByResult map[string]prometheus.Counter
	requestsByCode     [500]atomic.Pointer[prometheus.Counter]

	mu    sync.Mutex
	ready map[string]bool // template key -> Ready, behind the templates gauge
	// readyCount and notReadyCount count ready's values, kept on every change: recounting the map on every
	// reconcile made a start over 10,100 templates quadratic (15% of the controller's CPU).
	readyCount, notReadyCount int

	process *process // build info, certificate expiry, cache sync (process.go)
}

// New creates the collectors and registers them on reg. A registry holds one set: New fails when reg already
// has one (another server in the same process), and Unregister takes a set off again.
func New(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		admissions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sidecar_injector_admissions_total",
			Help: "Pod admissions decided by the injection engine, by result: injected, unchanged, denied or error.",
		}, []string{"result"}),
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sidecar_injector_template_decisions_total",
			Help: "Decisions about one template for one pod, by template, outcome (Injected, AlreadyInjected, " +
				"Skipped, Denied; NotApplicable only with reason JobPolicySkip, or Shadowed, OverrideDenied or ServedByPolicy " +
				"for a template the pod wants) and reason. Other NotApplicable decisions, " +
				"and the Injected ones of a denied pod, are not counted. A requested name that matched no template is counted with empty namespace and template.",
		}, []string{"namespace", "template", "outcome", "reason"}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "sidecar_injector_engine_duration_seconds",
			Help:    "Time the injection engine took to decide about one pod and compute its patch.",
			Buckets: prometheus.ExponentialBuckets(10e-6, 2, 14), // 10µs .. 81.92ms
		}),
		templates: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sidecar_injector_templates",
			Help: "SidecarTemplates known to the status controller, by their Ready condition (true or false). " +
				"Exported by the replica that runs the controller (the leader).",
		}, []string{"ready"}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sidecar_injector_webhook_requests_total",
			Help: "Requests to the webhook path, by the code of the answer. Every answer is HTTP 200 with an " +
				"AdmissionReview; the code is its response.status.code: 200 for every admission decided (denials " +
				"included), 400 for a body that is not an AdmissionReview request or a pod that cannot be read, 413 " +
				"for a body over the size limit, 500 for a recovered panic; with client authentication on, 401 and 403 " +
				"(plain HTTP answers) for a caller that is not the API server.",
		}, []string{"code"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "sidecar_injector_webhook_request_duration_seconds",
			Help: "Time from reading a webhook request to writing its answer (body read, decoding, engine, encoding).",
			Buckets: []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1,
				2.5, 5, 10},
		}),
		ready:   map[string]bool{},
		process: newProcess(),
	}
	for i, c := range m.collectors() {
		if err := reg.Register(c); err != nil {
			for _, done := range m.collectors()[:i] {
				reg.Unregister(done)
			}
			return nil, fmt.Errorf("cannot register the injector's metrics: %w", err)
		}
	}
	m.admissionsByResult = make(map[string]prometheus.Counter, len(Results))
	for _, r := range Results {
		// every result is exported from the start, so that rate() sees the first one
		m.admissionsByResult[r] = m.admissions.WithLabelValues(r)
	}
	return m, nil
}

func (m *Metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.admissions, m.decisions, m.duration, m.templates, m.requests, m.latency,
		m.process.buildInfo, m.process.certNotAfter, m.process.caches}
}

// Unregister removes m's collectors from reg, the registry New registered them on.
func (m *Metrics) Unregister(reg prometheus.Registerer) {
	for _, c := range m.collectors() {
		reg.Unregister(c)
	}
}

// ObserveRequest records one HTTP request to the webhook path: the status code of the answer and how long it
// took.
func (m *Metrics) ObserveRequest(code int, d time.Duration) {
	m.requestCounter(code).Inc()
	m.latency.Observe(d.Seconds())
}

func (m *Metrics) requestCounter(code int) prometheus.Counter {
	if code < 100 || code >= 600 {
		return m.requests.WithLabelValues(strconv.Itoa(code))
	}
	slot := &m.requestsByCode[code-100]
	if c := slot.Load(); c != nil {
		return *c
	}
	c := m.requests.WithLabelValues(strconv.Itoa(code)) // the same child whoever stores it first
	slot.Store(&c)
	return c
}

// ResultOf returns the result label of an admission: error when err != nil (or there is no result), denied when
// the result is denied, injected when any decision is Injected, else unchanged.
func ResultOf(res *inject.Result, err error) string {
	switch {
	case err != nil || res == nil:
		return ResultError
	case res.Denied:
		return ResultDenied
	}
	for i := range res.Decisions {
		if res.Decisions[i].Outcome == inject.OutcomeInjected {
			return ResultInjected
		}
	}
	return ResultUnchanged
}

// ObserveAdmission records one admission that went through the engine: call it once per pod CREATE with what
// inject.Inject returned and how long it took (requests the handler allows without calling the engine are not
// admissions of interest and are not counted).
func (m *Metrics) ObserveAdmission(res *inject.Result, err error, d time.Duration) {
	m.admissionsByResult[ResultOf(res, err)].Inc()
	m.duration.Observe(d.Seconds())
	if err != nil || res == nil {
		return
	}
	for i := range res.Decisions {
		dec := &res.Decisions[i]
		switch dec.Outcome {
		case inject.OutcomeSkipped, inject.OutcomeDenied:
		case inject.OutcomeNotApplicable:
			if !countedNotApplicable(dec.Reason) {
				continue // one per pod and template in scope, not worth a series
			}
		case inject.OutcomeInjected, inject.OutcomeAlreadyInjected:
			if res.Denied {
				continue // the pod was denied: nothing was injected
			}
		default:
			continue
		}
		name := dec.Name
		if dec.Namespace == "" { // a requested name that matched nothing: chosen by the pod, not a template
			name = notFoundTemplate
		}
		m.decisions.WithLabelValues(labelValue(dec.Namespace), labelValue(name), string(dec.Outcome), string(dec.Reason)).Inc()
	}
}

// countedNotApplicable reports whether a NotApplicable decision is counted: those about a template the pod asked
// for or is selected by and that is left out by a rule the platform or the template's author set (the engine
// reports them when NotApplicable decisions are omitted): jobPolicy Skip, a namespaced template replacing a
// cluster-wide one (Shadowed, on the cluster-wide one) or not allowed to (OverrideDenied), a template an
// admission policy serves (ServedByPolicy). A fixed set of reasons: the series stay one per template and reason.
func countedNotApplicable(r inject.Reason) bool {
	switch r {
	case inject.ReasonJobPolicySkip, inject.ReasonShadowed, inject.ReasonOverrideDenied, inject.ReasonServedByPolicy:
		return true
	}
	return false
}

// labelValue makes a label value valid UTF-8, which Prometheus requires (it panics otherwise). Names of templates
// read through the API server always are; templates read from files by the offline commands, or fuzzed, need
// not be (found by FuzzTemplates in CI).
func labelValue(v string) string { return strings.ToValidUTF8(v, "\uFFFD") }

// SetTemplateReady records whether the template namespace/name is Ready; the templates gauge counts them.
func (m *Metrics) SetTemplateReady(namespace, name string, ready bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	key := namespace + "/" + name
	if old, tracked := m.ready[key]; tracked {
		m.countLocked(old, -1)
	}
	m.ready[key] = ready
	m.countLocked(ready, 1)
	m.updateTemplatesLocked()
}

// countLocked adds delta to the count of ready or not-ready templates.
func (m *Metrics) countLocked(ready bool, delta int) {
	if ready {
		m.readyCount += delta
	} else {
		m.notReadyCount += delta
	}
}

// ForgetTemplate is called when the template namespace/name is deleted: its decision series are dropped (so the
// series stay bounded by the templates that exist) and it no longer counts in the templates gauge. Safe to call
// on every replica (from the template informer's delete handler) as well as from the controller.
func (m *Metrics) ForgetTemplate(namespace, name string) {
	m.decisions.DeletePartialMatch(prometheus.Labels{"namespace": labelValue(namespace), "template": labelValue(name)})
	m.mu.Lock()
	defer m.mu.Unlock()
	key := namespace + "/" + name
	if old, tracked := m.ready[key]; tracked {
		delete(m.ready, key)
		m.countLocked(old, -1)
		m.updateTemplatesLocked()
	}
}

func (m *Metrics) updateTemplatesLocked() {
	m.templates.WithLabelValues("true").Set(float64(m.readyCount))
	m.templates.WithLabelValues("false").Set(float64(m.notReadyCount))
}
