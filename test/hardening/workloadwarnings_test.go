package hardening

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/sidecar-dev/sidecar-injector/internal/api/v1alpha1"
	"github.com/sidecar-dev/sidecar-injector/internal/testenv"
)

// warnings records the warnings of the responses to one client.
type warnings struct {
	mu   sync.Mutex
	msgs []string
}

func (w *warnings) HandleWarningHeader(_ int, _ string, msg string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.msgs = append(w.msgs, msg)
}

func (w *warnings) take() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := w.msgs
	w.msgs = nil
	return out
}

// installWorkloadWarnings creates the chart's workload-warning policies and bindings (removed when the test
// ends).
func installWorkloadWarnings(t *testing.T) {
	t.Helper()
	docs := renderChart(t, "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding")
	var objs []client.Object
	for _, kind := range []string{"ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"} {
		for _, doc := range docs[kind] {
			var obj client.Object = &admissionregistrationv1.ValidatingAdmissionPolicy{}
			if kind == "ValidatingAdmissionPolicyBinding" {
				obj = &admissionregistrationv1.ValidatingAdmissionPolicyBinding{}
			}
			if err := yaml.UnmarshalStrict(doc, obj); err != nil {
				t.Fatal(err)
			}
			if strings.Contains(obj.GetName(), "-workload-warnings") || strings.Contains(obj.GetName(), "-job-keep-warnings") {
				objs = append(objs, obj)
			}
		}
	}
	if len(objs) != 5 {
		t.Fatalf("the default rendering has %d workload-warning policies and bindings, want 5 (2 policies, 3 bindings)", len(objs))
	}
	for _, obj := range objs {
		if err := k8s.Create(ctxFor(t), obj); err != nil {
			t.Fatalf("the API server refuses the chart's %s: %v", obj.GetName(), err)
		}
		t.Cleanup(func() { _ = k8s.Delete(context.Background(), obj) })
	}
}

