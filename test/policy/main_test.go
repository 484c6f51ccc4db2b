// Package policy_test is the differential test of Policy mode: the same pods and templates go through two real
// API servers (envtest), one that injects with the webhook (the real server, in-process, on loopback) and one
// that injects with the admission policies internal/policy compiles. The pods they store must be equal.
//
// Run with: KUBEBUILDER_ASSETS=/path/to/bin go test ./test/policy/... (without it, <repo>/bin is used). Without
// the binaries the package is skipped, or fails when CI is set (internal/testenv).
package policy_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/go-logr/logr"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/sidecar-dev/sidecar-injector/internal/api/v1alpha1"
	"github.com/sidecar-dev/sidecar-injector/internal/server"
	"github.com/sidecar-dev/sidecar-injector/internal/testenv"
)

const (
	injectorNS = "sidecar-injector"
	// probeNS holds the probe pods that tell when a cluster serves the current case's templates.
	probeNS      = "policy-probe"
	webhookPath  = "/mutate-v1-pod"
	readyTimeout = 90 * time.Second
)

var (
	scheme = runtime.NewScheme()
	// webhookCluster injects with the webhook, policyCluster with the compiled policies.
	webhookCluster, policyCluster *cluster
)

// cluster is one envtest control plane and its clients.
type cluster struct {
	name     string
	env      *envtest.Environment
	cfg      *rest.Config
	c        client.Client
	warnings *warningRecorder
	stop     func() error
}

func TestMain(m *testing.M) { os.Exit(run(m)) }

func run(m *testing.M) int {
	logf.SetLogger(logr.Discard())
	assets, code, ok := testenv.RequireMain("policy")
	if !ok {
		return code
	}
	for _, add := range []func(*runtime.Scheme) error{clientgoscheme.AddToScheme, v1alpha1.AddToScheme} {
		if err := add(scheme); err != nil {
			fmt.Fprintln(os.Stderr, "policy: scheme:", err)
			return 1
		}
	}
	var err error
	defer func() {
		for _, c := range []*cluster{webhookCluster, policyCluster} {
			if c != nil {
				if err := c.stop(); err != nil {
					fmt.Fprintf(os.Stderr, "policy: stop %s cluster: %v\n", c.name, err)
				}
			}
		}
	}()
	if webhookCluster, err = startWebhookCluster(assets); err != nil {
		fmt.Fprintln(os.Stderr, "policy:", err)
		return 1
	}
	if policyCluster, err = startCluster("policy", assets, nil); err != nil {
		fmt.Fprintln(os.Stderr, "policy:", err)
		return 1
	}
	if err := requirePolicyAPI(policyCluster); err != nil {
		fmt.Fprintln(os.Stderr, "policy:", err)
		return 1
	}
	return m.Run()
}

func startCluster(name, assets string, hook *admissionregistrationv1.MutatingWebhookConfiguration) (*cluster, error) {
	crds, err := testenv.CRDDir()
	if err != nil {
		return nil, err
	}
	env := &envtest.Environment{
		CRDDirectoryPaths: []string{crds}, ErrorIfCRDPathMissing: true, Scheme: scheme, BinaryAssetsDirectory: assets,
	}
	if hook != nil {
		env.WebhookInstallOptions = envtest.WebhookInstallOptions{
			MutatingWebhooks: []*admissionregistrationv1.MutatingWebhookConfiguration{hook}, LocalServingHost: "127.0.0.1",
		}
	}
	cfg, err := env.Start()
	if err != nil {
		_ = env.Stop()
		return nil, fmt.Errorf("start the %s cluster (kube-apiserver and etcd from %s): %w", name, assets, err)
	}
	rec := &warningRecorder{}
	wcfg := rest.CopyConfig(cfg)
	wcfg.WarningHandlerWithContext = rec
	c, err := client.New(wcfg, client.Options{Scheme: scheme})
	if err != nil {
		_ = env.Stop()
		return nil, err
	}
	cl := &cluster{name: name, env: env, cfg: cfg, c: c, warnings: rec, stop: env.Stop}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, ns := range []string{injectorNS, probeNS} {
		if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
			_ = env.Stop()
			return nil, fmt.Errorf("%s cluster: create namespace %s: %w", name, ns, err)
		}
	}
	return cl, nil
}

