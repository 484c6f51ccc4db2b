package integration

import (
	"bufio"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	"github.com/sidecar-dev/sidecar-injector/internal/testenv"
)

// lateJoiner is the container the second webhook adds after ours.
const lateJoiner = "late-joiner"

// secondMutator is a minimal mutating webhook that adds the lateJoiner container to every pod that lacks it.
// It serves HTTPS with envtest's serving certificate (which the API server trusts through the CA bundle).
type secondMutator struct {
	calls atomic.Int32
	url   string
}

func (s *secondMutator) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.calls.Add(1)
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var review admissionv1.AdmissionReview
	if err := json.Unmarshal(body, &review); err != nil || review.Request == nil {
		http.Error(w, fmt.Sprintf("not an AdmissionReview: %v", err), http.StatusBadRequest)
		return
	}
	resp := &admissionv1.AdmissionResponse{UID: review.Request.UID, Allowed: true}
	var pod corev1.Pod
	if err := json.Unmarshal(review.Request.Object.Raw, &pod); err != nil {
		resp.Allowed = false
		resp.Result = &metav1.Status{Message: "second mutator: " + err.Error()}
	} else if findContainer(pod.Spec.Containers, lateJoiner) == nil {
		patch, _ := json.Marshal([]map[string]any{{
			"op": "add", "path": "/spec/containers/-",
			"value": corev1.Container{Name: lateJoiner, Image: "registry.example/late-joiner:1"},
		}})
		pt := admissionv1.PatchTypeJSONPatch
		resp.Patch, resp.PatchType = patch, &pt
	}
	review.Response, review.Request = resp, nil
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(&review)
}

// startSecondMutator serves a secondMutator on its own loopback port and registers it, for namespaces carrying
// nsLabel, in a MutatingWebhookConfiguration whose name sorts after ours (the API server calls webhook
// configurations in name order). It returns once the API server calls it.
func startSecondMutator(t *testing.T, ns, nsLabelKey, nsLabelValue string) *secondMutator {
	t.Helper()
	certDir := testEnv.WebhookInstallOptions.LocalServingCertDir
	cert, err := tls.LoadX509KeyPair(filepath.Join(certDir, "tls.crt"), filepath.Join(certDir, "tls.key"))
	if err != nil {
		t.Fatalf("envtest serving certificate: %v", err)
	}
	l, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatal(err)
	}
	m := &secondMutator{url: "https://" + l.Addr().String() + "/mutate"}
	hs := &http.Server{Handler: m, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = hs.Serve(l) }()
	t.Cleanup(func() { _ = hs.Close() })

	name := "zzz-integration-second-mutator"
	if name <= ours.Name {
		t.Fatalf("configuration %q does not sort after ours (%q)", name, ours.Name)
	}
	cfg := &admissionregistrationv1.MutatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Webhooks: []admissionregistrationv1.MutatingWebhook{{
			Name:                    "late-joiner.integration.sidecar.dev",
			AdmissionReviewVersions: []string{"v1"},
			ClientConfig:            admissionregistrationv1.WebhookClientConfig{URL: &m.url, CABundle: testEnv.WebhookInstallOptions.LocalServingCAData},
			Rules: []admissionregistrationv1.RuleWithOperations{{
				Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
				Rule:       admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}},
			}},
			NamespaceSelector:  &metav1.LabelSelector{MatchLabels: map[string]string{nsLabelKey: nsLabelValue}},
			FailurePolicy:      ptrTo(admissionregistrationv1.Fail),
			SideEffects:        ptrTo(admissionregistrationv1.SideEffectClassNone),
			ReinvocationPolicy: ptrTo(admissionregistrationv1.NeverReinvocationPolicy),
			TimeoutSeconds:     ptrTo[int32](5),
		}},
	}
	if err := k8s.Create(ctxFor(t), cfg); err != nil {
		t.Fatal(err)
	}
	deleteAfter(t, cfg)
	testenv.Eventually(t, cacheDeadline, "the API server calls the second webhook", func() error {
		got, err := tryCreatePod(t, newPod(ns, "probe-second-webhook"), true)
		if err != nil {
			return err
		}
		if findContainer(got.Spec.Containers, lateJoiner) == nil {
			return fmt.Errorf("dry-run pod has %v", containerNames(got.Spec.Containers))
		}
		return nil
	})
	return m
}

// webhookCalls returns how many times the API server has called the named webhook (all operations and
// outcomes), from its apiserver_admission_webhook_admission_duration_seconds histogram, or an error when the
// metric is not exposed.
func webhookCalls(t *testing.T, webhook string) (int, error) {
	t.Helper()
	return webhookCallsOn(t, restConfig, webhook)
}

