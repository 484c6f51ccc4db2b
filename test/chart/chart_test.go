package chart

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"

	"github.com/sidecar-dev/sidecar-injector/internal/api/v1alpha1"
	"github.com/sidecar-dev/sidecar-injector/internal/testenv"
)

const certDir = "/tmp/k8s-webhook-server/serving-certs"

// testCABundle is a syntactically valid caBundle for tls.mode=secret (the chart does not parse it).
var testCABundle = base64.StdEncoding.EncodeToString([]byte("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"))

// tlsModes are the values that select each TLS mode.
var tlsModes = map[string][]string{
	"selfManaged": nil,
	"certManager": {"--set", "tls.mode=certManager"},
	"secret":      {"--set", "tls.mode=secret", "--set", "tls.secret.name=my-tls", "--set", "tls.secret.caBundle=" + testCABundle},
}

func modeNames() []string {
	names := make([]string, 0, len(tlsModes))
	for m := range tlsModes {
		names = append(names, m)
	}
	sort.Strings(names)
	return names
}

func TestLint(t *testing.T) {
	for _, mode := range modeNames() {
		t.Run(mode, func(t *testing.T) {
			args := append([]string{"lint", "--strict", chartDir(t), "--namespace", releaseNS}, tlsModes[mode]...)
			if out, stderr, err := helm(t, args...); err != nil {
				t.Fatalf("helm lint: %v\n%s%s", err, out, stderr)
			}
		})
	}
}

// TestRenderIsDeterministic: no genCA, randAlphaNum, now or lookup in the chart, so GitOps tools see no drift.
func TestRenderIsDeterministic(t *testing.T) {
	for _, mode := range modeNames() {
		t.Run(mode, func(t *testing.T) {
			args := append([]string{"--include-crds"}, tlsModes[mode]...)
			a, b := template(t, args...), template(t, args...)
			if a != b {
				t.Fatalf("two renderings differ:\n%s", firstDiff(a, b))
			}
			for _, fn := range []string{"genCA", "genSelfSignedCert", "genSignedCert", "randAlpha", "randAlphaNum", "randNumeric", "randAscii", "uuidv4", "now", "lookup", "randBytes"} {
				if uses := templatesUsing(t, fn); len(uses) > 0 {
					t.Errorf("templates call the non-deterministic function %s: %v", fn, uses)
				}
			}
		})
	}
}

func templatesUsing(t *testing.T, fn string) []string {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(chartDir(t), "templates", "*"))
	tests, _ := filepath.Glob(filepath.Join(chartDir(t), "templates", "tests", "*"))
	files = append(files, tests...)
	var out []string
	for _, f := range files {
		if fi, err := os.Stat(f); err == nil && fi.IsDir() {
			continue
		}
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(data), "\n") {
			if i := strings.Index(line, "{{"); i >= 0 && containsWord(line[i:], fn) {
				out = append(out, filepath.Base(f))
				break
			}
		}
	}
	return out
}

func containsWord(s, w string) bool {
	for i := strings.Index(s, w); i >= 0; {
		before := i == 0 || !isIdent(s[i-1])
		after := i+len(w) == len(s) || !isIdent(s[i+len(w)])
		if before && after {
			return true
		}
		j := strings.Index(s[i+1:], w)
		if j < 0 {
			return false
		}
		i += 1 + j
	}
	return false
}

func isIdent(c byte) bool {
	return c == '_' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}

func firstDiff(a, b string) string {
	al, bl := strings.Split(a, "\n"), strings.Split(b, "\n")
	for i := 0; i < len(al) && i < len(bl); i++ {
		if al[i] != bl[i] {
			return fmt.Sprintf("line %d:\n- %s\n+ %s", i+1, al[i], bl[i])
		}
	}
	return fmt.Sprintf("lengths %d and %d lines", len(al), len(bl))
}

// TestSchemaRejectsBadValues: values.schema.json stops bad values before anything renders, naming the field.
func TestSchemaRejectsBadValues(t *testing.T) {
	cases := []struct{ set, field string }{
		{"replicaCount=-1", "/replicaCount"},
		{"replicaCount=0", "/replicaCount"},
		{"tls.mode=bogus", "/tls/mode"},
		{"webhook.timeoutSeconds=60", "/webhook/timeoutSeconds"},
		{"webhook.timeoutSeconds=0", "/webhook/timeoutSeconds"},
		{"webhook.failurePolicy=Sometimes", "/webhook/failurePolicy"},
		{"webhook.port=70000", "/webhook/port"},
		{"image.pullPolicy=Sometimes", "/image/pullPolicy"},
		{"matchConditions.enabled=maybe", "/matchConditions/enabled"},
		{"matchConditions.selectorLabelKeys[0]=-not-a-key", "/matchConditions/selectorLabelKeys/0"},
		{"webhook.excludedNamespaces[0]=Not_A_Namespace", "/webhook/excludedNamespaces/0"},
		{"tls.certManager.duration=90d", "/tls/certManager/duration"},
		{"unknownValue=1", "unknownValue"},
		{"webhook.unknown=1", "unknown"},
		{"tls.mode=secret", "/tls/secret"},
		{"crds.enabled=maybe", "/crds/enabled"},
		{"hostNetwork=yes", "/hostNetwork"},
		{"dnsPolicy=Sometimes", "/dnsPolicy"},
		{"livenessProbe.periodSeconds=0", "/livenessProbe/periodSeconds"},
		{"readinessProbe.httpGet=x", "httpGet"},
		{"webhook.objectSelector.matchExpressions[0].key=a", "/webhook/objectSelector/matchExpressions/0"},
		{"monitoring.prometheusRule.errorRatioThreshold=2", "/monitoring/prometheusRule/errorRatioThreshold"},
		{"monitoring.serviceMonitor.interval=often", "/monitoring/serviceMonitor/interval"},
		{"test.namespace=Not_A_Namespace", "/test/namespace"},
	}
	for _, c := range cases {
		t.Run(c.set, func(t *testing.T) {
			_, stderr, err := helm(t, "template", releaseName, chartDir(t), "--namespace", releaseNS, "--set", c.set)
			if err == nil {
				t.Fatalf("helm template --set %s succeeded; want the schema to reject it", c.set)
			}
			if !strings.Contains(stderr, c.field) {
				t.Errorf("stderr does not name %q:\n%s", c.field, stderr)
			}
			if !strings.Contains(stderr, "schema") {
				t.Errorf("stderr does not say the schema rejected the value:\n%s", stderr)
			}
		})
	}
}

