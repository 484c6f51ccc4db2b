package integration

import (
	"reflect"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/sidecar-dev/sidecar-injector/internal/api/v1alpha1"
)

// logShipperSpec is the README's example template: a log shipper sharing an emptyDir with the application.
func logShipperSpec() v1alpha1.SidecarTemplateSpec {
	return v1alpha1.SidecarTemplateSpec{
		Containers: []corev1.Container{{
			Name:         "log-shipper",
			Image:        "fluent/fluent-bit:3.2",
			VolumeMounts: []corev1.VolumeMount{{Name: "app-logs", MountPath: "/var/log/app", ReadOnly: true}},
		}},
		Volumes:      []corev1.Volume{{Name: "app-logs", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}},
		VolumeMounts: []corev1.VolumeMount{{Name: "app-logs", MountPath: "/var/log/app"}},
		Env: []corev1.EnvVar{
			{Name: "LOG_DIR", Value: "/var/log/app"},
			{Name: "POD_NAMESPACE_SEEN_BY_TEMPLATE", Value: "{{ pod.namespace }}"},
			{Name: "KEEP", Value: "from-template"},
		},
		ImagePullSecrets: []corev1.LocalObjectReference{{Name: "registry-creds"}},
		Annotations:      map[string]string{"example.com/shipper": "fluent-bit", "example.com/owner": "template"},
		Labels:           map[string]string{"logging": "enabled"},
	}
}

func metricsSpec() v1alpha1.SidecarTemplateSpec {
	return v1alpha1.SidecarTemplateSpec{
		Containers: []corev1.Container{{Name: "metrics-agent", Image: "prom/statsd-exporter:v0.28.0"}},
	}
}

