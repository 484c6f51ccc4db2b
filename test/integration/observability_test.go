package integration

import (
	"bufio"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/sidecar-dev/sidecar-injector/internal/api/v1alpha1"
	"github.com/sidecar-dev/sidecar-injector/internal/testenv"
)

// ownedBy makes the pod one that ReplicaSet rs created.
func ownedBy(rs *appsv1.ReplicaSet) podOpt {
	return func(p *corev1.Pod) {
		p.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: rs.Name,
			UID: rs.UID, Controller: ptrTo(true), BlockOwnerDeletion: ptrTo(true)}}
	}
}

func createReplicaSet(t *testing.T, ns, name string) *appsv1.ReplicaSet {
	t.Helper()
	labels := map[string]string{"app": name}
	rs := &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: appsv1.ReplicaSetSpec{
			Replicas: ptrTo(int32(0)), // envtest runs no controllers; the test creates the pods itself
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "app:1"}}},
			},
		},
	}
	if err := k8s.Create(ctxFor(t), rs); err != nil {
		t.Fatalf("create ReplicaSet %s/%s: %v", ns, name, err)
	}
	return rs
}

// eventsAbout lists the Events (events.k8s.io/v1) whose regarding object is the ReplicaSet.
func eventsAbout(t *testing.T, rs *appsv1.ReplicaSet) []eventsv1.Event {
	t.Helper()
	var list eventsv1.EventList
	if err := k8s.List(ctxFor(t), &list, client.InNamespace(rs.Namespace)); err != nil {
		t.Fatalf("list events: %v", err)
	}
	var out []eventsv1.Event
	for _, e := range list.Items {
		if e.Regarding.Kind == "ReplicaSet" && e.Regarding.Name == rs.Name && e.Regarding.UID == rs.UID {
			out = append(out, e)
		}
	}
	return out
}

func TestATemplateThatCannotBeAppliedRaisesAnEventOnThePodsReplicaSet(t *testing.T) {
	ns := createNamespace(t, "events", nil)
	createTemplate(t, ns, "optional-agent", v1alpha1.SidecarTemplateSpec{
		FailurePolicy: v1alpha1.FailurePolicyIgnore,
		Containers:    []corev1.Container{{Name: "app", Image: "agent:1"}}, // clashes with the pod's own container
	})
	waitUntilServed(t, ns, ns, "optional-agent", func(p *corev1.Pod) { p.Spec.Containers[0].Name = "main" })
	rs := createReplicaSet(t, ns, "web-5d8f9c")

	// A dry run raises nothing, whatever happens to the templates.
	if _, err := tryCreatePod(t, newPod(ns, "dry", withInject("dry-run-only-missing"), ownedBy(rs)), true); err == nil {
		t.Fatal("a dry run requesting a missing template was admitted")
	}
	// Skipped under Ignore: the pod is admitted; denied: a requested template that does not exist.
	createPod(t, newPod(ns, "web-5d8f9c-a", withInject("optional-agent"), ownedBy(rs)))
	if _, err := tryCreatePod(t, newPod(ns, "web-5d8f9c-b", withInject("no-such-template"), ownedBy(rs)), false); err == nil {
		t.Fatal("a pod requesting a missing template was admitted")
	}

	var got []eventsv1.Event
	testenv.Eventually(t, 10*time.Second, "Events on the ReplicaSet for the conflict and the missing template", func() error {
		got = eventsAbout(t, rs)
		var reasons []string
		for _, e := range got {
			reasons = append(reasons, e.Reason)
		}
		if !strings.Contains(strings.Join(reasons, ","), "Conflict") || !strings.Contains(strings.Join(reasons, ","), "NotFound") {
			return fmt.Errorf("events on the ReplicaSet: %v", reasons)
		}
		return nil
	})
	for _, e := range got {
		if e.Type != corev1.EventTypeWarning {
			t.Errorf("event %s is %s, want Warning", e.Reason, e.Type)
		}
		switch e.Reason {
		case "Conflict":
			if !strings.Contains(e.Note, `sidecar template "optional-agent": container name "app" already exists in pod`) ||
				!strings.Contains(e.Note, "admitted without this template") {
				t.Errorf("Conflict event note = %q", e.Note)
			}
		case "NotFound":
			if !strings.Contains(e.Note, `"no-such-template"`) || !strings.Contains(e.Note, "denied") {
				t.Errorf("NotFound event note = %q", e.Note)
			}
		}
		if strings.Contains(e.Note, "dry-run-only-missing") {
			t.Errorf("a dry run raised an Event: %q", e.Note)
		}
	}

	// The same failure again within the rate limit raises no second Event (a crash-looping ReplicaSet cannot
	// flood etcd).
	createPod(t, newPod(ns, "web-5d8f9c-c", withInject("optional-agent"), ownedBy(rs)))
	time.Sleep(500 * time.Millisecond) // a negative: give a wrongly emitted Event time to land
	conflicts := 0
	for _, e := range eventsAbout(t, rs) {
		if e.Reason == "Conflict" {
			conflicts++
		}
	}
	if conflicts != 1 {
		t.Errorf("%d Conflict events on the ReplicaSet after the same failure twice, want 1", conflicts)
	}
}

