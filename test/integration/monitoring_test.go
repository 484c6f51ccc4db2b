package integration

import (
	"bufio"
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/sidecar-dev/sidecar-injector/internal/api/v1alpha1"
	"github.com/sidecar-dev/sidecar-injector/internal/cli"
	"github.com/sidecar-dev/sidecar-injector/internal/testenv"
	"github.com/sidecar-dev/sidecar-injector/internal/version"
)

// exposition reads the injector's /metrics: family name -> type, and series (name{labels}) -> value.
func exposition(t *testing.T) (families map[string]string, series map[string]float64) {
	t.Helper()
	resp, err := http.Get("http://" + metricsAddr + "/metrics")
	if err != nil {
		t.Fatalf("scrape metrics: %v", err)
	}
	defer resp.Body.Close()
	families, series = map[string]string{}, map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if f := strings.Fields(line); len(f) == 4 && f[0] == "#" && f[1] == "TYPE" {
			families[f[2]] = f[3]
			continue
		}
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, _ := strconv.ParseFloat(line[i+1:], 64)
		series[line[:i]] = v
	}
	return families, series
}

// metricName matches what can be a metric name in PromQL text; the filter below keeps the ones that are.
var metricName = regexp.MustCompile(`\b(sidecar_injector_[a-z_]+|kube_[a-z_]+|up)\b`)

// namesIn returns the metric names the chart's alerts and dashboard query.
func namesIn(t *testing.T) map[string][]string {
	t.Helper()
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	for _, f := range []string{"charts/sidecar-injector/templates/prometheusrule.yaml", "charts/sidecar-injector/files/dashboards/sidecar-injector.json"} {
		data, err := os.ReadFile(filepath.Join(root, f))
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range metricName.FindAllString(string(data), -1) {
			if m == "up" && !bytes.Contains(data, []byte("up{")) {
				continue
			}
			if !slices.Contains(out[m], f) {
				out[m] = append(out[m], filepath.Base(f))
			}
		}
	}
	return out
}

// Every sidecar_injector_* metric that the PrometheusRule's alerts and the Grafana dashboard query is exported
// on the injector's /metrics (a renamed metric would silently empty a panel and never fire an alert), and the
// only other metrics they read are Prometheus' up and kube-state-metrics' available replicas.
func TestEveryMetricOfTheAlertsAndDashboardIsExported(t *testing.T) {
	ns := createNamespace(t, "monitoring", nil)
	createTemplate(t, ns, "watched", v1alpha1.SidecarTemplateSpec{Containers: []corev1.Container{{Name: "watched", Image: "agent:1"}}})
	waitUntilServed(t, ns, ns, "watched")
	createPod(t, newPod(ns, "counted", withInject("watched")))
	// A denial, so that the decision counter has a series (counters with labels appear on first use).
	if _, err := tryCreatePod(t, newPod(ns, "denied", withInject("missing")), false); err == nil {
		t.Fatal("a pod requesting a missing template was admitted")
	}

	used := namesIn(t)
	var families map[string]string
	var series map[string]float64
	testenv.Eventually(t, cacheDeadline, "every metric of the alerts and dashboard exported", func() error {
		families, series = exposition(t)
		for name, files := range used {
			if !strings.HasPrefix(name, "sidecar_injector_") {
				continue
			}
			base := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(name, "_bucket"), "_count"), "_sum")
			if typ, ok := families[base]; !ok || (base != name && typ != "histogram") {
				return fmt.Errorf("%s (queried by %v) is not exported (type %q)", name, files, typ)
			}
		}
		return nil
	})
	var external []string
	for name := range used {
		if !strings.HasPrefix(name, "sidecar_injector_") {
			external = append(external, name)
		}
	}
	slices.Sort(external)
	if want := []string{"kube_deployment_status_replicas_available", "up"}; !slices.Equal(external, want) {
		t.Errorf("the alerts and dashboard read %v from outside the injector, want %v (document any new one in docs/monitoring.md)", external, want)
	}

	// The new metrics say what they should.
	b := version.Get()
	if series[`sidecar_injector_build_info{commit="`+b.Commit+`",go_version="`+b.GoVersion+`",version="`+b.Version+`"}`] != 1 {
		t.Errorf("build_info does not name this build %+v", b)
	}
	for _, informer := range []string{"namespaces", "templates"} {
		if series[`sidecar_injector_cache_synced{informer="`+informer+`"}`] != 1 {
			t.Errorf("cache_synced{informer=%q} is not 1 on a ready server", informer)
		}
	}
	crt, err := os.ReadFile(filepath.Join(testEnv.WebhookInstallOptions.LocalServingCertDir, "tls.crt"))
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(crt)
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if got := series["sidecar_injector_serving_certificate_not_after_seconds"]; got != float64(cert.NotAfter.Unix()) {
		t.Errorf("serving_certificate_not_after_seconds = %v, want the served certificate's %v", got, cert.NotAfter.Unix())
	}
}

// `sidecar-injector check` (what the chart's helm test runs) passes against a webhook that injects, and fails
// saying why when the pod comes back without the template.
func TestCheckCommandSeesTheWebhookInject(t *testing.T) {
	ns := createNamespace(t, "check", nil)
	createTemplate(t, ns, "checked", v1alpha1.SidecarTemplateSpec{Containers: []corev1.Container{{Name: "checked", Image: "agent:1"}}})
	kubeconfig := writeKubeconfig(t)
	run := func(args ...string) (string, error) {
		var out bytes.Buffer
		root := cli.NewRootCommand()
		root.SetArgs(append([]string{"check", "--kubeconfig", kubeconfig, "--interval", "200ms"}, args...))
		root.SetOut(&out)
		root.SetErr(&out)
		err := root.Execute()
		return out.String(), err
	}
	out, err := run("--namespace", ns, "--template", "checked", "--container", "checked", "--timeout", cacheDeadline.String())
	if err != nil || !strings.Contains(out, "ok: ") {
		t.Fatalf("check of an injecting webhook: %v\n%s", err, out)
	}
	disabled := createNamespace(t, "check-off", map[string]string{v1alpha1.LabelInjection: v1alpha1.LabelInjectionDisabled})
	out, err = run("--namespace", disabled, "--template", "checked", "--timeout", "1s")
	if err == nil || !strings.Contains(err.Error(), "without the sidecar.dev/status annotation") {
		t.Errorf("check in a disabled namespace: err %v, want one saying the pod came back uninjected\n%s", err, out)
	}
}

// writeKubeconfig writes the test API server's admin credentials as a kubeconfig file.
func writeKubeconfig(t *testing.T) string {
	t.Helper()
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["envtest"] = &clientcmdapi.Cluster{Server: restConfig.Host, CertificateAuthorityData: restConfig.CAData}
	cfg.AuthInfos["admin"] = &clientcmdapi.AuthInfo{ClientCertificateData: restConfig.CertData, ClientKeyData: restConfig.KeyData, Token: restConfig.BearerToken}
	cfg.Contexts["envtest"] = &clientcmdapi.Context{Cluster: "envtest", AuthInfo: "admin"}
	cfg.CurrentContext = "envtest"
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		t.Fatal(err)
	}
	return path
}