// TestRenderFailsForUnsafeCombinations: what a schema cannot express, the templates refuse with a message.
func TestRenderFailsForUnsafeCombinations(t *testing.T) {
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"--set", "replicaCount=2", "--set", "podDisruptionBudget.minAvailable=2"}, "podDisruptionBudget.minAvailable (2) must be lower than replicaCount (2)"},
		{[]string{"--set", "serviceAccount.create=false"}, "serviceAccount.name is required"},
	}
	for _, c := range cases {
		_, stderr, err := helm(t, append([]string{"template", releaseName, chartDir(t), "--namespace", releaseNS}, c.args...)...)
		if err == nil || !strings.Contains(stderr, c.want) {
			t.Errorf("helm template %v: err=%v, stderr does not contain %q:\n%s", c.args, err, c.want, stderr)
		}
	}
}

// TestCRDsMatchGenerated: files/crds/ is a copy of config/crd/bases (`make chart-crds`), and the chart renders
// each of them (templates/crds.yaml) with the same content.
func TestCRDsMatchGenerated(t *testing.T) {
	crds, err := testenv.CRDDir()
	if err != nil {
		t.Fatal(err)
	}
	gen, _ := filepath.Glob(filepath.Join(crds, "*.yaml"))
	chart, _ := filepath.Glob(filepath.Join(chartDir(t), "files", "crds", "*.yaml"))
	if len(gen) == 0 {
		t.Fatal("no CRDs in config/crd/bases")
	}
	base := func(paths []string) []string {
		var out []string
		for _, p := range paths {
			out = append(out, filepath.Base(p))
		}
		return out
	}
	if !slices.Equal(base(gen), base(chart)) {
		t.Fatalf("charts/sidecar-injector/files/crds has %v, config/crd/bases has %v: run `make chart-crds`", base(chart), base(gen))
	}
	for _, g := range gen {
		a, _ := os.ReadFile(g)
		b, _ := os.ReadFile(filepath.Join(chartDir(t), "files", "crds", filepath.Base(g)))
		if !bytes.Equal(a, b) {
			t.Errorf("charts/sidecar-injector/files/crds/%s differs from config/crd/bases: run `make chart-crds`", filepath.Base(g))
		}
		var want apiextensionsv1.CustomResourceDefinition
		if err := yaml.UnmarshalStrict(a, &want); err != nil {
			t.Fatalf("%s: %v", g, err)
		}
		got := findCRD(t, render(t), want.Name)
		if got == nil {
			t.Errorf("the chart does not render the CRD %s", want.Name)
		} else if !equality.Semantic.DeepEqual(got.Spec, want.Spec) {
			t.Errorf("the rendered CRD %s differs from %s", want.Name, g)
		}
	}
}

func findCRD(t *testing.T, r *rendered, name string) *apiextensionsv1.CustomResourceDefinition {
	t.Helper()
	for _, crd := range all[*apiextensionsv1.CustomResourceDefinition](r) {
		if crd.Name == name {
			return crd
		}
	}
	return nil
}

