package events

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	k8sevents "k8s.io/client-go/tools/events"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/sidecar-dev/sidecar-injector/internal/api/v1alpha1"
	"github.com/sidecar-dev/sidecar-injector/internal/inject"
)

// event is what the fake recorder captured.
type event struct {
	regarding corev1.ObjectReference
	eventType string
	reason    string
	action    string
	note      string
}

// fakeRecorder captures events with the object they regard (client-go's FakeRecorder drops it).
type fakeRecorder struct {
	mu     sync.Mutex
	events []event
}

var _ k8sevents.EventRecorder = (*fakeRecorder)(nil)

func (f *fakeRecorder) Eventf(regarding, _ runtime.Object, eventtype, reason, action, note string, args ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.events = append(f.events, event{regarding: *regarding.(*corev1.ObjectReference), eventType: eventtype,
		reason: reason, action: action, note: fmt.Sprintf(note, args...)})
}

func (f *fakeRecorder) take() []event {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := f.events
	f.events = nil
	return out
}

// clock is a settable time source.
type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

var replicaSet = []metav1.OwnerReference{
	{APIVersion: "v1", Kind: "ConfigMap", Name: "not-the-controller", UID: "cm-uid"},
	{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "web-7f9c", UID: "rs-uid", Controller: ptr.To(true)},
}

func failing() *inject.Result {
	return &inject.Result{Denied: true, Decisions: []inject.Decision{
		{Namespace: "team-a", Name: "ok", Outcome: inject.OutcomeSkipped, Reason: inject.ReasonPodDenied,
			Message: "not injected: the pod is denied because of another template"},
		{Namespace: "team-a", Name: "other", Outcome: inject.OutcomeNotApplicable, Reason: inject.ReasonSelectorMismatch},
		{Namespace: "team-a", Name: "log-shipper", Outcome: inject.OutcomeDenied, Reason: inject.ReasonConflict,
			Message: `sidecar template "log-shipper": container name "app" already exists in pod`},
		{Namespace: "platform", Name: "proxy", Outcome: inject.OutcomeSkipped, Reason: inject.ReasonMissingParameter,
			Message: `sidecar template "proxy": parameter "port" is not set (annotation proxy.param.sidecar.dev/port)`},
	}}
}

func TestPodDecisionsOnOwner(t *testing.T) {
	f := &fakeRecorder{}
	c := &clock{t: time.Unix(1000, 0)}
	r := NewRecorder(f, WithClock(c.now))

	r.PodDecisions("team-a", replicaSet, false, failing())
	got := f.take()
	if len(got) != 2 {
		t.Fatalf("got %d events, want 2 (one per Skipped or Denied decision, none for PodDenied): %+v", len(got), got)
	}
	wantRef := corev1.ObjectReference{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "web-7f9c", UID: "rs-uid", Namespace: "team-a"}
	want := []event{
		{wantRef, corev1.EventTypeWarning, "Conflict", ActionInject,
			`sidecar template "log-shipper": container name "app" already exists in pod: the pod was denied (failurePolicy Fail)`},
		{wantRef, corev1.EventTypeWarning, "MissingParameter", ActionInject,
			`sidecar template "proxy": parameter "port" is not set (annotation proxy.param.sidecar.dev/port): the pod was admitted without this template (failurePolicy Ignore)`},
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("event %d:\n got %+v\nwant %+v", i, got[i], want[i])
		}
	}
}

func TestPodDecisionsNothingToSay(t *testing.T) {
	f := &fakeRecorder{}
	r := NewRecorder(f)
	r.PodDecisions("team-a", replicaSet, true, failing()) // dry run
	r.PodDecisions("team-a", nil, false, failing())       // a bare pod: no owner
	r.PodDecisions("team-a", replicaSet[:1], false, failing())
	r.PodDecisions("team-a", replicaSet, false, &inject.Result{Decisions: []inject.Decision{
		{Namespace: "team-a", Name: "ok", Outcome: inject.OutcomeInjected, Reason: inject.ReasonRequested},
		{Namespace: "team-a", Name: "again", Outcome: inject.OutcomeAlreadyInjected, Reason: inject.ReasonAlreadyInjected},
	}})
	r.PodDecisions("team-a", replicaSet, false, nil)
	if got := f.take(); len(got) != 0 {
		t.Errorf("want no events (dry run, no controller owner, nothing failed, nil result), got %+v", got)
	}
}

