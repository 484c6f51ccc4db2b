package chart

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/sidecar-dev/sidecar-injector/internal/testenv"
)

// monitoringValues turns every monitoring object on.
var monitoringValues = []string{"--set", "monitoring.serviceMonitor.enabled=true", "--set", "monitoring.serviceMonitor.interval=30s",
	"--set", "monitoring.prometheusRule.enabled=true", "--set", "monitoring.grafanaDashboard.enabled=true"}

// installMonitoringCRDs creates the Prometheus Operator's ServiceMonitor, PodMonitor and PrometheusRule CRDs
// (generated from its Go API at a pinned version by `make monitoring-crds`) on the test API server.
func installMonitoringCRDs(t *testing.T, ctx context.Context, c client.Client) {
	t.Helper()
	dir := testenv.RequireTool(t, testenv.MonitoringCRDs)
	for _, kind := range []string{"servicemonitors", "podmonitors", "prometheusrules"} {
		data, err := os.ReadFile(filepath.Join(dir, "monitoring.coreos.com_"+kind+".yaml"))
		if err != nil {
			t.Fatalf("%v (run `make monitoring-crds`)", err)
		}
		var crd apiextensionsv1.CustomResourceDefinition
		if err := yaml.Unmarshal(data, &crd); err != nil {
			t.Fatal(err)
		}
		if err := c.Create(ctx, &crd); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatalf("create CRD %s: %v", crd.Name, err)
		}
		waitEstablished(t, ctx, c, crd.Name)
	}
}

func waitEstablished(t *testing.T, ctx context.Context, c client.Client, name string) {
	t.Helper()
	testenv.Eventually(t, 30*time.Second, "CRD "+name+" established", func() error {
		var got apiextensionsv1.CustomResourceDefinition
		if err := c.Get(ctx, client.ObjectKey{Name: name}, &got); err != nil {
			return err
		}
		for _, cond := range got.Status.Conditions {
			if cond.Type == apiextensionsv1.Established && cond.Status == apiextensionsv1.ConditionTrue {
				return nil
			}
		}
		return fmt.Errorf("conditions %+v", got.Status.Conditions)
	})
}

// The ServiceMonitor and PrometheusRule are valid for the Prometheus Operator: its CRDs' schemas, served by a
// real kube-apiserver, accept them (and refuse a broken one, so the check is real).
func TestMonitoringObjectsAcceptedByThePrometheusOperatorCRDs(t *testing.T) {
	c, _ := apiServer(t)
	ctx := ctxFor(t, 2*time.Minute)
	installMonitoringCRDs(t, ctx, c)
	ensureNamespace(t, ctx, c, releaseNS, nil)

	r := render(t, append(monitoringValues, "--set", "monitoring.serviceMonitor.labels.release=prometheus",
		"--set", "monitoring.prometheusRule.alertLabels.team=platform")...)
	checked := 0
	for _, o := range r.objects {
		u, ok := o.(*unstructured.Unstructured)
		if !ok {
			continue
		}
		if u.GroupVersionKind().Group != "monitoring.coreos.com" {
			t.Errorf("unexpected kind outside k8s.io/api: %s", u.GroupVersionKind())
			continue
		}
		// Strict: a field the operator's schema does not know is an error, not a silently pruned field.
		if err := c.Create(ctx, u.DeepCopy(), client.DryRunAll, client.FieldValidation("Strict")); err != nil {
			t.Errorf("the API server refuses %s %s: %v", u.GetKind(), u.GetName(), err)
		}
		checked++
	}
	if checked != 2 {
		t.Errorf("checked %d monitoring.coreos.com objects, want 2 (ServiceMonitor, PrometheusRule)", checked)
	}

	broken := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor",
		"metadata": map[string]any{"name": "broken", "namespace": releaseNS},
		"spec":     map[string]any{"endpoints": []any{map[string]any{"port": "metrics", "scheme": "gopher"}}},
	}}
	if err := c.Create(ctx, broken, client.DryRunAll); err == nil {
		t.Error("a ServiceMonitor with scheme gopher (and no selector) was accepted: the CRDs validate nothing")
	}
}

// TestAlertRulesWithPromtool runs `promtool check rules` and `promtool test rules` (testdata/alerts.test.yaml:
// for each alert, series that fire it and series that do not) on the rules the chart renders.
func TestAlertRulesWithPromtool(t *testing.T) {
	promtool := testenv.RequireTool(t, testenv.Promtool)
	var rule struct {
		Spec struct {
			Groups []any `json:"groups"`
		} `json:"spec"`
	}
	raw := template(t, append(monitoringValues, "--show-only", "templates/prometheusrule.yaml")...)
	if err := yaml.Unmarshal([]byte(raw), &rule); err != nil || len(rule.Spec.Groups) == 0 {
		t.Fatalf("rendered PrometheusRule (%v):\n%s", err, raw)
	}
	dir := t.TempDir()
	rules, err := yaml.Marshal(map[string]any{"groups": rule.Spec.Groups})
	if err != nil {
		t.Fatal(err)
	}
	tests, err := os.ReadFile(filepath.Join("testdata", "alerts.test.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string][]byte{"rules.yaml": rules, "alerts.test.yaml": tests} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, args := range [][]string{{"check", "rules", "rules.yaml"}, {"test", "rules", "alerts.test.yaml"}} {
		cmd := exec.Command(promtool, args...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool %s: %v\n%s\nrules:\n%s", strings.Join(args, " "), err, out, rules)
		}
	}
}