func TestDefaultValues(t *testing.T) {
	r := render(t)
	for _, want := range []string{"ServiceAccount/" + fullname, "Service/" + fullname, "Deployment/" + fullname,
		"ClusterRole/" + fullname, "ClusterRoleBinding/" + fullname, "MutatingWebhookConfiguration/" + fullname,
		"PodDisruptionBudget/" + fullname, "Secret/" + fullname + "-tls", "Role/" + fullname + "-tls", "RoleBinding/" + fullname + "-tls",
		"Role/" + fullname + "-leader-election", "RoleBinding/" + fullname + "-leader-election"} {
		if !slices.Contains(r.kinds(), want) {
			t.Errorf("default rendering lacks %s; has %v", want, r.kinds())
		}
	}
	for _, o := range r.objects {
		if ns := o.GetNamespace(); ns != "" && ns != releaseNS {
			t.Errorf("%s/%s in namespace %q, want the release namespace", o.GetObjectKind().GroupVersionKind().Kind, o.GetName(), ns)
		}
	}

	d := one[*appsv1.Deployment](t, r)
	if d.Spec.Replicas == nil || *d.Spec.Replicas != 2 {
		t.Errorf("replicas = %v, want 2", d.Spec.Replicas)
	}
	pod := d.Spec.Template
	if pod.Annotations[v1alpha1.AnnotationInject] != v1alpha1.OptOutValue {
		t.Errorf("pod annotation %s = %q, want %q", v1alpha1.AnnotationInject, pod.Annotations[v1alpha1.AnnotationInject], v1alpha1.OptOutValue)
	}
	sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
	if err != nil || !sel.Matches(labels.Set(pod.Labels)) {
		t.Errorf("deployment selector %v does not match its pod labels %v", d.Spec.Selector, pod.Labels)
	}
	if d.Spec.Strategy.RollingUpdate == nil || d.Spec.Strategy.RollingUpdate.MaxUnavailable.IntValue() != 0 {
		t.Errorf("rolling update should keep every pod until its replacement is ready (maxUnavailable 0): %+v", d.Spec.Strategy)
	}

	// Topology spread over nodes, without blocking scheduling.
	tsc := pod.Spec.TopologySpreadConstraints
	if len(tsc) != 1 || tsc[0].TopologyKey != "kubernetes.io/hostname" || tsc[0].WhenUnsatisfiable != corev1.ScheduleAnyway {
		t.Errorf("topologySpreadConstraints = %+v, want hostname / ScheduleAnyway", tsc)
	} else if s, _ := metav1.LabelSelectorAsSelector(tsc[0].LabelSelector); s == nil || !s.Matches(labels.Set(pod.Labels)) {
		t.Errorf("topology spread selector does not select the injector's pods")
	}

	c := container(t, d)
	assertSecurity(t, &pod.Spec, c)
	if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() || c.Resources.Limits.Cpu().IsZero() {
		t.Errorf("resources need cpu and memory requests and limits: %+v", c.Resources)
	}
	assertProbe(t, c, c.LivenessProbe, "/healthz", 8081)
	assertProbe(t, c, c.ReadinessProbe, "/readyz", 8081)

	if len(c.Args) == 0 || c.Args[0] != "serve" {
		t.Errorf("args = %v, want `serve` first", c.Args)
	}
	for _, want := range []string{"--cert-dir=" + certDir, "--webhook-port=9443", "--metrics-bind-address=:8080", "--health-probe-bind-address=:8081", "--leader-elect"} {
		if !slices.Contains(c.Args, want) {
			t.Errorf("args %v lack %s", c.Args, want)
		}
	}
	env := envVar(c, "POD_NAMESPACE")
	if env == nil || env.ValueFrom == nil || env.ValueFrom.FieldRef == nil || env.ValueFrom.FieldRef.FieldPath != "metadata.namespace" {
		t.Errorf("POD_NAMESPACE must come from the downward API metadata.namespace: %+v", env)
	}
	if mountAt(c, certDir) == nil {
		t.Errorf("nothing mounted at the cert dir %s", certDir)
	}

	// Service: 443 to the container's webhook port, plus metrics.
	svc := one[*corev1.Service](t, r)
	if s, _ := metav1.LabelSelectorAsSelector(&metav1.LabelSelector{MatchLabels: svc.Spec.Selector}); !s.Matches(labels.Set(pod.Labels)) {
		t.Errorf("service selector %v does not select the injector's pods", svc.Spec.Selector)
	}
	assertServicePort(t, svc, c, 443, 9443)
	assertServicePort(t, svc, c, 8080, 8080)

	// PDB: minAvailable 1 of 2, selecting the pods.
	pdb := one[*policyv1.PodDisruptionBudget](t, r)
	if pdb.Spec.MinAvailable == nil || *pdb.Spec.MinAvailable != intstr.FromInt32(1) {
		t.Errorf("PDB minAvailable = %v, want 1", pdb.Spec.MinAvailable)
	}
	if s, _ := metav1.LabelSelectorAsSelector(pdb.Spec.Selector); s == nil || !s.Matches(labels.Set(pod.Labels)) {
		t.Errorf("PDB does not select the injector's pods")
	}

	assertWebhook(t, r, admissionregistrationv1.Fail, 10)
	wh := webhookOf(t, r)
	if len(wh.MatchConditions) != 1 || wh.MatchConditions[0].Name != "not-opted-out" {
		t.Errorf("default matchConditions = %+v, want only not-opted-out (no selector-key filtering by default)", wh.MatchConditions)
	}
	assertRBAC(t, r, "selfManaged")
	assertMatchesGeneratedWebhook(t, wh)
}

