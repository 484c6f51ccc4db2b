// Package hardening attacks the running webhook: bad input, slow and flooding clients, TLS downgrades, load at a
// fixed rate, shutdown under load, certificate rotation under load, the API server going away, and tenants with
// real RBAC. It runs a kube-apiserver and etcd (envtest) with RBAC authorization, the real server (server.Run)
// in-process behind a loopback TCP proxy to the API server that the tests can cut, and, for SIGTERM, the real
// binary as a subprocess. Every wait is a bounded poll; all traffic goes to 127.0.0.1 and stops by itself.
//
// Durations: short by default (`go test ./test/hardening/...` takes about a minute and a half on 2 cores);
// HARDENING_SOAK=5m (hack/soak.sh, `make soak`) runs the soak for that long at half the measured peak rate.
package hardening

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
	"github.com/prometheus/client_golang/prometheus"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/yaml"

	"testing"

	"github.com/sidecar-dev/sidecar-injector/internal/api/v1alpha1"
	"github.com/sidecar-dev/sidecar-injector/internal/server"
	"github.com/sidecar-dev/sidecar-injector/internal/testenv"
)

const (
	injectorNS  = "sidecar-injector"
	webhookPath = "/mutate-v1-pod"
	// webhookTimeout is the API server's timeout for the webhook (timeoutSeconds in the manifests): every
	// answer must come within it.
	webhookTimeout = 10 * time.Second
)

var (
	root       string
	testEnv    *envtest.Environment
	restConfig *rest.Config // admin, direct
	k8s        client.Client
	scheme     = runtime.NewScheme()

	ca      *testCA
	apiProx *tcpProxy // the in-process server reaches the API server through it
	srv     *inProcess

	// binary is bin/sidecar-injector built by TestMain (in the background) for the SIGTERM test.
	binaryDone = make(chan struct{})
	binary     string
	binaryErr  error

	// kubeconfig is a kubeconfig file of an admin user, for the subprocess.
	kubeconfig string

	slow *slowClients
)

func TestMain(m *testing.M) { os.Exit(run(m)) }

func run(m *testing.M) int {
	logf.SetLogger(logr.Discard())
	if os.Getenv("HARDENING_VERBOSE") != "" {
		logf.SetLogger(funcr.New(func(p, a string) { fmt.Fprintln(os.Stderr, p, a) }, funcr.Options{Verbosity: 1}))
	}
	fail := func(format string, args ...any) int {
		fmt.Fprintf(os.Stderr, "hardening: "+format+"\n", args...)
		return 1
	}
	assets, code, ok := testenv.RequireMain("hardening")
	if !ok {
		return code
	}
	var err error
	if root, err = testenv.RepoRoot(); err != nil {
		return fail("%v", err)
	}
	tmp, err := os.MkdirTemp("", "hardening-")
	if err != nil {
		return fail("%v", err)
	}
	defer os.RemoveAll(tmp)

	// The binary builds while the control plane starts.
	go func() {
		defer close(binaryDone)
		binary = filepath.Join(tmp, "sidecar-injector")
		out, err := exec.Command("go", "build", "-o", binary, filepath.Join(root, "cmd", "sidecar-injector")).CombinedOutput()
		if err != nil {
			binaryErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	}()
	defer func() { <-binaryDone }()

	for _, add := range []func(*runtime.Scheme) error{clientgoscheme.AddToScheme, v1alpha1.AddToScheme} {
		if err := add(scheme); err != nil {
			return fail("scheme: %v", err)
		}
	}
	crds, err := testenv.CRDDir()
	if err != nil {
		return fail("%v", err)
	}
	testEnv = &envtest.Environment{
		CRDDirectoryPaths:     []string{crds},
		ErrorIfCRDPathMissing: true,
		Scheme:                scheme,
		BinaryAssetsDirectory: assets,
	}
	// envtest's kube-apiserver defaults to --authorization-mode=RBAC; say so explicitly, the tenancy tests
	// depend on it.
	testEnv.ControlPlane.GetAPIServer().Configure().Set("authorization-mode", "RBAC")
	start := time.Now()
	if restConfig, err = testEnv.Start(); err != nil {
		_ = testEnv.Stop()
		return fail("start envtest: %v", err)
	}
	defer func() {
		if err := testEnv.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "hardening: stop envtest: %v\n", err)
		}
	}()
	fmt.Fprintf(os.Stderr, "hardening: control plane up in %s\n", time.Since(start).Round(time.Millisecond))
	if k8s, err = client.New(restConfig, client.Options{Scheme: scheme}); err != nil {
		return fail("client: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: injectorNS}}); err != nil {
		return fail("namespace: %v", err)
	}

	// An admin user with a client certificate, as a kubeconfig file for the subprocess.
	user, err := testEnv.ControlPlane.AddUser(envtest.User{Name: "hardening-admin", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return fail("add user: %v", err)
	}
	kc, err := user.KubeConfig()
	if err != nil {
		return fail("kubeconfig: %v", err)
	}
	kubeconfig = filepath.Join(tmp, "kubeconfig")
	if err := os.WriteFile(kubeconfig, kc, 0o600); err != nil {
		return fail("%v", err)
	}

	if ca, err = newTestCA(); err != nil {
		return fail("CA: %v", err)
	}
	apiURL, err := hostPort(restConfig.Host)
	if err != nil {
		return fail("%v", err)
	}
	if apiProx, err = newTCPProxy(apiURL); err != nil {
		return fail("proxy: %v", err)
	}
	defer apiProx.close()

	if srv, err = startInProcess(filepath.Join(tmp, "main-certs"), true); err != nil {
		return fail("%v", err)
	}
	defer func() {
		if err := srv.stop(); err != nil {
			fmt.Fprintf(os.Stderr, "hardening: server: %v\n", err)
		}
	}()
	if err := installWebhookConfiguration(ctx, srv.addr); err != nil {
		return fail("webhook configuration: %v", err)
	}
	fmt.Fprintf(os.Stderr, "hardening: webhook server ready %s after start\n", time.Since(start).Round(time.Millisecond))

	// Slow clients run during the whole suite (each needs its timeout to elapse); TestSlowClients... checks them.
	slow = startSlowClients(srv.addr)
	return m.Run()
}

func hostPort(rawURL string) (string, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "", err
	}
	return u.Host, nil
}

