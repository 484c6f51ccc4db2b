package e2e

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/sidecar-dev/sidecar-injector/internal/api/v1alpha1"
	"github.com/sidecar-dev/sidecar-injector/internal/testenv"
)

const (
	logDir   = "/var/log/app"
	logFile  = logDir + "/app.log"
	proxyURL = "http://127.0.0.1:15001/"
)

// TestCluster installs the chart and runs the stories in order: the stories need the injector, the availability
// phases disturb it, and the uninstall removes it.
func TestCluster(t *testing.T) {
	installChart(t)
	t.Run("a log shipper ships the lines the app writes to a shared emptyDir", testLogShipper)
	t.Run("an app reaches its proxy sidecar on 127.0.0.1", testLocalhostProxy)
	t.Run("a sidecar as the cluster stores it is recognised on the next pass", testStoredSidecarIsRecognised)
	t.Run("a native sidecar runs before the pod's own init container, which reaches it", testNativeSidecarBeforeInit)
	t.Run("a Job whose pod gets a native sidecar completes", testJobCompletes)
	t.Run("a CronJob's Job completes with a Native log shipper that shipped its lines", testCronJobNativeShipper)
	t.Run("a Skip template leaves a Job's pod alone and is counted with its own reason", testJobSkipCounted)
	t.Run("a pod's cpu and memory parameters size its running sidecar; a value out of bounds is denied", testPerPodResources)
	t.Run("a Deployment selected by a template is counted and rolled to a new template version", testDeploymentRollout)
	t.Run("a rolling restart brings a new template version to Deployments one at a time, where allowed", testRollingRestart)
	t.Run("a canary, its promotion and the rolling restart; a Deployment rendered offline keeps rolling out", testCanaryThenRestart)
	t.Run("pod creation never fails while the injector is disrupted", testAvailability)
	t.Run("helm uninstall leaves nothing that blocks pod creation", testUninstall)
}

// installChart installs charts/sidecar-injector unmodified, with the local image, and waits until the API server
// reaches the webhook through its Service.
func installChart(t *testing.T) {
	start := time.Now()
	helm(t, "upgrade", "--install", release, chartDir(), "--namespace", injectorNS, "--create-namespace",
		"--set", "image.repository="+injectorRepo, "--set", "image.tag="+injectorTag,
		"--wait", "--timeout", rolloutDeadline.String())
	logf(t, "helm install --wait: %s", time.Since(start).Round(100*time.Millisecond))
	var pods corev1.PodList
	if err := k8s.List(ctxFor(t, 30*time.Second), &pods, client.InNamespace(injectorNS)); err != nil {
		t.Fatal(err)
	}
	ready := 0
	for _, p := range pods.Items {
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
				ready++
			}
		}
	}
	if ready != 2 {
		t.Fatalf("want the chart's 2 injector pods Ready after helm install --wait, got %d of %d", ready, len(pods.Items))
	}
	// The first template of the run is injected into a dry-run pod: the API server called the webhook through
	// the Service, with the caBundle the injector put into the webhook configuration.
	ns := namespace(t, "serving")
	createTemplate(t, ns, "probe", v1alpha1.SidecarTemplateSpec{
		Containers: []corev1.Container{container("probe-sidecar", proxyImage)}})
	logf(t, "the injector serves the API server through its Service %s after %s", release, time.Since(start).Round(100*time.Millisecond))
}

// logShipperSpec mounts a shared emptyDir at /var/log/app into the app and into a log shipper following app.log.
func logShipperSpec(native bool) v1alpha1.SidecarTemplateSpec {
	shipper := container("log-shipper", logshipperImage, "-file", logFile)
	shipper.VolumeMounts = []corev1.VolumeMount{{Name: "app-logs", MountPath: logDir, ReadOnly: true}}
	spec := v1alpha1.SidecarTemplateSpec{
		Volumes:      []corev1.Volume{{Name: "app-logs", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}},
		VolumeMounts: []corev1.VolumeMount{{Name: "app-logs", MountPath: logDir}},
	}
	if native {
		shipper.RestartPolicy = ptr.To(corev1.ContainerRestartPolicyAlways)
		spec.InitContainers = []corev1.Container{shipper}
	} else {
		spec.Containers = []corev1.Container{shipper}
	}
	return spec
}

