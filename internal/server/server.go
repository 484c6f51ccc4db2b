// Package server runs the admission webhook: a controller-runtime manager with the informer caches that feed
// the template and namespace stores, the TLS webhook server serving /mutate-v1-pod, health probes and metrics.
package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/config"
	crconfig "sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	crmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	crwebhook "sigs.k8s.io/controller-runtime/pkg/webhook"

	"github.com/sidecar-dev/sidecar-injector/internal/api/v1alpha1"
	"github.com/sidecar-dev/sidecar-injector/internal/certs"
	"github.com/sidecar-dev/sidecar-injector/internal/controller"
	"github.com/sidecar-dev/sidecar-injector/internal/events"
	"github.com/sidecar-dev/sidecar-injector/internal/inject"
	"github.com/sidecar-dev/sidecar-injector/internal/metrics"
	"github.com/sidecar-dev/sidecar-injector/internal/store"
	"github.com/sidecar-dev/sidecar-injector/internal/webhook"
)

// DefaultWebhookPort is the webhook server's port when Options.WebhookPort is 0.
const DefaultWebhookPort = 9443

// CertName and KeyName are the files the webhook server reads its serving certificate from, in CertDir. They
// are re-read when they change (controller-runtime's certwatcher: file notifications plus a 10 s poll), so a
// rotated Secret is picked up without a restart.
const (
	CertName = "tls.crt"
	KeyName  = "tls.key"
)

// PodNamespaceEnv is the environment variable that gives the default of Options.Namespace (set it from the
// downward API: fieldRef metadata.namespace).
const PodNamespaceEnv = "POD_NAMESPACE"

// Options configures Run. The zero value of every field but CertDir and Namespace is usable.
type Options struct {
	// RestConfig, when set, is used to reach the API server and Kubeconfig is ignored (tests pass envtest's).
	RestConfig *rest.Config
	// Kubeconfig is the path of a kubeconfig file; empty means $KUBECONFIG, then in-cluster, then
	// ~/.kube/config.
	Kubeconfig string
	// CertDir holds tls.crt and tls.key; empty means controller-runtime's default,
	// $TMPDIR/k8s-webhook-server/serving-certs.
	CertDir string
	// WebhookHost is the address the webhook server listens on; empty means all addresses.
	WebhookHost string
	// WebhookPort is the webhook server's port; 0 means 9443.
	WebhookPort int
	// MetricsBindAddress is the metrics server's address (e.g. ":8080"); empty or "0" disables it.
	MetricsBindAddress string
	// HealthProbeBindAddress serves /healthz and /readyz (e.g. ":8081"); empty or "0" disables it.
	HealthProbeBindAddress string
	// Namespace is the injector's own namespace; empty means $POD_NAMESPACE. Required.
	Namespace string
	// EnableHTTP2 lets clients negotiate HTTP/2 on the webhook server; off by default (HTTP/2 rapid reset,
	// CVE-2023-44487), so only http/1.1 is offered.
	EnableHTTP2 bool
	// LeaderElect runs the template status controller on one replica at a time (a Lease in Namespace). The
	// webhook serves on every replica regardless. Off means every replica runs the controller, which is right
	// for one replica and harmless but wasteful for more.
	LeaderElect bool
	// DisableController turns the template status controller off (status, drift counts, Ready Events).
	DisableController bool
	// Limits bound one admission's work and output (serve's --max-* flags; zero fields: inject.DefaultLimits).
	Limits inject.Limits
	// Images is what the platform's image policy may do to a sidecar's image (--image-mirrors,
	// --allow-digest-pinning); the zero value tolerates nothing.
	Images inject.ImageTolerance
	// MetricsRegistry is where the injector's metrics are registered; nil means controller-runtime's registry,
	// the one the manager serves on MetricsBindAddress. A registry holds one server's metrics at a time: tests
	// that run several servers at once in one process give each its own.
	MetricsRegistry prometheus.Registerer
	// ClientCAFile, when set, holds the PEM CA bundle whose client certificates authenticate the API server:
	// every request to the webhook path must present one (--client-ca-file). ClientNames, when set, also
	// requires the certificate's CN or one of its DNS SANs to be one of them (--client-names).
	ClientCAFile string
	ClientNames  []string
	// ClientTokenFile, when set, holds a bearer token every request to the webhook path must carry
	// (--client-token-file). Both files are read once, at start.
	ClientTokenFile string
	// Log is the root of every logger of the server (the manager's, the webhook's, the controller's); the zero
	// Logger means controller-runtime's global one (logf.Log), which the serve command sets.
	Log logr.Logger
	// EnablePolicyMode runs the controller that generates the admission policies of templates in spec.mode
	// Policy or Auto. Off, every template is served by the webhook. It needs RBAC to write admission policies
	// cluster-wide, which is why it is opt-in.
	EnablePolicyMode bool
	// EnableRollingRestart runs the rolling-restart controller (with the status controller, on the leader):
	// templates with spec.updatePolicy.restart Rolling get the workloads of their outdated pods restarted, in
	// namespaces labelled sidecar.dev/restart=enabled. It needs RBAC to patch Deployments, StatefulSets and
	// DaemonSets. RestartProgressDeadline is how long a restarted workload may go without progress before the
	// restarts stop; zero means controller.DefaultProgressDeadline.
	EnableRollingRestart    bool
	RestartProgressDeadline time.Duration

	// TLSMode says where the serving certificate comes from: TLSModeExternal (the default: CertDir holds tls.crt
	// and tls.key, provided by cert-manager, a Secret volume or the caller) or TLSModeSelfManaged (the injector
	// creates and rotates its CA and certificate in the Secret TLSSecretName, writes them into CertDir and keeps
	// the caBundle of WebhookConfigName current; see internal/certs).
	TLSMode string
	// TLSSecretName, WebhookConfigName and ServiceName are required in self-managed mode; the certificate is
	// issued for <ServiceName>.<Namespace>.svc and <ServiceName>.<Namespace>.svc.cluster.local, plus
	// TLSExtraDNSNames (local development and tests: "localhost").
	TLSSecretName     string
	WebhookConfigName string
	ServiceName       string
	TLSExtraDNSNames  []string
}

