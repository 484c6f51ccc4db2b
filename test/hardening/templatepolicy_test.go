package hardening

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/sidecar-dev/sidecar-injector/internal/api/v1alpha1"
	"github.com/sidecar-dev/sidecar-injector/internal/testenv"
)

// renderChart renders the chart with default values as release sidecar-injector in the injector's namespace and
// returns the YAML documents whose kind is one of kinds.
func renderChart(t *testing.T, kinds ...string) map[string][][]byte {
	t.Helper()
	home := t.TempDir()
	cmd := exec.Command(testenv.RequireHelm(t), "template", "sidecar-injector", filepath.Join(root, "charts", "sidecar-injector"), "--namespace", injectorNS)
	cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+home+"/c", "HELM_CONFIG_HOME="+home+"/f", "HELM_DATA_HOME="+home+"/d")
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("helm template: %v\n%s", err, errb.String())
	}
	docs := map[string][][]byte{}
	dec := utilyaml.NewYAMLOrJSONDecoder(&out, 4096)
	for {
		var m map[string]any
		if err := dec.Decode(&m); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		if kind, _ := m["kind"].(string); slices.Contains(kinds, kind) {
			doc, _ := yaml.Marshal(m)
			docs[kind] = append(docs[kind], doc)
		}
	}
	return docs
}

// installTemplatePolicy creates the chart's ValidatingAdmissionPolicy and binding (removed when the test ends).
func installTemplatePolicy(t *testing.T) {
	t.Helper()
	docs := renderChart(t, "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding")
	if len(docs["ValidatingAdmissionPolicy"]) != 1 || len(docs["ValidatingAdmissionPolicyBinding"]) != 1 {
		t.Fatalf("the default rendering has %d policies and %d bindings, want one of each (templatePolicy.enabled is on by default)",
			len(docs["ValidatingAdmissionPolicy"]), len(docs["ValidatingAdmissionPolicyBinding"]))
	}
	var vap admissionregistrationv1.ValidatingAdmissionPolicy
	var binding admissionregistrationv1.ValidatingAdmissionPolicyBinding
	for obj, doc := range map[client.Object][]byte{&vap: docs["ValidatingAdmissionPolicy"][0], &binding: docs["ValidatingAdmissionPolicyBinding"][0]} {
		if err := yaml.UnmarshalStrict(doc, obj); err != nil {
			t.Fatal(err)
		}
		if err := k8s.Create(ctxFor(t), obj); err != nil {
			t.Fatalf("the API server refuses the chart's %s: %v", obj.GetName(), err)
		}
	}
	t.Cleanup(func() {
		_ = k8s.Delete(context.Background(), &binding)
		_ = k8s.Delete(context.Background(), &vap)
		// The API server drops the policy a moment after the delete: the tests that follow must not see it.
		yes := true
		hostNet := &v1alpha1.SidecarTemplate{ObjectMeta: metav1.ObjectMeta{Namespace: "vap-tenant", Name: "policy-gone"},
			Spec: v1alpha1.SidecarTemplateSpec{HostNetwork: &yes}}
		testenv.Eventually(t, 30*time.Second, "the template policy is gone", func() error {
			return k8s.Create(context.Background(), hostNet.DeepCopy(), client.DryRunAll)
		})
	})
}

