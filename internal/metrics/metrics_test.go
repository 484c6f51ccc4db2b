package metrics

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	crmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/sidecar-dev/sidecar-injector/internal/inject"
)

func dec(ns, name string, o inject.Outcome, r inject.Reason) inject.Decision {
	return inject.Decision{Namespace: ns, Name: name, Outcome: o, Reason: r}
}

func TestResultOf(t *testing.T) {
	for _, tc := range []struct {
		name string
		res  *inject.Result
		err  error
		want string
	}{
		{"error wins", &inject.Result{Denied: true}, errors.New("bad pod"), ResultError},
		{"nil result", nil, nil, ResultError},
		{"denied", &inject.Result{Denied: true, Decisions: []inject.Decision{
			dec("a", "x", inject.OutcomeInjected, inject.ReasonRequested), // a denied result has no patch, whatever came before
			dec("a", "y", inject.OutcomeDenied, inject.ReasonConflict)}}, nil, ResultDenied},
		{"injected", &inject.Result{Decisions: []inject.Decision{
			dec("a", "x", inject.OutcomeNotApplicable, inject.ReasonNotRequested),
			dec("a", "y", inject.OutcomeInjected, inject.ReasonSelected)}}, nil, ResultInjected},
		{"already injected is unchanged", &inject.Result{Decisions: []inject.Decision{
			dec("a", "y", inject.OutcomeAlreadyInjected, inject.ReasonAlreadyInjected)}}, nil, ResultUnchanged},
		{"skipped is unchanged", &inject.Result{Decisions: []inject.Decision{
			dec("a", "y", inject.OutcomeSkipped, inject.ReasonConflict)}}, nil, ResultUnchanged},
		{"nothing", &inject.Result{}, nil, ResultUnchanged},
	} {
		if got := ResultOf(tc.res, tc.err); got != tc.want {
			t.Errorf("%s: ResultOf = %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestObserveAdmission(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	m := newMetrics(t, reg)

	m.ObserveAdmission(&inject.Result{Decisions: []inject.Decision{
		dec("team-a", "log-shipper", inject.OutcomeInjected, inject.ReasonRequested),
		dec("platform", "metrics", inject.OutcomeInjected, inject.ReasonSelected),
		dec("platform", "proxy", inject.OutcomeNotApplicable, inject.ReasonSelectorMismatch),
	}}, nil, 50*time.Microsecond)
	m.ObserveAdmission(&inject.Result{Decisions: []inject.Decision{
		dec("team-a", "log-shipper", inject.OutcomeInjected, inject.ReasonRequested),
		dec("platform", "proxy", inject.OutcomeSkipped, inject.ReasonConflict),
	}}, nil, 3*time.Millisecond)
	m.ObserveAdmission(&inject.Result{Denied: true, Decisions: []inject.Decision{
		dec("platform", "metrics", inject.OutcomeInjected, inject.ReasonSelected), // would have been: not counted
		dec("team-a", "log-shipper", inject.OutcomeDenied, inject.ReasonMissingParameter),
		{Name: "typo-from-a-pod", Outcome: inject.OutcomeDenied, Reason: inject.ReasonNotFound},
	}}, nil, 20*time.Microsecond)
	m.ObserveAdmission(&inject.Result{Decisions: []inject.Decision{
		dec("team-a", "log-shipper", inject.OutcomeAlreadyInjected, inject.ReasonAlreadyInjected),
		dec("team-a", "metrics", inject.OutcomeNotApplicable, inject.ReasonJobPolicySkip), // a Job pod, jobPolicy Skip
		dec("platform", "tracing", inject.OutcomeNotApplicable, inject.ReasonShadowed),    // team-a's tracing replaces it
		dec("team-a", "mesh", inject.OutcomeNotApplicable, inject.ReasonOverrideDenied),   // platform's mesh does not allow it
		dec("platform", "mesh", inject.OutcomeNotApplicable, inject.ReasonServedByPolicy), // an admission policy injected it
		dec("platform", "other", inject.OutcomeNotApplicable, inject.ReasonSelectorMismatch),
	}}, nil, 15*time.Microsecond)
	m.ObserveAdmission(&inject.Result{PodSkipReason: inject.ReasonSystemNamespace, Decisions: []inject.Decision{
		dec("platform", "metrics", inject.OutcomeNotApplicable, inject.ReasonSystemNamespace),
	}}, nil, 5*time.Microsecond)
	m.ObserveAdmission(nil, errors.New("not a pod"), 5*time.Microsecond)

	want := `
# HELP sidecar_injector_admissions_total Pod admissions decided by the injection engine, by result: injected, unchanged, denied or error.
# TYPE sidecar_injector_admissions_total counter
sidecar_injector_admissions_total{result="denied"} 1
sidecar_injector_admissions_total{result="error"} 1
sidecar_injector_admissions_total{result="injected"} 2
sidecar_injector_admissions_total{result="unchanged"} 2
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "sidecar_injector_admissions_total"); err != nil {
		t.Error(err)
	}

	// NotApplicable is not counted but for JobPolicySkip (a template the pod asked for, left out by its author's
	// choice) and the replacements and policy-served templates the engine reports, nor Injected on a denied pod;
	// the name a pod requested that matched nothing is not a label value.
	wantDecisions := `
# HELP sidecar_injector_template_decisions_total Decisions about one template for one pod, by template, outcome (Injected, AlreadyInjected, Skipped, Denied; NotApplicable only with reason JobPolicySkip, or Shadowed, OverrideDenied or ServedByPolicy for a template the pod wants) and reason. Other NotApplicable decisions, and the Injected ones of a denied pod, are not counted. A requested name that matched no template is counted with empty namespace and template.
# TYPE sidecar_injector_template_decisions_total counter
sidecar_injector_template_decisions_total{namespace="",outcome="Denied",reason="NotFound",template=""} 1
sidecar_injector_template_decisions_total{namespace="platform",outcome="Injected",reason="SelectorMatched",template="metrics"} 1
sidecar_injector_template_decisions_total{namespace="platform",outcome="NotApplicable",reason="ServedByPolicy",template="mesh"} 1
sidecar_injector_template_decisions_total{namespace="platform",outcome="NotApplicable",reason="Shadowed",template="tracing"} 1
sidecar_injector_template_decisions_total{namespace="platform",outcome="Skipped",reason="Conflict",template="proxy"} 1
sidecar_injector_template_decisions_total{namespace="team-a",outcome="AlreadyInjected",reason="AlreadyInjected",template="log-shipper"} 1
sidecar_injector_template_decisions_total{namespace="team-a",outcome="Denied",reason="MissingParameter",template="log-shipper"} 1
sidecar_injector_template_decisions_total{namespace="team-a",outcome="Injected",reason="Requested",template="log-shipper"} 2
sidecar_injector_template_decisions_total{namespace="team-a",outcome="NotApplicable",reason="JobPolicySkip",template="metrics"} 1
sidecar_injector_template_decisions_total{namespace="team-a",outcome="NotApplicable",reason="OverrideDenied",template="mesh"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(wantDecisions), "sidecar_injector_template_decisions_total"); err != nil {
		t.Error(err)
	}

	// Histogram: 6 observations; 3ms falls above the 2.56ms bucket, the rest at or below 80µs. The sum is
	// 3.095ms as float64 addition gives it.
	wantHist := `
# HELP sidecar_injector_engine_duration_seconds Time the injection engine took to decide about one pod and compute its patch.
# TYPE sidecar_injector_engine_duration_seconds histogram
sidecar_injector_engine_duration_seconds_bucket{le="1e-05"} 2
sidecar_injector_engine_duration_seconds_bucket{le="2e-05"} 4
sidecar_injector_engine_duration_seconds_bucket{le="4e-05"} 4
sidecar_injector_engine_duration_seconds_bucket{le="8e-05"} 5
sidecar_injector_engine_duration_seconds_bucket{le="0.00016"} 5
sidecar_injector_engine_duration_seconds_bucket{le="0.00032"} 5
sidecar_injector_engine_duration_seconds_bucket{le="0.00064"} 5
sidecar_injector_engine_duration_seconds_bucket{le="0.00128"} 5
sidecar_injector_engine_duration_seconds_bucket{le="0.00256"} 5
sidecar_injector_engine_duration_seconds_bucket{le="0.00512"} 6
sidecar_injector_engine_duration_seconds_bucket{le="0.01024"} 6
sidecar_injector_engine_duration_seconds_bucket{le="0.02048"} 6
sidecar_injector_engine_duration_seconds_bucket{le="0.04096"} 6
sidecar_injector_engine_duration_seconds_bucket{le="0.08192"} 6
sidecar_injector_engine_duration_seconds_bucket{le="+Inf"} 6
sidecar_injector_engine_duration_seconds_sum 0.0030949999999999997
sidecar_injector_engine_duration_seconds_count 6
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(wantHist), "sidecar_injector_engine_duration_seconds"); err != nil {
		t.Error(err)
	}

	// Deleting a template drops its decision series, and only its own.
	m.ForgetTemplate("team-a", "log-shipper")
	if n := testutil.CollectAndCount(m.decisions); n != 7 {
		t.Errorf("after ForgetTemplate(team-a/log-shipper): %d decision series, want 7", n)
	}
	if got := testutil.ToFloat64(m.decisions.WithLabelValues("platform", "proxy", "Skipped", "Conflict")); got != 1 {
		t.Errorf("platform/proxy Skipped/Conflict = %v after forgetting another template, want 1", got)
	}
}

func TestAdmissionsStartAtZero(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	newMetrics(t, reg)
	if n := testutil.CollectAndCount(reg, "sidecar_injector_admissions_total"); n != len(Results) {
		t.Errorf("%d admissions series before any admission, want %d (one per result at 0)", n, len(Results))
	}
	if n := testutil.CollectAndCount(reg, "sidecar_injector_templates"); n != 0 {
		t.Errorf("%d templates series before the controller reported, want 0", n)
	}
}

func TestTemplatesGauge(t *testing.T) {
	m := newMetrics(t, prometheus.NewPedanticRegistry())
	m.SetTemplateReady("team-a", "a", true)
	m.SetTemplateReady("team-a", "b", false)
	m.SetTemplateReady("team-b", "a", true)
	m.SetTemplateReady("team-a", "b", true) // fixed
	m.SetTemplateReady("team-a", "a", false)
	m.SetTemplateReady("team-b", "a", true) // a reconcile that changed nothing counts it once still
	check := func(when string, ready, notReady float64) {
		t.Helper()
		if got := testutil.ToFloat64(m.templates.WithLabelValues("true")); got != ready {
			t.Errorf("%s: templates{ready=true} = %v, want %v", when, got, ready)
		}
		if got := testutil.ToFloat64(m.templates.WithLabelValues("false")); got != notReady {
			t.Errorf("%s: templates{ready=false} = %v, want %v", when, got, notReady)
		}
	}
	check("after updates", 2, 1)
	m.ForgetTemplate("team-a", "a")
	check("after deleting the not-ready one", 2, 0)
	m.ForgetTemplate("team-z", "never-seen")
	check("after deleting an unknown one", 2, 0)
}

// New registers every collector on the registry it is given, and only there: the server passes controller-runtime's,
// tests their own; two sets never share a registry, and Unregister makes room for the next.
func TestNewRegistersOnTheGivenRegistryOnly(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := newMetrics(t, reg)
	m.ObserveAdmission(&inject.Result{}, nil, time.Microsecond)
	n, err := testutil.GatherAndCount(reg, "sidecar_injector_admissions_total", "sidecar_injector_engine_duration_seconds")
	if err != nil {
		t.Fatal(err)
	}
	if n != len(Results)+1 {
		t.Errorf("the registry has %d series of ours, want %d", n, len(Results)+1)
	}
	if n, _ := testutil.GatherAndCount(crmetrics.Registry, "sidecar_injector_admissions_total"); n != 0 {
		t.Errorf("controller-runtime's registry has %d admissions series although nothing registered there", n)
	}
	if _, err := New(reg); err == nil {
		t.Error("a second set on the same registry was accepted; its series would be counted twice or lost")
	}
	m.Unregister(reg)
	if n, _ := testutil.GatherAndCount(reg, "sidecar_injector_admissions_total"); n != 0 {
		t.Errorf("after Unregister the registry still has %d admissions series", n)
	}
	newMetrics(t, reg) // a server restarted in the same process registers again
}

func newMetrics(t *testing.T, reg prometheus.Registerer) *Metrics {
	t.Helper()
	m, err := New(reg)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// A template name that is not valid UTF-8 (possible in a template read from a file) must not panic the
// admission: Prometheus refuses such label values.
func TestAnInvalidUTF8TemplateNameDoesNotPanic(t *testing.T) {
	m := newMetrics(t, prometheus.NewRegistry())
	res := &inject.Result{Decisions: []inject.Decision{{Namespace: "team-a", Name: "bad\xc2", Outcome: inject.OutcomeInjected, Reason: inject.ReasonRequested}}}
	m.ObserveAdmission(res, nil, time.Millisecond)
	if got := testutil.ToFloat64(m.decisions.WithLabelValues("team-a", "bad\uFFFD", "Injected", "Requested")); got != 1 {
		t.Errorf("decision counted %v times under the repaired name, want 1", got)
	}
	m.ForgetTemplate("team-a", "bad\xc2")
}

// Requests are counted by code through children resolved once per code: each code counts its own requests, and
// only codes that happened are exported (also codes outside 100-599, which are not cached).
func TestRequestsAreCountedByTheCodeOfTheirAnswer(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := New(reg)
	if err != nil {
		t.Fatal(err)
	}
	if n := testutil.CollectAndCount(reg, "sidecar_injector_webhook_requests_total"); n != 0 {
		t.Fatalf("%d request series before any request, want none", n)
	}
	for _, code := range []int{200, 200, 400, 200, 500, 999, 999} {
		m.ObserveRequest(code, time.Millisecond)
	}
	if n := testutil.CollectAndCount(reg, "sidecar_injector_webhook_requests_total"); n != 4 {
		t.Errorf("%d request series, want 4 (200, 400, 500, 999)", n)
	}
	for code, want := range map[string]float64{"200": 3, "400": 1, "500": 1, "999": 2} {
		if got := testutil.ToFloat64(m.requests.WithLabelValues(code)); got != want {
			t.Errorf("code %s: %v requests, want %v", code, got, want)
		}
	}
	if n := testutil.CollectAndCount(reg, "sidecar_injector_webhook_request_duration_seconds"); n != 1 {
		t.Errorf("%d latency series, want 1", n)
	}
}
