package hardening

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/sidecar-dev/sidecar-injector/internal/api/v1alpha1"
	"github.com/sidecar-dev/sidecar-injector/internal/server"
	"github.com/sidecar-dev/sidecar-injector/internal/testenv"
)

// webhookClientName is the CN of the client certificate the API server presents to webhooks in this test.
const webhookClientName = "kube-apiserver-webhook-client"

// TestTheAPIServerAuthenticatesAsTheWebhooksClient starts a second kube-apiserver whose admission configuration
// (--admission-control-config-file, a WebhookAdmissionConfiguration with a kubeConfigFile) gives it a client
// certificate and a bearer token for webhooks, and an injector that requires both (--client-ca-file with
// --client-names, --client-token-file). Pods created through that API server are injected; a workload in the
// cluster posting its own AdmissionReview, with one credential or none, reads nothing back.
func TestTheAPIServerAuthenticatesAsTheWebhooksClient(t *testing.T) {
	dir := t.TempDir()
	clientCA, err := newTestCA()
	if err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM := clientCA.issueClient(t, webhookClientName)
	const token = "the-api-server-webhook-token"
	kubeconfig := fmt.Sprintf(`apiVersion: v1
kind: Config
users:
- name: "*"
  user:
    client-certificate-data: %q
    client-key-data: %q
    token: %q
`, b64(certPEM), b64(keyPEM), token)
	admissionConfig := fmt.Sprintf(`apiVersion: apiserver.config.k8s.io/v1
kind: AdmissionConfiguration
plugins:
- name: MutatingAdmissionWebhook
  configuration:
    apiVersion: apiserver.config.k8s.io/v1
    kind: WebhookAdmissionConfiguration
    kubeConfigFile: %q
`, filepath.Join(dir, "webhook-kubeconfig.yaml"))
	for name, data := range map[string][]byte{
		"webhook-kubeconfig.yaml": []byte(kubeconfig), "admission.yaml": []byte(admissionConfig),
		"client-ca.crt": clientCA.pem, "token": []byte(token + "\n"),
	} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}

	assets, err := testenv.Assets()
	if err != nil {
		t.Fatal(err)
	}
	crds, err := testenv.CRDDir()
	if err != nil {
		t.Fatal(err)
	}
	env := &envtest.Environment{CRDDirectoryPaths: []string{crds}, ErrorIfCRDPathMissing: true, Scheme: scheme, BinaryAssetsDirectory: assets}
	env.ControlPlane.GetAPIServer().Configure().Set("admission-control-config-file", filepath.Join(dir, "admission.yaml"))
	cfg, c := testenv.Start(t, env, scheme, "the API server with the admission configuration")
	ctx := ctxFor(t)
	for _, ns := range []*corev1.Namespace{
		{ObjectMeta: metav1.ObjectMeta{Name: injectorNS}},
		{ObjectMeta: metav1.ObjectMeta{Name: "team-auth", Labels: map[string]string{"hardening": "true"}}},
	} {
		if err := c.Create(ctx, ns); err != nil {
			t.Fatal(err)
		}
	}
	tpl := &v1alpha1.SidecarTemplate{ObjectMeta: metav1.ObjectMeta{Namespace: injectorNS, Name: "secret-recipe"},
		Spec: v1alpha1.SidecarTemplateSpec{Containers: []corev1.Container{{Name: "agent", Image: "example.com/agent:1",
			Args: []string{"--license=only-for-the-platform"}}}}}
	if err := c.Create(ctx, tpl); err != nil {
		t.Fatal(err)
	}

	s, err := startInProcessWith(filepath.Join(dir, "certs"), false, func(o *server.Options) {
		o.RestConfig = cfg
		o.MetricsRegistry = prometheus.NewRegistry()
		o.ClientCAFile = filepath.Join(dir, "client-ca.crt")
		o.ClientNames = []string{webhookClientName}
		o.ClientTokenFile = filepath.Join(dir, "token")
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.stop(); err != nil {
			t.Error(err)
		}
	})
	u := "https://" + s.addr + webhookPath
	hook := &admissionregistrationv1.MutatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: "auth"},
		Webhooks: []admissionregistrationv1.MutatingWebhook{{
			Name:                    "inject.sidecar.dev",
			ClientConfig:            admissionregistrationv1.WebhookClientConfig{URL: &u, CABundle: ca.pem},
			Rules:                   []admissionregistrationv1.RuleWithOperations{podCreate()},
			FailurePolicy:           ptr.To(admissionregistrationv1.Fail),
			SideEffects:             ptr.To(admissionregistrationv1.SideEffectClassNone),
			AdmissionReviewVersions: []string{"v1"},
			NamespaceSelector:       &metav1.LabelSelector{MatchLabels: map[string]string{"hardening": "true"}},
		}}}
	if err := c.Create(ctx, hook); err != nil {
		t.Fatal(err)
	}

	testenv.Eventually(t, 30*time.Second, "a pod created through the API server is injected", func() error {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{GenerateName: "web-", Namespace: "team-auth",
			Annotations: map[string]string{v1alpha1.AnnotationInject: "secret-recipe"}},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "example.com/web:1"}}}}
		if err := c.Create(ctx, p, client.DryRunAll); err != nil {
			return err
		}
		if len(p.Spec.Containers) != 2 {
			return fmt.Errorf("containers %v: not injected", p.Spec.Containers)
		}
		return nil
	})

	// A workload in the cluster, with one credential or none.
	review := reviewJSON("forged", "team-auth", podJSON("team-auth", "secret-recipe"))
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		sentence string
		cert     *tls.Certificate
		token    string
	}{
		{"no credential", nil, ""},
		{"the token alone", nil, token},
		{"the client certificate alone", &cert, ""},
		{"the client certificate and a wrong token", &cert, "guess"},
	} {
		t.Run("a forged review with "+tc.sentence+" reads nothing", func(t *testing.T) {
			conf := tlsConfig()
			if tc.cert != nil {
				conf.Certificates = []tls.Certificate{*tc.cert}
			}
			hc := &http.Client{Timeout: webhookTimeout, Transport: &http.Transport{TLSClientConfig: conf}}
			defer hc.CloseIdleConnections()
			req, _ := http.NewRequest(http.MethodPost, u, bytes.NewReader(review))
			req.Header.Set("Content-Type", "application/json")
			if tc.token != "" {
				req.Header.Set("Authorization", "Bearer "+tc.token)
			}
			resp, err := hc.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body := new(bytes.Buffer)
			_, _ = body.ReadFrom(resp.Body)
			if resp.StatusCode != http.StatusUnauthorized || strings.Contains(body.String(), "only-for-the-platform") {
				t.Errorf("HTTP %d %.300q; want 401 and nothing of the template", resp.StatusCode, body)
			}
		})
	}
}

// issueClient returns a client certificate and its key, PEM-encoded, for cn.
func (c *testCA) issueClient(t *testing.T, cn string) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(42), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.cert, &key.PublicKey, c.key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }
