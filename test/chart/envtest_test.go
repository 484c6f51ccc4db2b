package chart

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/sidecar-dev/sidecar-injector/internal/certs"
	"github.com/sidecar-dev/sidecar-injector/internal/testenv"
)

var (
	envOnce sync.Once
	env     *envtest.Environment
	envCfg  *rest.Config
	envErr  error
)

func TestMain(m *testing.M) {
	logf.SetLogger(zap.New(zap.WriteTo(io.Discard)))
	if os.Getenv("CHART_TEST_VERBOSE") != "" {
		logf.SetLogger(zap.New(zap.WriteTo(os.Stderr), zap.UseDevMode(true)))
	}
	code := m.Run()
	if env != nil {
		if err := env.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "stop envtest: %v\n", err)
		}
	}
	os.Exit(code)
}

// apiServer starts (once per test binary) a kube-apiserver and etcd from $KUBEBUILDER_ASSETS or <repo>/bin and
// returns an admin client. Missing binaries skip the test, or fail it under CI (testenv.Require).
func apiServer(t *testing.T) (client.Client, *rest.Config) {
	t.Helper()
	testenv.RequireHelm(t) // every envtest story renders the chart
	assets := testenv.Require(t)
	envOnce.Do(func() {
		env = &envtest.Environment{BinaryAssetsDirectory: assets}
		envCfg, envErr = env.Start()
	})
	if envErr != nil {
		t.Fatalf("start envtest: %v", envErr)
	}
	c, err := client.New(envCfg, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	return c, envCfg
}

// ownAPIServer starts a kube-apiserver and etcd for this test alone, for the stories that run the real helm install
// (it creates a CRD and a webhook configuration for every pod, which the tests sharing apiServer must not see). It
// returns an admin client and a kubeconfig file for helm; the server is stopped when the test ends.
func ownAPIServer(t *testing.T) (client.Client, string) {
	t.Helper()
	testenv.RequireHelm(t)
	own := &envtest.Environment{BinaryAssetsDirectory: testenv.Require(t)}
	cfg, err := own.Start()
	if err != nil {
		t.Fatalf("start envtest: %v", err)
	}
	t.Cleanup(func() {
		if err := own.Stop(); err != nil {
			t.Errorf("stop envtest: %v", err)
		}
	})
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	user, err := own.AddUser(envtest.User{Name: "helm", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	if kc, err := user.KubeConfig(); err != nil {
		t.Fatal(err)
	} else if err := os.WriteFile(kubeconfig, kc, 0o600); err != nil {
		t.Fatal(err)
	}
	return c, kubeconfig
}

func ctxFor(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// installCRDs creates the CRDs the chart renders (templates/crds.yaml) for real and waits until they serve.
func installCRDs(t *testing.T, ctx context.Context, c client.Client) {
	t.Helper()
	for _, crd := range all[*apiextensionsv1.CustomResourceDefinition](render(t)) {
		if err := c.Create(ctx, crd); err != nil && !apierrors.IsAlreadyExists(err) {
			// Reported, and the other objects are still checked: they do not depend on the CRD.
			t.Errorf("the API server rejects CRD %s (files/crds/, copied from config/crd/bases): %v", crd.Name, err)
			continue
		}
		testenv.Eventually(t, 30*time.Second, "CRD "+crd.Name+" established", func() error {
			var got apiextensionsv1.CustomResourceDefinition
			if err := c.Get(ctx, types.NamespacedName{Name: crd.Name}, &got); err != nil {
				return err
			}
			for _, cond := range got.Status.Conditions {
				if cond.Type == apiextensionsv1.Established && cond.Status == apiextensionsv1.ConditionTrue {
					return nil
				}
			}
			return fmt.Errorf("conditions %+v", got.Status.Conditions)
		})
	}
}

func ensureNamespace(t *testing.T, ctx context.Context, c client.Client, name string, labels map[string]string) {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}
	if err := c.Create(ctx, ns); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatalf("create namespace %s: %v", name, err)
	}
}

// TestRenderedObjectsAcceptedByAPIServer: a real kube-apiserver accepts every object the chart renders, in every
// TLS mode (server-side dry run after the CRDs are installed for real). cert-manager's kinds are the only ones
// left out: the test API server does not serve them.
func TestRenderedObjectsAcceptedByAPIServer(t *testing.T) {
	c, _ := apiServer(t)
	ctx := ctxFor(t, 2*time.Minute)
	installCRDs(t, ctx, c)
	ensureNamespace(t, ctx, c, releaseNS, nil)

	// The chart's own first SidecarTemplate (NOTES.txt) is valid too.
	for _, mode := range modeNames() {
		t.Run(mode, func(t *testing.T) {
			r := renderWithTests(t, tlsModes[mode]...)
			var skipped []string
			for _, o := range r.objects {
				kind := o.GetObjectKind().GroupVersionKind()
				if _, isCRD := o.(*apiextensionsv1.CustomResourceDefinition); isCRD {
					continue // created for real by installCRDs above, from the same rendering
				}
				if _, ok := o.(*unstructured.Unstructured); ok {
					if kind.Group != "cert-manager.io" {
						t.Errorf("%s %s: unexpected kind outside k8s.io/api", kind, o.GetName())
					}
					skipped = append(skipped, kind.Kind+"/"+o.GetName())
					continue
				}
				if err := c.Create(ctx, o.DeepCopyObject().(client.Object), client.DryRunAll); err != nil {
					t.Errorf("API server rejects %s %s: %v", kind.Kind, o.GetName(), err)
				}
			}
			sort.Strings(skipped)
			if mode == "certManager" {
				want := []string{"Certificate/" + fullname + "-ca", "Certificate/" + fullname + "-serving", "Issuer/" + fullname + "-ca", "Issuer/" + fullname + "-selfsigned"}
				if !slices.Equal(skipped, want) {
					t.Errorf("cert-manager objects = %v, want %v", skipped, want)
				}
			} else if len(skipped) > 0 {
				t.Errorf("objects not checked: %v", skipped)
			}
		})
	}
}

// admissionRecorder is an HTTPS admission webhook that allows everything and records which pods it was sent.
type admissionRecorder struct {
	srv  *httptest.Server
	mu   sync.Mutex
	seen map[string]bool
}

func newAdmissionRecorder(t *testing.T) *admissionRecorder {
	a := &admissionRecorder{seen: map[string]bool{}}
	a.srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var review admissionv1.AdmissionReview
		if err := json.NewDecoder(r.Body).Decode(&review); err != nil || review.Request == nil {
			http.Error(w, "bad review", http.StatusBadRequest)
			return
		}
		var pod corev1.Pod
		_ = json.Unmarshal(review.Request.Object.Raw, &pod)
		a.mu.Lock()
		a.seen[review.Request.Namespace+"/"+pod.Name] = true
		a.mu.Unlock()
		review.Response = &admissionv1.AdmissionResponse{UID: review.Request.UID, Allowed: true}
		review.Request = nil
		_ = json.NewEncoder(w).Encode(&review)
	}))
	t.Cleanup(a.srv.Close)
	return a
}