// TestTheTemplatePolicyRefusesWhatANamespacedTemplateMustNotAddAndAcceptsTheSamples creates the chart's policy on
// the API server and namespaced templates that each add one thing a tenant's template must not: every one is
// refused with a message naming what. The samples of config/samples are accepted, in their namespaces and as a
// tenant's; a cluster-wide template (the platform's, in the release namespace) may add anything.
func TestTheTemplatePolicyRefusesWhatANamespacedTemplateMustNotAddAndAcceptsTheSamples(t *testing.T) {
	ctx := ctxFor(t)
	for _, ns := range []string{"demo", "vap-tenant"} {
		if err := k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
	}
	installTemplatePolicy(t)

	app := corev1.Container{Name: "agent", Image: "example.com/agent:1"}
	with := func(change func(c *corev1.Container, s *v1alpha1.SidecarTemplateSpec)) v1alpha1.SidecarTemplateSpec {
		s := v1alpha1.SidecarTemplateSpec{Containers: []corev1.Container{app}}
		change(&s.Containers[0], &s)
		return s
	}
	yes := true
	hostile := []struct {
		sentence string
		spec     v1alpha1.SidecarTemplateSpec
		mentions string
	}{
		{"a privileged container", with(func(c *corev1.Container, _ *v1alpha1.SidecarTemplateSpec) {
			c.SecurityContext = &corev1.SecurityContext{Privileged: &yes}
		}), "privileged"},
		{"a privileged native sidecar", with(func(c *corev1.Container, s *v1alpha1.SidecarTemplateSpec) {
			always := corev1.ContainerRestartPolicyAlways
			s.InitContainers = []corev1.Container{{Name: "init-agent", Image: "example.com/agent:1", RestartPolicy: &always,
				SecurityContext: &corev1.SecurityContext{Privileged: &yes}}}
		}), "spec.initContainers[].securityContext.privileged"},
		{"a container adding SYS_ADMIN", with(func(c *corev1.Container, _ *v1alpha1.SidecarTemplateSpec) {
			c.SecurityContext = &corev1.SecurityContext{Capabilities: &corev1.Capabilities{Add: []corev1.Capability{"NET_BIND_SERVICE", "SYS_ADMIN"}}}
		}), "capabilities"},
		{"a host port", with(func(c *corev1.Container, _ *v1alpha1.SidecarTemplateSpec) {
			c.Ports = []corev1.ContainerPort{{ContainerPort: 8080, HostPort: 8080}}
		}), "hostPort"},
		{"a hostPath volume", with(func(c *corev1.Container, s *v1alpha1.SidecarTemplateSpec) {
			s.Volumes = []corev1.Volume{{Name: "node-root", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/"}}}}
			c.VolumeMounts = []corev1.VolumeMount{{Name: "node-root", MountPath: "/host"}}
		}), "hostPath"},
		{"a sidecar mounting the application's Secret volume", with(func(c *corev1.Container, _ *v1alpha1.SidecarTemplateSpec) {
			c.VolumeMounts = []corev1.VolumeMount{{Name: "app-credentials", MountPath: "/steal", ReadOnly: true}}
		}), "may mount only volumes the template declares"},
		{"a mount into the application of a volume the template does not declare", with(func(_ *corev1.Container, s *v1alpha1.SidecarTemplateSpec) {
			s.VolumeMounts = []corev1.VolumeMount{{Name: "app-credentials", MountPath: "/elsewhere"}}
		}), "spec.volumeMounts"},
		{"LD_PRELOAD in the application", with(func(_ *corev1.Container, s *v1alpha1.SidecarTemplateSpec) {
			s.Env = []corev1.EnvVar{{Name: "LD_PRELOAD", Value: "/shared/evil.so"}}
		}), "LD_*"},
		{"another LD_ variable in the application", with(func(_ *corev1.Container, s *v1alpha1.SidecarTemplateSpec) {
			s.Env = []corev1.EnvVar{{Name: "LD_BIND_NOW", Value: "1"}}
		}), "LD_*"},
		{"JAVA_TOOL_OPTIONS in the application", with(func(_ *corev1.Container, s *v1alpha1.SidecarTemplateSpec) {
			s.Env = []corev1.EnvVar{{Name: "JAVA_TOOL_OPTIONS", Value: "-javaagent:/shared/evil.jar"}}
		}), "JAVA_TOOL_OPTIONS"},
		{"envFrom into the application", with(func(_ *corev1.Container, s *v1alpha1.SidecarTemplateSpec) {
			s.EnvFrom = []corev1.EnvFromSource{{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "anything"}}}}
		}), "envFrom"},
		{"hostAliases", with(func(_ *corev1.Container, s *v1alpha1.SidecarTemplateSpec) {
			s.HostAliases = []corev1.HostAlias{{IP: "203.0.113.7", Hostnames: []string{"bank.example.com"}}}
		}), "hostAliases"},
		{"a DNS nameserver", with(func(_ *corev1.Container, s *v1alpha1.SidecarTemplateSpec) {
			s.DNSConfig = &v1alpha1.TemplateDNSConfig{Nameservers: []string{"203.0.113.53"}}
		}), "nameservers"},
		{"hostNetwork", with(func(_ *corev1.Container, s *v1alpha1.SidecarTemplateSpec) { s.HostNetwork = &yes }), "hostNetwork"},
	}
	create := func(ns, name string, spec v1alpha1.SidecarTemplateSpec) error {
		st := &v1alpha1.SidecarTemplate{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: spec}
		return k8s.Create(ctx, st, client.DryRunAll)
	}
	// The policy takes effect once the API server's policy informer has it.
	testenv.Eventually(t, 30*time.Second, "the policy refuses a privileged namespaced template", func() error {
		if err := create("vap-tenant", "probe", hostile[0].spec); err == nil {
			return errors.New("accepted")
		}
		return nil
	})
	for _, tc := range hostile {
		t.Run("a namespaced template adding "+tc.sentence+" is refused", func(t *testing.T) {
			err := create("vap-tenant", "hostile", tc.spec)
			if err == nil || !strings.Contains(err.Error(), "ValidatingAdmissionPolicy") || !strings.Contains(err.Error(), tc.mentions) {
				t.Errorf("got %v; want the policy's refusal mentioning %q", err, tc.mentions)
			}
		})
		t.Run("a cluster-wide template adding "+tc.sentence+" is the platform's call", func(t *testing.T) {
			if err := create(injectorNS, "platform", tc.spec); err != nil {
				t.Errorf("refused: %v", err)
			}
		})
	}

	samples, err := filepath.Glob(filepath.Join(root, "config", "samples", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, f := range samples {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var st v1alpha1.SidecarTemplate
		if err := yaml.UnmarshalStrict(data, &st); err != nil || st.Kind != "SidecarTemplate" {
			continue // kustomization.yaml
		}
		n++
		for _, ns := range []string{st.Namespace, "vap-tenant"} {
			// A cluster-wide sample (mesh-proxy: NET_ADMIN for its iptables step) is the platform's: a tenant's
			// copy is refused, which is the policy working.
			platformOnly := ns == "vap-tenant" && st.Namespace == "sidecar-injector" && addsCapabilities(&st.Spec)
			t.Run("the sample "+filepath.Base(f)+" in "+ns, func(t *testing.T) {
				switch err := create(ns, st.Name, st.Spec); {
				case platformOnly && err == nil:
					t.Errorf("a tenant's copy of a sample that adds capabilities was accepted")
				case !platformOnly && err != nil:
					t.Errorf("refused: %v", err)
				}
			})
		}
	}
	if n < 3 {
		t.Errorf("%d samples found in config/samples, want at least 3", n)
	}
}

// TestTheTemplateRolesAggregateIntoViewForEveryoneAndEditOnlyForAdmins checks the chart's ClusterRoles against
// the aggregation rules of the API server's own view, edit and admin roles (the kube-controller-manager's
// aggregation controller, which envtest does not run, fills them from exactly these selectors).
func TestTheTemplateRolesAggregateIntoViewForEveryoneAndEditOnlyForAdmins(t *testing.T) {
	ctx := ctxFor(t)
	var ours []*rbacv1.ClusterRole
	for _, doc := range renderChart(t, "ClusterRole")["ClusterRole"] {
		var cr rbacv1.ClusterRole
		if err := yaml.UnmarshalStrict(doc, &cr); err != nil {
			t.Fatal(err)
		}
		if strings.HasSuffix(cr.Name, "-templates-view") || strings.HasSuffix(cr.Name, "-templates-edit") {
			ours = append(ours, &cr)
		}
	}
	if len(ours) != 2 {
		t.Fatalf("the chart renders %d template roles, want a view and an edit role", len(ours))
	}
	for _, cr := range ours {
		if err := k8s.Create(ctx, cr); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = k8s.Delete(context.Background(), cr) })
	}
	aggregated := func(role string) []string {
		var builtin rbacv1.ClusterRole
		if err := k8s.Get(ctx, client.ObjectKey{Name: role}, &builtin); err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, sel := range builtin.AggregationRule.ClusterRoleSelectors {
			s, err := metav1.LabelSelectorAsSelector(&sel)
			if err != nil {
				t.Fatal(err)
			}
			for _, cr := range ours {
				if s.Matches(labels.Set(cr.Labels)) && !slices.Contains(names, cr.Name) {
					names = append(names, strings.TrimPrefix(cr.Name, "sidecar-injector-"))
				}
			}
		}
		slices.Sort(names)
		return names
	}
	for role, want := range map[string][]string{
		"view":  {"templates-view"},
		"edit":  {"templates-view"},
		"admin": {"templates-edit", "templates-view"},
	} {
		if got := aggregated(role); !slices.Equal(got, want) {
			t.Errorf("the built-in %s role aggregates %v, want %v", role, got, want)
		}
	}
	for _, cr := range ours {
		write := slices.ContainsFunc(cr.Rules, func(r rbacv1.PolicyRule) bool { return slices.Contains(r.Verbs, "create") })
		if write != strings.HasSuffix(cr.Name, "-edit") {
			t.Errorf("%s: may create templates = %v", cr.Name, write)
		}
	}
}

// addsCapabilities reports whether a template's containers or init containers add Linux capabilities beyond
// NET_BIND_SERVICE (the chart's default allowance for namespaced templates).
func addsCapabilities(spec *v1alpha1.SidecarTemplateSpec) bool {
	for _, c := range append(slices.Clone(spec.Containers), spec.InitContainers...) {
		if sc := c.SecurityContext; sc != nil && sc.Capabilities != nil &&
			slices.ContainsFunc(sc.Capabilities.Add, func(c corev1.Capability) bool { return c != "NET_BIND_SERVICE" }) {
			return true
		}
	}
	return false
}
