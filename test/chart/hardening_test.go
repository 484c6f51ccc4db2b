package chart

import (
	"slices"
	"strings"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// hardened renders every hardening option of the chart on.
var hardened = []string{
	"--set", "networkPolicy.enabled=true",
	"--set-json", `networkPolicy.apiServerPeers=[{"ipBlock":{"cidr":"10.0.0.0/24"}}]`,
	"--set-json", `networkPolicy.metricsPeers=[{"namespaceSelector":{"matchLabels":{"kubernetes.io/metadata.name":"monitoring"}}}]`,
	"--set-string", "clientAuth.caBundle=" + testCAPEM,
	"--set", "clientAuth.allowedNames={kube-apiserver-webhook-client}",
	"--set", "clientAuth.token.secretName=webhook-client-token",
}

// testCAPEM is a CA certificate (its content is not checked by the chart).
const testCAPEM = "-----BEGIN CERTIFICATE-----\nMIIBdzCCAR2gAwIBAgIBATAKBggqhkjOPQQDAjAAMB4XDTI2MDEwMTAwMDAwMFoX\n-----END CERTIFICATE-----"

func TestNoNetworkPolicyNorClientAuthenticationByDefault(t *testing.T) {
	r := render(t)
	if nps := all[*networkingv1.NetworkPolicy](r); len(nps) != 0 {
		t.Errorf("default rendering has %d NetworkPolicies, want none (where the API server calls from depends on the cluster)", len(nps))
	}
	args := one[*appsv1.Deployment](t, r).Spec.Template.Spec.Containers[0].Args
	if slices.ContainsFunc(args, func(a string) bool { return strings.HasPrefix(a, "--client-") }) {
		t.Errorf("default args %v ask for client authentication, which needs the API server's admission configuration first", args)
	}
}

func TestTheNetworkPolicyAdmitsTheAPIServerToTheWebhookAndNothingElse(t *testing.T) {
	np := one[*networkingv1.NetworkPolicy](t, render(t, hardened...))
	if !slices.Equal(np.Spec.PolicyTypes, []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}) {
		t.Errorf("policyTypes = %v, want [Ingress]", np.Spec.PolicyTypes)
	}
	from := map[string][]networkingv1.NetworkPolicyPeer{}
	for _, rule := range np.Spec.Ingress {
		for _, p := range rule.Ports {
			from[p.Port.String()] = rule.From
		}
	}
	if peers := from["webhook"]; len(peers) != 1 || peers[0].IPBlock == nil || peers[0].IPBlock.CIDR != "10.0.0.0/24" {
		t.Errorf("the webhook port admits %v, want only apiServerPeers", peers)
	}
	if peers := from["metrics"]; len(peers) != 1 || peers[0].NamespaceSelector == nil {
		t.Errorf("the metrics port admits %v, want only metricsPeers", peers)
	}
	if peers, ok := from["health"]; !ok || len(peers) != 0 {
		t.Errorf("the health port admits %v (present %v), want every source (kubelet probes)", peers, ok)
	}
	if len(from) != 3 {
		t.Errorf("ports with ingress rules: %v, want webhook, metrics and health only", from)
	}
	closed := one[*networkingv1.NetworkPolicy](t, render(t, hardened[:4]...))
	for _, rule := range closed.Spec.Ingress {
		for _, p := range rule.Ports {
			if p.Port.String() == "metrics" {
				t.Errorf("without metricsPeers the metrics port is open to %v", rule.From)
			}
		}
	}
}