// The values of Options.TLSMode (--tls-mode).
const (
	TLSModeExternal    = "external"
	TLSModeSelfManaged = "selfManaged"
)

// setupPolicyController registers the controller that generates the admission policies of Policy and Auto
// mode templates, when the cluster serves MutatingAdmissionPolicy v1 (Kubernetes 1.36 and later). On an older
// cluster every template is served by the webhook, whatever its mode.
func setupPolicyController(mgr manager.Manager, opts Options, templates *store.Templates) error {
	_, err := mgr.GetRESTMapper().RESTMapping(schema.GroupKind{Group: admissionregistrationv1.GroupName, Kind: "MutatingAdmissionPolicy"}, "v1")
	if meta.IsNoMatchError(err) {
		logf.Log.WithName("setup").Info("the cluster does not serve MutatingAdmissionPolicy v1: templates in Policy and Auto mode are served by the webhook")
		return nil
	}
	if err != nil {
		return fmt.Errorf("cannot tell whether the cluster serves MutatingAdmissionPolicy v1: %w", err)
	}
	pr := &controller.PolicyReconciler{Client: templates.Reader(mgr.GetClient()), Reader: mgr.GetAPIReader(), InjectorNamespace: opts.Namespace,
		OwnerWebhookConfig: opts.WebhookConfigName}
	if err := pr.SetupWithManager(mgr); err != nil {
		return fmt.Errorf("cannot set up the policy controller: %w", err)
	}
	return nil
}

// LeaderElectionID names the Lease the replicas share for the status controller.
const LeaderElectionID = "sidecar-injector.sidecar.dev"

// EventSource is the reporting controller of the Events the injector writes.
const EventSource = "sidecar-injector"

// NewScheme returns the scheme the server uses: the core Kubernetes types and sidecar.dev/v1alpha1.
func NewScheme() *runtime.Scheme {
	s := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(s))
	utilruntime.Must(v1alpha1.AddToScheme(s))
	return s
}

