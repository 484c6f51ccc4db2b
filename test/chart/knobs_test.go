package chart

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/sidecar-dev/sidecar-injector/internal/api/v1alpha1"
)

// renderFails renders with args and returns helm's stderr, failing the test when the render succeeds.
func renderFails(t *testing.T, args ...string) string {
	t.Helper()
	_, stderr, err := helm(t, append([]string{"template", releaseName, chartDir(t), "--namespace", releaseNS}, args...)...)
	if err == nil {
		t.Fatalf("helm template %v succeeded; want it refused", args)
	}
	return stderr
}

func TestHostNetworkServesTheWebhookOnTheNodesPort(t *testing.T) {
	r := render(t, "--set", "hostNetwork=true", "--set", "webhook.port=10260")
	d := one[*appsv1.Deployment](t, r)
	spec, c := &d.Spec.Template.Spec, container(t, d)
	if !spec.HostNetwork || spec.DNSPolicy != corev1.DNSClusterFirstWithHostNet {
		t.Errorf("hostNetwork=true: hostNetwork %v, dnsPolicy %q; want true, ClusterFirstWithHostNet", spec.HostNetwork, spec.DNSPolicy)
	}
	if !slices.Contains(c.Args, "--webhook-port=10260") {
		t.Errorf("args %v lack --webhook-port=10260", c.Args)
	}
	assertServicePort(t, one[*corev1.Service](t, r), c, 443, 10260)

	d = one[*appsv1.Deployment](t, render(t))
	if d.Spec.Template.Spec.HostNetwork || d.Spec.Template.Spec.DNSPolicy != "" {
		t.Errorf("by default: hostNetwork %v, dnsPolicy %q; want false and the cluster's default", d.Spec.Template.Spec.HostNetwork, d.Spec.Template.Spec.DNSPolicy)
	}
}

func TestSecurityContextsAreValuesThatOpenShiftCanUnset(t *testing.T) {
	// No UID is written in a template: it comes from values.yaml only.
	files, _ := filepath.Glob(filepath.Join(chartDir(t), "templates", "*.yaml"))
	for _, f := range files {
		if b, _ := os.ReadFile(f); strings.Contains(string(b), "65532") {
			t.Errorf("%s hard-codes the UID 65532; it belongs in values.yaml", filepath.Base(f))
		}
	}

	d := one[*appsv1.Deployment](t, render(t,
		"--set", "podSecurityContext.runAsUser=null", "--set", "podSecurityContext.runAsGroup=null", "--set", "podSecurityContext.fsGroup=null",
		"--set", "securityContext.runAsUser=1000650000"))
	psc, sc := d.Spec.Template.Spec.SecurityContext, container(t, d).SecurityContext
	if psc == nil || psc.RunAsUser != nil || psc.RunAsGroup != nil || psc.FSGroup != nil {
		t.Errorf("pod securityContext %+v: runAsUser, runAsGroup and fsGroup should be unset (the SCC assigns them)", psc)
	}
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot {
		t.Error("unsetting the UID must keep runAsNonRoot")
	}
	if sc == nil || sc.RunAsUser == nil || *sc.RunAsUser != 1000650000 || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		t.Errorf("container securityContext %+v: want runAsUser 1000650000 beside the defaults", sc)
	}
}

