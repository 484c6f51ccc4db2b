package cli

import (
	goflag "flag"
	"math"
	"os"

	"github.com/KimMachineGun/automemlimit/memlimit"
	"github.com/go-logr/logr"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"k8s.io/klog/v2"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/sidecar-dev/sidecar-injector/internal/api/v1alpha1"
	"github.com/sidecar-dev/sidecar-injector/internal/controller"
	"github.com/sidecar-dev/sidecar-injector/internal/inject"
	"github.com/sidecar-dev/sidecar-injector/internal/server"
	"github.com/sidecar-dev/sidecar-injector/internal/webhook"
)

// memoryLimitRatio is the share of the container's memory limit given to the Go runtime as GOMEMLIMIT; the
// rest is for what the runtime does not count (the binary's pages, C allocations) and headroom.
const memoryLimitRatio = 0.9

// NewServeCommand returns the `serve` command: the admission webhook server.
func NewServeCommand() *cobra.Command {
	opts := server.Options{}
	zapOpts := zap.Options{}
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Serve the mutating admission webhook (" + webhook.Path + ")",
		Long: "Serve the mutating admission webhook on --webhook-port over TLS, with the certificate and key read " +
			"from --cert-dir (tls.crt, tls.key; reloaded when they change). /healthz and /readyz are served on " +
			"--health-probe-bind-address, Prometheus metrics on --metrics-bind-address.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			logger := zap.New(zap.UseFlagOptions(&zapOpts))
			ctrllog.SetLogger(logger)
			klog.SetLogger(logger)
			setMemoryLimit(logger, memlimit.FromCgroup)
			return server.Run(cmd.Context(), opts)
		},
	}
	f := cmd.Flags()
	f.StringVar(&opts.Kubeconfig, "kubeconfig", "",
		"path of a kubeconfig file; empty means $KUBECONFIG, then the in-cluster configuration, then ~/.kube/config")
	f.StringVar(&opts.CertDir, "cert-dir", "",
		"directory holding the webhook's serving certificate, "+server.CertName+" and "+server.KeyName+
			" (default $TMPDIR/k8s-webhook-server/serving-certs)")
	f.StringVar(&opts.WebhookHost, "webhook-host", "", "address the webhook server listens on; empty means all addresses")
	f.IntVar(&opts.WebhookPort, "webhook-port", server.DefaultWebhookPort, "port of the webhook server")
	f.StringVar(&opts.MetricsBindAddress, "metrics-bind-address", ":8080",
		`address of the Prometheus metrics endpoint; "0" disables it`)
	f.StringVar(&opts.HealthProbeBindAddress, "health-probe-bind-address", ":8081",
		`address of the /healthz and /readyz probes; "0" disables them`)
	f.StringVar(&opts.Namespace, "namespace", os.Getenv(server.PodNamespaceEnv),
		"the injector's own namespace: its SidecarTemplates are cluster-wide and its pods are never injected (default $"+
			server.PodNamespaceEnv+")")
	f.BoolVar(&opts.LeaderElect, "leader-elect", false,
		"run the template status controller on one replica at a time (a Lease in --namespace); the webhook serves on every replica")
	f.BoolVar(&opts.EnablePolicyMode, "enable-policy-mode", false,
		"generate MutatingAdmissionPolicies for templates in spec.mode Policy or Auto (needs RBAC to write admission policies; off: the webhook serves every template)")
	f.BoolVar(&opts.EnableRollingRestart, "enable-rolling-restart", false,
		"restart the Deployments, StatefulSets and DaemonSets whose pods run an outdated version of a template with spec.updatePolicy.restart Rolling, in namespaces labelled "+
			v1alpha1.LabelRestart+"="+v1alpha1.LabelRestartEnabled+" (needs RBAC to patch them)")
	f.DurationVar(&opts.RestartProgressDeadline, "restart-progress-deadline", controller.DefaultProgressDeadline,
		"how long a restarted workload may go without progress (a pod created or becoming Ready) before the rolling restart of its template stops and says so in the RollingRestart condition")
	f.BoolVar(&opts.DisableController, "disable-controller", false,
		"do not run the template status controller (Ready conditions, drift counts, template Events)")
	f.StringVar(&opts.TLSMode, "tls-mode", server.TLSModeExternal, `where the serving certificate comes from: "external" (--cert-dir holds it: cert-manager, a mounted Secret) or "selfManaged" (the injector creates and rotates it in --tls-secret-name and keeps the caBundle of --webhook-config-name current)`)
	f.StringVar(&opts.TLSSecretName, "tls-secret-name", "", "selfManaged: the Secret in --namespace holding the CA and serving certificate")
	f.StringVar(&opts.WebhookConfigName, "webhook-config-name", "", "selfManaged: the MutatingWebhookConfiguration whose caBundle is kept current; it also owns the admission policies generated for Policy mode, so that deleting it deletes them")
	f.StringVar(&opts.ServiceName, "service-name", "", "selfManaged: the Service the API server calls; the certificate is for <service>.<namespace>.svc")
	f.StringSliceVar(&opts.TLSExtraDNSNames, "tls-extra-dns-names", nil, "selfManaged: more DNS names for the serving certificate")
	addLimitFlags(f, &opts.Limits)
	addImageFlags(f, &opts.Images)
	f.BoolVar(&opts.EnableHTTP2, "enable-http2", false,
		"let clients use HTTP/2 on the webhook server (off by default: HTTP/2 rapid reset, CVE-2023-44487)")

	f.StringVar(&opts.ClientCAFile, "client-ca-file", "",
		"PEM CA bundle: require every webhook request to present a client certificate it issued (the API server's, set in its WebhookAdmissionConfiguration kubeConfigFile)")
	f.StringSliceVar(&opts.ClientNames, "client-names", nil,
		"with --client-ca-file: the client certificate's CN or one of its DNS names must be one of these")
	f.StringVar(&opts.ClientTokenFile, "client-token-file", "",
		"file holding a bearer token every webhook request must carry (the API server's, set in its WebhookAdmissionConfiguration kubeConfigFile)")

	zfs := goflag.NewFlagSet("zap", goflag.ContinueOnError)
	zapOpts.BindFlags(zfs)
	f.AddGoFlagSet(zfs)
	return cmd
}