func TestPodDecisionsRateLimited(t *testing.T) {
	f := &fakeRecorder{}
	c := &clock{t: time.Unix(1000, 0)}
	r := NewRecorder(f, WithClock(c.now), WithInterval(time.Minute))

	for range 100 { // a crash-looping ReplicaSet
		r.PodDecisions("team-a", replicaSet, false, failing())
		c.t = c.t.Add(100 * time.Millisecond)
	}
	if got := f.take(); len(got) != 2 {
		t.Fatalf("100 failing pods of one owner within 10s: %d events, want 2 (one per template and reason)", len(got))
	}

	// Another owner is not limited by the first one.
	other := []metav1.OwnerReference{{APIVersion: "batch/v1", Kind: "Job", Name: "migrate", UID: "job-uid", Controller: ptr.To(true)}}
	r.PodDecisions("team-a", other, false, failing())
	if got := f.take(); len(got) != 2 || got[0].regarding.Kind != "Job" {
		t.Fatalf("first failure of another owner: want 2 events on the Job, got %+v", got)
	}

	// Another reason for the same owner and template is news.
	res := failing()
	res.Decisions[2].Reason, res.Decisions[2].Message = inject.ReasonInvalid, "sidecar template \"log-shipper\" is invalid: ..."
	r.PodDecisions("team-a", replicaSet, false, res)
	if got := f.take(); len(got) != 1 || got[0].reason != "Invalid" {
		t.Fatalf("new reason for the same owner and template: want 1 Invalid event, got %+v", got)
	}

	// After the interval, the same failures are reported again.
	c.t = c.t.Add(time.Minute)
	r.PodDecisions("team-a", replicaSet, false, failing())
	if got := f.take(); len(got) != 2 {
		t.Fatalf("after the interval: %d events, want 2", len(got))
	}
}

func TestRateLimiterIsBounded(t *testing.T) {
	f := &fakeRecorder{}
	c := &clock{t: time.Unix(1000, 0)}
	r := NewRecorder(f, WithClock(c.now), WithMaxKeys(10))
	owner := func(i int) []metav1.OwnerReference {
		return []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: fmt.Sprint("rs-", i),
			UID: types.UID(fmt.Sprint("uid-", i)), Controller: ptr.To(true)}}
	}
	for i := range 50 {
		r.PodDecisions("team-a", owner(i), false, failing())
	}
	if n := r.tracked(); n != 10 {
		t.Errorf("limiter holds %d keys, want at most 10", n)
	}
	if got := f.take(); len(got) != 100 {
		t.Errorf("50 distinct owners: %d events, want 100", len(got))
	}
	// The most recent keys are still limited; the oldest were forgotten.
	r.PodDecisions("team-a", owner(49), false, failing())
	if got := f.take(); len(got) != 0 {
		t.Errorf("the most recent owner again within the interval: want no event, got %d", len(got))
	}
	r.PodDecisions("team-a", owner(0), false, failing())
	if got := f.take(); len(got) != 2 {
		t.Errorf("an evicted owner again: want 2 events, got %d", len(got))
	}

	// A remembered owner whose interval is over emits again, and the limiter never grows past its bound.
	c.t = c.t.Add(2 * time.Minute)
	r.PodDecisions("team-a", owner(49), false, failing())
	if got := f.take(); len(got) != 2 {
		t.Errorf("the most recent owner again after the interval: want 2 events, got %d", len(got))
	}
	if n := r.tracked(); n != 10 {
		t.Errorf("limiter holds %d keys, want 10", n)
	}
}

func TestRecordReadsOwnersFromTheRequest(t *testing.T) {
	f := &fakeRecorder{}
	r := NewRecorder(f)
	pod := `{"apiVersion":"v1","kind":"Pod","metadata":{"generateName":"web-7f9c-","ownerReferences":[` +
		`{"apiVersion":"apps/v1","kind":"ReplicaSet","name":"web-7f9c","uid":"rs-uid","controller":true}]}}`
	req := admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{Namespace: "team-a",
		Object: runtime.RawExtension{Raw: []byte(pod)}}}
	r.Record(context.Background(), req, failing())
	got := f.take()
	if len(got) != 2 || got[0].regarding.Name != "web-7f9c" || got[0].regarding.Namespace != "team-a" {
		t.Fatalf("want 2 events on ReplicaSet team-a/web-7f9c, got %+v", got)
	}
	req.DryRun = ptr.To(true)
	r = NewRecorder(f)
	r.Record(context.Background(), req, failing())
	if got := f.take(); len(got) != 0 {
		t.Errorf("dry run: want no events, got %+v", got)
	}
}