// inProcess is server.Run running in this process.
type inProcess struct {
	addr, healthAddr, certDir string
	cancel                    context.CancelFunc
	done                      chan error
}

// startInProcess runs server.Run with a fresh serving certificate in certDir, on free loopback ports, reaching
// the API server through apiProx (viaProxy) or directly, and waits until it is ready.
func startInProcess(certDir string, viaProxy bool) (*inProcess, error) {
	return startInProcessWith(certDir, viaProxy, nil)
}

// startInProcessWith is startInProcess with configure applied to the server's options last.
func startInProcessWith(certDir string, viaProxy bool, configure func(*server.Options)) (*inProcess, error) {
	if err := os.MkdirAll(certDir, 0o700); err != nil {
		return nil, err
	}
	if err := ca.writeServing(certDir, 1); err != nil {
		return nil, err
	}
	port, err := testenv.FreePort()
	if err != nil {
		return nil, err
	}
	hport, err := testenv.FreePort()
	if err != nil {
		return nil, err
	}
	cfg := rest.CopyConfig(restConfig)
	if viaProxy {
		cfg.Host = "https://" + apiProx.addr()
		cfg.Timeout = 0
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &inProcess{addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), healthAddr: net.JoinHostPort("127.0.0.1", strconv.Itoa(hport)),
		certDir: certDir, cancel: cancel, done: make(chan error, 1)}
	opts := server.Options{
		RestConfig: cfg, CertDir: certDir, WebhookHost: "127.0.0.1", WebhookPort: port,
		MetricsBindAddress: "0", HealthProbeBindAddress: s.healthAddr, Namespace: injectorNS,
		// Several servers run at once in this process: each counts on its own registry.
		MetricsRegistry: prometheus.NewRegistry(),
		// The status controller runs on the main server only (it marks invalid templates).
		DisableController: !viaProxy,
	}
	if configure != nil {
		configure(&opts)
	}
	go func() { s.done <- server.Run(ctx, opts) }()
	if err := waitReady(s.healthAddr, s.done); err != nil {
		cancel()
		return nil, err
	}
	return s, nil
}

// waitReady polls /readyz until 200 (30 s at most), failing early if the server returns.
func waitReady(healthAddr string, done <-chan error) error {
	hc := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(30 * time.Second)
	var last error
	for time.Now().Before(deadline) {
		select {
		case err := <-done:
			return fmt.Errorf("the server returned before it was ready: %v", err)
		default:
		}
		resp, err := hc.Get("http://" + healthAddr + "/readyz")
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("/readyz: %s: %s", resp.Status, body)
		}
		last = err
		time.Sleep(testenv.PollInterval)
	}
	return fmt.Errorf("not ready after 30s: %v", last)
}