func TestTLSModes(t *testing.T) {
	for _, mode := range modeNames() {
		t.Run(mode, func(t *testing.T) {
			r := render(t, tlsModes[mode]...)
			d := one[*appsv1.Deployment](t, r)
			c := container(t, d)
			assertSecurity(t, &d.Spec.Template.Spec, c)
			assertWebhook(t, r, admissionregistrationv1.Fail, 10)
			assertRBAC(t, r, mode)
			wh := one[*admissionregistrationv1.MutatingWebhookConfiguration](t, r)
			hook := webhookOf(t, r)
			vol := volume(d, mountAt(c, certDir))
			if vol == nil {
				t.Fatalf("no volume mounted at %s", certDir)
			}
			certManagerObjs := all[*unstructured.Unstructured](r)
			switch mode {
			case "selfManaged":
				secretName := fullname + "-tls"
				for _, want := range []string{"--tls-mode=selfManaged", "--tls-secret-name=" + secretName, "--webhook-config-name=" + wh.Name, "--service-name=" + hook.ClientConfig.Service.Name} {
					if !slices.Contains(c.Args, want) {
						t.Errorf("args %v lack %s", c.Args, want)
					}
				}
				if vol.EmptyDir == nil {
					t.Errorf("self-managed certificates are written by the injector into an emptyDir; volume is %+v", vol.VolumeSource)
				}
				if m := mountAt(c, certDir); m.ReadOnly {
					t.Errorf("the cert dir must be writable in selfManaged mode")
				}
				var secret *corev1.Secret
				for _, s := range all[*corev1.Secret](r) {
					if s.Name == secretName {
						secret = s
					}
				}
				if secret == nil {
					t.Fatalf("no Secret %s rendered (the rotator only updates an existing Secret)", secretName)
				}
				if len(secret.Data)+len(secret.StringData) != 0 {
					t.Errorf("the rendered TLS Secret must be empty (the injector fills it): %v", secret.Data)
				}
				if len(hook.ClientConfig.CABundle) != 0 || len(wh.Annotations) != 0 {
					t.Errorf("selfManaged: caBundle %q and annotations %v must be left to the injector", hook.ClientConfig.CABundle, wh.Annotations)
				}
			case "certManager":
				if !slices.Contains(c.Args, "--tls-mode=external") {
					t.Errorf("args %v lack --tls-mode=external", c.Args)
				}
				cert := findUnstructured(certManagerObjs, "Certificate", fullname+"-serving")
				if cert == nil {
					t.Fatalf("no serving Certificate; objects: %v", r.kinds())
				}
				if got, want := wh.Annotations["cert-manager.io/inject-ca-from"], releaseNS+"/"+cert.GetName(); got != want {
					t.Errorf("inject-ca-from = %q, want %q", got, want)
				}
				dnsNames, _, _ := unstructured.NestedStringSlice(cert.Object, "spec", "dnsNames")
				svc := hook.ClientConfig.Service.Name + "." + releaseNS + ".svc"
				if !slices.Equal(dnsNames, []string{svc, svc + ".cluster.local"}) {
					t.Errorf("dnsNames = %v, want %s and %s.cluster.local", dnsNames, svc, svc)
				}
				secretName, _, _ := unstructured.NestedString(cert.Object, "spec", "secretName")
				if vol.Secret == nil || vol.Secret.SecretName != secretName {
					t.Errorf("cert dir volume %+v does not mount the Certificate's Secret %s", vol.VolumeSource, secretName)
				}
				// The self-signed CA chain: selfSigned Issuer -> CA Certificate -> CA Issuer -> serving Certificate.
				issuerName, _, _ := unstructured.NestedString(cert.Object, "spec", "issuerRef", "name")
				caIssuer := findUnstructured(certManagerObjs, "Issuer", issuerName)
				if caIssuer == nil {
					t.Fatalf("serving Certificate's issuer %s is not rendered", issuerName)
				}
				caSecret, _, _ := unstructured.NestedString(caIssuer.Object, "spec", "ca", "secretName")
				var caCert *unstructured.Unstructured
				for _, o := range certManagerObjs {
					if s, _, _ := unstructured.NestedString(o.Object, "spec", "secretName"); o.GetKind() == "Certificate" && s == caSecret {
						caCert = o
					}
				}
				if caCert == nil {
					t.Fatalf("no Certificate writes the CA Issuer's secret %s", caSecret)
				}
				if isCA, _, _ := unstructured.NestedBool(caCert.Object, "spec", "isCA"); !isCA {
					t.Errorf("CA Certificate %s is not isCA", caCert.GetName())
				}
				rootName, _, _ := unstructured.NestedString(caCert.Object, "spec", "issuerRef", "name")
				root := findUnstructured(certManagerObjs, "Issuer", rootName)
				if root == nil {
					t.Fatalf("CA Certificate's issuer %s not rendered", rootName)
				}
				if _, ok, _ := unstructured.NestedMap(root.Object, "spec", "selfSigned"); !ok {
					t.Errorf("root Issuer %s is not selfSigned", rootName)
				}
				for _, o := range certManagerObjs {
					if o.GetNamespace() != releaseNS {
						t.Errorf("%s %s not in the release namespace", o.GetKind(), o.GetName())
					}
				}
			case "secret":
				if !slices.Contains(c.Args, "--tls-mode=external") {
					t.Errorf("args %v lack --tls-mode=external", c.Args)
				}
				if vol.Secret == nil || vol.Secret.SecretName != "my-tls" {
					t.Errorf("cert dir volume %+v, want Secret my-tls", vol.VolumeSource)
				}
				if got := base64.StdEncoding.EncodeToString(hook.ClientConfig.CABundle); got != testCABundle {
					t.Errorf("caBundle = %s, want the value tls.secret.caBundle", got)
				}
			}
			if mode != "certManager" && len(certManagerObjs) > 0 {
				t.Errorf("%s mode renders objects of unknown kinds (cert-manager?): %v", mode, r.kinds())
			}
			if mode != "selfManaged" {
				if len(all[*corev1.Secret](r)) != 0 {
					t.Errorf("%s mode must not render a Secret", mode)
				}
				if slices.ContainsFunc(c.Args, func(a string) bool { return strings.HasPrefix(a, "--tls-secret-name") }) {
					t.Errorf("%s mode passes --tls-secret-name: %v", mode, c.Args)
				}
			}
		})
	}
}