func TestAnAnnotatedPodGetsTheRequestedContainersVolumesMountsEnvAndMetadata(t *testing.T) {
	ns := createNamespace(t, "annotated", nil)
	shipper := createTemplate(t, ns, "log-shipper", logShipperSpec())
	metrics := createTemplate(t, ns, "metrics", metricsSpec())
	waitUntilServed(t, ns, ns, "log-shipper")
	waitUntilServed(t, ns, ns, "metrics")

	pod := newPod(ns, "web", withInject(" log-shipper ,metrics "), withAnnotation("example.com/owner", "pod"))
	pod.Spec.Containers[0].Env = []corev1.EnvVar{{Name: "KEEP", Value: "from-pod"}}
	pod.Spec.Containers = append(pod.Spec.Containers, corev1.Container{Name: "worker", Image: "registry.example/worker:1.0"})
	got := createPod(t, pod)

	// Containers: the pod's own first, then the templates' in template order (same order, same namespace: by name).
	if g, w := containerNames(got.Spec.Containers), []string{"app", "worker", "log-shipper", "metrics-agent"}; !slices.Equal(g, w) {
		t.Fatalf("containers = %v, want %v", g, w)
	}
	ls := findContainer(got.Spec.Containers, "log-shipper")
	if ls.Image != "fluent/fluent-bit:3.2" {
		t.Errorf("log-shipper image = %q", ls.Image)
	}
	if len(ls.VolumeMounts) != 1 || ls.VolumeMounts[0].MountPath != "/var/log/app" || !ls.VolumeMounts[0].ReadOnly {
		t.Errorf("log-shipper mounts = %+v, want only its own read-only /var/log/app", ls.VolumeMounts)
	}
	if g := volumeNames(got.Spec.Volumes); !slices.Equal(g, []string{"app-logs"}) {
		t.Errorf("volumes = %v, want [app-logs]", g)
	} else if got.Spec.Volumes[0].EmptyDir == nil {
		t.Errorf("volume app-logs = %+v, want an emptyDir", got.Spec.Volumes[0].VolumeSource)
	}

	// Mounts and env go to the application's containers (all of the pod's own), never to sidecars.
	for _, name := range []string{"app", "worker"} {
		c := findContainer(got.Spec.Containers, name)
		if !slices.ContainsFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool {
			return m.Name == "app-logs" && m.MountPath == "/var/log/app"
		}) {
			t.Errorf("container %s mounts = %+v, want app-logs at /var/log/app", name, c.VolumeMounts)
		}
		env := map[string]string{}
		for _, e := range c.Env {
			if _, dup := env[e.Name]; dup {
				t.Errorf("container %s: env %s appears twice", name, e.Name)
			}
			env[e.Name] = e.Value
		}
		wantKeep := "from-template"
		if name == "app" {
			wantKeep = "from-pod" // the container's own value wins
		}
		want := map[string]string{"LOG_DIR": "/var/log/app", "POD_NAMESPACE_SEEN_BY_TEMPLATE": ns, "KEEP": wantKeep}
		if !reflect.DeepEqual(env, want) {
			t.Errorf("container %s env = %v, want %v", name, env, want)
		}
	}
	if m := findContainer(got.Spec.Containers, "metrics-agent"); len(m.Env) != 0 || len(m.VolumeMounts) != 0 {
		t.Errorf("sidecar metrics-agent received the application's env %v / mounts %v", m.Env, m.VolumeMounts)
	}

	if !slices.Contains(got.Spec.ImagePullSecrets, corev1.LocalObjectReference{Name: "registry-creds"}) {
		t.Errorf("imagePullSecrets = %v, want registry-creds", got.Spec.ImagePullSecrets)
	}
	if got.Annotations["example.com/shipper"] != "fluent-bit" {
		t.Errorf("annotation example.com/shipper = %q, want fluent-bit", got.Annotations["example.com/shipper"])
	}
	if got.Annotations["example.com/owner"] != "pod" {
		t.Errorf("annotation example.com/owner = %q, want the pod's own value kept", got.Annotations["example.com/owner"])
	}
	if got.Labels["logging"] != "enabled" {
		t.Errorf("label logging = %q, want enabled", got.Labels["logging"])
	}

	rec := parseStatus(t, got)
	if rec == nil {
		t.Fatalf("pod has no %s annotation; annotations = %v", v1alpha1.AnnotationStatus, got.Annotations)
	}
	if g, w := injectedTemplates(t, got), []string{ns + "/log-shipper", ns + "/metrics"}; !slices.Equal(g, w) {
		t.Fatalf("status names %v, want %v", g, w)
	}
	for i, tpl := range []*v1alpha1.SidecarTemplate{shipper, metrics} {
		r := rec.Templates[i]
		if r.Generation != tpl.Generation {
			t.Errorf("status[%d].generation = %d, want %d", i, r.Generation, tpl.Generation)
		}
		if r.Hash == "" {
			t.Errorf("status[%d].hash is empty", i)
		}
	}
	if !slices.Equal(rec.Templates[0].Containers, []string{"log-shipper"}) || !slices.Equal(rec.Templates[0].Volumes, []string{"app-logs"}) {
		t.Errorf("status for log-shipper says it added containers %v, volumes %v; want [log-shipper], [app-logs]",
			rec.Templates[0].Containers, rec.Templates[0].Volumes)
	}
	t.Logf("sidecar.dev/status: %s", got.Annotations[v1alpha1.AnnotationStatus])
}