func TestClientAuthenticationValuesBecomeServeFlagsAndMountedFiles(t *testing.T) {
	r := render(t, hardened...)
	pod := one[*appsv1.Deployment](t, r).Spec.Template.Spec
	c := pod.Containers[0]
	for _, want := range []string{"--client-ca-file=/etc/sidecar-injector/client-ca/ca.crt",
		"--client-names=kube-apiserver-webhook-client", "--client-token-file=/etc/sidecar-injector/client-token/token"} {
		if !slices.Contains(c.Args, want) {
			t.Errorf("args %v lack %s", c.Args, want)
		}
	}
	mounts := map[string]string{}
	for _, m := range c.VolumeMounts {
		mounts[m.Name] = m.MountPath
	}
	volumes := map[string]corev1.VolumeSource{}
	for _, v := range pod.Volumes {
		volumes[v.Name] = v.VolumeSource
	}
	if mounts["client-ca"] != "/etc/sidecar-injector/client-ca" || volumes["client-ca"].ConfigMap == nil ||
		volumes["client-ca"].ConfigMap.Name != fullname+"-client-ca" {
		t.Errorf("client CA mount %q from %+v, want the chart's ConfigMap at /etc/sidecar-injector/client-ca", mounts["client-ca"], volumes["client-ca"])
	}
	if s := volumes["client-token"].Secret; mounts["client-token"] != "/etc/sidecar-injector/client-token" || s == nil ||
		s.SecretName != "webhook-client-token" || len(s.Items) != 1 || s.Items[0].Key != "token" || s.Items[0].Path != "token" {
		t.Errorf("token mount %q from %+v, want key token of Secret webhook-client-token as .../client-token/token", mounts["client-token"], s)
	}
	var cm *corev1.ConfigMap
	for _, o := range all[*corev1.ConfigMap](r) {
		if o.Name == fullname+"-client-ca" {
			cm = o
		}
	}
	if cm == nil || strings.TrimSpace(cm.Data["ca.crt"]) != testCAPEM {
		t.Errorf("client CA ConfigMap = %+v, want ca.crt holding clientAuth.caBundle", cm)
	}
}

func TestHardeningValuesThatCannotWorkAreRefused(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--set", "networkPolicy.enabled=true"}, "networkPolicy.apiServerPeers is required"},
		{[]string{"--set", "clientAuth.allowedNames={x}"}, "clientAuth.allowedNames needs clientAuth.caBundle"},
	} {
		_, stderr, err := helm(t, append([]string{"template", releaseName, chartDir(t), "--namespace", releaseNS}, tc.args...)...)
		if err == nil || !strings.Contains(stderr, tc.want) {
			t.Errorf("helm template %v: err=%v, stderr does not contain %q:\n%s", tc.args, err, tc.want, stderr)
		}
	}
}

func TestHardenedRenderingAcceptedByAPIServer(t *testing.T) {
	c, _ := apiServer(t)
	ctx := ctxFor(t, 2*time.Minute)
	installCRDs(t, ctx, c)
	ensureNamespace(t, ctx, c, releaseNS, nil)
	for _, o := range render(t, hardened...).objects {
		if _, isCRD := o.(*apiextensionsv1.CustomResourceDefinition); isCRD {
			continue // installed above; the chart renders it too (crds.enabled)
		}
		if _, ok := o.(*unstructured.Unstructured); ok {
			t.Errorf("%s %s: unexpected kind outside k8s.io/api", o.GetObjectKind().GroupVersionKind(), o.GetName())
			continue
		}
		if err := c.Create(ctx, o.DeepCopyObject().(client.Object), client.DryRunAll); err != nil {
			t.Errorf("API server rejects %s %s: %v", o.GetObjectKind().GroupVersionKind().Kind, o.GetName(), err)
		}
	}
}

