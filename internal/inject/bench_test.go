package inject

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/sidecar-dev/sidecar-injector/internal/patchtest"
)

// benchContainer is a realistic application container: resources, probes, env, mounts, ports.
func benchContainer(name string, envs int) corev1.Container {
	c := corev1.Container{
		Name:            name,
		Image:           "registry.example.com/team-a/" + name + ":1.42.7@sha256:" + strings.Repeat("ab", 32),
		ImagePullPolicy: corev1.PullIfNotPresent,
		Args:            []string{"--config=/etc/" + name + "/config.yaml", "--log-level=info", "--listen=:8080"},
		Ports:           []corev1.ContainerPort{{Name: "http", ContainerPort: 8080, Protocol: corev1.ProtocolTCP}, {Name: "metrics", ContainerPort: 9090, Protocol: corev1.ProtocolTCP}},
		Resources: corev1.ResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("250m"), corev1.ResourceMemory: resource.MustParse("256Mi")},
			Limits:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1"), corev1.ResourceMemory: resource.MustParse("512Mi")},
		},
		LivenessProbe:            &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intstr.FromString("http"), Scheme: corev1.URISchemeHTTP}}, InitialDelaySeconds: 10, PeriodSeconds: 10, TimeoutSeconds: 1, SuccessThreshold: 1, FailureThreshold: 3},
		ReadinessProbe:           &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/readyz", Port: intstr.FromString("http"), Scheme: corev1.URISchemeHTTP}}, PeriodSeconds: 5, TimeoutSeconds: 1, SuccessThreshold: 1, FailureThreshold: 3},
		VolumeMounts:             []corev1.VolumeMount{{Name: "config", MountPath: "/etc/" + name}, {Name: "kube-api-access-x7k2p", MountPath: "/var/run/secrets/kubernetes.io/serviceaccount", ReadOnly: true}},
		TerminationMessagePath:   "/dev/termination-log",
		TerminationMessagePolicy: corev1.TerminationMessageReadFile,
		SecurityContext:          &corev1.SecurityContext{RunAsNonRoot: ptr(true), AllowPrivilegeEscalation: ptr(false), Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}}},
	}
	c.Env = append(c.Env, corev1.EnvVar{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: "metadata.name"}}})
	for i := range envs {
		c.Env = append(c.Env, corev1.EnvVar{Name: fmt.Sprintf("SETTING_%02d", i), Value: fmt.Sprintf("value-%02d-%s", i, strings.Repeat("v", 20))})
	}
	return c
}

func ptr[T any](v T) *T { return &v }

// benchPod builds the small, realistic and large pods. All request the first n bench templates by annotation.
func benchPod(size string, n int) []byte {
	var names []string
	for i := range n {
		names = append(names, fmt.Sprintf("bench-%02d", i))
	}
	pod := corev1.Pod{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{
			GenerateName: "shop-7d9f8b6c4-",
			Namespace:    "team-a",
			Labels:       map[string]string{"app.kubernetes.io/name": "shop", "pod-template-hash": "7d9f8b6c4", "tier": "web"},
			Annotations:  map[string]string{"sidecar.dev/inject": strings.Join(names, ", ")},
		},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "shop:1"}}},
	}
	if size == "small" {
		return mustMarshal(pod)
	}
	pod.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "shop-7d9f8b6c4", UID: types.UID("3f0e8c9a-5b1d-4c2e-9f7a-1b2c3d4e5f60"), Controller: ptr(true), BlockOwnerDeletion: ptr(true)}}
	pod.Annotations["kubectl.kubernetes.io/restartedAt"] = "2024-06-01T10:00:00Z"
	pod.Spec = corev1.PodSpec{
		Containers:                    []corev1.Container{benchContainer("app", 22), benchContainer("worker", 14), benchContainer("cache", 4)},
		RestartPolicy:                 corev1.RestartPolicyAlways,
		TerminationGracePeriodSeconds: ptr(int64(30)),
		DNSPolicy:                     corev1.DNSClusterFirst,
		ServiceAccountName:            "shop",
		SecurityContext:               &corev1.PodSecurityContext{FSGroup: ptr(int64(2000))},
		SchedulerName:                 "default-scheduler",
		Tolerations: []corev1.Toleration{
			{Key: "node.kubernetes.io/not-ready", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute, TolerationSeconds: ptr(int64(300))},
			{Key: "node.kubernetes.io/unreachable", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute, TolerationSeconds: ptr(int64(300))},
		},
		Volumes: []corev1.Volume{
			{Name: "config", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "shop-config"}, DefaultMode: ptr(int32(420))}}},
			{Name: "kube-api-access-x7k2p", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{DefaultMode: ptr(int32(420)), Sources: []corev1.VolumeProjection{
				{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{ExpirationSeconds: ptr(int64(3607)), Path: "token"}},
				{ConfigMap: &corev1.ConfigMapProjection{LocalObjectReference: corev1.LocalObjectReference{Name: "kube-root-ca.crt"}, Items: []corev1.KeyToPath{{Key: "ca.crt", Path: "ca.crt"}}}},
				{DownwardAPI: &corev1.DownwardAPIProjection{Items: []corev1.DownwardAPIVolumeFile{{Path: "namespace", FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: "metadata.namespace"}}}}},
			}}}},
		},
		EnableServiceLinks: ptr(true),
		PreemptionPolicy:   ptr(corev1.PreemptLowerPriority),
		Priority:           ptr(int32(0)),
	}
	if size == "realistic" {
		return mustMarshal(pod)
	}
	// large: managedFields as big as real ones after many updates
	for i := range 40 {
		fields := map[string]any{}
		for j := range 40 {
			fields[fmt.Sprintf(`f:metadata.f:annotations.f:example.com/key-%02d-%02d`, i, j)] = map[string]any{}
		}
		raw, _ := json.Marshal(fields)
		pod.ManagedFields = append(pod.ManagedFields, metav1.ManagedFieldsEntry{
			Manager: fmt.Sprintf("controller-%02d", i), Operation: metav1.ManagedFieldsOperationUpdate, APIVersion: "v1",
			FieldsType: "FieldsV1", FieldsV1: metav1.NewFieldsV1(string(raw)),
		})
	}
	return mustMarshal(pod)
}