func testLogShipper(t *testing.T) {
	ns := namespace(t, "logs")
	createTemplate(t, ns, "log-shipper", logShipperSpec(false))
	pod := createPod(t, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "writer", Annotations: map[string]string{v1alpha1.AnnotationInject: "log-shipper"}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{container("app", appImage, "write", "-file", logFile, "-lines", "5", "-stay")}},
	})
	if got := containerNames(pod.Spec.Containers); !slices.Equal(got, []string{"app", "log-shipper"}) {
		t.Fatalf("containers after injection = %v, want [app log-shipper]", got)
	}
	waitForLog(t, ns, pod.Name, "app", "app: wrote 5 lines to "+logFile)
	shipped := waitForLog(t, ns, pod.Name, "log-shipper", "shipped: line 1 of app writer", "shipped: line 5 of app writer")
	logf(t, "the log shipper's log:\n%s", shipped)
}

func proxySidecar(name string) corev1.Container {
	return container("proxy", proxyImage, "-listen", "127.0.0.1:15001", "-name", name)
}

func testLocalhostProxy(t *testing.T) {
	ns := namespace(t, "proxy")
	createTemplate(t, ns, "proxy", v1alpha1.SidecarTemplateSpec{Containers: []corev1.Container{proxySidecar("local")}})
	pod := createPod(t, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "client", Annotations: map[string]string{v1alpha1.AnnotationInject: "proxy"}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{container("app", appImage, "get", "-url", proxyURL, "-stay")}},
	})
	got := waitForLog(t, ns, pod.Name, "app", "answered", "proxy local says hello")
	waitForLog(t, ns, pod.Name, "proxy", "proxy: GET / from 127.0.0.1:")
	logf(t, "the app's log: %s", strings.TrimSpace(got))
}

func testNativeSidecarBeforeInit(t *testing.T) {
	ns := namespace(t, "native")
	sidecar := proxySidecar("native")
	sidecar.RestartPolicy = ptr.To(corev1.ContainerRestartPolicyAlways)
	createTemplate(t, ns, "proxy", v1alpha1.SidecarTemplateSpec{InitContainers: []corev1.Container{sidecar}})
	pod := createPod(t, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "init-user", Annotations: map[string]string{v1alpha1.AnnotationInject: "proxy"}},
		Spec: corev1.PodSpec{
			// The pod's own init container can only succeed when the proxy already runs: plain containers start
			// after every init container has finished.
			InitContainers: []corev1.Container{container("migrate", appImage, "get", "-url", proxyURL, "-for", "30s")},
			Containers:     []corev1.Container{container("app", appImage, "write", "-lines", "1", "-file", "/dev/stdout", "-stay")},
		},
	})
	if got := containerNames(pod.Spec.InitContainers); !slices.Equal(got, []string{"proxy", "migrate"}) {
		t.Fatalf("init containers after injection = %v, want the native sidecar first: [proxy migrate]", got)
	}
	term := terminated(t, ns, pod.Name, "migrate")
	out, _ := logs(ns, pod.Name, "migrate")
	if term.ExitCode != 0 || !strings.Contains(out, "proxy native says hello") {
		t.Fatalf("the pod's init container exited %d, want 0 after reaching the native sidecar; its log:\n%s", term.ExitCode, out)
	}
	waitForLog(t, ns, pod.Name, "app", "line 1 of app init-user", "app: wrote 1 lines")
	logf(t, "the pod's own init container: exit %d, %s", term.ExitCode, strings.TrimSpace(out))
}

