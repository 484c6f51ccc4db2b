// Package integration runs the webhook against a real kube-apiserver and etcd (controller-runtime's envtest):
// CRDs and the webhook configuration are installed as a user would install them, the real server runs
// in-process, and every story goes through the API server's admission chain.
//
// Run with: KUBEBUILDER_ASSETS=/path/to/bin go test ./test/integration/... (without it, <repo>/bin is used). Without
// the binaries the package is skipped, or fails when CI is set (internal/testenv).
package integration

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/yaml"

	"github.com/sidecar-dev/sidecar-injector/internal/api/v1alpha1"
	"github.com/sidecar-dev/sidecar-injector/internal/server"
	"github.com/sidecar-dev/sidecar-injector/internal/testenv"
)

// injectorNS is the injector's own namespace: its templates are cluster-wide, its pods are never injected.
const injectorNS = "sidecar-injector"

// webhookPath is the path the server serves the pod mutating webhook on (fixed by the spec).
const webhookPath = "/mutate-v1-pod"

var (
	testEnv    *envtest.Environment
	restConfig *rest.Config
	k8s        client.Client
	scheme     = runtime.NewScheme()

	// ours is the MutatingWebhookConfiguration installed from config/webhook/manifests.yaml.
	ours *admissionregistrationv1.MutatingWebhookConfiguration
	// manifestProblems lists how config/webhook/manifests.yaml differs from what the product needs; reported by
	// TestTheWebhookManifestRegistersPodCreateWithReinvocation (the suite corrects them so that other stories
	// can run).
	manifestProblems []string

	srv         *runningServer
	healthAddr  string
	metricsAddr string // the server's Prometheus endpoint, scraped by the metrics story
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) (code int) {
	// controller-runtime's and the server's logs are noise unless asked for.
	logf.SetLogger(logr.Discard())
	if os.Getenv("INTEGRATION_VERBOSE") != "" {
		logf.SetLogger(funcr.New(func(prefix, args string) { fmt.Fprintln(os.Stderr, prefix, args) }, funcr.Options{Verbosity: 1}))
	}
	fail := func(format string, args ...any) int {
		fmt.Fprintf(os.Stderr, "integration: "+format+"\n", args...)
		return 1
	}

	assets, code, ok := testenv.RequireMain("integration")
	if !ok {
		return code
	}
	root, err := testenv.RepoRoot()
	if err != nil {
		return fail("%v", err)
	}
	for _, add := range []func(*runtime.Scheme) error{clientgoscheme.AddToScheme, v1alpha1.AddToScheme} {
		if err := add(scheme); err != nil {
			return fail("scheme: %v", err)
		}
	}
	hook, problems, err := loadWebhookConfiguration(root)
	if err != nil {
		return fail("webhook configuration: %v", err)
	}
	manifestProblems = problems

	crds, err := testenv.CRDDir()
	if err != nil {
		return fail("%v", err)
	}
	testEnv = &envtest.Environment{
		CRDDirectoryPaths:     []string{crds},
		ErrorIfCRDPathMissing: true,
		Scheme:                scheme,
		BinaryAssetsDirectory: assets,
		WebhookInstallOptions: envtest.WebhookInstallOptions{
			MutatingWebhooks: []*admissionregistrationv1.MutatingWebhookConfiguration{hook},
			LocalServingHost: "127.0.0.1",
		},
	}
	start := time.Now()
	restConfig, err = testEnv.Start()
	if err != nil {
		_ = testEnv.Stop()
		return fail("start envtest (kube-apiserver and etcd from %s): %v", assets, err)
	}
	defer func() {
		if srv != nil {
			if err := srv.stop(); err != nil {
				fmt.Fprintf(os.Stderr, "integration: webhook server stopped with: %v\n", err)
			}
		}
		if err := testEnv.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "integration: stop envtest: %v\n", err)
		}
	}()
	ours = hook
	fmt.Fprintf(os.Stderr, "integration: control plane up in %s\n", time.Since(start).Round(time.Millisecond))

	if k8s, err = client.New(restConfig, client.Options{Scheme: scheme}); err != nil {
		return fail("client: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: injectorNS}}); err != nil {
		return fail("create namespace %s: %v", injectorNS, err)
	}

	port, err := testenv.FreePort()
	if err != nil {
		return fail("%v", err)
	}
	healthAddr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	if port, err = testenv.FreePort(); err != nil {
		return fail("%v", err)
	}
	metricsAddr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	if srv, err = startServer(); err != nil {
		return fail("%v", err)
	}
	fmt.Fprintf(os.Stderr, "integration: webhook server ready %s after start\n", time.Since(start).Round(time.Millisecond))
	return m.Run()
}