// Run serves the webhook until ctx is done. It returns nil after a clean shutdown, or an error that says what
// to change.
//
// /readyz turns healthy only once the webhook server accepts TLS connections and the informer caches
// (SidecarTemplates, their ControllerRevisions, namespace metadata) have delivered their initial lists to the stores; /healthz is a ping.
// Every replica serves admissions (active-active); with LeaderElect, only the template status controller waits
// for the lease.
func Run(ctx context.Context, opts Options) error {
	log := opts.Log
	if log.GetSink() == nil {
		log = logf.Log
	}
	if err := opts.complete(); err != nil {
		return err
	}
	auth, err := loadClientAuth(&opts)
	if err != nil {
		return err
	}
	restConfig, err := opts.restConfig()
	if err != nil {
		return err
	}

	whOpts := webhookServerOptions(opts)
	whOpts.TLSOpts = append(whOpts.TLSOpts, auth.configureTLS)
	whServer := newWebhookServer(whOpts, log.WithName("webhook-server"))
	mgr, err := manager.New(restConfig, manager.Options{
		Scheme:         NewScheme(),
		MapperProvider: newMapper,
		Cache: cache.Options{
			// Only the stores read the cache, through event handlers; fail instead of starting an informer
			// on the admission path should anyone Get a kind that is not watched.
			ReaderFailOnMissingInformer: true,
			DefaultTransform:            transform(cache.TransformStripManagedFields()),
			// Only the templates' revisions, not every DaemonSet's and StatefulSet's.
			ByObject: map[client.Object]cache.ByObject{store.RevisionObject(): store.RevisionCache()},
		},
		Metrics:                metricsserver.Options{BindAddress: disabledIfEmpty(opts.MetricsBindAddress)},
		HealthProbeBindAddress: disabledIfEmpty(opts.HealthProbeBindAddress),
		// The webhook server is not a leader-election runnable: every replica serves admissions. Only the
		// status controller waits for the lease.
		LeaderElection:          opts.LeaderElect,
		LeaderElectionID:        LeaderElectionID,
		LeaderElectionNamespace: opts.Namespace,
		// Not the manager's WebhookServer: mgr.GetWebhookServer() adds it to the manager, which starts webhook
		// servers before anything else, i.e. before self-managed certificates exist. whServer is added below.
		//
		// Controller names are checked for uniqueness per process; Run may be called again in the same process
		// (tests restart the server), and each Run has its own manager, so the check would only get in the way.
		Controller: crconfig.Controller{SkipNameValidation: ptr.To(true)},
		Logger:     log,
	})
	if err != nil {
		return fmt.Errorf("cannot set up the server%s: %w", addrHint(err), err)
	}

	templates := store.NewTemplates(opts.Namespace)
	if opts.EnablePolicyMode {
		templates.EnablePolicyMode() // the webhook leaves the templates that the generated policies serve alone
	}
	namespaces := store.NewNamespaces()
	tplReg, err := templates.Register(ctx, mgr.GetCache())
	if err != nil {
		if meta.IsNoMatchError(err) {
			return fmt.Errorf("the SidecarTemplate API (sidecartemplates.sidecar.dev/v1alpha1) is not served by the cluster; install the CRD from charts/sidecar-injector or config/crd: %w", err)
		}
		return err
	}
	nsReg, err := namespaces.Register(ctx, mgr.GetCache())
	if err != nil {
		return err
	}
	revReg, err := templates.RegisterRevisions(ctx, mgr.GetCache())
	if err != nil {
		return err
	}

	recorder := events.NewRecorder(mgr.GetEventRecorder(EventSource))
	reg := opts.MetricsRegistry
	if reg == nil {
		reg = crmetrics.Registry
	}
	m, err := metrics.New(reg)
	if err != nil {
		return fmt.Errorf("%w (is another server running in this process? give each its own Options.MetricsRegistry)", err)
	}
	defer m.Unregister(reg) // a server run again in the same process registers its own set
	m.TrackCacheSync("templates", tplReg.HasSynced)
	m.TrackCacheSync("namespaces", nsReg.HasSynced)
	m.TrackCacheSync("revisions", revReg.HasSynced)
	whServer.onCertificate = m.SetServingCertificate // set before the manager starts the server
	admit, err := webhook.New(webhook.Config{
		Templates:         templates,
		Namespaces:        namespaces,
		InjectorNamespace: opts.Namespace,
		Metrics:           m,
		Recorder:          recorder,
		Limits:            opts.Limits,
		Images:            opts.Images,
		Log:               log.WithName("admission"),
	})
	if err != nil {
		return err
	}
	whServer.Register(webhook.Path, auth.wrap(admit, m, webhook.NewClientErrorLog(log.WithName("admission"))))
	if !opts.DisableController {
		// The controllers read templates through the store (Reader): the cache keeps them in its form only.
		reader := templates.Reader(mgr.GetClient())
		r := &controller.TemplateReconciler{Client: reader, InjectorNamespace: opts.Namespace, Templates: templates,
			Events: recorder, Metrics: m, Pods: controller.NewPodWatch(mgr)}
		if err := r.SetupWithManager(ctx, mgr); err != nil {
			return fmt.Errorf("cannot set up the template status controller: %w", err)
		}
		if opts.EnablePolicyMode {
			if err := setupPolicyController(mgr, opts, templates); err != nil {
				return err
			}
		}
		if opts.EnableRollingRestart {
			rr := &controller.RestartReconciler{Client: reader, APIReader: mgr.GetAPIReader(),
				InjectorNamespace: opts.Namespace, Templates: templates, Events: recorder, Deadline: opts.RestartProgressDeadline, Pods: r.Pods}
			if err := rr.SetupWithManager(mgr); err != nil {
				return fmt.Errorf("cannot set up the rolling-restart controller: %w", err)
			}
		}
	}

	if err := mgr.AddHealthzCheck("ping", healthz.Ping); err != nil {
		return fmt.Errorf("cannot add the liveness check: %w", err)
	}
	if opts.TLSMode == TLSModeSelfManaged {
		ready, err := certs.Setup(mgr, certs.Options{
			Namespace:         opts.Namespace,
			SecretName:        opts.TLSSecretName,
			ServiceName:       opts.ServiceName,
			WebhookConfigName: opts.WebhookConfigName,
			CertDir:           opts.CertDir,
			ExtraDNSNames:     opts.TLSExtraDNSNames,
		})
		if err != nil {
			return fmt.Errorf("self-managed TLS: %w", err)
		}
		// The webhook server starts once the certificate files are written and the caBundle is set.
		if err := mgr.Add(certs.ServeWhenReady(whServer, ready)); err != nil {
			return err
		}
	} else if err := mgr.Add(whServer); err != nil {
		return err
	}
	if err := mgr.AddReadyzCheck("webhook", whServer.StartedChecker()); err != nil {
		return fmt.Errorf("cannot add the readiness check: %w", err)
	}
	if err := mgr.AddReadyzCheck("informers", func(*http.Request) error {
		switch {
		case !tplReg.HasSynced():
			return errors.New("the SidecarTemplate cache has not synced yet")
		case !nsReg.HasSynced():
			return errors.New("the namespace cache has not synced yet")
		case !revReg.HasSynced():
			// Without them a pod with an earlier revision's sidecar would be taken for a conflict.
			return errors.New("the template revision (ControllerRevision) cache has not synced yet")
		}
		return nil
	}); err != nil {
		return fmt.Errorf("cannot add the readiness check: %w", err)
	}

	log.WithName("server").Info("starting", "namespace", opts.Namespace, "webhookHost", opts.WebhookHost, "webhookPort", opts.WebhookPort,
		"certDir", opts.CertDir, "http2", opts.EnableHTTP2, "metrics", opts.MetricsBindAddress, "probes", opts.HealthProbeBindAddress)
	if err := mgr.Start(ctx); err != nil {
		return fmt.Errorf("the server stopped%s: %w", addrHint(err), err)
	}
	return nil
}