// webhookCallsOn is webhookCalls for the API server at cfg.
func webhookCallsOn(t *testing.T, cfg *rest.Config, webhook string) (int, error) {
	t.Helper()
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return 0, err
	}
	resp, err := hc.Get(strings.TrimSuffix(cfg.Host, "/") + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("/metrics: %s", resp.Status)
	}
	re := regexp.MustCompile(`^apiserver_admission_webhook_admission_duration_seconds_count\{(.*)\} (\d+)$`)
	total, found := 0, false
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		m := re.FindStringSubmatch(sc.Text())
		if m == nil || !strings.Contains(m[1], `name="`+webhook+`"`) {
			continue
		}
		n, _ := strconv.Atoi(m[2])
		total, found = total+n, true
	}
	if !found {
		return 0, errors.New("metric apiserver_admission_webhook_admission_duration_seconds_count not found for " + webhook)
	}
	return total, sc.Err()
}

func TestReinvocationAfterAnotherWebhookAddsAContainerDuplicatesNothing(t *testing.T) {
	labelKey, labelValue := "integration.sidecar.dev/second-webhook", unique("on")
	ns := createNamespace(t, "reinvoke", map[string]string{labelKey: labelValue})
	createTemplate(t, ns, "log-shipper", logShipperSpec())
	waitUntilServed(t, ns, ns, "log-shipper")
	second := startSecondMutator(t, ns, labelKey, labelValue)

	var ourHook string
	for _, w := range ours.Webhooks {
		if w.ReinvocationPolicy != nil && *w.ReinvocationPolicy == admissionregistrationv1.IfNeededReinvocationPolicy {
			ourHook = w.Name
		}
	}
	before, metricErr := webhookCalls(t, ourHook)
	secondBefore := second.calls.Load()

	got := createPod(t, newPod(ns, "reinvoked", withInject("log-shipper")))

	if g, w := containerNames(got.Spec.Containers), []string{"app", "log-shipper", lateJoiner}; !slices.Equal(g, w) {
		t.Errorf("containers = %v, want %v (ours, then the second webhook's, nothing twice)", g, w)
	}
	if g := volumeNames(got.Spec.Volumes); !slices.Equal(g, []string{"app-logs"}) {
		t.Errorf("volumes = %v, want [app-logs] once", g)
	}
	app := findContainer(got.Spec.Containers, "app")
	if n := len(app.VolumeMounts); n != 1 {
		t.Errorf("app mounts = %+v, want exactly one", app.VolumeMounts)
	}
	if n := len(app.Env); n != 3 {
		t.Errorf("app env = %+v, want the template's three variables once", app.Env)
	}
	// On reinvocation ours sees the container the second webhook added. By design (config/webhook's marker
	// rationale: "a later mutating webhook may add containers that need our mounts and env") it is an
	// application container like any the pod brought: it receives the template's mounts and env, once.
	if lj := findContainer(got.Spec.Containers, lateJoiner); lj != nil {
		if n := len(lj.VolumeMounts); n != 1 {
			t.Errorf("%s mounts = %+v, want the template's one mount (added on reinvocation)", lateJoiner, lj.VolumeMounts)
		}
		if n := len(lj.Env); n != 3 {
			t.Errorf("%s env = %+v, want the template's three variables once (added on reinvocation)", lateJoiner, lj.Env)
		}
	}
	if ls := findContainer(got.Spec.Containers, "log-shipper"); ls != nil && len(ls.Env) != 0 {
		t.Errorf("the sidecar log-shipper received the application's env on reinvocation: %v", ls.Env)
	}
	if g, w := injectedTemplates(t, got), []string{ns + "/log-shipper"}; !slices.Equal(g, w) {
		t.Errorf("status names %v, want %v once", g, w)
	}
	if n := second.calls.Load() - secondBefore; n != 1 {
		t.Errorf("second webhook called %d times for the pod, want 1", n)
	}
	if metricErr != nil {
		t.Logf("cannot count our webhook's calls (%v); the pod's shape above is the assertion", metricErr)
		return
	}
	after, err := webhookCalls(t, ourHook)
	if err != nil {
		t.Fatal(err)
	}
	if n := after - before; n != 2 {
		t.Errorf("the API server called our webhook %q %d times for the pod, want 2 (first call and one reinvocation)", ourHook, n)
	} else {
		t.Logf("our webhook was called twice (first call and reinvocation), as the API server's metrics show")
	}
}
