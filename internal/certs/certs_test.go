package certs

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/sidecar-dev/sidecar-injector/internal/testenv"
)

func TestOptionsValidation(t *testing.T) {
	o := Options{Namespace: "ns", ServiceName: "svc"}
	err := o.validate()
	if err == nil {
		t.Fatal("validate accepted options without SecretName, WebhookConfigName and CertDir")
	}
	for _, want := range []string{"SecretName", "WebhookConfigName", "CertDir"} {
		if !contains(err.Error(), want) {
			t.Errorf("error %q does not name missing option %s", err, want)
		}
	}
	if got := o.DNSNames(); len(got) != 2 || got[0] != "svc.ns.svc" || got[1] != "svc.ns.svc.cluster.local" {
		t.Errorf("DNSNames() = %v", got)
	}
}

func TestFileWriterRejectsMismatchedPair(t *testing.T) {
	dir := t.TempDir()
	w := &fileWriter{dir: dir, name: "s"}
	if err := w.write(map[string][]byte{CertFile: []byte("not a cert"), KeyFile: []byte("nor a key")}); err == nil {
		t.Fatal("write accepted a Secret whose tls.crt and tls.key are not a key pair")
	}
	if err := w.write(map[string][]byte{}); err != nil {
		t.Fatalf("write of an empty Secret (not issued yet) should be a no-op, got %v", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Fatalf("files written for an invalid or empty Secret: %v", entries)
	}
}

// TestSetupAgainstAPIServer runs Setup with a manager against envtest's kube-apiserver: the Secret does not exist
// and the webhook configuration has no caBundle. It asserts the Secret is created and filled, the caBundle is the
// Secret's CA, the files in CertDir are the Secret's and verify against the CA for the service's DNS names, and the
// ready channel closes.
func TestSetupAgainstAPIServer(t *testing.T) {
	assets := testenv.Require(t)
	logf.SetLogger(zap.New(zap.WriteTo(io.Discard)))
	if os.Getenv("CERTS_VERBOSE") != "" {
		logf.SetLogger(zap.New(zap.WriteTo(os.Stderr), zap.UseDevMode(true)))
	}
	env := &envtest.Environment{BinaryAssetsDirectory: assets}
	cfg, c := testenv.Start(t, env, clientgoscheme.Scheme, "envtest")

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const ns, secretName, svc, whName = "injector-system", "injector-tls", "injector", "injector-webhook"
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		t.Fatal(err)
	}
	path := "/mutate-v1-pod"
	none := admissionregistrationv1.SideEffectClassNone
	wh := &admissionregistrationv1.MutatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: whName},
		Webhooks: []admissionregistrationv1.MutatingWebhook{{
			Name:                    "inject.sidecar.dev",
			ClientConfig:            admissionregistrationv1.WebhookClientConfig{Service: &admissionregistrationv1.ServiceReference{Namespace: ns, Name: svc, Path: &path}},
			SideEffects:             &none,
			AdmissionReviewVersions: []string{"v1"},
			// Nothing matches: the test must not route real admissions to a server that is not there.
			Rules: []admissionregistrationv1.RuleWithOperations{{
				Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
				Rule:       admissionregistrationv1.Rule{APIGroups: []string{"example.invalid"}, APIVersions: []string{"v1"}, Resources: []string{"nothings"}},
			}},
		}},
	}
	if err := c.Create(ctx, wh); err != nil {
		t.Fatal(err)
	}

	mgr, err := manager.New(cfg, manager.Options{Scheme: clientgoscheme.Scheme, Metrics: metricsserver.Options{BindAddress: "0"}})
	if err != nil {
		t.Fatal(err)
	}
	certDir := filepath.Join(t.TempDir(), "serving-certs")
	ready, err := Setup(mgr, Options{Namespace: ns, SecretName: secretName, ServiceName: svc, WebhookConfigName: whName, CertDir: certDir})
	if err != nil {
		t.Fatalf("Setup: %v", err)
	}
	// Setup created the Secret before the manager started.
	var secret corev1.Secret
	if err := c.Get(ctx, types.NamespacedName{Namespace: ns, Name: secretName}, &secret); err != nil {
		t.Fatalf("Setup did not create the Secret: %v", err)
	}

	mgrCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- mgr.Start(mgrCtx) }()
	t.Cleanup(func() {
		stop()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("manager: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("manager did not stop")
		}
	})

	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("manager stopped before certificates were ready: %v", err)
	case <-time.After(90 * time.Second):
		t.Fatal("ready channel not closed after 90s")
	}

	if err := c.Get(ctx, types.NamespacedName{Namespace: ns, Name: secretName}, &secret); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"ca.crt", "ca.key", CertFile, KeyFile} {
		if len(secret.Data[k]) == 0 {
			t.Errorf("Secret has no %s", k)
		}
	}
	if err := c.Get(ctx, types.NamespacedName{Name: whName}, wh); err != nil {
		t.Fatal(err)
	}
	if got := string(wh.Webhooks[0].ClientConfig.CABundle); got != string(secret.Data["ca.crt"]) {
		t.Errorf("caBundle is not the Secret's ca.crt:\ncaBundle: %q\nca.crt:   %q", got, secret.Data["ca.crt"])
	}
	for _, f := range []string{CertFile, KeyFile, CAFile} {
		got, err := os.ReadFile(filepath.Join(certDir, f))
		if err != nil {
			t.Fatalf("cert file: %v", err)
		}
		if string(got) != string(secret.Data[f]) {
			t.Errorf("%s in CertDir differs from the Secret's", f)
		}
		if f == KeyFile {
			if st, _ := os.Stat(filepath.Join(certDir, f)); st.Mode().Perm()&0o077 != 0 {
				t.Errorf("%s is readable by others: %v", f, st.Mode())
			}
		}
	}
	// The serving certificate verifies against the caBundle for both service DNS names, as a server cert.
	leaf := parseCert(t, secret.Data[CertFile])
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(wh.Webhooks[0].ClientConfig.CABundle) {
		t.Fatal("caBundle holds no PEM certificate")
	}
	for _, name := range []string{svc + "." + ns + ".svc", svc + "." + ns + ".svc.cluster.local"} {
		if _, err := leaf.Verify(x509.VerifyOptions{DNSName: name, Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
			t.Errorf("serving certificate does not verify for %s: %v", name, err)
		}
	}

	// Drift: someone (helm upgrade --force, Argo CD without ignoreDifferences) empties the caBundle; the rotator
	// watches the configuration and puts it back.
	wh.Webhooks[0].ClientConfig.CABundle = nil
	if err := c.Update(ctx, wh); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 30*time.Second, "the caBundle is restored after it was emptied", func() error {
		if err := c.Get(ctx, types.NamespacedName{Name: whName}, wh); err != nil {
			t.Fatal(err)
		}
		if string(wh.Webhooks[0].ClientConfig.CABundle) != string(secret.Data["ca.crt"]) {
			return fmt.Errorf("caBundle is %q", wh.Webhooks[0].ClientConfig.CABundle)
		}
		return nil
	})
}

func parseCert(t *testing.T, data []byte) *x509.Certificate {
	t.Helper()
	b, _ := pem.Decode(data)
	if b == nil {
		t.Fatal("no PEM block")
	}
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }

// A replica that is not the leader serves too: the manager runs a runnable only on the leader unless it says
// NeedLeaderElection() == false, and with the chart's leader election a second replica then never became ready.
func TestTheWebhookServerAndTheFileWriterRunOnEveryReplica(t *testing.T) {
	for name, r := range map[string]manager.Runnable{
		"ServeWhenReady":  ServeWhenReady(nil, make(chan struct{})),
		"the file writer": everyReplica(func(context.Context) error { return nil }),
	} {
		le, ok := r.(manager.LeaderElectionRunnable)
		if !ok || le.NeedLeaderElection() {
			t.Errorf("%s runs only on the leader; want it on every replica (NeedLeaderElection false)", name)
		}
	}
}