// webhookServerOptions configures the webhook server (newWebhookServer): TLS 1.2 at least with ECDHE+AEAD
// suites only, the certificate from CertDir (watched and reloaded by controller-runtime's certwatcher), and
// HTTP/1.1 only unless EnableHTTP2.
func webhookServerOptions(opts Options) crwebhook.Options {
	enableHTTP2 := opts.EnableHTTP2
	return crwebhook.Options{
		Host:     opts.WebhookHost,
		Port:     opts.WebhookPort,
		CertDir:  opts.CertDir,
		CertName: CertName,
		KeyName:  KeyName,
		TLSOpts: []func(*tls.Config){func(c *tls.Config) {
			c.MinVersion = tls.VersionTLS12
			c.CipherSuites = cipherSuites
			if !enableHTTP2 {
				c.NextProtos = []string{"http/1.1"}
			}
		}},
	}
}

// complete fills defaults and checks what can be checked before connecting to anything.
func (o *Options) complete() error {
	if o.Namespace == "" {
		o.Namespace = os.Getenv(PodNamespaceEnv)
	}
	if o.Namespace == "" {
		return fmt.Errorf("the injector's namespace is not set: set --namespace, or the %s environment variable (downward API: fieldRef metadata.namespace)", PodNamespaceEnv)
	}
	if o.WebhookPort == 0 {
		o.WebhookPort = DefaultWebhookPort
	}
	if o.WebhookPort < 1 || o.WebhookPort > 65535 {
		return fmt.Errorf("--webhook-port %d is not a TCP port: use 1-65535", o.WebhookPort)
	}
	if o.CertDir == "" {
		o.CertDir = filepath.Join(os.TempDir(), "k8s-webhook-server", "serving-certs")
	}
	switch o.TLSMode {
	case "", TLSModeExternal:
		o.TLSMode = TLSModeExternal
	case TLSModeSelfManaged:
		var missing []string
		for flag, v := range map[string]string{"--tls-secret-name": o.TLSSecretName, "--webhook-config-name": o.WebhookConfigName, "--service-name": o.ServiceName} {
			if v == "" {
				missing = append(missing, flag)
			}
		}
		if len(missing) > 0 {
			sort.Strings(missing)
			return fmt.Errorf("--tls-mode=%s needs %s", TLSModeSelfManaged, strings.Join(missing, ", "))
		}
		return nil // the certificate does not exist yet: the injector creates it
	default:
		return fmt.Errorf("--tls-mode %q: use %s or %s", o.TLSMode, TLSModeExternal, TLSModeSelfManaged)
	}
	// The webhook server would fail on these too, but later and with a bare file error.
	certFile, keyFile := filepath.Join(o.CertDir, CertName), filepath.Join(o.CertDir, KeyName)
	if _, err := tls.LoadX509KeyPair(certFile, keyFile); err != nil {
		return fmt.Errorf("cannot load the webhook's serving certificate from --cert-dir %q (it must hold %s and %s, PEM-encoded, matching): %w",
			o.CertDir, CertName, KeyName, err)
	}
	return nil
}