func TestTemplateRolesAndPolicyAreRenderedByDefaultAndHaveTheirOwnSwitches(t *testing.T) {
	r := render(t)
	for _, want := range []string{"ClusterRole/" + fullname + "-templates-view", "ClusterRole/" + fullname + "-templates-edit",
		"ValidatingAdmissionPolicy/" + fullname + "-namespaced-templates", "ValidatingAdmissionPolicyBinding/" + fullname + "-namespaced-templates"} {
		if !r.has(strings.SplitN(want, "/", 2)[0], strings.SplitN(want, "/", 2)[1]) {
			t.Errorf("the default rendering lacks %s", want)
		}
	}
	edit := named[*rbacv1.ClusterRole](t, r, fullname+"-templates-edit")
	if edit.Labels["rbac.authorization.k8s.io/aggregate-to-admin"] != "true" || edit.Labels["rbac.authorization.k8s.io/aggregate-to-edit"] != "" {
		t.Errorf("the edit role's labels %v: want it aggregated to admin only by default", edit.Labels)
	}
	b := named[*admissionregistrationv1.ValidatingAdmissionPolicyBinding](t, r, fullname+"-namespaced-templates")
	if !slices.Equal(b.Spec.ValidationActions, []admissionregistrationv1.ValidationAction{admissionregistrationv1.Deny}) {
		t.Errorf("validationActions = %v, want [Deny] by default", b.Spec.ValidationActions)
	}
	if sel := b.Spec.MatchResources.NamespaceSelector; sel == nil || len(sel.MatchExpressions) != 1 ||
		sel.MatchExpressions[0].Operator != metav1.LabelSelectorOpNotIn || !slices.Equal(sel.MatchExpressions[0].Values, []string{releaseNS}) {
		t.Errorf("the binding's namespaceSelector %+v: want every namespace but the release namespace (cluster-wide templates)", sel)
	}
	off := render(t, "--set", "templateRoles.create=false", "--set", "templatePolicy.enabled=false", "--set", "workloadWarnings.enabled=false")
	if len(all[*admissionregistrationv1.ValidatingAdmissionPolicy](off)) != 0 || off.has("ClusterRole", fullname+"-templates-view") {
		t.Errorf("with both switches off the rendering still has %v", off.kinds())
	}
	warn := named[*admissionregistrationv1.ValidatingAdmissionPolicyBinding](t, render(t, "--set", "templatePolicy.validationActions={Warn,Audit}"), fullname+"-namespaced-templates")
	if len(warn.Spec.ValidationActions) != 2 {
		t.Errorf("validationActions = %v, want [Warn Audit]", warn.Spec.ValidationActions)
	}
}

// The workload warnings (README, "Warnings where the mistake is made") only ever warn, never fail a request on
// their own error, and have a switch each.
func TestWorkloadWarningsOnlyWarnAndHaveTheirOwnSwitches(t *testing.T) {
	count := func(r *rendered) (policies, bindings int) {
		for _, p := range all[*admissionregistrationv1.ValidatingAdmissionPolicy](r) {
			if strings.HasSuffix(p.Name, "-warnings") {
				policies++
				if p.Spec.FailurePolicy == nil || *p.Spec.FailurePolicy != admissionregistrationv1.Ignore {
					t.Errorf("policy %s: failurePolicy %v, want Ignore (a warning must never block a workload)", p.Name, p.Spec.FailurePolicy)
				}
			}
		}
		for _, b := range all[*admissionregistrationv1.ValidatingAdmissionPolicyBinding](r) {
			if strings.Contains(b.Name, "-warnings") {
				bindings++
				if !slices.Equal(b.Spec.ValidationActions, []admissionregistrationv1.ValidationAction{admissionregistrationv1.Warn}) {
					t.Errorf("binding %s: validationActions %v, want [Warn]", b.Name, b.Spec.ValidationActions)
				}
			}
		}
		return policies, bindings
	}
	for _, row := range []struct {
		sentence           string
		args               []string
		policies, bindings int
	}{
		{"by default: the misplaced annotation, and jobPolicy Keep in the namespace and cluster-wide", nil, 2, 3},
		{"without the jobPolicy Keep warning", []string{"--set", "workloadWarnings.jobPolicyKeep=false"}, 1, 1},
		{"switched off", []string{"--set", "workloadWarnings.enabled=false"}, 0, 0},
	} {
		t.Run(row.sentence, func(t *testing.T) {
			if p, b := count(render(t, row.args...)); p != row.policies || b != row.bindings {
				t.Errorf("%d policies and %d bindings, want %d and %d", p, b, row.policies, row.bindings)
			}
		})
	}
}
