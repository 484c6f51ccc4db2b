package e2e

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/sidecar-dev/sidecar-injector/internal/api/v1alpha1"
	"github.com/sidecar-dev/sidecar-injector/internal/testenv"
)

// waitJobDone waits until the Job has finished and returns its one pod.
func waitJobDone(t *testing.T, job *batchv1.Job) corev1.Pod {
	t.Helper()
	testenv.Eventually(t, podDeadline, "Job "+job.Name+" finishes", func() error {
		if err := k8s.Get(context.Background(), client.ObjectKeyFromObject(job), job); err != nil {
			return err
		}
		for _, c := range job.Status.Conditions {
			if c.Status == corev1.ConditionTrue && (c.Type == batchv1.JobComplete || c.Type == batchv1.JobFailed) {
				return nil
			}
		}
		return fmt.Errorf("conditions %+v", job.Status.Conditions)
	})
	var pods corev1.PodList
	if err := k8s.List(ctxFor(t, 30*time.Second), &pods, client.InNamespace(job.Namespace), client.MatchingLabels{"job-name": job.Name}); err != nil || len(pods.Items) != 1 {
		t.Fatalf("want the Job's one pod, got %d (%v)", len(pods.Items), err)
	}
	if job.Status.Succeeded != 1 {
		t.Fatalf("Job %s did not complete: succeeded %d, conditions %+v%s", job.Name, job.Status.Succeeded, job.Status.Conditions,
			podSummary(job.Namespace, pods.Items[0].Name))
	}
	return pods.Items[0]
}

// testCronJobNativeShipper: a CronJob's Job, with a log shipper template whose sidecar is a regular container
// (jobPolicy absent: Native), completes; the shipper ran as a native sidecar and shipped the Job's lines. The Job
// is made from the CronJob as `kubectl create job --from=cronjob/...` makes it, so the story does not wait for
// the schedule.
func testCronJobNativeShipper(t *testing.T) {
	start := time.Now()
	ns := namespace(t, "cronjob")
	createTemplate(t, ns, "log-shipper", logShipperSpec(false))
	cron := &batchv1.CronJob{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "nightly"},
		Spec: batchv1.CronJobSpec{Schedule: "0 3 * * *", JobTemplate: batchv1.JobTemplateSpec{Spec: batchv1.JobSpec{
			BackoffLimit: ptr.To[int32](0),
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{v1alpha1.AnnotationInject: "log-shipper"}},
				Spec: corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever,
					Containers: []corev1.Container{container("report", appImage, "write", "-file", logFile, "-lines", "4")}},
			},
		}}},
	}
	if err := k8s.Create(ctxFor(t, 30*time.Second), cron); err != nil {
		t.Fatal(err)
	}
	job := &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "nightly-manual",
			Annotations:     map[string]string{"cronjob.kubernetes.io/instantiate": "manual"},
			OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(cron, batchv1.SchemeGroupVersion.WithKind("CronJob"))}},
		Spec: *cron.Spec.JobTemplate.Spec.DeepCopy(),
	}
	if err := k8s.Create(ctxFor(t, 30*time.Second), job); err != nil {
		t.Fatal(err)
	}
	pod := waitJobDone(t, job)
	if got := containerNames(pod.Spec.InitContainers); !slices.Equal(got, []string{"log-shipper"}) {
		t.Fatalf("init containers = %v, want the template's container as a native sidecar [log-shipper]", got)
	}
	if rp := pod.Spec.InitContainers[0].RestartPolicy; rp == nil || *rp != corev1.ContainerRestartPolicyAlways {
		t.Fatalf("log-shipper restartPolicy = %v, want Always (a native sidecar)", rp)
	}
	if got := containerNames(pod.Spec.Containers); !slices.Equal(got, []string{"report"}) {
		t.Fatalf("containers = %v, want only the Job's [report]", got)
	}
	shipped := waitForLog(t, ns, pod.Name, "log-shipper", "shipped: line 1 of app "+pod.Name, "shipped: line 4 of app "+pod.Name)
	logf(t, "CronJob %s's Job complete in %s; its native log shipper shipped:\n%s", cron.Name, time.Since(start).Round(100*time.Millisecond), shipped)
}