func testJobCompletes(t *testing.T) {
	ns := namespace(t, "job")
	createTemplate(t, ns, "log-shipper", logShipperSpec(true))
	job := &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "batch"},
		Spec: batchv1.JobSpec{
			BackoffLimit: ptr.To[int32](0),
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{v1alpha1.AnnotationInject: "log-shipper"}},
				Spec: corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever,
					Containers: []corev1.Container{container("app", appImage, "write", "-file", logFile, "-lines", "3")}},
			},
		},
	}
	if err := k8s.Create(ctxFor(t, 30*time.Second), job); err != nil {
		t.Fatal(err)
	}
	pod := waitJobDone(t, job)
	if got := containerNames(pod.Spec.InitContainers); !slices.Equal(got, []string{"log-shipper"}) {
		t.Fatalf("init containers = %v, want the native sidecar [log-shipper]", got)
	}
	if term := terminated(t, ns, pod.Name, "app"); term.ExitCode != 0 {
		t.Fatalf("the Job's app exited %d, want 0", term.ExitCode)
	}
	shipped := waitForLog(t, ns, pod.Name, "log-shipper", "shipped: line 3 of app "+pod.Name)
	logf(t, "Job %s complete; its native log shipper shipped:\n%s", job.Name, shipped)
}

func testDeploymentRollout(t *testing.T) {
	ns := namespace(t, "rollout")
	createTemplate(t, ns, "web-proxy", v1alpha1.SidecarTemplateSpec{
		Selector:   &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
		Containers: []corev1.Container{proxySidecar("v1")}})
	labels := map[string]string{"app": "web"}
	dep := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web"},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](2),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{TerminationGracePeriodSeconds: ptr.To[int64](2),
					Containers: []corev1.Container{container("app", appImage, "get", "-url", proxyURL, "-stay")}},
			},
		},
	}
	if err := k8s.Create(ctxFor(t, 30*time.Second), dep); err != nil {
		t.Fatal(err)
	}
	waitRolledOut(t, dep)
	assertProxyVersion(t, ns, "v1")
	waitForColumns(t, ns, "web-proxy", "2", "0")

	// A new template version: the running pods are outdated until the Deployment is restarted.
	var st v1alpha1.SidecarTemplate
	if err := k8s.Get(ctxFor(t, 30*time.Second), client.ObjectKey{Namespace: ns, Name: "web-proxy"}, &st); err != nil {
		t.Fatal(err)
	}
	st.Spec.Containers = []corev1.Container{proxySidecar("v2")}
	if err := k8s.Update(ctxFor(t, 30*time.Second), &st); err != nil {
		t.Fatal(err)
	}
	waitForColumns(t, ns, "web-proxy", "2", "2")
	restart(t, dep)
	waitRolledOut(t, dep)
	assertProxyVersion(t, ns, "v2")
	waitForColumns(t, ns, "web-proxy", "2", "0")
}

// restart does what `kubectl rollout restart` does: it stamps the pod template with the time.
func restart(t *testing.T, obj client.Object) {
	t.Helper()
	patch := fmt.Sprintf(`{"spec":{"template":{"metadata":{"annotations":{"kubectl.kubernetes.io/restartedAt":%q}}}}}`, time.Now().Format(time.RFC3339Nano))
	if err := k8s.Patch(ctxFor(t, 30*time.Second), obj, client.RawPatch("application/strategic-merge-patch+json", []byte(patch))); err != nil {
		t.Fatalf("rollout restart %s: %v", obj.GetName(), err)
	}
}

// waitRolledOut waits like `kubectl rollout status`: the new ReplicaSet's pods are all updated and available and
// no old pod is left.
func waitRolledOut(t *testing.T, dep *appsv1.Deployment) {
	t.Helper()
	testenv.Eventually(t, rolloutDeadline, "Deployment "+dep.Name+" rolled out", func() error {
		var d appsv1.Deployment
		if err := k8s.Get(context.Background(), client.ObjectKeyFromObject(dep), &d); err != nil {
			return err
		}
		want := *d.Spec.Replicas
		s := d.Status
		if s.ObservedGeneration < d.Generation || s.UpdatedReplicas != want || s.AvailableReplicas != want || s.Replicas != want {
			return fmt.Errorf("status %+v", s)
		}
		var pods corev1.PodList
		if err := k8s.List(context.Background(), &pods, client.InNamespace(dep.Namespace), client.MatchingLabels(d.Spec.Selector.MatchLabels)); err != nil {
			return err
		}
		if int32(len(pods.Items)) != want {
			return fmt.Errorf("%d pods, want %d (old ones still terminating)", len(pods.Items), want)
		}
		return nil
	})
}