// loadWebhookConfiguration reads the MutatingWebhookConfiguration generated into config/webhook/manifests.yaml.
// envtest later points its clientConfig at the in-process server (it turns the service reference into a
// https://127.0.0.1:<port>/<path> URL and sets the CA bundle). It returns how the file deviates from what the
// product needs, correcting those deviations in the returned object so that the stories can still run. When the
// file does not exist it builds the configuration the file is meant to contain.
func loadWebhookConfiguration(root string) (*admissionregistrationv1.MutatingWebhookConfiguration, []string, error) {
	path := filepath.Join(root, "config", "webhook", "manifests.yaml")
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return testenv.PodWebhookConfiguration("mutating-webhook-configuration", webhookPath), []string{path + " does not exist; the suite used a configuration built in code"}, nil
	}
	if err != nil {
		return nil, nil, err
	}
	var found *admissionregistrationv1.MutatingWebhookConfiguration
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	for {
		var raw map[string]any
		if err := dec.Decode(&raw); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", path, err)
		}
		if raw == nil || raw["kind"] != "MutatingWebhookConfiguration" {
			continue
		}
		doc, _ := yaml.Marshal(raw)
		var cfg admissionregistrationv1.MutatingWebhookConfiguration
		if err := yaml.UnmarshalStrict(doc, &cfg); err != nil {
			return nil, nil, fmt.Errorf("%s: %w", path, err)
		}
		for _, w := range cfg.Webhooks {
			if w.ClientConfig.Service != nil && w.ClientConfig.Service.Path != nil && *w.ClientConfig.Service.Path == webhookPath {
				found = &cfg
			}
		}
	}
	if found == nil {
		return nil, nil, fmt.Errorf("%s has no MutatingWebhookConfiguration with a webhook on service path %s", path, webhookPath)
	}
	var problems []string
	for i := range found.Webhooks {
		w := &found.Webhooks[i]
		if w.ClientConfig.Service == nil || w.ClientConfig.Service.Path == nil || *w.ClientConfig.Service.Path != webhookPath {
			continue
		}
		if w.ReinvocationPolicy == nil || *w.ReinvocationPolicy != admissionregistrationv1.IfNeededReinvocationPolicy {
			problems = append(problems, fmt.Sprintf("webhook %s: reinvocationPolicy is %v, want IfNeeded", w.Name, deref(w.ReinvocationPolicy)))
			w.ReinvocationPolicy = ptrTo(admissionregistrationv1.IfNeededReinvocationPolicy)
		}
		if w.SideEffects == nil || *w.SideEffects != admissionregistrationv1.SideEffectClassNone {
			problems = append(problems, fmt.Sprintf("webhook %s: sideEffects is %v, want None (dry-run requests are only sent to webhooks without side effects)", w.Name, deref(w.SideEffects)))
			w.SideEffects = ptrTo(admissionregistrationv1.SideEffectClassNone)
		}
		podCreate := false
		for _, r := range w.Rules {
			for _, op := range r.Operations {
				if op == admissionregistrationv1.Create && contains(r.Resources, "pods") && contains(r.APIGroups, "") {
					podCreate = true
				}
			}
		}
		if !podCreate {
			problems = append(problems, fmt.Sprintf("webhook %s: rules %+v do not cover CREATE pods", w.Name, w.Rules))
		}
	}
	return found, problems, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s || x == "*" {
			return true
		}
	}
	return false
}

func deref[T any](p *T) any {
	if p == nil {
		return "unset"
	}
	return *p
}

// runningServer is the webhook server running in-process through server.Run.
type runningServer struct {
	cancel context.CancelFunc
	done   chan error
}

// startServer runs server.Run on envtest's webhook host, port and serving certificates, and waits until
// /readyz answers 200 and the webhook port completes a TLS handshake with a certificate envtest's CA trusts.
func startServer() (*runningServer, error) {
	ctx, cancel := context.WithCancel(context.Background())
	s := &runningServer{cancel: cancel, done: make(chan error, 1)}
	opts := server.Options{
		RestConfig:             rest.CopyConfig(restConfig),
		CertDir:                testEnv.WebhookInstallOptions.LocalServingCertDir,
		WebhookHost:            testEnv.WebhookInstallOptions.LocalServingHost,
		WebhookPort:            testEnv.WebhookInstallOptions.LocalServingPort,
		MetricsBindAddress:     metricsAddr,
		HealthProbeBindAddress: healthAddr,
		Namespace:              injectorNS,
	}
	go func() { s.done <- server.Run(ctx, opts) }()

	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(testEnv.WebhookInstallOptions.LocalServingCAData)
	webhookAddr := net.JoinHostPort(opts.WebhookHost, strconv.Itoa(opts.WebhookPort))
	hc := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(startDeadline)
	var last error
	for time.Now().Before(deadline) {
		select {
		case err := <-s.done:
			cancel()
			return nil, fmt.Errorf("server.Run returned before the server was ready: %v", err)
		default:
		}
		last = func() error {
			resp, err := hc.Get("http://" + healthAddr + "/readyz")
			if err != nil {
				return err
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("/readyz: %s: %s", resp.Status, body)
			}
			conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second}, "tcp", webhookAddr, &tls.Config{RootCAs: pool, ServerName: opts.WebhookHost})
			if err != nil {
				return fmt.Errorf("webhook port %s: %w", webhookAddr, err)
			}
			return conn.Close()
		}()
		if last == nil {
			return s, nil
		}
		time.Sleep(testenv.PollInterval)
	}
	_ = s.stopWithin(10 * time.Second)
	return nil, fmt.Errorf("webhook server not ready after %s: %v", startDeadline, last)
}

// stop cancels the server's context and waits for server.Run to return; it returns Run's error, if any.
func (s *runningServer) stop() error { return s.stopWithin(30 * time.Second) }

func (s *runningServer) stopWithin(d time.Duration) error {
	s.cancel()
	select {
	case err := <-s.done:
		if errors.Is(err, context.Canceled) {
			return nil
		}
		return err
	case <-time.After(d):
		return fmt.Errorf("server.Run did not return within %s of its context being cancelled", d)
	}
}