func TestWebhookSelectorsAddToTheChartsExclusions(t *testing.T) {
	r := render(t,
		"--set-json", `webhook.namespaceSelector={"matchLabels":{"team":"a"},"matchExpressions":[{"key":"env","operator":"In","values":["prod"]}]}`,
		"--set-json", `webhook.objectSelector={"matchExpressions":[{"key":"sidecar.dev/skip","operator":"DoesNotExist"}]}`)
	wh := webhookOf(t, r)
	ns := wh.NamespaceSelector
	if ns == nil || ns.MatchLabels["team"] != "a" {
		t.Fatalf("namespaceSelector %+v lacks matchLabels team=a", ns)
	}
	if !slices.Contains(nameExclusions(t, wh), releaseNS) || !slices.Contains(nameExclusions(t, wh), "kube-system") {
		t.Errorf("the chart's namespace exclusions are gone: %+v", ns)
	}
	sel, err := metav1.LabelSelectorAsSelector(ns)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		labels labels.Set
		want   bool
	}{
		{labels.Set{"kubernetes.io/metadata.name": "shop", "team": "a", "env": "prod"}, true},
		{labels.Set{"kubernetes.io/metadata.name": "shop", "team": "a", "env": "dev"}, false},
		{labels.Set{"kubernetes.io/metadata.name": "shop", "team": "b", "env": "prod"}, false},
		{labels.Set{"kubernetes.io/metadata.name": "kube-system", "team": "a", "env": "prod"}, false},
		{labels.Set{"kubernetes.io/metadata.name": "shop", "team": "a", "env": "prod", v1alpha1.LabelInjection: v1alpha1.LabelInjectionDisabled}, false},
	} {
		if got := sel.Matches(c.labels); got != c.want {
			t.Errorf("namespace %v sent to the webhook: %v, want %v", c.labels, got, c.want)
		}
	}
	obj, err := metav1.LabelSelectorAsSelector(wh.ObjectSelector)
	if err != nil || wh.ObjectSelector == nil || obj.Matches(labels.Set{"sidecar.dev/skip": "x"}) || !obj.Matches(labels.Set{"app": "web"}) {
		t.Errorf("objectSelector %+v: want pods labelled sidecar.dev/skip left out, others sent", wh.ObjectSelector)
	}
	if wh := webhookOf(t, render(t)); wh.ObjectSelector != nil || len(wh.NamespaceSelector.MatchLabels) != 0 {
		t.Errorf("by default: objectSelector %+v, namespaceSelector matchLabels %v; want none", wh.ObjectSelector, wh.NamespaceSelector.MatchLabels)
	}
}

func TestCommonLabelsAreOnEveryObject(t *testing.T) {
	r := renderWithTests(t, "--set", "commonLabels.team=platform", "--set", "monitoring.serviceMonitor.enabled=true",
		"--set", "monitoring.prometheusRule.enabled=true", "--set", "monitoring.grafanaDashboard.enabled=true")
	for _, o := range r.objects {
		if o.GetLabels()["team"] != "platform" {
			t.Errorf("%s %s lacks the common label team=platform", o.GetObjectKind().GroupVersionKind().Kind, o.GetName())
		}
	}
	if l := one[*appsv1.Deployment](t, r).Spec.Template.Labels; l["team"] != "platform" {
		t.Errorf("pod labels %v lack the common label", l)
	}
}

// A label key the chart sets itself would be rendered twice (the API server refuses the duplicate) or change
// the Deployment's selector: the chart refuses it, naming the value and the key.
func TestReservedLabelKeysAreRefusedWithAMessage(t *testing.T) {
	for _, c := range []struct{ set, value, key string }{
		{"podLabels.app\\.kubernetes\\.io/name=mine", "podLabels", "app.kubernetes.io/name"},
		{"podLabels.app\\.kubernetes\\.io/managed-by=me", "podLabels", "app.kubernetes.io/managed-by"},
		{"commonLabels.helm\\.sh/chart=x", "commonLabels", "helm.sh/chart"},
		{"commonLabels.app\\.kubernetes\\.io/instance=x", "commonLabels", "app.kubernetes.io/instance"},
	} {
		stderr := renderFails(t, "--set", c.set)
		if !strings.Contains(stderr, c.value+`: the label "`+c.key+`" is set by the chart`) || !strings.Contains(stderr, "remove it from "+c.value) {
			t.Errorf("--set %s: the error does not name %s and %s:\n%s", c.set, c.value, c.key, stderr)
		}
	}
	// podLabels win over commonLabels on the pods, and no key appears twice.
	d := one[*appsv1.Deployment](t, render(t, "--set", "commonLabels.tier=a", "--set", "podLabels.tier=b", "--set", "podLabels.extra=x"))
	if l := d.Spec.Template.Labels; l["tier"] != "b" || l["extra"] != "x" {
		t.Errorf("pod labels %v: want tier=b (podLabels wins) and extra=x", l)
	}
	raw := template(t, "--skip-tests", "--set", "commonLabels.tier=a", "--set", "podLabels.tier=b", "--show-only", "templates/deployment.yaml")
	if n := strings.Count(raw, "tier: "); n != 2 { // the Deployment's labels and the pod's, once each
		t.Errorf("the label tier is rendered %d times in the Deployment, want 2 (once per label map):\n%s", n, raw)
	}
}