// requirePolicyAPI checks that the API server serves MutatingAdmissionPolicy in admissionregistration.k8s.io/v1
// (GA since Kubernetes 1.36: no feature gate or runtime-config needed).
func requirePolicyAPI(c *cluster) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var l admissionregistrationv1.MutatingAdmissionPolicyList
	if err := c.c.List(ctx, &l); err != nil {
		return fmt.Errorf("the policy cluster does not serve MutatingAdmissionPolicy v1: %w", err)
	}
	return nil
}

// startWebhookCluster starts a control plane with the product's webhook registered, and the real server
// (server.Run) in-process behind it.
func startWebhookCluster(assets string) (*cluster, error) {
	hook := testenv.PodWebhookConfiguration("sidecar-injector", webhookPath)
	c, err := startCluster("webhook", assets, hook)
	if err != nil {
		return nil, err
	}
	stop, err := startServer(c.env, c.cfg)
	if err != nil {
		_ = c.env.Stop()
		return nil, err
	}
	c.stop = func() error { return errors.Join(stop(), c.env.Stop()) }
	return c, nil
}

// startServer runs server.Run on envtest's webhook host, port and certificates, and waits until it is ready.
func startServer(env *envtest.Environment, cfg *rest.Config) (func() error, error) {
	ports := make([]int, 2)
	for i := range ports {
		p, err := testenv.FreePort()
		if err != nil {
			return nil, err
		}
		ports[i] = p
	}
	health := net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[0]))
	wo := &env.WebhookInstallOptions
	opts := server.Options{
		RestConfig: rest.CopyConfig(cfg), CertDir: wo.LocalServingCertDir, WebhookHost: wo.LocalServingHost,
		WebhookPort: wo.LocalServingPort, MetricsBindAddress: net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[1])),
		HealthProbeBindAddress: health, Namespace: injectorNS, WebhookConfigName: "sidecar-injector", EnablePolicyMode: true,
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- server.Run(ctx, opts) }()
	stop := func() error {
		cancel()
		select {
		case err := <-done:
			if errors.Is(err, context.Canceled) {
				return nil
			}
			return err
		case <-time.After(30 * time.Second):
			return errors.New("server.Run did not return within 30s of its context being cancelled")
		}
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(wo.LocalServingCAData)
	addr := net.JoinHostPort(opts.WebhookHost, strconv.Itoa(opts.WebhookPort))
	hc := &http.Client{Timeout: 2 * time.Second}
	var last error
	for deadline := time.Now().Add(readyTimeout); time.Now().Before(deadline); time.Sleep(testenv.PollInterval) {
		if last = ready(hc, health, addr, pool, opts.WebhookHost); last == nil {
			return stop, nil
		}
	}
	_ = stop()
	return nil, fmt.Errorf("webhook server not ready after %s: %v", readyTimeout, last)
}

func ready(hc *http.Client, health, addr string, pool *x509.CertPool, host string) error {
	resp, err := hc.Get("http://" + health + "/readyz")
	if err != nil {
		return err
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("/readyz: %s: %s", resp.Status, body)
	}
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second}, "tcp", addr, &tls.Config{RootCAs: pool, ServerName: host})
	if err != nil {
		return err
	}
	return conn.Close()
}

func ptr[T any](v T) *T { return &v }

// warningRecorder keeps the admission warnings of the last requests.
type warningRecorder struct {
	msgs []string
}

func (w *warningRecorder) HandleWarningHeaderWithContext(_ context.Context, _ int, _ string, msg string) {
	w.msgs = append(w.msgs, msg)
}

func (w *warningRecorder) take() []string {
	out := w.msgs
	w.msgs = nil
	return out
}