func TestEdgeValues(t *testing.T) {
	t.Run("one replica has no PDB", func(t *testing.T) {
		r := render(t, "--set", "replicaCount=1")
		if n := len(all[*policyv1.PodDisruptionBudget](r)); n != 0 {
			t.Errorf("replicaCount=1 renders %d PodDisruptionBudget(s); one would block every node drain", n)
		}
		if d := one[*appsv1.Deployment](t, r); *d.Spec.Replicas != 1 {
			t.Errorf("replicas = %d", *d.Spec.Replicas)
		}
	})
	t.Run("PDB disabled", func(t *testing.T) {
		if n := len(all[*policyv1.PodDisruptionBudget](render(t, "--set", "podDisruptionBudget.enabled=false"))); n != 0 {
			t.Errorf("podDisruptionBudget.enabled=false renders %d PDBs", n)
		}
	})
	t.Run("three replicas keep two", func(t *testing.T) {
		pdb := one[*policyv1.PodDisruptionBudget](t, render(t, "--set", "replicaCount=3", "--set", "podDisruptionBudget.minAvailable=2"))
		if pdb.Spec.MinAvailable.IntValue() != 2 {
			t.Errorf("minAvailable = %v", pdb.Spec.MinAvailable)
		}
	})
	t.Run("matchConditions off", func(t *testing.T) {
		r := render(t, "--set", "matchConditions.enabled=false")
		if mc := webhookOf(t, r).MatchConditions; len(mc) != 0 {
			t.Errorf("matchConditions.enabled=false still renders %+v", mc)
		}
		assertWebhook(t, r, admissionregistrationv1.Fail, 10)
	})
	t.Run("selector label keys", func(t *testing.T) {
		r := render(t, "--set", "matchConditions.selectorLabelKeys={app.kubernetes.io/name,team}")
		mc := webhookOf(t, r).MatchConditions
		if len(mc) != 2 || mc[1].Name != "requested-or-selectable" {
			t.Fatalf("matchConditions = %+v, want not-opted-out and requested-or-selectable", mc)
		}
		if !strings.Contains(mc[1].Expression, `["app.kubernetes.io/name","team"]`) {
			t.Errorf("requested-or-selectable does not test the configured keys: %s", mc[1].Expression)
		}
	})
	t.Run("custom timeout and failure policy", func(t *testing.T) {
		r := render(t, "--set", "webhook.timeoutSeconds=25", "--set", "webhook.failurePolicy=Ignore")
		assertWebhook(t, r, admissionregistrationv1.Ignore, 25)
	})
	t.Run("extra excluded namespaces, no duplicates", func(t *testing.T) {
		r := render(t, "--set", "webhook.excludedNamespaces={monitoring,kube-system}")
		vals := nameExclusions(t, webhookOf(t, r))
		want := []string{releaseNS, "kube-system", "kube-public", "kube-node-lease", "monitoring"}
		if !slices.Equal(vals, want) {
			t.Errorf("excluded namespaces = %v, want %v", vals, want)
		}
	})
	t.Run("release in kube-system", func(t *testing.T) {
		raw := template(t, "--namespace", "kube-system")
		objs, err := decode(raw)
		if err != nil {
			t.Fatal(err)
		}
		wh := webhookOf(t, &rendered{raw: raw, objects: objs})
		if vals := nameExclusions(t, wh); !slices.Equal(vals, []string{"kube-system", "kube-public", "kube-node-lease"}) {
			t.Errorf("excluded namespaces = %v", vals)
		}
	})
	t.Run("digest, service port, ports", func(t *testing.T) {
		digest := "sha256:" + strings.Repeat("ab", 32)
		r := render(t, "--set", "image.digest="+digest, "--set", "service.port=8443", "--set", "webhook.port=10250",
			"--set", "health.port=9000", "--set", "metrics.port=9100")
		d := one[*appsv1.Deployment](t, r)
		c := container(t, d)
		if !strings.HasSuffix(c.Image, "@"+digest) {
			t.Errorf("image = %s, want the digest", c.Image)
		}
		assertServicePort(t, one[*corev1.Service](t, r), c, 8443, 10250)
		assertProbe(t, c, c.ReadinessProbe, "/readyz", 9000)
		if wh := webhookOf(t, r); wh.ClientConfig.Service.Port == nil || *wh.ClientConfig.Service.Port != 8443 {
			t.Errorf("webhook service port = %v, want 8443", wh.ClientConfig.Service.Port)
		}
		for _, want := range []string{"--webhook-port=10250", "--health-probe-bind-address=:9000", "--metrics-bind-address=:9100"} {
			if !slices.Contains(c.Args, want) {
				t.Errorf("args %v lack %s", c.Args, want)
			}
		}
	})
	t.Run("preStop sleep: on by default and inside the grace period, off at 0", func(t *testing.T) {
		d := one[*appsv1.Deployment](t, render(t))
		c := container(t, d)
		if c.Lifecycle == nil || c.Lifecycle.PreStop == nil || c.Lifecycle.PreStop.Sleep == nil || c.Lifecycle.PreStop.Sleep.Seconds != 5 {
			t.Fatalf("default preStop = %+v, want a 5 s sleep", c.Lifecycle)
		}
		if g := d.Spec.Template.Spec.TerminationGracePeriodSeconds; g == nil || *g < 5+30 {
			t.Errorf("terminationGracePeriodSeconds = %v, want room for the 5 s sleep and the 30 s drain", g)
		}
		if c := container(t, one[*appsv1.Deployment](t, render(t, "--set", "preStopSleepSeconds=0"))); c.Lifecycle != nil {
			t.Errorf("preStopSleepSeconds=0 still renders %+v", c.Lifecycle)
		}
	})
	t.Run("leader election off: no flag, no Lease Role", func(t *testing.T) {
		r := render(t, "--set", "leaderElection.enabled=false")
		if slices.Contains(container(t, one[*appsv1.Deployment](t, r)).Args, "--leader-elect") {
			t.Error("leaderElection.enabled=false still passes --leader-elect")
		}
		if r.has("Role", fullname+"-leader-election") {
			t.Error("leaderElection.enabled=false still renders the Lease Role")
		}
	})
	t.Run("no RBAC", func(t *testing.T) {
		// The injector's RBAC; the ClusterRoles for template users have their own switch (templateRoles.create).
		r := render(t, "--set", "rbac.create=false", "--set", "templateRoles.create=false")
		if n := len(all[*rbacv1.ClusterRole](r)) + len(all[*rbacv1.Role](r)) + len(all[*rbacv1.ClusterRoleBinding](r)) + len(all[*rbacv1.RoleBinding](r)); n != 0 {
			t.Errorf("rbac.create=false renders %d RBAC objects", n)
		}
	})
}

// --- assertions ---

func container(t *testing.T, d *appsv1.Deployment) *corev1.Container {
	t.Helper()
	if len(d.Spec.Template.Spec.Containers) != 1 {
		t.Fatalf("want one container, got %d", len(d.Spec.Template.Spec.Containers))
	}
	return &d.Spec.Template.Spec.Containers[0]
}

