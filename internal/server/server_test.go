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
	"fmt"
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
	"k8s.io/client-go/rest"

	"github.com/sidecar-dev/sidecar-injector/internal/testenv"
)

// writeCert writes a self-signed certificate for 127.0.0.1 with the given serial number into dir as tls.crt
// and tls.key.
func writeCert(t *testing.T, dir string, serial int64) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial),
		Subject:      pkix.Name{CommonName: "sidecar-injector"},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		DNSNames:     []string{"localhost"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	// Written next to the target and renamed, as a Secret volume update swaps files atomically.
	for name, block := range map[string]*pem.Block{
		CertName: {Type: "CERTIFICATE", Bytes: der},
		KeyName:  {Type: "EC PRIVATE KEY", Bytes: keyDER},
	} {
		tmp := filepath.Join(dir, "."+name+".tmp")
		if err := os.WriteFile(tmp, pem.EncodeToMemory(block), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	port, err := testenv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return port
}

// validOptions returns options that pass complete(): a certificate in a temporary directory and a namespace.
func validOptions(t *testing.T) Options {
	dir := t.TempDir()
	writeCert(t, dir, 1)
	return Options{CertDir: dir, Namespace: "sidecar-injector", WebhookHost: "127.0.0.1", WebhookPort: freePort(t),
		MetricsBindAddress: "0", HealthProbeBindAddress: "0"}
}

func TestRunRefusesOptionsItCannotServeWithAndSaysWhatToChange(t *testing.T) {
	for _, tc := range []struct {
		sentence string
		change   func(*Options)
		mentions []string
	}{
		{"no namespace and no $POD_NAMESPACE", func(o *Options) { o.Namespace = "" }, []string{"--namespace", "POD_NAMESPACE"}},
		{"a cert dir without a certificate", func(o *Options) { o.CertDir = t.TempDir() }, []string{"--cert-dir", "tls.crt", "tls.key"}},
		{"a certificate that does not match its key", func(o *Options) {
			other := t.TempDir()
			writeCert(t, other, 2)
			data, _ := os.ReadFile(filepath.Join(other, KeyName))
			_ = os.WriteFile(filepath.Join(o.CertDir, KeyName), data, 0o600)
		}, []string{"--cert-dir", "private key does not match"}},
		{"a webhook port above 65535", func(o *Options) { o.WebhookPort = 70000 }, []string{"--webhook-port 70000", "1-65535"}},
		{"a negative webhook port", func(o *Options) { o.WebhookPort = -1 }, []string{"--webhook-port -1"}},
		{"a health probe address already in use", func(o *Options) {
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { l.Close() })
			o.RestConfig = &rest.Config{Host: "https://127.0.0.1:1"}
			o.HealthProbeBindAddress = l.Addr().String()
		}, []string{"already in use", "--health-probe-bind-address"}},
		{"a kubeconfig that does not exist", func(o *Options) { o.Kubeconfig = filepath.Join(t.TempDir(), "nope") }, []string{"--kubeconfig", "nope"}},
	} {
		t.Run(tc.sentence+" is refused", func(t *testing.T) {
			t.Setenv(PodNamespaceEnv, "")
			o := validOptions(t)
			tc.change(&o)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			err := Run(ctx, o)
			if err == nil {
				t.Fatal("Run returned nil")
			}
			for _, m := range tc.mentions {
				if !strings.Contains(err.Error(), m) {
					t.Errorf("error %q does not mention %q", err, m)
				}
			}
		})
	}
}

func TestTheNamespaceDefaultsToPOD_NAMESPACEAndThePortTo9443(t *testing.T) {
	t.Setenv(PodNamespaceEnv, "from-env")
	o := validOptions(t)
	o.Namespace, o.WebhookPort = "", 0
	if err := o.complete(); err != nil {
		t.Fatal(err)
	}
	if o.Namespace != "from-env" || o.WebhookPort != 9443 {
		t.Errorf("namespace %q, port %d; want from-env, 9443", o.Namespace, o.WebhookPort)
	}
	o.Namespace = "explicit"
	if err := o.complete(); err != nil || o.Namespace != "explicit" {
		t.Errorf("an explicit namespace became %q (err %v)", o.Namespace, err)
	}
}

// startWebhookServer runs the webhook server Run uses (newWebhookServer) with the options Run gives it, serving "ok" on
// the webhook path, until the test ends.
func startWebhookServer(t *testing.T, o Options) string {
	t.Helper()
	srv := newWebhookServer(webhookServerOptions(o), logr.Discard())
	srv.Register("/mutate-v1-pod", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) }))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Start(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("webhook server: %v", err)
			}
		case <-time.After(70 * time.Second):
			t.Error("webhook server did not stop")
		}
	})
	addr := net.JoinHostPort(o.WebhookHost, strconv.Itoa(o.WebhookPort))
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := srv.StartedChecker()(nil)
		if err == nil {
			return addr
		}
		if time.Now().After(deadline) {
			t.Fatalf("webhook server not serving: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func handshake(addr string, c *tls.Config) (tls.ConnectionState, error) {
	c.InsecureSkipVerify = true
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, c)
	if err != nil {
		return tls.ConnectionState{}, err
	}
	defer conn.Close()
	return conn.ConnectionState(), nil
}