// TestApplyingAWorkloadThatAsksForInjectionWhereNothingReadsItWarnsTheClient applies (server-side dry run, as
// kubectl apply --dry-run=server; a real apply gets the same warnings) workloads through the API server with the
// chart's warning policies: the annotation on a workload's own metadata, and a Job or CronJob asking for a
// jobPolicy Keep template (namespaced or cluster-wide), each come back as a warning naming the fix; the same
// workloads written right come back without one; nothing is refused.
func TestApplyingAWorkloadThatAsksForInjectionWhereNothingReadsItWarnsTheClient(t *testing.T) {
	ctx := ctxFor(t)
	ns := "warned"
	if err := k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = k8s.Delete(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})
	})
	agent := []corev1.Container{{Name: "agent", Image: "example.com/agent:1"}}
	for _, st := range []*v1alpha1.SidecarTemplate{
		{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "watcher"}, Spec: v1alpha1.SidecarTemplateSpec{JobPolicy: v1alpha1.JobPolicyKeep, Containers: agent}},
		{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "shipper"}, Spec: v1alpha1.SidecarTemplateSpec{Containers: agent}},
		{ObjectMeta: metav1.ObjectMeta{Namespace: injectorNS, Name: "platform-watcher"}, Spec: v1alpha1.SidecarTemplateSpec{JobPolicy: v1alpha1.JobPolicyKeep, Containers: agent}},
	} {
		if err := k8s.Create(ctx, st); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = k8s.Delete(context.Background(), st) })
	}
	installWorkloadWarnings(t)

	rec := &warnings{}
	cfg := rest.CopyConfig(restConfig)
	cfg.WarningHandler = rec
	c, err := client.New(cfg, client.Options{Scheme: k8s.Scheme()})
	if err != nil {
		t.Fatal(err)
	}
	pod := func(inject string) corev1.PodTemplateSpec {
		p := corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "w"}},
			Spec: corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever, Containers: []corev1.Container{{Name: "app", Image: "example.com/app:1"}}}}
		if inject != "" {
			p.Annotations = map[string]string{v1alpha1.AnnotationInject: inject}
		}
		return p
	}
	onOwn := metav1.ObjectMeta{Namespace: ns, Name: "w", Annotations: map[string]string{v1alpha1.AnnotationInject: "shipper"}}
	plain := metav1.ObjectMeta{Namespace: ns, Name: "w"}
	always := func(p corev1.PodTemplateSpec) corev1.PodTemplateSpec {
		p.Spec.RestartPolicy = corev1.RestartPolicyAlways
		return p
	}
	sel := &metav1.LabelSelector{MatchLabels: map[string]string{"app": "w"}}
	cron := func(meta metav1.ObjectMeta, p corev1.PodTemplateSpec) *batchv1.CronJob {
		return &batchv1.CronJob{ObjectMeta: meta, Spec: batchv1.CronJobSpec{Schedule: "0 3 * * *",
			JobTemplate: batchv1.JobTemplateSpec{Spec: batchv1.JobSpec{Template: p}}}}
	}
	rows := []struct {
		sentence string
		obj      client.Object
		want     string // "" means no warning
	}{
		{"a Deployment with the annotation on its own metadata", &appsv1.Deployment{ObjectMeta: onOwn, Spec: appsv1.DeploymentSpec{Selector: sel, Template: always(pod(""))}},
			"sidecar.dev/inject: shipper is on the Deployment's own metadata, where nothing reads it; move it to the pod template's (spec.template.metadata.annotations)"},
		{"a StatefulSet with the annotation on its own metadata", &appsv1.StatefulSet{ObjectMeta: onOwn, Spec: appsv1.StatefulSetSpec{Selector: sel, Template: always(pod(""))}},
			"is on the StatefulSet's own metadata"},
		{"a DaemonSet with the annotation on its own metadata", &appsv1.DaemonSet{ObjectMeta: onOwn, Spec: appsv1.DaemonSetSpec{Selector: sel, Template: always(pod(""))}},
			"is on the DaemonSet's own metadata"},
		{"a ReplicaSet with the annotation on its own metadata", &appsv1.ReplicaSet{ObjectMeta: onOwn, Spec: appsv1.ReplicaSetSpec{Selector: sel, Template: always(pod(""))}},
			"is on the ReplicaSet's own metadata"},
		{"a Job with the annotation on its own metadata", &batchv1.Job{ObjectMeta: onOwn, Spec: batchv1.JobSpec{Template: pod("")}},
			"is on the Job's own metadata"},
		{"a CronJob with the annotation on its own metadata", cron(onOwn, pod("")),
			"is on the CronJob's own metadata, where nothing reads it; move it to the pod template's (spec.jobTemplate.spec.template.metadata.annotations)"},
		{"a Deployment asking in its pod template", &appsv1.Deployment{ObjectMeta: plain, Spec: appsv1.DeploymentSpec{Selector: sel, Template: always(pod("shipper"))}}, ""},
		{"a Job asking for a namespaced jobPolicy Keep template", &batchv1.Job{ObjectMeta: plain, Spec: batchv1.JobSpec{Template: pod("shipper, watcher")}},
			`sidecar template "watcher" has jobPolicy: Keep: its containers are added to this Job's pods as regular containers`},
		{"a CronJob asking for a cluster-wide jobPolicy Keep template", cron(plain, pod("platform-watcher")),
			`sidecar template "platform-watcher" has jobPolicy: Keep: its containers are added to this CronJob's pods`},
		{"a Job asking for a jobPolicy Native template", &batchv1.Job{ObjectMeta: plain, Spec: batchv1.JobSpec{Template: pod("shipper")}}, ""},
	}
	// The API server loads the policies and their params a moment after they are created.
	testenv.Eventually(t, 30*time.Second, "the warning policies are in force", func() error {
		rec.take()
		for _, i := range []int{0, 7, 8} {
			if err := c.Create(ctx, rows[i].obj.DeepCopyObject().(client.Object), client.DryRunAll); err != nil {
				return err
			}
		}
		if got := rec.take(); len(got) != 3 {
			return fmt.Errorf("warnings %q", got)
		}
		return nil
	})
	for _, row := range rows {
		t.Run(row.sentence, func(t *testing.T) {
			rec.take()
			if err := c.Create(ctx, row.obj.DeepCopyObject().(client.Object), client.DryRunAll); err != nil {
				t.Fatalf("refused: %v (the policies only warn)", err)
			}
			got := rec.take()
			switch {
			case row.want == "" && len(got) > 0:
				t.Errorf("warnings %q, want none", got)
			case row.want != "" && (len(got) != 1 || !strings.Contains(got[0], row.want)):
				t.Errorf("warnings %q, want one containing %q", got, row.want)
			}
		})
	}
}