func assertSecurity(t *testing.T, spec *corev1.PodSpec, c *corev1.Container) {
	t.Helper()
	psc, sc := spec.SecurityContext, c.SecurityContext
	if psc == nil || sc == nil {
		t.Fatal("pod and container securityContext required")
	}
	nonRoot := (sc.RunAsNonRoot != nil && *sc.RunAsNonRoot) || (sc.RunAsNonRoot == nil && psc.RunAsNonRoot != nil && *psc.RunAsNonRoot)
	if !nonRoot {
		t.Error("runAsNonRoot is not true")
	}
	if uid := psc.RunAsUser; uid == nil || *uid == 0 {
		t.Errorf("runAsUser = %v, want non-zero (distroless nonroot is 65532)", uid)
	}
	if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		t.Error("readOnlyRootFilesystem is not true")
	}
	if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Error("allowPrivilegeEscalation is not false")
	}
	if sc.Privileged != nil && *sc.Privileged {
		t.Error("privileged")
	}
	if sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) != 0 {
		t.Errorf("capabilities = %+v, want drop [ALL] and no add", sc.Capabilities)
	}
	seccomp := sc.SeccompProfile
	if seccomp == nil {
		seccomp = psc.SeccompProfile
	}
	if seccomp == nil || seccomp.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("seccompProfile = %+v, want RuntimeDefault", seccomp)
	}
	if spec.HostNetwork || spec.HostPID || spec.HostIPC {
		t.Error("host namespaces must not be used")
	}
}

func assertProbe(t *testing.T, c *corev1.Container, p *corev1.Probe, path string, port int32) {
	t.Helper()
	if p == nil || p.HTTPGet == nil || p.HTTPGet.Path != path {
		t.Errorf("probe %+v, want HTTP GET %s", p, path)
		return
	}
	if got := resolvePort(c, p.HTTPGet.Port); got != port {
		t.Errorf("probe %s on port %d, want %d", path, got, port)
	}
}

func resolvePort(c *corev1.Container, p intstr.IntOrString) int32 {
	if p.Type == intstr.Int {
		return p.IntVal
	}
	for _, cp := range c.Ports {
		if cp.Name == p.StrVal {
			return cp.ContainerPort
		}
	}
	return -1
}

func assertServicePort(t *testing.T, svc *corev1.Service, c *corev1.Container, port, containerPort int32) {
	t.Helper()
	for _, p := range svc.Spec.Ports {
		if p.Port == port {
			if got := resolvePort(c, p.TargetPort); got != containerPort {
				t.Errorf("service port %d targets container port %d, want %d", port, got, containerPort)
			}
			return
		}
	}
	t.Errorf("service has no port %d: %+v", port, svc.Spec.Ports)
}

func envVar(c *corev1.Container, name string) *corev1.EnvVar {
	for i := range c.Env {
		if c.Env[i].Name == name {
			return &c.Env[i]
		}
	}
	return nil
}

func mountAt(c *corev1.Container, path string) *corev1.VolumeMount {
	for i := range c.VolumeMounts {
		if c.VolumeMounts[i].MountPath == path {
			return &c.VolumeMounts[i]
		}
	}
	return nil
}

func volume(d *appsv1.Deployment, m *corev1.VolumeMount) *corev1.Volume {
	if m == nil {
		return nil
	}
	for i := range d.Spec.Template.Spec.Volumes {
		if d.Spec.Template.Spec.Volumes[i].Name == m.Name {
			return &d.Spec.Template.Spec.Volumes[i]
		}
	}
	return nil
}

func findUnstructured(objs []*unstructured.Unstructured, kind, name string) *unstructured.Unstructured {
	for _, o := range objs {
		if o.GetKind() == kind && o.GetName() == name {
			return o
		}
	}
	return nil
}

func webhookOf(t *testing.T, r *rendered) *admissionregistrationv1.MutatingWebhook {
	t.Helper()
	cfg := one[*admissionregistrationv1.MutatingWebhookConfiguration](t, r)
	if len(cfg.Webhooks) != 1 {
		t.Fatalf("want one webhook, got %d", len(cfg.Webhooks))
	}
	return &cfg.Webhooks[0]
}

// nameExclusions returns the values of the kubernetes.io/metadata.name NotIn expression.
func nameExclusions(t *testing.T, wh *admissionregistrationv1.MutatingWebhook) []string {
	t.Helper()
	if wh.NamespaceSelector == nil {
		t.Fatal("no namespaceSelector")
	}
	for _, e := range wh.NamespaceSelector.MatchExpressions {
		if e.Key == "kubernetes.io/metadata.name" && e.Operator == metav1.LabelSelectorOpNotIn {
			return e.Values
		}
	}
	t.Fatal("no kubernetes.io/metadata.name NotIn expression")
	return nil
}