func TestTheWebhookServerSpeaksHTTP1OnlyUnlessHTTP2IsEnabled(t *testing.T) {
	for _, tc := range []struct {
		enableHTTP2 bool
		want        string
	}{{false, "http/1.1"}, {true, "h2"}} {
		t.Run(fmt.Sprintf("with EnableHTTP2=%v a client offering h2 gets %s", tc.enableHTTP2, tc.want), func(t *testing.T) {
			o := validOptions(t)
			o.EnableHTTP2 = tc.enableHTTP2
			addr := startWebhookServer(t, o)
			st, err := handshake(addr, &tls.Config{NextProtos: []string{"h2", "http/1.1"}})
			if err != nil {
				t.Fatal(err)
			}
			if st.NegotiatedProtocol != tc.want {
				t.Errorf("negotiated %q, want %q", st.NegotiatedProtocol, tc.want)
			}
		})
	}
}

func TestTheWebhookServerRefusesTLSOlderThan1_2(t *testing.T) {
	addr := startWebhookServer(t, validOptions(t))
	if _, err := handshake(addr, &tls.Config{MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11}); err == nil {
		t.Error("a TLS 1.1 client completed a handshake")
	}
	st, err := handshake(addr, &tls.Config{MaxVersion: tls.VersionTLS12})
	if err != nil || st.Version != tls.VersionTLS12 {
		t.Errorf("a TLS 1.2 client: version %x, err %v; want 1.2 accepted", st.Version, err)
	}
}

func TestTheWebhookServerPicksUpARotatedCertificateWithoutRestart(t *testing.T) {
	o := validOptions(t)
	addr := startWebhookServer(t, o)
	serial := func() int64 {
		st, err := handshake(addr, &tls.Config{})
		if err != nil {
			t.Fatal(err)
		}
		return st.PeerCertificates[0].SerialNumber.Int64()
	}
	if got := serial(); got != 1 {
		t.Fatalf("serving certificate serial %d, want 1", got)
	}
	writeCert(t, o.CertDir, 2)
	deadline := time.Now().Add(25 * time.Second) // file events are immediate; the fallback poll is every 10 s
	for serial() != 2 {
		if time.Now().After(deadline) {
			t.Fatal("the server still serves the old certificate 25 s after rotation")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestTheWebhookServerServesTheWebhookPathOverTLS(t *testing.T) {
	o := validOptions(t)
	addr := startWebhookServer(t, o)
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	resp, err := client.Post("https://"+addr+"/mutate-v1-pod", "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Proto != "HTTP/1.1" {
		t.Errorf("status %d over %s, want 200 over HTTP/1.1", resp.StatusCode, resp.Proto)
	}
}
