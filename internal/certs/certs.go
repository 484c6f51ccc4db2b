// Package certs gives the injector self-managed TLS: it creates and rotates its own CA and serving certificate in
// one Secret, keeps the caBundle of its MutatingWebhookConfiguration current, and writes the serving certificate
// into the webhook server's certificate directory. The rotation itself is github.com/open-policy-agent/cert-controller
// (pkg/rotator), the library Gatekeeper uses; this package wires it into a controller-runtime manager and adds what
// the library leaves out:
//
//   - the Secret is created (empty) when it does not exist: the rotator only updates an existing Secret. The Helm
//     chart renders the empty Secret itself, so that the injector needs no `create` permission on Secrets;
//   - the certificate and key are written to CertDir from the Secret (no kubelet Secret-volume sync delay, and the
//     directory can be an emptyDir on a read-only root filesystem); the rotator waits for those files before it
//     reports ready.
//
// What the injector needs from the API server in this mode (the chart's RBAC grants exactly this):
//   - Secrets in Namespace: get/update/patch on SecretName (resourceNames), and list/watch on Secrets of the
//     namespace: the rotator reads the Secret through an informer over the whole namespace, which Kubernetes RBAC
//     cannot narrow to one name. Install the injector in a namespace of its own.
//   - MutatingWebhookConfigurations: get/update/patch on WebhookConfigName (resourceNames), list/watch (the
//     rotator's informer; cluster-scoped, not narrowable either).
package certs

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/open-policy-agent/cert-controller/pkg/rotator"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/webhook"
)

// Names of the files written to CertDir (what controller-runtime's webhook server reads by default) and of the
// keys of the Secret (the rotator's layout: tls.crt, tls.key, ca.crt, ca.key).
const (
	CertFile = "tls.crt"
	KeyFile  = "tls.key"
	CAFile   = "ca.crt"
)

// Defaults of Options.
const (
	DefaultControllerName = "sidecar-injector-cert-rotator"
	DefaultCAName         = "sidecar-injector-ca"
	DefaultCAOrganization = "sidecar-injector"
	DefaultFieldOwner     = "sidecar-injector"
)

// Options configures Setup. Namespace, SecretName, ServiceName, WebhookConfigName and CertDir are required.
type Options struct {
	// Namespace is the injector's namespace: the Secret's and the Service's.
	Namespace string
	// SecretName is the Secret that holds the CA (ca.crt, ca.key) and the serving certificate (tls.crt, tls.key).
	SecretName string
	// ServiceName is the Service the API server calls; the certificate is issued for <service>.<ns>.svc and
	// <service>.<ns>.svc.cluster.local.
	ServiceName string
	// WebhookConfigName is the MutatingWebhookConfiguration whose webhooks get the CA as caBundle.
	WebhookConfigName string
	// CertDir is the webhook server's certificate directory; tls.crt, tls.key and ca.crt are written there.
	CertDir string

	// ExtraDNSNames are added to the serving certificate (tests use "localhost").
	ExtraDNSNames []string
	// CAName and CAOrganization name the generated CA; defaults DefaultCAName, DefaultCAOrganization.
	CAName         string
	CAOrganization string
	// CAValidity and CertValidity are the lifetimes of the CA and of the serving certificate; both are renewed
	// RenewBefore their end, checked every CheckInterval. Zero means the library's defaults (10 years, 1 year,
	// 90 days, 12 hours).
	CAValidity    time.Duration
	CertValidity  time.Duration
	RenewBefore   time.Duration
	CheckInterval time.Duration
	// ControllerName names the rotator's controller; controller names must be unique in a process. Default
	// DefaultControllerName.
	ControllerName string
	// FieldOwner is the field manager of the caBundle updates; default DefaultFieldOwner.
	FieldOwner string
}

// DNSNames returns the names the serving certificate is issued for, the first being the one it is checked against.
func (o Options) DNSNames() []string {
	names := []string{
		fmt.Sprintf("%s.%s.svc", o.ServiceName, o.Namespace),
		fmt.Sprintf("%s.%s.svc.cluster.local", o.ServiceName, o.Namespace),
	}
	return append(names, o.ExtraDNSNames...)
}

