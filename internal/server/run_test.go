package server

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/sidecar-dev/sidecar-injector/internal/api/v1alpha1"
	"github.com/sidecar-dev/sidecar-injector/internal/testenv"
)

// TestRunIsReadyOnlyWithItsCachesSyncedAndFollowsTheCluster runs the whole server against a real API server:
// readiness implies the templates that existed before start are served; later changes to templates and
// namespace labels reach admissions without a restart; cancelling the context stops Run cleanly.
// (Admission through the API server's chain is covered by test/integration.)
func TestRunIsReadyOnlyWithItsCachesSyncedAndFollowsTheCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a kube-apiserver")
	}
	logf.SetLogger(logr.Discard()) // the manager's logs are noise here; Run's errors are asserted
	assets := testenv.Require(t)
	// A schemaless CRD of the same name: this test is about the server, not the CRD's validation (which
	// test/integration installs from config/crd).
	env := &envtest.Environment{CRDs: []*apiextensionsv1.CustomResourceDefinition{sidecarTemplateCRD()}, BinaryAssetsDirectory: assets}
	cfg, k8s := testenv.Start(t, env, NewScheme(), "envtest")

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	for _, ns := range []string{"team-a", "sidecar-injector"} {
		if err := k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
			t.Fatal(err)
		}
	}
	createTemplate := func(namespace, name string) {
		t.Helper()
		if err := k8s.Create(ctx, &v1alpha1.SidecarTemplate{
			ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name},
			Spec: v1alpha1.SidecarTemplateSpec{
				Selector:   &metav1.LabelSelector{}, // every pod in scope
				Containers: []corev1.Container{{Name: name, Image: "example.com/" + name + ":1"}},
			},
		}); err != nil {
			t.Fatal(err)
		}
	}
	createTemplate("team-a", "log-shipper") // before the server starts: must be served as soon as it is ready

	o := validOptions(t)
	o.RestConfig = cfg
	o.HealthProbeBindAddress = net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(t)))
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- Run(runCtx, o) }()

	probe := func(path string) int {
		resp, err := http.Get("http://" + o.HealthProbeBindAddress + path)
		if err != nil {
			return 0
		}
		defer resp.Body.Close()
		return resp.StatusCode
	}
	for probe("/readyz") != http.StatusOK {
		select {
		case err := <-done:
			t.Fatalf("Run returned before it was ready: %v", err)
		case <-ctx.Done():
			t.Fatal("not ready within the test's time")
		case <-time.After(50 * time.Millisecond):
		}
	}
	if code := probe("/healthz"); code != http.StatusOK {
		t.Errorf("/healthz = %d, want 200", code)
	}

	webhookURL := "https://" + net.JoinHostPort(o.WebhookHost, strconv.Itoa(o.WebhookPort)) + "/mutate-v1-pod"
	if got := injected(t, webhookURL); got != "log-shipper" {
		t.Fatalf("right after /readyz turned ready, the pod received %q, want log-shipper", got)
	}

	createTemplate("sidecar-injector", "metrics") // cluster-wide
	testenv.Eventually(t, 30*time.Second, "a cluster-wide template created after start reaches admissions", func() error {
		return injectedIs(t, webhookURL, "metrics,log-shipper")
	})

	var ns corev1.Namespace
	if err := k8s.Get(ctx, client.ObjectKey{Name: "team-a"}, &ns); err != nil {
		t.Fatal(err)
	}
	ns.Labels = map[string]string{v1alpha1.LabelInjection: v1alpha1.LabelInjectionDisabled}
	if err := k8s.Update(ctx, &ns); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 30*time.Second, "labelling the namespace sidecar.dev/injection=disabled stops injection there", func() error {
		return injectedIs(t, webhookURL, "")
	})

	stop()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run returned %v after its context was cancelled, want nil", err)
		}
	case <-time.After(90 * time.Second):
		t.Error("Run did not return after its context was cancelled")
	}
}

func sidecarTemplateCRD() *apiextensionsv1.CustomResourceDefinition {
	preserve := true
	return &apiextensionsv1.CustomResourceDefinition{
		ObjectMeta: metav1.ObjectMeta{Name: "sidecartemplates.sidecar.dev"},
		Spec: apiextensionsv1.CustomResourceDefinitionSpec{
			Group: v1alpha1.GroupVersion.Group,
			Names: apiextensionsv1.CustomResourceDefinitionNames{Plural: "sidecartemplates", Singular: "sidecartemplate",
				Kind: "SidecarTemplate", ListKind: "SidecarTemplateList"},
			Scope: apiextensionsv1.NamespaceScoped,
			Versions: []apiextensionsv1.CustomResourceDefinitionVersion{{
				Name: v1alpha1.GroupVersion.Version, Served: true, Storage: true,
				Subresources: &apiextensionsv1.CustomResourceSubresources{Status: &apiextensionsv1.CustomResourceSubresourceStatus{}},
				Schema: &apiextensionsv1.CustomResourceValidation{OpenAPIV3Schema: &apiextensionsv1.JSONSchemaProps{
					Type: "object", XPreserveUnknownFields: &preserve}},
			}},
		},
	}
}

// injectedIs reports whether the webhook at url adds exactly the containers want (see injected).
func injectedIs(t *testing.T, url, want string) error {
	t.Helper()
	if got := injected(t, url); got != want {
		return fmt.Errorf("the pod received %q, want %q", got, want)
	}
	return nil
}

// injected sends a pod CREATE for a plain pod in team-a to the webhook and returns the names of the containers
// the patch adds, comma-separated.
func injected(t *testing.T, url string) string {
	t.Helper()
	review := `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"run-test",
  "kind":{"group":"","version":"v1","kind":"Pod"},"resource":{"group":"","version":"v1","resource":"pods"},
  "namespace":"team-a","operation":"CREATE","userInfo":{"username":"alice"},
  "object":{"apiVersion":"v1","kind":"Pod","metadata":{"name":"web","namespace":"team-a"},
    "spec":{"containers":[{"name":"app","image":"example.com/web:1"}]}}}}`
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	resp, err := c.Post(url, "application/json", strings.NewReader(review))
	if err != nil {
		t.Fatalf("POST %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var out admissionv1.AdmissionReview
	if err := json.Unmarshal(body, &out); err != nil || out.Response == nil || !out.Response.Allowed {
		t.Fatalf("answer %s (%v), want an allowed AdmissionReview", body, err)
	}
	var ops []struct {
		Path  string          `json:"path"`
		Value json.RawMessage `json:"value"`
	}
	if len(out.Response.Patch) > 0 {
		if err := json.Unmarshal(out.Response.Patch, &ops); err != nil {
			t.Fatalf("patch %s: %v", out.Response.Patch, err)
		}
	}
	var names []string
	for _, op := range ops {
		if strings.HasPrefix(op.Path, "/spec/containers/") {
			var c corev1.Container
			if err := json.Unmarshal(op.Value, &c); err != nil {
				t.Fatalf("patch op %s: %v", op.Value, err)
			}
			names = append(names, c.Name)
		}
	}
	return strings.Join(names, ",")
}
