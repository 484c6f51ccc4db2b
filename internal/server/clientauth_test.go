package server

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sidecar-dev/sidecar-injector/internal/metrics"
	"github.com/sidecar-dev/sidecar-injector/internal/webhook"
)

// clientCA issues client certificates for the tests.
type clientCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newClientCA(t *testing.T, name string) *clientCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &clientCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// issue returns a client certificate with the given CN and DNS names.
func (c *clientCA) issue(t *testing.T, cn string, dns ...string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn}, DNSNames: dns,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.cert, &key.PublicKey, c.key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// startAuthServer runs the webhook server with the client authentication of o in front of a handler answering
// "admitted", as Run wires it, and returns its address and the metrics registry.
func startAuthServer(t *testing.T, o Options) (string, *prometheus.Registry) {
	t.Helper()
	auth, err := loadClientAuth(&o)
	if err != nil {
		t.Fatal(err)
	}
	whOpts := webhookServerOptions(o)
	whOpts.TLSOpts = append(whOpts.TLSOpts, auth.configureTLS)
	srv := newWebhookServer(whOpts, logr.Discard())
	reg := prometheus.NewRegistry()
	m, err := metrics.New(reg)
	if err != nil {
		t.Fatal(err)
	}
	srv.Register(webhook.Path, auth.wrap(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("admitted")) }),
		m, webhook.NewClientErrorLog(logr.Discard())))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Start(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	addr := net.JoinHostPort(o.WebhookHost, strconv.Itoa(o.WebhookPort))
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if err := srv.StartedChecker()(nil); err == nil {
			return addr, reg // the probe needs no client certificate
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("the webhook server did not start")
	return "", nil
}

// call posts to the webhook path with the given client certificate (none when nil) and token (none when "").
func call(t *testing.T, addr string, cert *tls.Certificate, token string) (int, string, error) {
	t.Helper()
	cfg := &tls.Config{InsecureSkipVerify: true} //nolint:gosec // the test checks the client side, not the server's name
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg}}
	defer c.CloseIdleConnections()
	req, _ := http.NewRequest(http.MethodPost, "https://"+addr+webhook.Path, strings.NewReader("{}"))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	var b strings.Builder
	buf := make([]byte, 512)
	n, _ := resp.Body.Read(buf)
	b.Write(buf[:n])
	return resp.StatusCode, b.String(), nil
}

func writeFile(t *testing.T, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestOnlyAClientCertificateOfTheCAWithAnAllowedNameReachesTheWebhook(t *testing.T) {
	apiCA, otherCA := newClientCA(t, "api-server-client-ca"), newClientCA(t, "someone-else")
	o := validOptions(t)
	o.ClientCAFile = writeFile(t, "ca.crt", apiCA.pem)
	o.ClientNames = []string{"kube-apiserver-webhook-client"}
	addr, reg := startAuthServer(t, o)

	apiServer := apiCA.issue(t, "kube-apiserver-webhook-client")
	bySAN := apiCA.issue(t, "whatever", "kube-apiserver-webhook-client")
	wrongName := apiCA.issue(t, "tenant-workload")
	foreign := otherCA.issue(t, "kube-apiserver-webhook-client")
	for _, tc := range []struct {
		sentence string
		cert     *tls.Certificate
		code     int // 0: the TLS handshake fails, or (a client that does not offer it) HTTP 401
		mentions string
	}{
		{"the API server's certificate is let through", &apiServer, http.StatusOK, "admitted"},
		{"a certificate of the CA naming the client in a DNS SAN is let through", &bySAN, http.StatusOK, "admitted"},
		{"no certificate is told one is required", nil, http.StatusUnauthorized, "client certificate"},
		{"a certificate of the CA for another name is forbidden", &wrongName, http.StatusForbidden, "tenant-workload"},
		{"a certificate of another CA is refused", &foreign, 0, ""},
	} {
		t.Run(tc.sentence, func(t *testing.T) {
			code, body, err := call(t, addr, tc.cert, "")
			switch {
			case tc.code == 0 && err == nil && code != http.StatusUnauthorized:
				// Go's client does not offer a certificate the server's CA list does not name; one that does
				// fails the handshake.
				t.Fatalf("HTTP %d %q; want the TLS handshake to fail or a 401", code, body)
			case tc.code == 0:
			case tc.code != 0 && err != nil:
				t.Fatalf("%v; want HTTP %d", err, tc.code)
			case code != tc.code || !strings.Contains(body, tc.mentions):
				t.Errorf("HTTP %d %q; want %d mentioning %q", code, body, tc.code, tc.mentions)
			}
		})
	}
	if n := counted(t, reg, "403"); n != 1 {
		t.Errorf("requests_total{code=403} = %v, want the refused name counted", n)
	}
}

func TestOnlyTheBearerTokenReachesTheWebhook(t *testing.T) {
	o := validOptions(t)
	o.ClientTokenFile = writeFile(t, "token", []byte("s3cr3t-token\n"))
	addr, _ := startAuthServer(t, o)
	for _, tc := range []struct {
		sentence, token string
		code            int
	}{
		{"the token (the file's trailing newline aside) is let through", "s3cr3t-token", http.StatusOK},
		{"no token is refused", "", http.StatusUnauthorized},
		{"another token is refused", "s3cr3t-tokeN", http.StatusUnauthorized},
		{"a prefix of the token is refused", "s3cr3t", http.StatusUnauthorized},
	} {
		t.Run(tc.sentence, func(t *testing.T) {
			code, body, err := call(t, addr, nil, tc.token)
			if err != nil || code != tc.code {
				t.Errorf("HTTP %d %q (%v); want %d", code, body, err, tc.code)
			}
		})
	}
}

func TestClientAuthenticationOptionsThatCannotWorkAreRefused(t *testing.T) {
	for _, tc := range []struct {
		sentence string
		change   func(*Options)
		mentions string
	}{
		{"names without a CA", func(o *Options) { o.ClientNames = []string{"x"} }, "--client-names needs --client-ca-file"},
		{"a CA file that does not exist", func(o *Options) { o.ClientCAFile = "/nonexistent/ca.crt" }, "--client-ca-file"},
		{"a CA file without a certificate", func(o *Options) { o.ClientCAFile = writeFile(t, "ca.crt", []byte("not pem")) }, "no PEM certificate"},
		{"an empty token file", func(o *Options) { o.ClientTokenFile = writeFile(t, "token", []byte(" \n")) }, "is empty"},
	} {
		t.Run(tc.sentence, func(t *testing.T) {
			o := validOptions(t)
			tc.change(&o)
			if _, err := loadClientAuth(&o); err == nil || !strings.Contains(err.Error(), tc.mentions) {
				t.Errorf("error %v, want one mentioning %q", err, tc.mentions)
			}
		})
	}
}

func counted(t *testing.T, reg *prometheus.Registry, code string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "sidecar_injector_webhook_requests_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "code" && l.GetValue() == code {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}