// decisionsRE reads one series of sidecar_injector_template_decisions_total.
var decisionsRE = regexp.MustCompile(`(?m)^sidecar_injector_template_decisions_total\{([^}]*)\} (\S+)$`)

// decisionCount sums, over the injector's pods, the decisions counted for a template with an outcome and reason.
func decisionCount(t *testing.T, ns, template, outcome, reason string) float64 {
	t.Helper()
	var pods corev1.PodList
	if err := k8s.List(ctxFor(t, 30*time.Second), &pods, client.InNamespace(injectorNS), client.MatchingLabels{"app.kubernetes.io/name": "sidecar-injector"}); err != nil {
		t.Fatal(err)
	}
	want := []string{`namespace="` + ns + `"`, `template="` + template + `"`, `outcome="` + outcome + `"`, `reason="` + reason + `"`}
	sum := 0.0
	for _, p := range pods.Items {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		body, err := clientset.CoreV1().Pods(injectorNS).ProxyGet("http", p.Name, "8080", "/metrics", nil).DoRaw(ctx)
		cancel()
		if err != nil {
			t.Fatalf("metrics of %s: %v", p.Name, err)
		}
		for _, m := range decisionsRE.FindAllStringSubmatch(string(body), -1) {
			if !slices.ContainsFunc(want, func(w string) bool { return !strings.Contains(m[1], w) }) {
				v, _ := strconv.ParseFloat(m[2], 64)
				sum += v
			}
		}
	}
	return sum
}

// testJobSkipCounted: a Job's pod that requests a jobPolicy Skip template runs without it, completes, and the
// decision is counted with its own reason (JobPolicySkip) in the injector's metrics.
func testJobSkipCounted(t *testing.T) {
	start := time.Now()
	ns := namespace(t, "skip")
	spec := logShipperSpec(false)
	spec.JobPolicy = v1alpha1.JobPolicySkip
	createTemplate(t, ns, "log-shipper", spec)
	job := &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "skipped"},
		Spec: batchv1.JobSpec{BackoffLimit: ptr.To[int32](0), Template: corev1.PodTemplateSpec{
			ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{v1alpha1.AnnotationInject: "log-shipper"}},
			Spec: corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever,
				// Its own emptyDir to write to: the template (which would have brought one) is left out.
				Volumes: []corev1.Volume{{Name: "scratch", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}},
				Containers: []corev1.Container{func() corev1.Container {
					c := container("app", appImage, "write", "-file", logFile, "-lines", "1")
					c.VolumeMounts = []corev1.VolumeMount{{Name: "scratch", MountPath: logDir}}
					return c
				}()}},
		}},
	}
	if err := k8s.Create(ctxFor(t, 30*time.Second), job); err != nil {
		t.Fatal(err)
	}
	pod := waitJobDone(t, job)
	if len(pod.Spec.InitContainers) != 0 || !slices.Equal(containerNames(pod.Spec.Containers), []string{"app"}) {
		t.Fatalf("the Job's pod has init containers %v and containers %v, want only [app]: the template is Skip",
			containerNames(pod.Spec.InitContainers), containerNames(pod.Spec.Containers))
	}
	if _, injected := pod.Annotations[v1alpha1.AnnotationStatus]; injected {
		t.Errorf("the Job's pod has a record %q, want none", pod.Annotations[v1alpha1.AnnotationStatus])
	}
	var n float64
	testenv.Eventually(t, 30*time.Second, "the Skip decision is in the metrics", func() error {
		if n = decisionCount(t, ns, "log-shipper", "NotApplicable", "JobPolicySkip"); n < 1 {
			return fmt.Errorf("sidecar_injector_template_decisions_total{namespace=%q,template=\"log-shipper\",outcome=\"NotApplicable\",reason=\"JobPolicySkip\"} = %v", ns, n)
		}
		return nil
	})
	logf(t, "Job %s completed without the Skip template; JobPolicySkip decisions counted: %v (%s)", job.Name, n, time.Since(start).Round(100*time.Millisecond))
}

// testPerPodResources: a pod sets the cpu and memory parameters of a template by annotation, and its running
// sidecar has those requests and limits; a value above the template's maximum is denied with a message naming
// the parameter, the value and the bound.
func testPerPodResources(t *testing.T) {
	start := time.Now()
	ns := namespace(t, "resources")
	bound := func(s string) *intstr.IntOrString { v := intstr.Parse(s); return &v }
	proxy := proxySidecar("sized")
	createTemplate(t, ns, "proxy", v1alpha1.SidecarTemplateSpec{
		Parameters: []v1alpha1.TemplateParameter{
			{Name: "cpu", Type: v1alpha1.ParameterTypeQuantity, Default: ptr.To("50m"), Minimum: bound("10m"), Maximum: bound("500m")},
			{Name: "memory", Type: v1alpha1.ParameterTypeQuantity, Default: ptr.To("32Mi"), Maximum: bound("256Mi")},
		},
		Containers: []corev1.Container{proxy},
		TypedPlaceholders: map[string]string{
			"containers[0].resources.requests.cpu":    "{{ params.cpu }}",
			"containers[0].resources.requests.memory": "{{ params.memory }}",
			"containers[0].resources.limits.cpu":      "{{ params.cpu }}",
			"containers[0].resources.limits.memory":   "{{ params.memory }}",
		},
	})
	pod := createPod(t, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "sized", Annotations: map[string]string{v1alpha1.AnnotationInject: "proxy",
			"proxy.param.sidecar.dev/cpu": "0.2", "proxy.param.sidecar.dev/memory": "64Mi"}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{container("app", appImage, "get", "-url", proxyURL, "-stay")}},
	})
	waitForLog(t, ns, pod.Name, "app", "proxy sized says hello")
	running := getPod(t, ns, pod.Name)
	var sidecar *corev1.Container
	for i := range running.Spec.Containers {
		if running.Spec.Containers[i].Name == "proxy" {
			sidecar = &running.Spec.Containers[i]
		}
	}
	if sidecar == nil {
		t.Fatalf("no proxy container in %v", containerNames(running.Spec.Containers))
	}
	for what, got := range map[string]resource.Quantity{"requests.cpu": sidecar.Resources.Requests[corev1.ResourceCPU],
		"limits.cpu": sidecar.Resources.Limits[corev1.ResourceCPU], "requests.memory": sidecar.Resources.Requests[corev1.ResourceMemory],
		"limits.memory": sidecar.Resources.Limits[corev1.ResourceMemory]} {
		want := resource.MustParse(map[bool]string{true: "200m", false: "64Mi"}[strings.HasSuffix(what, "cpu")])
		if got.Cmp(want) != 0 {
			t.Errorf("the running proxy's %s = %s, want %s", what, got.String(), want.String())
		}
	}
	if running.Status.QOSClass != corev1.PodQOSBurstable {
		t.Errorf("QoS class %s, want Burstable (the app sets nothing, the sidecar requests = limits)", running.Status.QOSClass)
	}
	greedy := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "greedy", Annotations: map[string]string{v1alpha1.AnnotationInject: "proxy",
			"proxy.param.sidecar.dev/memory": "1Gi"}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{container("app", appImage, "get", "-url", proxyURL, "-stay")}},
	}
	err := k8s.Create(ctxFor(t, 30*time.Second), greedy)
	want := `parameter "memory" (Quantity, set by the pod's annotation "proxy.param.sidecar.dev/memory"): "1Gi" is above the maximum 256Mi`
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("creating a pod with memory 1Gi: %v, want a denial containing %q", err, want)
	}
	logf(t, "the running proxy has cpu 200m, memory 64Mi as its pod set; 1Gi was denied: %v (%s)", err, time.Since(start).Round(100*time.Millisecond))
}