func (a *admissionRecorder) saw(key string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.seen[key]
}

func (a *admissionRecorder) caBundle() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: a.srv.Certificate().Raw})
}

// TestWebhookSelectionOnAPIServer: the rendered namespaceSelector and matchConditions, evaluated by a real
// kube-apiserver (CEL included). The rendered webhook is installed as it is, except that clientConfig points at a
// recording webhook; pods are created and the test asserts which ones the API server sent.
func TestWebhookSelectionOnAPIServer(t *testing.T) {
	c, _ := apiServer(t)
	ctx := ctxFor(t, 3*time.Minute)
	ensureNamespace(t, ctx, c, releaseNS, nil)

	type podCase struct {
		name, ns    string
		annotations map[string]string
		labels      map[string]string
	}
	cases := []struct {
		name     string
		args     []string
		sent     []string // pod names the webhook must see
		skipped  []string // pod names it must not see
		disabled bool
	}{
		{
			name:    "default",
			sent:    []string{"plain", "requested", "labelled", "opt-out-spaced"},
			skipped: []string{"opt-out", "opt-out-upper", "in-disabled-ns", "in-release-ns"},
		},
		{
			name:    "selector label keys",
			args:    []string{"--set", "matchConditions.selectorLabelKeys={team,app.kubernetes.io/part-of}"},
			sent:    []string{"requested", "labelled", "labelled-dotted", "opt-out-spaced"},
			skipped: []string{"plain", "other-label", "opt-out", "opt-out-upper", "in-disabled-ns", "in-release-ns"},
		},
		{
			name:    "matchConditions off",
			args:    []string{"--set", "matchConditions.enabled=false"},
			sent:    []string{"plain", "requested", "labelled", "opt-out", "opt-out-upper"},
			skipped: []string{"in-disabled-ns", "in-release-ns"},
		},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rec := newAdmissionRecorder(t)
			ns, off := fmt.Sprintf("sel-%d", i), fmt.Sprintf("sel-%d-off", i)
			ensureNamespace(t, ctx, c, ns, nil)
			ensureNamespace(t, ctx, c, off, map[string]string{"sidecar.dev/injection": "disabled"})

			cfg := one[*admissionregistrationv1.MutatingWebhookConfiguration](t, render(t, tc.args...))
			cfg.Name = fmt.Sprintf("selection-%d", i)
			url := rec.srv.URL + "/mutate-v1-pod"
			cfg.Webhooks[0].ClientConfig = admissionregistrationv1.WebhookClientConfig{URL: &url, CABundle: rec.caBundle()}
			if err := c.Create(ctx, cfg); err != nil {
				t.Fatalf("the API server rejects the rendered webhook configuration: %v", err)
			}
			t.Cleanup(func() { _ = c.Delete(context.Background(), cfg) })

			// Pods in the release namespace are shared by the cases: their names get the case's index.
			actual := func(p podCase) string {
				if p.ns == releaseNS {
					return fmt.Sprintf("%s-%d", p.name, i)
				}
				return p.name
			}
			create := func(p podCase) {
				t.Helper()
				pod := &corev1.Pod{
					ObjectMeta: metav1.ObjectMeta{Namespace: p.ns, Name: actual(p), Annotations: p.annotations, Labels: p.labels},
					Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "registry.example/app:1"}}},
				}
				if err := c.Create(ctx, pod); err != nil {
					t.Fatalf("create pod %s/%s: %v", p.ns, p.name, err)
				}
			}
			// The API server picks the configuration up asynchronously: wait until a requested pod is seen.
			for n := 0; ; n++ {
				name := fmt.Sprintf("warmup-%d", n)
				create(podCase{name: name, ns: ns, annotations: map[string]string{"sidecar.dev/inject": "x"}})
				if waitSeen(rec, ns+"/"+name, 500*time.Millisecond) {
					break
				}
				if n > 60 {
					t.Fatal("the webhook configuration never took effect")
				}
			}

			pods := []podCase{
				{name: "plain", ns: ns},
				{name: "requested", ns: ns, annotations: map[string]string{"sidecar.dev/inject": "log-shipper"}},
				{name: "opt-out", ns: ns, annotations: map[string]string{"sidecar.dev/inject": "false"}, labels: map[string]string{"team": "a"}},
				{name: "opt-out-upper", ns: ns, annotations: map[string]string{"sidecar.dev/inject": "FALSE"}},
				// The webhook trims spaces too; the CEL condition does, so it is not sent.
				{name: "opt-out-spaced", ns: ns, annotations: map[string]string{"sidecar.dev/inject": "false, x"}},
				{name: "labelled", ns: ns, labels: map[string]string{"team": "a"}},
				{name: "labelled-dotted", ns: ns, labels: map[string]string{"app.kubernetes.io/part-of": "shop"}},
				{name: "other-label", ns: ns, labels: map[string]string{"tier": "web"}},
				{name: "in-disabled-ns", ns: off, annotations: map[string]string{"sidecar.dev/inject": "log-shipper"}},
				{name: "in-release-ns", ns: releaseNS, annotations: map[string]string{"sidecar.dev/inject": "log-shipper"}},
			}
			for _, p := range pods {
				create(p)
			}
			key := func(name string) string {
				for _, p := range pods {
					if p.name == name {
						return p.ns + "/" + actual(p)
					}
				}
				t.Fatalf("no pod %s", name)
				return ""
			}
			for _, name := range tc.sent {
				if !rec.saw(key(name)) {
					t.Errorf("pod %s was not sent to the webhook", key(name))
				}
			}
			for _, name := range tc.skipped {
				if rec.saw(key(name)) {
					t.Errorf("pod %s was sent to the webhook; it should be skipped by the API server", key(name))
				}
			}
		})
	}
}