// restConfig returns the API server connection to use.
// transform is the cache's transform: store.TemplateTransform for SidecarTemplates (the cache keeps each in the
// store's compact form, store.StoredTemplate: a typed copy of every template was most of the injector's memory
// at scale; the controllers read them through the store), others for everything else. Not a per-object
// transform (cache.Options.ByObject): that asks the API server for a REST mapping when the manager is made.
func transform(others toolscache.TransformFunc) toolscache.TransformFunc {
	return func(obj any) (any, error) {
		if _, ok := obj.(*v1alpha1.SidecarTemplate); ok {
			return store.TemplateTransform(obj)
		}
		return others(obj)
	}
}

func (o *Options) restConfig() (*rest.Config, error) {
	if o.RestConfig != nil {
		return o.RestConfig, nil
	}
	if o.Kubeconfig != "" {
		cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(
			&clientcmd.ClientConfigLoadingRules{ExplicitPath: o.Kubeconfig}, &clientcmd.ConfigOverrides{}).ClientConfig()
		if err != nil {
			return nil, fmt.Errorf("cannot use --kubeconfig %q: %w", o.Kubeconfig, err)
		}
		if cfg.QPS == 0 {
			cfg.QPS = -1 // as controller-runtime's loader: rely on API priority and fairness
		}
		return cfg, nil
	}
	cfg, err := config.GetConfig()
	if err != nil {
		return nil, fmt.Errorf("cannot find the Kubernetes API server: run in a cluster, or set --kubeconfig or $KUBECONFIG: %w", err)
	}
	return cfg, nil
}

// addrHint says which flags to change when err is a listen address already in use.
func addrHint(err error) string {
	if errors.Is(err, syscall.EADDRINUSE) {
		return " (an address is already in use: change --webhook-port, --metrics-bind-address or --health-probe-bind-address)"
	}
	return ""
}

func disabledIfEmpty(addr string) string {
	if addr == "" {
		return "0"
	}
	return addr
}