func TestANativeSidecarLandsBeforeThePodsInitContainersWithItsProbesAndIsAccepted(t *testing.T) {
	ns := createNamespace(t, "native", nil)
	probe := func(h corev1.ProbeHandler) *corev1.Probe {
		// Every field set explicitly, so that the API server's defaulting does not change it.
		return &corev1.Probe{ProbeHandler: h, InitialDelaySeconds: 1, TimeoutSeconds: 2, PeriodSeconds: 3, SuccessThreshold: 1, FailureThreshold: 5}
	}
	startup := probe(corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz/ready", Port: intstr.FromInt32(15021), Scheme: corev1.URISchemeHTTP}})
	readiness := probe(corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(15001)}})
	liveness := probe(corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"/bin/proxy", "check"}}})
	createTemplate(t, ns, "mesh", v1alpha1.SidecarTemplateSpec{
		InitContainers: []corev1.Container{
			{Name: "mesh-init", Image: "registry.example/mesh-init:1"}, // the iptables step: listed before the proxy, it stays before it
			{
				Name: "mesh-proxy", Image: "registry.example/mesh-proxy:1",
				RestartPolicy: ptrTo(corev1.ContainerRestartPolicyAlways),
				StartupProbe:  startup, ReadinessProbe: readiness, LivenessProbe: liveness,
			},
		},
	})
	waitUntilServed(t, ns, ns, "mesh")

	pod := newPod(ns, "app-with-migrations", withInject("mesh"))
	pod.Spec.InitContainers = []corev1.Container{{Name: "migrate", Image: "registry.example/migrate:1"}}
	got := createPod(t, pod) // createPod fails the test if the API server rejects the injected pod

	if g, w := containerNames(got.Spec.InitContainers), []string{"mesh-init", "mesh-proxy", "migrate"}; !slices.Equal(g, w) {
		t.Fatalf("init containers = %v, want %v (the template's order up to its native sidecar, before the pod's own)", g, w)
	}
	proxy := got.Spec.InitContainers[1]
	if proxy.RestartPolicy == nil || *proxy.RestartPolicy != corev1.ContainerRestartPolicyAlways {
		t.Errorf("mesh-proxy restartPolicy = %v, want Always", deref(proxy.RestartPolicy))
	}
	for name, pair := range map[string][2]*corev1.Probe{
		"startupProbe": {proxy.StartupProbe, startup}, "readinessProbe": {proxy.ReadinessProbe, readiness}, "livenessProbe": {proxy.LivenessProbe, liveness},
	} {
		if !reflect.DeepEqual(pair[0], pair[1]) {
			t.Errorf("mesh-proxy %s = %+v, want %+v", name, pair[0], pair[1])
		}
	}
	if got.Spec.InitContainers[0].RestartPolicy != nil {
		t.Errorf("mesh-init restartPolicy = %v, want unset", *got.Spec.InitContainers[0].RestartPolicy)
	}
	if g := containerNames(got.Spec.Containers); !slices.Equal(g, []string{"app"}) {
		t.Errorf("containers = %v, want [app]", g)
	}
	// The stored pod is what the API server accepted; read it back to be sure it was stored as injected.
	var stored corev1.Pod
	if err := k8s.Get(ctxFor(t), client.ObjectKeyFromObject(got), &stored); err != nil {
		t.Fatal(err)
	}
	if g := containerNames(stored.Spec.InitContainers); !slices.Equal(g, []string{"mesh-init", "mesh-proxy", "migrate"}) {
		t.Errorf("stored init containers = %v", g)
	}
}

func TestAConflictUnderFailurePolicyFailMakesTheAPIServerRejectThePodWithTheTemplatesMessage(t *testing.T) {
	ns := createNamespace(t, "conflict-fail", nil)
	createTemplate(t, ns, "log-shipper", v1alpha1.SidecarTemplateSpec{
		FailurePolicy: v1alpha1.FailurePolicyFail,
		Containers:    []corev1.Container{{Name: "app", Image: "fluent/fluent-bit:3.2"}},
	})
	waitUntilServed(t, ns, ns, "log-shipper")

	pod := newPod(ns, "clashes", withInject("log-shipper"))
	_, err := tryCreatePod(t, pod, false)
	expectDenied(t, pod, err, `sidecar template "log-shipper": container name "app" already exists in pod`)
	t.Logf("API server answered: %v", err)

	t.Run("a requested template that does not exist denies the pod", func(t *testing.T) {
		pod := newPod(ns, "asks-for-nothing-real", withInject("no-such-template"))
		_, err := tryCreatePod(t, pod, false)
		expectDenied(t, pod, err, `"no-such-template"`)
		t.Logf("API server answered: %v", err)
	})
}

func TestAConflictUnderFailurePolicyIgnoreAdmitsThePodWithoutThatTemplateAndWarnsTheClient(t *testing.T) {
	ns := createNamespace(t, "conflict-ignore", nil)
	createTemplate(t, ns, "log-shipper", v1alpha1.SidecarTemplateSpec{
		FailurePolicy: v1alpha1.FailurePolicyIgnore,
		Containers:    []corev1.Container{{Name: "app", Image: "fluent/fluent-bit:3.2"}},
		Volumes:       []corev1.Volume{{Name: "shipper-buffer", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}},
		Env:           []corev1.EnvVar{{Name: "SHIPPER", Value: "on"}},
	})
	createTemplate(t, ns, "metrics", metricsSpec())
	waitUntilServed(t, ns, ns, "log-shipper")
	waitUntilServed(t, ns, ns, "metrics")

	pod := newPod(ns, "clashes-leniently", withInject("log-shipper, metrics"))
	got, warnings := createPodWithWarnings(t, pod)

	if g, w := containerNames(got.Spec.Containers), []string{"app", "metrics-agent"}; !slices.Equal(g, w) {
		t.Errorf("containers = %v, want %v (metrics injected, log-shipper skipped)", g, w)
	}
	if len(got.Spec.Volumes) != 0 || len(got.Spec.Containers[0].Env) != 0 {
		t.Errorf("part of the skipped template was added: volumes %v, app env %v", volumeNames(got.Spec.Volumes), got.Spec.Containers[0].Env)
	}
	if g, w := injectedTemplates(t, got), []string{ns + "/metrics"}; !slices.Equal(g, w) {
		t.Errorf("status names %v, want %v", g, w)
	}
	want := `sidecar template "log-shipper": container name "app" already exists in pod`
	if !slices.ContainsFunc(warnings, func(w string) bool { return strings.Contains(w, want) }) {
		t.Errorf("warnings = %q, want one containing %q", warnings, want)
	}
	t.Logf("warnings: %q", warnings)
}