func waitSeen(rec *admissionRecorder, key string, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if rec.saw(key) {
			return true
		}
		time.Sleep(20 * time.Millisecond)
	}
	return rec.saw(key)
}

// TestSelfManagedTLSWithChartRBAC: the chart's RBAC is enough for self-managed TLS, and no more. The rendered
// ServiceAccount, RBAC, Secret and webhook configuration are installed for real; internal/certs then runs as that
// ServiceAccount (impersonated) and must fill the Secret and the caBundle, while the same identity is refused
// other Secrets, Secret creation and other webhook configurations.
func TestSelfManagedTLSWithChartRBAC(t *testing.T) {
	c, cfg := apiServer(t)
	ctx := ctxFor(t, 3*time.Minute)
	ensureNamespace(t, ctx, c, releaseNS, nil)
	r := render(t)
	for _, o := range r.objects {
		switch o.(type) {
		case *corev1.ServiceAccount, *corev1.Secret, *admissionregistrationv1.MutatingWebhookConfiguration:
		default:
			if o.GetObjectKind().GroupVersionKind().Group != "rbac.authorization.k8s.io" {
				continue
			}
		}
		obj := o.DeepCopyObject().(client.Object)
		if err := c.Create(ctx, obj); err != nil {
			t.Fatalf("create %T %s: %v", o, o.GetName(), err)
		}
		t.Cleanup(func() { _ = c.Delete(context.Background(), obj) })
	}
	// Objects the injector must not be able to touch.
	decoySecret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: releaseNS, Name: "someone-elses"}, StringData: map[string]string{"k": "v"}}
	decoyHook := &admissionregistrationv1.MutatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: "someone-elses"}}
	for _, o := range []client.Object{decoySecret, decoyHook} {
		if err := c.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Delete(context.Background(), o) })
	}

	sa := one[*corev1.ServiceAccount](t, r)
	saCfg := rest.CopyConfig(cfg)
	saCfg.Impersonate = rest.ImpersonationConfig{UserName: "system:serviceaccount:" + releaseNS + ":" + sa.Name}
	saClient, err := client.New(saCfg, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	forbidden := func(what string, err error) {
		t.Helper()
		if !apierrors.IsForbidden(err) {
			t.Errorf("%s as the injector: got %v, want Forbidden", what, err)
		}
	}
	forbidden("get another Secret", saClient.Get(ctx, client.ObjectKeyFromObject(decoySecret), &corev1.Secret{}))
	forbidden("create a Secret", saClient.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: releaseNS, Name: "new"}}))
	forbidden("list Secrets of another namespace", saClient.List(ctx, &corev1.SecretList{}, client.InNamespace("default")))
	forbidden("get another webhook configuration", saClient.Get(ctx, client.ObjectKeyFromObject(decoyHook), &admissionregistrationv1.MutatingWebhookConfiguration{}))
	forbidden("delete its own webhook configuration", saClient.Delete(ctx, &admissionregistrationv1.MutatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: fullname}}))

	mgr, err := manager.New(saCfg, manager.Options{Scheme: scheme, Metrics: metricsserver.Options{BindAddress: "0"}})
	if err != nil {
		t.Fatal(err)
	}
	certDir := t.TempDir()
	ready, err := certs.Setup(mgr, certs.Options{
		Namespace: releaseNS, SecretName: fullname + "-tls", ServiceName: fullname, WebhookConfigName: fullname,
		CertDir: certDir, ControllerName: "chart-rbac-cert-rotator",
	})
	if err != nil {
		t.Fatalf("certs.Setup as the injector's ServiceAccount: %v", err)
	}
	mctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- mgr.Start(mctx) }()
	defer func() {
		stop()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("manager: %v", err)
		}
	}()
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("manager stopped before the certificates were ready: %v", err)
	case <-time.After(90 * time.Second):
		t.Fatal("certificates not ready after 90s with the chart's RBAC (run with CHART_TEST_VERBOSE=1 for the rotator's log)")
	}
	var secret corev1.Secret
	if err := c.Get(ctx, types.NamespacedName{Namespace: releaseNS, Name: fullname + "-tls"}, &secret); err != nil {
		t.Fatal(err)
	}
	var hook admissionregistrationv1.MutatingWebhookConfiguration
	if err := c.Get(ctx, types.NamespacedName{Name: fullname}, &hook); err != nil {
		t.Fatal(err)
	}
	if len(secret.Data["ca.crt"]) == 0 || string(hook.Webhooks[0].ClientConfig.CABundle) != string(secret.Data["ca.crt"]) {
		t.Errorf("caBundle not set to the Secret's CA")
	}
	if _, err := os.Stat(filepath.Join(certDir, "tls.crt")); err != nil {
		t.Errorf("serving certificate not written: %v", err)
	}
}