// benchTemplates: n templates, each requested by the pod, each adding a sidecar, a volume, a mount and env (the
// first one also a native sidecar with per-pod values).
func benchTemplates(b *testing.B, n int) []*Template {
	var sb strings.Builder
	for i := range n {
		fmt.Fprintf(&sb, `---
metadata: {name: bench-%02d, namespace: team-a, generation: 1}
spec:
  order: %d
  containers:
  - name: side-%02d
    image: fluent/fluent-bit:3.2
    args: ["--pod={{ pod.name }}", "--app={{ pod.labels.app.kubernetes.io/name }}"]
    resources: {requests: {cpu: 10m, memory: 32Mi}}
    volumeMounts: [{name: vol-%02d, mountPath: /var/log/side-%02d}]
  volumes: [{name: vol-%02d, emptyDir: {}}]
  volumeMounts: [{name: vol-%02d, mountPath: /var/log/side-%02d}]
  env: [{name: SIDE_%02d, value: "on"}]
  annotations: {side-%02d.example.com/enabled: "true"}
`, i, i, i, i, i, i, i, i, i, i)
	}
	// cluster-wide templates that do not apply, so that the engine also has to dismiss some
	sb.WriteString("---\nmetadata: {name: unused, namespace: sidecar-injector}\nspec: {selector: {matchLabels: {app: nope}}, labels: {x: y}}\n")
	ts := compileAll(parseTemplates(b, []byte(sb.String())), injectorNS)
	for _, t := range ts {
		if t.Err != nil {
			b.Fatalf("%s: %v", t.Key(), t.Err)
		}
	}
	return ts
}

func mustMarshal(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

var benchSizes = []string{"small", "realistic", "large"}

// BenchmarkInject measures the engine alone on pods of three sizes with 1, 2 and 10 matching templates.
func BenchmarkInject(b *testing.B) {
	for _, size := range benchSizes {
		for _, n := range []int{1, 2, 10} {
			pod := benchPod(size, n)
			ts := benchTemplates(b, n)
			req := Request{Pod: pod, Namespace: "team-a", InjectorNamespace: injectorNS, Templates: ts}
			// sanity: every template is injected and the patch applies
			r, err := Inject(req)
			if err != nil || r.Denied || len(r.Injected()) != n {
				b.Fatalf("%s/%d: err=%v denied=%v injected=%d", size, n, err, r != nil && r.Denied, len(r.Injected()))
			}
			if _, err := patchtest.Apply(pod, mustPatchJSON(b, r)); err != nil {
				b.Fatalf("%s/%d: patch does not apply: %v", size, n, err)
			}
			b.Run(fmt.Sprintf("%s-%dB/templates=%d", size, len(pod), n), func(b *testing.B) {
				b.ReportAllocs()
				b.SetBytes(int64(len(pod)))
				for b.Loop() {
					r, err := Inject(req)
					if err != nil {
						b.Fatal(err)
					}
					if _, err := r.PatchJSON(); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkDecodeAdmissionReview is the floor: decoding the AdmissionReview that wraps the same pod with
// encoding/json into the k8s.io/api/admission/v1 types, and nothing else.
func BenchmarkDecodeAdmissionReview(b *testing.B) {
	for _, size := range benchSizes {
		pod := benchPod(size, 2)
		review := mustMarshal(admissionv1.AdmissionReview{
			TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
			Request: &admissionv1.AdmissionRequest{
				UID:       types.UID("705ab4f5-6393-11e8-b7cc-42010a800002"),
				Kind:      metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
				Resource:  metav1.GroupVersionResource{Version: "v1", Resource: "pods"},
				Namespace: "team-a",
				Operation: admissionv1.Create,
				UserInfo:  authUser(),
				Object:    runtime.RawExtension{Raw: pod},
				DryRun:    ptr(false),
				Options:   runtime.RawExtension{Raw: []byte(`{"kind":"CreateOptions","apiVersion":"meta.k8s.io/v1"}`)},
			},
		})
		b.Run(fmt.Sprintf("%s-%dB", size, len(pod)), func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(review)))
			for b.Loop() {
				var ar admissionv1.AdmissionReview
				if err := json.Unmarshal(review, &ar); err != nil {
					b.Fatal(err)
				}
				if ar.Request == nil || len(ar.Request.Object.Raw) == 0 {
					b.Fatal("empty request")
				}
			}
		})
	}
}

func authUser() authenticationv1.UserInfo {
	return authenticationv1.UserInfo{Username: "system:serviceaccount:kube-system:replicaset-controller", UID: "b1c2", Groups: []string{"system:serviceaccounts", "system:serviceaccounts:kube-system", "system:authenticated"}}
}