func assertWebhook(t *testing.T, r *rendered, policy admissionregistrationv1.FailurePolicyType, timeout int32) {
	t.Helper()
	wh := webhookOf(t, r)
	svc := one[*corev1.Service](t, r)
	want := []admissionregistrationv1.RuleWithOperations{{
		Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
		Rule:       admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}, Scope: ptr(admissionregistrationv1.NamespacedScope)},
	}}
	if got, _ := yaml.Marshal(wh.Rules); string(got) != string(must(yaml.Marshal(want))) {
		t.Errorf("rules = %s, want CREATE on pods only", got)
	}
	if wh.SideEffects == nil || *wh.SideEffects != admissionregistrationv1.SideEffectClassNone {
		t.Errorf("sideEffects = %v, want None", wh.SideEffects)
	}
	if !slices.Equal(wh.AdmissionReviewVersions, []string{"v1"}) {
		t.Errorf("admissionReviewVersions = %v", wh.AdmissionReviewVersions)
	}
	if wh.ReinvocationPolicy == nil || *wh.ReinvocationPolicy != admissionregistrationv1.IfNeededReinvocationPolicy {
		t.Errorf("reinvocationPolicy = %v, want IfNeeded", wh.ReinvocationPolicy)
	}
	if wh.FailurePolicy == nil || *wh.FailurePolicy != policy {
		t.Errorf("failurePolicy = %v, want %s", wh.FailurePolicy, policy)
	}
	if wh.TimeoutSeconds == nil || *wh.TimeoutSeconds != timeout {
		t.Errorf("timeoutSeconds = %v, want %d", wh.TimeoutSeconds, timeout)
	}
	s := wh.ClientConfig.Service
	if s == nil || s.Name != svc.Name || s.Namespace != releaseNS || s.Path == nil || *s.Path != "/mutate-v1-pod" {
		t.Errorf("clientConfig.service = %+v, want %s/%s path /mutate-v1-pod", s, releaseNS, svc.Name)
	}

	// The namespaceSelector, evaluated on namespace labels as the API server does.
	sel, err := metav1.LabelSelectorAsSelector(wh.NamespaceSelector)
	if err != nil {
		t.Fatalf("namespaceSelector: %v", err)
	}
	ns := func(name string, extra ...string) labels.Set {
		l := labels.Set{"kubernetes.io/metadata.name": name}
		for i := 0; i+1 < len(extra); i += 2 {
			l[extra[i]] = extra[i+1]
		}
		return l
	}
	for _, excluded := range append([]string{releaseNS}, v1alpha1.SystemNamespaces...) {
		if sel.Matches(ns(excluded)) {
			t.Errorf("namespaceSelector sends namespace %s to the webhook", excluded)
		}
	}
	if sel.Matches(ns("team-a", v1alpha1.LabelInjection, v1alpha1.LabelInjectionDisabled)) {
		t.Errorf("namespaceSelector sends a namespace labelled %s=%s", v1alpha1.LabelInjection, v1alpha1.LabelInjectionDisabled)
	}
	for _, l := range []labels.Set{ns("team-a"), ns("default"), ns("team-b", v1alpha1.LabelInjection, "enabled")} {
		if !sel.Matches(l) {
			t.Errorf("namespaceSelector skips namespace %v", l)
		}
	}
}

// assertRBAC: no wildcard anywhere; the ClusterRole is the generated config/rbac/role.yaml plus the rolling
// restart's patch rules plus, in selfManaged mode, exactly the webhook-configuration rules; the Role is exactly the one-Secret rules; bindings name the
// ServiceAccount.
func assertRBAC(t *testing.T, r *rendered, mode string) {
	t.Helper()
	var rules []rbacv1.PolicyRule
	for _, cr := range all[*rbacv1.ClusterRole](r) {
		rules = append(rules, cr.Rules...)
	}
	for _, ro := range all[*rbacv1.Role](r) {
		rules = append(rules, ro.Rules...)
	}
	for _, rule := range rules {
		for _, list := range [][]string{rule.Verbs, rule.APIGroups, rule.Resources, rule.ResourceNames, rule.NonResourceURLs} {
			for _, v := range list {
				if strings.Contains(v, "*") {
					t.Errorf("wildcard %q in RBAC rule %+v", v, rule)
				}
			}
		}
	}

	cr := named[*rbacv1.ClusterRole](t, r, fullname) // the injector's own; the chart's template roles are for users
	generated := generatedClusterRoleRules(t)
	got := permissions(cr.Rules)
	wantTLS := []string{}
	if mode == "selfManaged" {
		for _, v := range []string{"get", "update", "patch"} {
			wantTLS = append(wantTLS, "admissionregistration.k8s.io/mutatingwebhookconfigurations/"+fullname+":"+v)
		}
		wantTLS = append(wantTLS, "admissionregistration.k8s.io/mutatingwebhookconfigurations/:list", "admissionregistration.k8s.io/mutatingwebhookconfigurations/:watch")
	}
	want := append(permissions(generated), wantTLS...)
	want = append(want, rollingRestartPermissions...) // rollingRestart.enabled is on by default
	sort.Strings(want)
	if !slices.Equal(got, want) {
		t.Errorf("ClusterRole permissions:\n got %v\nwant %v (config/rbac/role.yaml + self-managed TLS)", got, want)
	}

	// Namespaced Roles: the leader-election Lease (every mode) and, in selfManaged mode, the one TLS Secret.
	wantRoles := map[string][]string{
		fullname + "-leader-election": {"coordination.k8s.io/leases/:create", "coordination.k8s.io/leases/sidecar-injector.sidecar.dev:get",
			"coordination.k8s.io/leases/sidecar-injector.sidecar.dev:patch", "coordination.k8s.io/leases/sidecar-injector.sidecar.dev:update"},
	}
	if mode == "selfManaged" {
		secret := fullname + "-tls"
		wantRoles[secret] = []string{"/secrets/" + secret + ":get", "/secrets/" + secret + ":patch", "/secrets/" + secret + ":update", "/secrets/:list", "/secrets/:watch"}
	}
	roles := all[*rbacv1.Role](r)
	if len(roles) != len(wantRoles) {
		t.Errorf("%s mode: want %d Roles, got %d", mode, len(wantRoles), len(roles))
	}
	for _, ro := range roles {
		want, ok := wantRoles[ro.Name]
		if !ok {
			t.Errorf("unexpected Role %s", ro.Name)
			continue
		}
		sort.Strings(want)
		if got := permissions(ro.Rules); !slices.Equal(got, want) {
			t.Errorf("Role %s permissions:\n got %v\nwant %v", ro.Name, got, want)
		}
	}

	sa := one[*corev1.ServiceAccount](t, r)
	d := one[*appsv1.Deployment](t, r)
	if d.Spec.Template.Spec.ServiceAccountName != sa.Name {
		t.Errorf("pod runs as %q, not the chart's ServiceAccount %q", d.Spec.Template.Spec.ServiceAccountName, sa.Name)
	}
	check := func(kind, name string, ref rbacv1.RoleRef, subjects []rbacv1.Subject) {
		if len(subjects) != 1 || subjects[0].Kind != "ServiceAccount" || subjects[0].Name != sa.Name || subjects[0].Namespace != releaseNS {
			t.Errorf("%s %s subjects = %+v, want the ServiceAccount only", kind, name, subjects)
		}
		if !r.has(ref.Kind, ref.Name) {
			t.Errorf("%s %s refers to %s %s, which is not rendered", kind, name, ref.Kind, ref.Name)
		}
	}
	for _, b := range all[*rbacv1.ClusterRoleBinding](r) {
		check("ClusterRoleBinding", b.Name, b.RoleRef, b.Subjects)
	}
	for _, b := range all[*rbacv1.RoleBinding](r) {
		check("RoleBinding", b.Name, b.RoleRef, b.Subjects)
	}
}