func (o *Options) validate() error {
	var missing []string
	for _, f := range []struct{ name, value string }{
		{"Namespace", o.Namespace}, {"SecretName", o.SecretName}, {"ServiceName", o.ServiceName},
		{"WebhookConfigName", o.WebhookConfigName}, {"CertDir", o.CertDir},
	} {
		if f.value == "" {
			missing = append(missing, f.name)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("certs: missing options %v", missing)
	}
	if o.CAName == "" {
		o.CAName = DefaultCAName
	}
	if o.CAOrganization == "" {
		o.CAOrganization = DefaultCAOrganization
	}
	if o.ControllerName == "" {
		o.ControllerName = DefaultControllerName
	}
	if o.FieldOwner == "" {
		o.FieldOwner = DefaultFieldOwner
	}
	return nil
}

// Setup wires self-managed TLS into mgr, before mgr is started. It makes sure the Secret exists (creating it empty
// when it does not; this needs the API server now), then adds to the manager the rotator and a writer of the
// certificate files. The returned channel is closed once the certificate files are in CertDir and the caBundle
// was written: only then may the webhook server start (see ServeWhenReady).
func Setup(mgr manager.Manager, opts Options) (ready <-chan struct{}, err error) {
	if mgr == nil {
		return nil, errors.New("certs: nil manager")
	}
	if err := opts.validate(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(opts.CertDir, 0o700); err != nil {
		return nil, fmt.Errorf("certs: certificate directory: %w", err)
	}
	if err := ensureSecret(mgr, opts); err != nil {
		return nil, err
	}

	isReady := make(chan struct{})
	names := opts.DNSNames()
	cr := &rotator.CertRotator{
		SecretKey:      types.NamespacedName{Namespace: opts.Namespace, Name: opts.SecretName},
		CertDir:        opts.CertDir,
		CertName:       CertFile,
		KeyName:        KeyFile,
		CAName:         opts.CAName,
		CAOrganization: opts.CAOrganization,
		DNSName:        names[0],
		ExtraDNSNames:  names[1:],
		IsReady:        isReady,
		Webhooks:       []rotator.WebhookInfo{{Name: opts.WebhookConfigName, Type: rotator.Mutating}},
		FieldOwner:     opts.FieldOwner,
		// Every replica serves, so every replica needs the files: no leader election for the rotator.
		RequireLeaderElection: false,
		// Inject the caBundle only once this process has the files it will serve.
		EnableReadinessCheck:   true,
		CaCertDuration:         opts.CAValidity,
		ServerCertDuration:     opts.CertValidity,
		LookaheadInterval:      opts.RenewBefore,
		RotationCheckFrequency: opts.CheckInterval,
		ControllerName:         opts.ControllerName,
	}
	if err := rotator.AddRotator(mgr, cr); err != nil {
		return nil, fmt.Errorf("certs: add cert rotator: %w", err)
	}
	if err := addFileWriter(mgr, opts); err != nil {
		return nil, err
	}
	return isReady, nil
}

// ensureSecret creates the empty Secret when it does not exist. It reads it by name (get on that name is all it
// needs when the Secret exists, as with the Helm chart, which renders it).
func ensureSecret(mgr manager.Manager, opts Options) error {
	c, err := client.New(mgr.GetConfig(), client.Options{Scheme: mgr.GetScheme(), Mapper: mgr.GetRESTMapper()})
	if err != nil {
		return fmt.Errorf("certs: client: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	key := types.NamespacedName{Namespace: opts.Namespace, Name: opts.SecretName}
	err = c.Get(ctx, key, &corev1.Secret{})
	if err == nil {
		return nil
	}
	if !apierrors.IsNotFound(err) {
		return fmt.Errorf("certs: read Secret %s: %w", key, err)
	}
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: opts.Namespace,
			Name:      opts.SecretName,
			Labels:    map[string]string{"app.kubernetes.io/managed-by": "sidecar-injector"},
		},
		Type: corev1.SecretTypeOpaque,
	}
	if err := c.Create(ctx, secret, client.FieldOwner(opts.FieldOwner)); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("certs: Secret %s does not exist and cannot be created (create it empty, or grant create on secrets): %w", key, err)
	}
	logf.Log.WithName("certs").Info("created the TLS Secret", "secret", key.String())
	return nil
}

// addFileWriter adds an informer on the one Secret (a list/watch with a metadata.name field selector, which RBAC
// authorizes through resourceNames) that writes tls.crt, tls.key and ca.crt into CertDir whenever they change.
func addFileWriter(mgr manager.Manager, opts Options) error {
	c, err := cache.New(mgr.GetConfig(), cache.Options{
		Scheme:               mgr.GetScheme(),
		Mapper:               mgr.GetRESTMapper(),
		DefaultNamespaces:    map[string]cache.Config{opts.Namespace: {}},
		DefaultFieldSelector: fields.OneTermEqualSelector("metadata.name", opts.SecretName),
	})
	if err != nil {
		return fmt.Errorf("certs: secret cache: %w", err)
	}
	w := &fileWriter{dir: opts.CertDir, name: opts.SecretName}
	inf, err := c.GetInformer(context.Background(), &corev1.Secret{})
	if err != nil {
		return fmt.Errorf("certs: secret informer: %w", err)
	}
	if _, err := inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc:    w.onSecret,
		UpdateFunc: func(_, obj any) { w.onSecret(obj) },
	}); err != nil {
		return fmt.Errorf("certs: secret event handler: %w", err)
	}
	// Every replica serves, so every replica writes the files, leader or not.
	return mgr.Add(everyReplica(c.Start))
}