// assertProxyVersion checks that every pod of the namespace runs the proxy sidecar of that version and that its
// app got the version's answer.
func assertProxyVersion(t *testing.T, ns, version string) {
	t.Helper()
	var pods corev1.PodList
	if err := k8s.List(ctxFor(t, 30*time.Second), &pods, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	for _, p := range pods.Items {
		if i := slices.IndexFunc(p.Spec.Containers, func(c corev1.Container) bool { return c.Name == "proxy" }); i < 0 ||
			!slices.Contains(p.Spec.Containers[i].Args, version) {
			t.Fatalf("pod %s: want the proxy sidecar of version %s, containers %+v", p.Name, version, p.Spec.Containers)
		}
		waitForLog(t, ns, p.Name, "app", "proxy "+version+" says hello")
	}
}

// waitForColumns waits until `kubectl get sct NAME` shows these Pods and Outdated columns: the API server's
// Table rendering of the CRD's printer columns, which is what kubectl prints.
func waitForColumns(t *testing.T, ns, name, pods, outdated string) {
	t.Helper()
	var last string
	testenv.Eventually(t, 60*time.Second, fmt.Sprintf("kubectl get sct %s shows Pods %s, Outdated %s", name, pods, outdated), func() error {
		cols, err := tableRow(ns, name)
		if err != nil {
			return err
		}
		last = fmt.Sprint(cols)
		if cols["Pods"] != pods || cols["Outdated"] != outdated {
			return fmt.Errorf("columns %v", cols)
		}
		return nil
	})
	logf(t, "kubectl get sct %s -n %s: %s", name, ns, last)
}

// tableRow gets one SidecarTemplate as a meta.k8s.io Table, as kubectl does, and returns its cells by column.
func tableRow(ns, name string) (map[string]string, error) {
	var table metav1.Table
	err := clientset.RESTClient().Get().AbsPath("/apis", v1alpha1.GroupVersion.Group, v1alpha1.GroupVersion.Version, "namespaces", ns, "sidecartemplates", name).
		SetHeader("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io").Do(context.Background()).Into(&table)
	if err != nil {
		return nil, err
	}
	if len(table.Rows) != 1 {
		return nil, fmt.Errorf("%d rows", len(table.Rows))
	}
	cols := map[string]string{}
	for i, c := range table.ColumnDefinitions {
		cols[c.Name] = fmt.Sprint(table.Rows[0].Cells[i])
	}
	return cols, nil
}

func testUninstall(t *testing.T) {
	helm(t, "uninstall", release, "--namespace", injectorNS, "--wait", "--timeout", rolloutDeadline.String())
	var hooks admissionregistrationv1.MutatingWebhookConfigurationList
	if err := k8s.List(ctxFor(t, 30*time.Second), &hooks); err != nil {
		t.Fatal(err)
	}
	for _, h := range hooks.Items {
		t.Errorf("MutatingWebhookConfiguration %s is left after helm uninstall (webhooks %d)", h.Name, len(h.Webhooks))
	}
	ns := namespace(t, "after")
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "plain", Annotations: map[string]string{v1alpha1.AnnotationInject: "anything"}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{container("app", appImage, "write", "-lines", "1", "-file", "/dev/stdout")},
			RestartPolicy: corev1.RestartPolicyNever}}
	createPod(t, pod)
	if term := terminated(t, ns, pod.Name, "app"); term.ExitCode != 0 {
		t.Fatalf("a pod created after the uninstall exited %d", term.ExitCode)
	}
}