func (s *inProcess) stop() error {
	s.cancel()
	select {
	case err := <-s.done:
		if errors.Is(err, context.Canceled) {
			return nil
		}
		return err
	case <-time.After(45 * time.Second):
		return errors.New("server.Run did not return within 45s of cancel")
	}
}

// installWebhookConfiguration installs config/webhook/manifests.yaml, pointed at addr with the test CA.
func installWebhookConfiguration(ctx context.Context, addr string) error {
	data, err := os.ReadFile(filepath.Join(root, "config", "webhook", "manifests.yaml"))
	if err != nil {
		return err
	}
	var hook admissionregistrationv1.MutatingWebhookConfiguration
	for _, doc := range bytes.Split(data, []byte("\n---")) {
		if err := yaml.Unmarshal(doc, &hook); err == nil && hook.Kind == "MutatingWebhookConfiguration" {
			break
		}
	}
	if len(hook.Webhooks) != 1 {
		return fmt.Errorf("manifests.yaml: want one webhook, found %d", len(hook.Webhooks))
	}
	u := "https://" + addr + webhookPath
	hook.Webhooks[0].ClientConfig = admissionregistrationv1.WebhookClientConfig{URL: &u, CABundle: ca.pem}
	// Only the namespaces the tests create (label hardening=true): nothing else in the cluster depends on it.
	hook.Webhooks[0].NamespaceSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"hardening": "true"}}
	return k8s.Create(ctx, &hook)
}

// testCA issues the webhook's serving certificates; the webhook configuration and the test clients trust it.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
	pool *x509.CertPool
}

func newTestCA() (*testCA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "hardening-ca"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pool: pool}, nil
}

// writeServing writes a serving certificate for 127.0.0.1 with the given serial into dir, each file written
// aside and renamed into place (as a Secret volume update does).
func (c *testCA) writeServing(dir string, serial int64) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "sidecar-injector"},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: []string{"localhost"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.cert, &key.PublicKey, c.key)
	if err != nil {
		return err
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	// The key first: the certwatcher reloads on the certificate's event, and needs the matching key then.
	for _, f := range []struct {
		name  string
		block *pem.Block
	}{{server.KeyName, &pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}}, {server.CertName, &pem.Block{Type: "CERTIFICATE", Bytes: der}}} {
		tmp := filepath.Join(dir, "."+f.name+".tmp")
		if err := os.WriteFile(tmp, pem.EncodeToMemory(f.block), 0o600); err != nil {
			return err
		}
		if err := os.Rename(tmp, filepath.Join(dir, f.name)); err != nil {
			return err
		}
	}
	return nil
}

// tlsConfig trusts the test CA; HTTP/1.1 only, as the API server's webhook client.
func tlsConfig() *tls.Config {
	return &tls.Config{RootCAs: ca.pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}
}

// tcpProxy forwards loopback TCP connections to target until cut; cut closes every connection and refuses new
// ones (the API server "goes away"), restore accepts again.
type tcpProxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	down   bool
	conns  map[net.Conn]bool
}

func newTCPProxy(target string) (*tcpProxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &tcpProxy{ln: ln, target: target, conns: map[net.Conn]bool{}}
	go p.serve()
	return p, nil
}

func (p *tcpProxy) addr() string { return p.ln.Addr().String() }

func (p *tcpProxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.down {
			p.mu.Unlock()
			_ = c.Close()
			continue
		}
		up, err := net.DialTimeout("tcp", p.target, 5*time.Second)
		if err != nil {
			p.mu.Unlock()
			_ = c.Close()
			continue
		}
		p.conns[c], p.conns[up] = true, true
		p.mu.Unlock()
		pipe := func(dst, src net.Conn) {
			_, _ = io.Copy(dst, src)
			_ = dst.Close()
			_ = src.Close()
			p.mu.Lock()
			delete(p.conns, dst)
			delete(p.conns, src)
			p.mu.Unlock()
		}
		go pipe(up, c)
		go pipe(c, up)
	}
}

func (p *tcpProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = true
	for c := range p.conns {
		_ = c.Close()
	}
}

func (p *tcpProxy) restore() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = false
}

func (p *tcpProxy) close() {
	_ = p.ln.Close()
	p.cut()
}