func TestAServerSideDryRunCreateReturnsTheInjectedPodAndStoresNothing(t *testing.T) {
	ns := createNamespace(t, "dry-run", nil)
	createTemplate(t, ns, "log-shipper", logShipperSpec())
	waitUntilServed(t, ns, ns, "log-shipper")

	pod := newPod(ns, "just-looking", withInject("log-shipper"))
	got, err := tryCreatePod(t, pod, true)
	if err != nil {
		t.Fatalf("dry-run create: %v", err)
	}
	if g, w := containerNames(got.Spec.Containers), []string{"app", "log-shipper"}; !slices.Equal(g, w) {
		t.Errorf("dry-run pod containers = %v, want %v", g, w)
	}
	if g, w := injectedTemplates(t, got), []string{ns + "/log-shipper"}; !slices.Equal(g, w) {
		t.Errorf("dry-run pod status names %v, want %v", g, w)
	}
	var stored corev1.Pod
	if err := k8s.Get(ctxFor(t), client.ObjectKeyFromObject(pod), &stored); !apierrors.IsNotFound(err) {
		t.Errorf("get after dry-run: %v, want NotFound", err)
	}
	var list corev1.PodList
	if err := k8s.List(ctxFor(t), &list, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	if len(list.Items) != 0 {
		t.Errorf("namespace %s has %d pods after dry-runs only, want 0", ns, len(list.Items))
	}

	// The same pod created for real gets the same injection: dry-run is no different from a real request.
	real := createPod(t, pod)
	if !reflect.DeepEqual(real.Spec.Containers, got.Spec.Containers) || !reflect.DeepEqual(real.Spec.Volumes, got.Spec.Volumes) {
		t.Errorf("real create differs from dry-run:\nreal containers %+v\ndry  containers %+v", real.Spec.Containers, got.Spec.Containers)
	}
	if real.Annotations[v1alpha1.AnnotationStatus] != got.Annotations[v1alpha1.AnnotationStatus] {
		t.Errorf("status differs: real %s, dry-run %s", real.Annotations[v1alpha1.AnnotationStatus], got.Annotations[v1alpha1.AnnotationStatus])
	}
}

// A Job's pod (restartPolicy Never) gets the template's containers as native sidecars, which the API server
// accepts, so that the pod can complete; a Deployment's pod gets the same template as regular containers.
func TestAJobsPodGetsTheTemplatesContainersAsNativeSidecars(t *testing.T) {
	ns := createNamespace(t, "jobs", nil)
	createTemplate(t, ns, "shipper", v1alpha1.SidecarTemplateSpec{
		Containers: []corev1.Container{{Name: "shipper", Image: "registry.example/shipper:1"}},
	})
	waitUntilServed(t, ns, ns, "shipper")

	job := newPod(ns, "nightly", withInject("shipper"))
	job.Spec.RestartPolicy = corev1.RestartPolicyNever
	got := createPod(t, job)
	if g := containerNames(got.Spec.Containers); len(g) != 1 {
		t.Errorf("containers = %v, want only the application's", g)
	}
	if g := containerNames(got.Spec.InitContainers); !slices.Equal(g, []string{"shipper"}) ||
		deref(got.Spec.InitContainers[0].RestartPolicy) != corev1.ContainerRestartPolicyAlways {
		t.Errorf("init containers = %v, want [shipper] with restartPolicy Always (a native sidecar)", g)
	}

	svc := createPod(t, newPod(ns, "web", withInject("shipper")))
	if g := containerNames(svc.Spec.Containers); !slices.Contains(g, "shipper") || len(svc.Spec.InitContainers) != 0 {
		t.Errorf("a pod that runs until deleted: containers %v, init containers %v; want shipper as a regular container", g, containerNames(svc.Spec.InitContainers))
	}
}