// everyReplica is a manager runnable that runs on every replica: the manager runs a runnable that does not say
// otherwise (manager.RunnableFunc included) only on the leader, and a replica that is not the leader would then
// never get its certificate files nor serve.
type everyReplica func(ctx context.Context) error

func (r everyReplica) Start(ctx context.Context) error { return r(ctx) }

// NeedLeaderElection is false: see everyReplica.
func (everyReplica) NeedLeaderElection() bool { return false }

// fileWriter writes the serving certificate files from the Secret.
type fileWriter struct {
	dir, name string
	mu        sync.Mutex
}

func (w *fileWriter) onSecret(obj any) {
	s, ok := obj.(*corev1.Secret)
	if !ok || s.Name != w.name {
		return
	}
	if err := w.write(s.Data); err != nil {
		logf.Log.WithName("certs").Error(err, "cannot write the serving certificate", "dir", w.dir)
	}
}

// write writes the files when the Secret holds a matching certificate and key and they differ from the files.
// The key is written before the certificate (controller-runtime's certificate watcher reloads on either); each
// file is replaced atomically.
func (w *fileWriter) write(data map[string][]byte) error {
	crt, key := data[CertFile], data[KeyFile]
	if len(crt) == 0 || len(key) == 0 {
		return nil // not issued yet
	}
	if _, err := tls.X509KeyPair(crt, key); err != nil {
		return fmt.Errorf("secret %s: %s and %s do not form a key pair: %w", w.name, CertFile, KeyFile, err)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	files := []struct {
		name string
		data []byte
	}{{KeyFile, key}, {CertFile, crt}, {CAFile, data[CAFile]}}
	for _, f := range files {
		if len(f.data) == 0 {
			continue
		}
		path := filepath.Join(w.dir, f.name)
		if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, f.data) {
			continue
		}
		if err := writeAtomic(path, f.data); err != nil {
			return err
		}
	}
	logf.Log.WithName("certs").Info("serving certificate written", "dir", w.dir)
	return nil
}

func writeAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // no-op after the rename
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// ServeWhenReady returns a manager runnable that starts srv once ready is closed (or returns when ctx ends first).
// Add it with mgr.Add instead of registering srv as the manager's webhook server: controller-runtime's webhook
// server fails to start when the certificate files are not there yet. Pair it with
// mgr.AddReadyzCheck("webhook", srv.StartedChecker()) so that the pod turns ready only once it serves.
// It runs on every replica, not only on the leader.
func ServeWhenReady(srv webhook.Server, ready <-chan struct{}) manager.Runnable {
	return everyReplica(func(ctx context.Context) error {
		select {
		case <-ready:
		case <-ctx.Done():
			return nil
		}
		logf.Log.WithName("certs").Info("certificates ready; starting the webhook server")
		return srv.Start(ctx)
	})
}
