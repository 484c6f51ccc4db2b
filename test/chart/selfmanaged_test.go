// The end-to-end story of self-managed TLS: the injector, installed with the chart's RBAC, Secret and webhook
// configuration, generates its certificate, fills the caBundle, and the API server then calls it and a pod gets
// injected. It runs with the rest of the chart's tests:
//
//	KUBEBUILDER_ASSETS=$PWD/bin go test -run SelfManaged ./test/chart/...

package chart

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/sidecar-dev/sidecar-injector/internal/api/v1alpha1"
	"github.com/sidecar-dev/sidecar-injector/internal/server"
	"github.com/sidecar-dev/sidecar-injector/internal/testenv"
)

func TestSelfManagedTLSEndToEnd(t *testing.T) {
	c, cfg := apiServer(t)
	ctx := ctxFor(t, 4*time.Minute)
	installCRDs(t, ctx, c)
	if t.Failed() {
		t.FailNow()
	}
	// A release of its own, so that nothing clashes with the other stories.
	const name, ns, appNS = "sm-injector", "sm-injector", "sm-app"
	ensureNamespace(t, ctx, c, ns, nil)
	ensureNamespace(t, ctx, c, appNS, nil)

	out := template(t, "--namespace", ns, "--set", "fullnameOverride="+name)
	objs, err := decode(out)
	if err != nil {
		t.Fatal(err)
	}
	r := &rendered{raw: out, objects: objs}
	whPort, err := testenv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range r.objects {
		obj := o.DeepCopyObject().(client.Object)
		switch v := obj.(type) {
		case *admissionregistrationv1.MutatingWebhookConfiguration:
			// The API server cannot resolve <service>.<ns>.svc here: call the in-process server on localhost
			// instead (the certificate gets "localhost" as an extra name). No caBundle: the injector sets it.
			url := "https://localhost:" + strconv.Itoa(whPort) + "/mutate-v1-pod"
			v.Webhooks[0].ClientConfig = admissionregistrationv1.WebhookClientConfig{URL: &url}
		case *corev1.ServiceAccount, *corev1.Secret:
		default:
			if obj.GetObjectKind().GroupVersionKind().Group != "rbac.authorization.k8s.io" {
				continue // Deployment, Service, PDB: nothing runs them here
			}
		}
		if err := c.Create(ctx, obj); err != nil {
			t.Fatalf("create %T %s: %v", obj, obj.GetName(), err)
		}
		t.Cleanup(func() { _ = c.Delete(context.Background(), obj) })
	}

	// The server runs as the chart's ServiceAccount, with the flags the chart passes.
	d := one[*appsv1.Deployment](t, r)
	args := container(t, d).Args
	for _, want := range []string{"--tls-mode=selfManaged", "--tls-secret-name=" + name + "-tls", "--webhook-config-name=" + name, "--service-name=" + name} {
		if !slices.Contains(args, want) {
			t.Fatalf("chart args %v lack %s", args, want)
		}
	}
	saCfg := rest.CopyConfig(cfg)
	saCfg.Impersonate = rest.ImpersonationConfig{UserName: "system:serviceaccount:" + ns + ":" + name}
	healthPort, err := testenv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	certDir := filepath.Join(t.TempDir(), "serving-certs")
	opts := server.Options{
		RestConfig:             saCfg,
		CertDir:                certDir,
		WebhookHost:            "127.0.0.1",
		WebhookPort:            whPort,
		MetricsBindAddress:     "0",
		HealthProbeBindAddress: net.JoinHostPort("127.0.0.1", strconv.Itoa(healthPort)),
		Namespace:              ns,
		TLSMode:                server.TLSModeSelfManaged,
		TLSSecretName:          name + "-tls",
		WebhookConfigName:      name,
		ServiceName:            name,
		TLSExtraDNSNames:       []string{"localhost"},
	}
	sctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- server.Run(sctx, opts) }()
	defer func() {
		stop()
		select {
		case err := <-done:
			if err != nil && !errors.Is(err, context.Canceled) {
				t.Errorf("server.Run: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("server.Run did not return after cancel")
		}
	}()

	// Ready means: certificate written, caBundle set, webhook server serving.
	hc := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		select {
		case err := <-done:
			t.Fatalf("server.Run returned before it was ready: %v", err)
		default:
		}
		resp, err := hc.Get("http://" + opts.HealthProbeBindAddress + "/readyz")
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
			err = fmt.Errorf("%s: %s", resp.Status, body)
		}
		if time.Now().After(deadline) {
			t.Fatalf("server not ready after 2m: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}

	var secret corev1.Secret
	if err := c.Get(ctx, types.NamespacedName{Namespace: ns, Name: name + "-tls"}, &secret); err != nil {
		t.Fatal(err)
	}
	var hook admissionregistrationv1.MutatingWebhookConfiguration
	if err := c.Get(ctx, types.NamespacedName{Name: name}, &hook); err != nil {
		t.Fatal(err)
	}
	if len(secret.Data["ca.crt"]) == 0 || string(hook.Webhooks[0].ClientConfig.CABundle) != string(secret.Data["ca.crt"]) {
		t.Fatalf("caBundle is not the generated CA")
	}
	if got, err := os.ReadFile(filepath.Join(certDir, "tls.crt")); err != nil || string(got) != string(secret.Data["tls.crt"]) {
		t.Fatalf("serving certificate not written to --cert-dir: %v", err)
	}

	// A template, and a pod that requests it: the API server calls the injector over the generated TLS.
	tpl := &v1alpha1.SidecarTemplate{
		ObjectMeta: metav1.ObjectMeta{Namespace: appNS, Name: "log-shipper"},
		Spec: v1alpha1.SidecarTemplateSpec{
			Containers: []corev1.Container{{Name: "log-shipper", Image: "registry.example/shipper:1"}},
		},
	}
	if err := c.Create(ctx, tpl); err != nil {
		t.Fatal(err)
	}
	var pod *corev1.Pod
	var last error
	// The API server and the injector's informers pick the caBundle and the template up asynchronously.
	for i := 0; time.Now().Before(deadline.Add(time.Minute)); i++ {
		pod = &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: appNS, Name: fmt.Sprintf("app-%d", i), Annotations: map[string]string{v1alpha1.AnnotationInject: "log-shipper"}},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "registry.example/app:1"}}},
		}
		if last = c.Create(ctx, pod); last == nil && len(pod.Spec.Containers) == 2 {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	if last != nil {
		t.Fatalf("pod creation through the self-managed webhook failed: %v", last)
	}
	names := []string{}
	for _, ctr := range pod.Spec.Containers {
		names = append(names, ctr.Name)
	}
	if !slices.Equal(names, []string{"app", "log-shipper"}) {
		t.Errorf("pod containers = %v, want [app log-shipper]", names)
	}
	if pod.Annotations[v1alpha1.AnnotationStatus] == "" {
		t.Errorf("pod has no %s record", v1alpha1.AnnotationStatus)
	}
}