func TestExtraVolumesAndProbeTuning(t *testing.T) {
	d := one[*appsv1.Deployment](t, render(t,
		"--set-json", `extraVolumes=[{"name":"proxy-ca","configMap":{"name":"proxy-ca"}}]`,
		"--set-json", `extraVolumeMounts=[{"name":"proxy-ca","mountPath":"/etc/ssl/proxy","readOnly":true}]`,
		"--set", "livenessProbe.periodSeconds=30", "--set", "livenessProbe.initialDelaySeconds=0",
		"--set", "readinessProbe.failureThreshold=6", "--set", "readinessProbe.timeoutSeconds=5"))
	c := container(t, d)
	m := mountAt(c, "/etc/ssl/proxy")
	if m == nil || !m.ReadOnly {
		t.Fatalf("extraVolumeMounts not rendered: %+v", c.VolumeMounts)
	}
	if v := volume(d, m); v == nil || v.ConfigMap == nil || v.ConfigMap.Name != "proxy-ca" {
		t.Errorf("extraVolumes not rendered: %+v", d.Spec.Template.Spec.Volumes)
	}
	if mountAt(c, certDir) == nil {
		t.Error("the serving-certificate mount is gone")
	}
	l, rd := c.LivenessProbe, c.ReadinessProbe
	if l.PeriodSeconds != 30 || l.InitialDelaySeconds != 0 || l.TimeoutSeconds != 2 || l.FailureThreshold != 3 {
		t.Errorf("liveness probe %+v: want period 30, delay 0, and the other defaults", l)
	}
	if rd.FailureThreshold != 6 || rd.TimeoutSeconds != 5 || rd.PeriodSeconds != 5 {
		t.Errorf("readiness probe %+v: want failureThreshold 6, timeout 5, period 5", rd)
	}
	assertProbe(t, c, l, "/healthz", 8081)
	assertProbe(t, c, rd, "/readyz", 8081)
	renderFails(t, "--set", "livenessProbe.exec=true")
}

func TestCRDIsRenderedAndKeptOnUninstallByDefault(t *testing.T) {
	const name = "sidecartemplates.sidecar.dev"
	crd := findCRD(t, render(t), name)
	if crd == nil {
		t.Fatal("the CRD is not rendered by default")
	}
	if crd.Annotations["helm.sh/resource-policy"] != "keep" {
		t.Errorf("CRD annotations %v: want helm.sh/resource-policy: keep", crd.Annotations)
	}
	if crd.Labels["app.kubernetes.io/managed-by"] != "Helm" {
		t.Errorf("CRD labels %v: want the chart's labels", crd.Labels)
	}
	if crd := findCRD(t, render(t, "--set", "crds.keep=false"), name); crd == nil || crd.Annotations["helm.sh/resource-policy"] != "" {
		t.Errorf("crds.keep=false: want the CRD without the keep policy, got %+v", crd)
	}
	if n := len(all[*apiextensionsv1.CustomResourceDefinition](render(t, "--set", "crds.enabled=false"))); n != 0 {
		t.Errorf("crds.enabled=false renders %d CRDs", n)
	}
	// Nothing is left in crds/, which Helm would install once and never upgrade.
	if _, err := os.Stat(filepath.Join(chartDir(t), "crds")); !os.IsNotExist(err) {
		t.Errorf("the chart still has a crds/ directory (%v): Helm never upgrades it", err)
	}
}