func TestTemplateReadyChanged(t *testing.T) {
	f := &fakeRecorder{}
	r := NewRecorder(f)
	tpl := &v1alpha1.SidecarTemplate{ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", Name: "log-shipper", UID: "t-uid"}}
	r.TemplateReadyChanged(tpl, false, "Invalid", "spec.hostNetwork can only be set by a cluster-wide template")
	r.TemplateReadyChanged(tpl, false, "Invalid", "spec.hostNetwork can only be set by a cluster-wide template")
	r.TemplateReadyChanged(tpl, true, "Ready", "the template can be injected")
	got := f.take()
	if len(got) != 3 {
		t.Fatalf("want 3 events (template events are not rate-limited), got %+v", got)
	}
	wantRef := corev1.ObjectReference{APIVersion: "sidecar.dev/v1alpha1", Kind: "SidecarTemplate", Namespace: "team-a", Name: "log-shipper", UID: "t-uid"}
	if got[0].regarding != wantRef || got[0].eventType != corev1.EventTypeWarning || got[0].reason != "Invalid" ||
		got[0].action != ActionReconcile || !strings.Contains(got[0].note, "hostNetwork") {
		t.Errorf("not-ready event: %+v", got[0])
	}
	if got[2].eventType != corev1.EventTypeNormal || got[2].reason != "Ready" {
		t.Errorf("ready event: %+v", got[2])
	}
}

func TestLongMessagesAreCutAndPercentSignsKept(t *testing.T) {
	f := &fakeRecorder{}
	r := NewRecorder(f)
	res := &inject.Result{Decisions: []inject.Decision{{Namespace: "a", Name: "t", Outcome: inject.OutcomeSkipped,
		Reason: inject.ReasonConflict, Message: "100% " + strings.Repeat("é", 2000)}}}
	r.PodDecisions("a", replicaSet, false, res)
	got := f.take()
	if len(got) != 1 {
		t.Fatalf("want 1 event, got %d", len(got))
	}
	note := got[0].note
	if len(note) > MaxNoteBytes || !strings.HasSuffix(note, "...") || !strings.HasPrefix(note, "100% é") {
		t.Errorf("note of %d bytes, want at most %d, starting with the message and ending with ...: %.40q", len(note), MaxNoteBytes, note)
	}
	if !strings.HasSuffix(strings.TrimSuffix(note, "..."), "é") {
		t.Errorf("note cut inside a rune: %q", note[len(note)-8:])
	}
}

// A namespaced template replacing a cluster-wide one for a pod is visible on the pod's controller: a Normal
// Event, rate-limited like the failures; a template that is not used (OverrideDenied) or that a policy serves
// gets none here (the template's Ready condition and its Event say the first; the second is nothing to report).
func TestPodDecisionsReportAReplacementOnce(t *testing.T) {
	f := &fakeRecorder{}
	c := &clock{t: time.Unix(1000, 0)}
	r := NewRecorder(f, WithClock(c.now), WithInterval(time.Minute))
	res := &inject.Result{Decisions: []inject.Decision{
		{Namespace: "team-a", Name: "tracing", Outcome: inject.OutcomeInjected, Reason: inject.ReasonRequested},
		{Namespace: "sidecar-injector", Name: "tracing", Outcome: inject.OutcomeNotApplicable, Reason: inject.ReasonShadowed},
		{Namespace: "team-a", Name: "mesh", Outcome: inject.OutcomeNotApplicable, Reason: inject.ReasonOverrideDenied},
		{Namespace: "sidecar-injector", Name: "logs", Outcome: inject.OutcomeNotApplicable, Reason: inject.ReasonServedByPolicy},
	}}
	for range 10 {
		r.PodDecisions("team-a", replicaSet, false, res)
		c.t = c.t.Add(time.Second)
	}
	got := f.take()
	want := event{corev1.ObjectReference{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "web-7f9c", UID: "rs-uid", Namespace: "team-a"},
		corev1.EventTypeNormal, "Shadowed", ActionInject,
		"the cluster-wide sidecar template sidecar-injector/tracing was replaced by the template team-a/tracing of the pod's namespace (its spec.namespaceOverride is Allow)"}
	if len(got) != 1 || got[0] != want {
		t.Fatalf("10 pods of one owner whose template was replaced: got %+v, want one event %+v", got, want)
	}
}

func TestAStalePodDeniedByItsTemplateSaysStalePods(t *testing.T) {
	f := &fakeRecorder{}
	r := NewRecorder(f)
	r.PodDecisions("team-a", replicaSet, false, &inject.Result{Denied: true, Decisions: []inject.Decision{
		{Namespace: "team-a", Name: "proxy", Outcome: inject.OutcomeDenied, Reason: inject.ReasonOutdated,
			Message: `sidecar template "proxy": the pod's sidecar is revision 1 of the template, the current one is revision 2`},
	}})
	got := f.take()
	if len(got) != 1 || got[0].reason != "Outdated" || !strings.HasSuffix(got[0].note, "the pod was denied (spec.updatePolicy.stalePods Deny)") {
		t.Errorf("events %+v, want one Outdated event naming stalePods Deny", got)
	}
}