// rollingRestartPermissions is all the chart grants on workloads when rollingRestart.enabled is true: patch, to
// write the restart annotation into their pod templates.
var rollingRestartPermissions = []string{"apps/daemonsets/:patch", "apps/deployments/:patch", "apps/statefulsets/:patch"}

// permissions flattens rules into sorted "group/resource/name:verb" strings.
func permissions(rules []rbacv1.PolicyRule) []string {
	var out []string
	for _, r := range rules {
		names := r.ResourceNames
		if len(names) == 0 {
			names = []string{""}
		}
		for _, g := range r.APIGroups {
			for _, res := range r.Resources {
				for _, n := range names {
					for _, v := range r.Verbs {
						out = append(out, g+"/"+res+"/"+n+":"+v)
					}
				}
			}
		}
	}
	sort.Strings(out)
	return slices.Compact(out)
}

func generatedClusterRoleRules(t *testing.T) []rbacv1.PolicyRule {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot(t), "config", "rbac", "role.yaml"))
	if err != nil {
		t.Fatalf("generated RBAC: %v", err)
	}
	objs, err := decode(string(data))
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		if cr, ok := o.(*rbacv1.ClusterRole); ok {
			return cr.Rules
		}
	}
	t.Fatal("config/rbac/role.yaml has no ClusterRole")
	return nil
}

// assertMatchesGeneratedWebhook: the chart's webhook registers what the code's markers generate into
// config/webhook/manifests.yaml (name, path, rules, side effects, reinvocation, review versions).
func assertMatchesGeneratedWebhook(t *testing.T, wh *admissionregistrationv1.MutatingWebhook) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot(t), "config", "webhook", "manifests.yaml"))
	if err != nil {
		t.Fatalf("generated webhook: %v", err)
	}
	objs, err := decode(string(data))
	if err != nil {
		t.Fatal(err)
	}
	var gen *admissionregistrationv1.MutatingWebhook
	for _, o := range objs {
		if c, ok := o.(*admissionregistrationv1.MutatingWebhookConfiguration); ok && len(c.Webhooks) == 1 {
			gen = &c.Webhooks[0]
		}
	}
	if gen == nil {
		t.Fatal("config/webhook/manifests.yaml has no MutatingWebhookConfiguration with one webhook")
	}
	if wh.Name != gen.Name {
		t.Errorf("webhook name %q, generated %q", wh.Name, gen.Name)
	}
	if *wh.ClientConfig.Service.Path != *gen.ClientConfig.Service.Path {
		t.Errorf("path %q, generated %q", *wh.ClientConfig.Service.Path, *gen.ClientConfig.Service.Path)
	}
	norm := func(rules []admissionregistrationv1.RuleWithOperations) string {
		out := slices.Clone(rules)
		for i := range out {
			out[i].Scope = nil
		}
		return string(must(yaml.Marshal(out)))
	}
	if norm(wh.Rules) != norm(gen.Rules) {
		t.Errorf("rules differ from the generated ones:\n%s\n%s", norm(wh.Rules), norm(gen.Rules))
	}
	if *wh.SideEffects != *gen.SideEffects || *wh.ReinvocationPolicy != *gen.ReinvocationPolicy || !slices.Equal(wh.AdmissionReviewVersions, gen.AdmissionReviewVersions) {
		t.Errorf("sideEffects/reinvocationPolicy/admissionReviewVersions differ from the generated webhook")
	}
}

func ptr[T any](v T) *T { return &v }

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// TestEveryValueDocumented: every value of values.yaml is in the README's table (or under a documented parent).
func TestEveryValueDocumented(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(chartDir(t), "values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile(filepath.Join(chartDir(t), "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	var values map[string]any
	if err := yaml.Unmarshal(data, &values); err != nil {
		t.Fatal(err)
	}
	var paths []string
	var walk func(prefix string, m map[string]any)
	walk = func(prefix string, m map[string]any) {
		for k, v := range m {
			p := strings.TrimPrefix(prefix+"."+k, ".")
			if sub, ok := v.(map[string]any); ok && len(sub) > 0 {
				walk(p, sub)
				continue
			}
			paths = append(paths, p)
		}
	}
	walk("", values)
	sort.Strings(paths)
	for _, p := range paths {
		documented := false
		for q := p; q != ""; {
			if strings.Contains(string(readme), "| `"+q+"` |") {
				documented = true
				break
			}
			i := strings.LastIndex(q, ".")
			if i < 0 {
				break
			}
			q = q[:i]
		}
		if !documented {
			t.Errorf("value %s is not in the README's values table", p)
		}
	}
}