func TestHelmTestHookChecksADryRunPodIsInjected(t *testing.T) {
	if r := render(t); len(all[*corev1.Pod](r)) != 0 {
		t.Fatal("--skip-tests still renders the test pod")
	}
	r := renderWithTests(t, "--set", "test.namespace=shop", "--set", "image.tag=v9")
	pod := one[*corev1.Pod](t, r)
	tpl := one[*v1alpha1.SidecarTemplate](t, r)
	for _, o := range r.objects {
		if _, isHook := o.GetAnnotations()["helm.sh/hook"]; !isHook && (o == pod || o == tpl || o.GetName() == fullname+"-test") {
			t.Errorf("%s %s is not a hook", o.GetObjectKind().GroupVersionKind().Kind, o.GetName())
		}
	}
	if pod.Annotations["helm.sh/hook"] != "test" || tpl.Namespace != releaseNS || tpl.Spec.Selector != nil {
		t.Errorf("want a test hook pod and a request-only cluster-wide template; got pod hook %q, template in %q with selector %v",
			pod.Annotations["helm.sh/hook"], tpl.Namespace, tpl.Spec.Selector)
	}
	c := pod.Spec.Containers[0]
	want := []string{"check", "--namespace=shop", "--template=" + tpl.Name, "--container=" + tpl.Spec.Containers[0].Name, "--timeout=60s"}
	if !slices.Equal(c.Args, want) || c.Image != "ghcr.io/sidecar-dev/sidecar-injector:v9" {
		t.Errorf("test pod runs %s %v, want the injector image with %v", c.Image, c.Args, want)
	}
	if pod.Spec.RestartPolicy != corev1.RestartPolicyNever || pod.Annotations[v1alpha1.AnnotationInject] != v1alpha1.OptOutValue {
		t.Errorf("test pod: restartPolicy %q, inject annotation %q", pod.Spec.RestartPolicy, pod.Annotations[v1alpha1.AnnotationInject])
	}
	var role *rbacv1.Role
	for _, r := range all[*rbacv1.Role](renderWithTests(t, "--set", "test.namespace=shop")) {
		if r.Name == fullname+"-test" {
			role = r
		}
	}
	if role == nil {
		t.Fatal("no Role for the test pod")
	}
	if role.Namespace != "shop" || len(role.Rules) != 1 || !slices.Equal(role.Rules[0].Verbs, []string{"create"}) || !slices.Equal(role.Rules[0].Resources, []string{"pods"}) {
		t.Errorf("test Role %s/%s %+v: want create pods in the test namespace only", role.Namespace, role.Name, role.Rules)
	}
	for _, r := range all[*rbacv1.Role](renderWithTests(t, "--set", "rbac.create=false")) {
		t.Errorf("rbac.create=false still renders the Role %s", r.Name)
	}
	if n := len(renderWithTests(t, "--set", "test.enabled=false").objects) - len(render(t).objects); n != 0 {
		t.Errorf("test.enabled=false still renders %d hook objects", n)
	}
}