// setMemoryLimit sets GOMEMLIMIT to memoryLimitRatio of the limit provider reads (the container's cgroup), unless
// GOMEMLIMIT is set or AUTOMEMLIMIT=off. The garbage collector runs at Go's default pace (GOGC=100: the heap
// may grow to twice what is live); near the limit it collects harder instead of the container being
// OOM-killed. Without a limit, nothing changes.
func setMemoryLimit(log logr.Logger, provider memlimit.Provider) {
	limit, err := memlimit.Set(memlimit.WithRatio(memoryLimitRatio), memlimit.WithProvider(provider))
	switch {
	case err != nil:
		log.Info("GOMEMLIMIT not set from the container's memory limit", "reason", err.Error())
	case limit != math.MaxInt64:
		log.Info("GOMEMLIMIT in effect", "bytes", limit)
	}
}

// addImageFlags binds what the platform declares its image policy may do to a sidecar's image (README
// "Security"): by default nothing, and a pod's container counts as a template's sidecar only with exactly the
// rendered image.
func addImageFlags(f *pflag.FlagSet, t *inject.ImageTolerance) {
	f.StringSliceVar(&t.Mirrors, "image-mirrors", nil,
		"registry prefixes that may replace a sidecar image's registry (a mirror or pull-through proxy the platform rewrites images to, e.g. mirror.example/dockerhub); a pod's sidecar under any other registry is a conflict")
	f.BoolVar(&t.DigestPinning, "allow-digest-pinning", false,
		"let a sidecar image the template names by tag be pinned to a digest (repo@sha256:... or repo:tag@sha256:...) by the platform's image policy; off: a digest the template did not render is a conflict")
}

// addLimitFlags binds the limits of one admission (inject.Limits, README "Limits") to --max-* flags; each flag's
// name is the one a denial names.
func addLimitFlags(f *pflag.FlagSet, l *inject.Limits) {
	d := inject.DefaultLimits
	f.IntVar(&l.MaxRequestedNames, "max-requested-names", d.MaxRequestedNames,
		"most distinct template names a pod's "+v1alpha1.AnnotationInject+" may list; more denies the pod")
	f.IntVar(&l.MaxNameLength, "max-name-length", d.MaxNameLength,
		"longest name (bytes) "+v1alpha1.AnnotationInject+" may list; longer denies the pod")
	f.IntVar(&l.MaxRenderedBytes, "max-rendered-bytes", d.MaxRenderedBytes,
		"most bytes one template's per-pod values ({{ pod.* }}, {{ params.* }}) may copy into one pod; more fails the template under its failurePolicy")
	f.IntVar(&l.MaxPatchBytes, "max-patch-bytes", d.MaxPatchBytes,
		"largest patch (bytes, about) one admission may produce; the template that would exceed it fails under its failurePolicy")
}