// scrape reads the injector's metrics endpoint into series -> value.
func scrape(t *testing.T) map[string]float64 {
	t.Helper()
	resp, err := http.Get("http://" + metricsAddr + "/metrics")
	if err != nil {
		t.Fatalf("scrape metrics: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape metrics: HTTP %d", resp.StatusCode)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") || !strings.HasPrefix(line, "sidecar_injector_") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("metric line %q: %v", line, err)
		}
		out[line[:i]] = v
	}
	return out
}

func TestKnownAdmissionsShowInTheMetricsEndpoint(t *testing.T) {
	ns := createNamespace(t, "metrics", nil)
	createTemplate(t, ns, "counted", v1alpha1.SidecarTemplateSpec{
		Containers: []corev1.Container{{Name: "counted", Image: "agent:1"}},
	})
	waitUntilServed(t, ns, ns, "counted")

	before := scrape(t)
	createPod(t, newPod(ns, "injected-1", withInject("counted")))
	createPod(t, newPod(ns, "injected-2", withInject("counted")))
	createPod(t, newPod(ns, "plain"))
	if _, err := tryCreatePod(t, newPod(ns, "denied", withInject("not-there")), false); err == nil {
		t.Fatal("a pod requesting a missing template was admitted")
	}
	after := scrape(t)

	delta := func(series string) float64 { return after[series] - before[series] }
	for series, want := range map[string]float64{
		`sidecar_injector_admissions_total{result="injected"}`:                                                                              2,
		`sidecar_injector_admissions_total{result="unchanged"}`:                                                                             1,
		`sidecar_injector_admissions_total{result="denied"}`:                                                                                1,
		fmt.Sprintf(`sidecar_injector_template_decisions_total{namespace=%q,outcome="Injected",reason="Requested",template="counted"}`, ns): 2,
		`sidecar_injector_template_decisions_total{namespace="",outcome="Denied",reason="NotFound",template=""}`:                            1,
	} {
		if got := delta(series); got != want {
			t.Errorf("%s went up by %v, want %v", series, got, want)
		}
	}
	if got := delta("sidecar_injector_engine_duration_seconds_count"); got != 4 {
		t.Errorf("engine_duration_seconds observed %v admissions, want 4", got)
	}
	// Every request the API server sent was answered (denial included) and timed. Only this test admits pods
	// meanwhile; the API server may retry, so at least 4.
	if got := delta(`sidecar_injector_webhook_requests_total{code="200"}`); got < 4 {
		t.Errorf(`webhook_requests_total{code="200"} went up by %v, want at least 4`, got)
	}
	if got := delta("sidecar_injector_webhook_request_duration_seconds_count"); got < 4 {
		t.Errorf("webhook_request_duration_seconds observed %v requests, want at least 4", got)
	}
	for series := range after {
		if strings.Contains(series, "injected-1") || strings.Contains(series, "plain") {
			t.Errorf("a pod name appears in a metric label: %s", series)
		}
	}
}