func TestMonitoringIsOffByDefaultAndRendersWhenAskedFor(t *testing.T) {
	kinds := func(r *rendered) []string {
		var out []string
		for _, k := range r.kinds() {
			if strings.HasPrefix(k, "ServiceMonitor/") || strings.HasPrefix(k, "PrometheusRule/") || strings.HasPrefix(k, "ConfigMap/") {
				out = append(out, k)
			}
		}
		return out
	}
	if k := kinds(render(t)); len(k) != 0 {
		t.Errorf("monitoring objects rendered by default: %v", k)
	}
	r := render(t, "--set", "monitoring.serviceMonitor.enabled=true", "--set", "monitoring.prometheusRule.enabled=true",
		"--set", "monitoring.grafanaDashboard.enabled=true", "--set", "monitoring.grafanaDashboard.namespace=grafana")
	want := []string{"ServiceMonitor/" + fullname, "PrometheusRule/" + fullname, "ConfigMap/" + fullname + "-dashboard"}
	if k := kinds(r); !slices.Equal(k, want) && !sameSet(k, want) {
		t.Errorf("monitoring objects = %v, want %v", k, want)
	}
	cm := one[*corev1.ConfigMap](t, r)
	if cm.Namespace != "grafana" || cm.Labels["grafana_dashboard"] != "1" {
		t.Errorf("dashboard ConfigMap in %q with labels %v: want namespace grafana and grafana_dashboard=1", cm.Namespace, cm.Labels)
	}
	var dash struct {
		UID    string `json:"uid"`
		Panels []struct {
			Title string `json:"title"`
		} `json:"panels"`
	}
	if err := json.Unmarshal([]byte(cm.Data["sidecar-injector.json"]), &dash); err != nil || dash.UID == "" || len(dash.Panels) == 0 {
		t.Errorf("the dashboard is not a Grafana dashboard JSON (%v): uid %q, %d panels", err, dash.UID, len(dash.Panels))
	}
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

// The rolling restart needs only patch on Deployments, StatefulSets and DaemonSets (it finds workloads from pods'
// owner references and judges rollouts from pods); the chart grants exactly that, and nothing at all on workloads
// when it is off. Every rule of every Role is checked, so a grant elsewhere would be caught too.
func TestRollingRestartGrantsOnlyPatchOnWorkloads(t *testing.T) {
	workloadKinds := []string{"deployments", "statefulsets", "daemonsets", "replicasets", "jobs", "cronjobs",
		"deployments/scale", "statefulsets/scale", "replicasets/scale"}
	for _, tc := range []struct {
		name string
		args []string
		want []string
		flag bool
	}{
		// (controllerrevisions, in the apps group too, are the template revisions' own objects, not workloads.)
		{"on by default: patch on the three kinds", nil, rollingRestartPermissions, true},
		{"off: nothing on workloads", []string{"--set", "rollingRestart.enabled=false"}, nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := render(t, tc.args...)
			var rules []rbacv1.PolicyRule
			for _, cr := range all[*rbacv1.ClusterRole](r) {
				if cr.Name == fullname { // the chart's template roles are for users, not the injector
					rules = append(rules, cr.Rules...)
				}
			}
			for _, ro := range all[*rbacv1.Role](r) {
				rules = append(rules, ro.Rules...)
			}
			var got []string
			for _, p := range permissions(rules) {
				group, rest, _ := strings.Cut(p, "/")
				res, _, _ := strings.Cut(rest, ":")
				res = strings.TrimSuffix(res, "/")
				if (group == "apps" || group == "batch" || group == "extensions") && slices.Contains(workloadKinds, res) {
					got = append(got, p)
				}
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("the injector's permissions on workloads = %v, want %v", got, tc.want)
			}
			c := container(t, one[*appsv1.Deployment](t, r))
			if has := slices.Contains(c.Args, "--enable-rolling-restart"); has != tc.flag {
				t.Errorf("--enable-rolling-restart in args = %v, want %v (args %v)", has, tc.flag, c.Args)
			}
		})
	}
	c := container(t, one[*appsv1.Deployment](t, render(t, "--set", "rollingRestart.progressDeadline=90s")))
	if !slices.Contains(c.Args, "--restart-progress-deadline=90s") {
		t.Errorf("rollingRestart.progressDeadline=90s: args %v lack --restart-progress-deadline=90s", c.Args)
	}
	if msg := renderFails(t, "--set", "rollingRestart.progressDeadline=ten minutes"); !strings.Contains(msg, "progressDeadline") {
		t.Errorf("a progressDeadline that is not a duration: helm says %q, want it to name the value", msg)
	}
}

// The image tolerance is the platform's to declare: none by default, and the chart's values become exactly the
// serve flags; a mirror that is not a registry prefix is refused at install.
func TestSidecarImageToleranceIsDeclaredByValues(t *testing.T) {
	for _, a := range container(t, one[*appsv1.Deployment](t, render(t))).Args {
		if strings.HasPrefix(a, "--image-mirrors") || strings.HasPrefix(a, "--allow-digest-pinning") {
			t.Errorf("by default the chart declares %s; want no tolerance", a)
		}
	}
	c := container(t, one[*appsv1.Deployment](t, render(t, "--set", "sidecarImages.mirrors={mirror.example/dockerhub,proxy.example:5000}",
		"--set", "sidecarImages.allowDigestPinning=true")))
	for _, want := range []string{"--image-mirrors=mirror.example/dockerhub,proxy.example:5000", "--allow-digest-pinning"} {
		if !slices.Contains(c.Args, want) {
			t.Errorf("args %v lack %s", c.Args, want)
		}
	}
	if msg := renderFails(t, "--set", "sidecarImages.mirrors={https://mirror.example}"); !strings.Contains(msg, "/sidecarImages/mirrors/0") {
		t.Errorf("a mirror with a scheme is refused without naming the value: %s", msg)
	}
}
