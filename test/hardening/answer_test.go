package hardening

import (
	"crypto/tls"
	"errors"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/sidecar-dev/sidecar-injector/internal/inject"
	"github.com/sidecar-dev/sidecar-injector/internal/metrics"
	"github.com/sidecar-dev/sidecar-injector/internal/server"
	"github.com/sidecar-dev/sidecar-injector/internal/testenv"
	"github.com/sidecar-dev/sidecar-injector/internal/webhook"
)

// TestBadInputIsADenialWhateverTheFailurePolicy shows, through the real API server, why the webhook answers bad
// input with HTTP 200 and a refusal in the AdmissionReview (status.code 400) rather than with an HTTP 4xx. Both
// webhooks below run with failurePolicy Ignore and cannot read the pod:
//   - ours (webhook.New, its engine failing as for a pod it cannot read): the API server denies the pod with our
//     code and message, although the policy is Ignore;
//   - one that answers HTTP 400: the API server counts a failed call and, under Ignore, admits the pod as it is,
//     without the sidecars a mandatory template would have added.
func TestBadInputIsADenialWhateverTheFailurePolicy(t *testing.T) {
	ctx := ctxFor(t)
	m, err := metrics.New(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	ours, err := webhook.New(webhook.Config{
		Templates: noTemplates{}, Namespaces: noNamespaces{}, InjectorNamespace: injectorNS, Metrics: m,
		Engine: func(inject.Request) (*inject.Result, error) {
			return nil, &inject.PodError{Err: errors.New("spec.containers: expected a list")}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	var httpErrorCalls atomic.Int64
	httpError := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		httpErrorCalls.Add(1)
		http.Error(w, "sidecar-injector: cannot read pod: spec.containers: expected a list", http.StatusBadRequest)
	})
	oursURL, httpErrorURL := serveTLS(t, ours), serveTLS(t, httpError)

	hook := &admissionregistrationv1.MutatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: "hardening-answer"}}
	for _, w := range []struct{ name, url string }{{"ours", oursURL}, {"http-error", httpErrorURL}} {
		hook.Webhooks = append(hook.Webhooks, admissionregistrationv1.MutatingWebhook{
			Name:                    w.name + ".answer.hardening.test",
			ClientConfig:            admissionregistrationv1.WebhookClientConfig{URL: ptr.To(w.url + webhookPath), CABundle: ca.pem},
			Rules:                   []admissionregistrationv1.RuleWithOperations{podCreate()},
			FailurePolicy:           ptr.To(admissionregistrationv1.Ignore),
			SideEffects:             ptr.To(admissionregistrationv1.SideEffectClassNone),
			AdmissionReviewVersions: []string{"v1"},
			NamespaceSelector:       &metav1.LabelSelector{MatchLabels: map[string]string{"hardening-answer": w.name}},
		})
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "answer-" + w.name, Labels: map[string]string{"hardening-answer": w.name}}}
		if err := k8s.Create(ctx, ns); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = k8s.Delete(ctxFor(t), ns) })
	}
	if err := k8s.Create(ctx, hook); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = k8s.Delete(ctxFor(t), hook) })

	// A dry run: the webhooks have no side effects, so the API server calls them, and nothing is stored.
	create := func(ns string) (*corev1.Pod, error) {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{GenerateName: "web-", Namespace: ns},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "example.com/web:1"}}}}
		return p, k8s.Create(ctx, p, client.DryRunAll)
	}
	var denial error
	testenv.Eventually(t, 20*time.Second, "the API server calls our webhook", func() error {
		if _, denial = create("answer-ours"); denial == nil {
			return errors.New("the pod was admitted: the webhook configuration is not in effect yet")
		}
		return nil
	})
	var status apierrors.APIStatus
	if !errors.As(denial, &status) || status.Status().Code != http.StatusBadRequest ||
		!strings.Contains(status.Status().Message, `admission webhook "ours.answer.hardening.test" denied the request`) ||
		!strings.Contains(status.Status().Message, webhook.ReadPodErrorPrefix+"spec.containers: expected a list") {
		t.Errorf("under failurePolicy Ignore, our refusal reached the user as %v; want a 400 denial carrying our message", denial)
	}

	var admitted *corev1.Pod
	testenv.Eventually(t, 20*time.Second, "the API server calls the HTTP-error webhook", func() error {
		p, err := create("answer-http-error")
		if err != nil {
			return err
		}
		if httpErrorCalls.Load() == 0 {
			return errors.New("not called yet")
		}
		admitted = p
		return nil
	})
	if len(admitted.Spec.Containers) != 1 {
		t.Errorf("the pod was changed: %v", admitted.Spec.Containers)
	}
	t.Logf("an HTTP 400 under failurePolicy Ignore: the pod is admitted as it is (what a 4xx answer would let through)")
}

// serveTLS serves h over TLS on loopback with a certificate of the test CA and returns its base URL.
func serveTLS(t *testing.T, h http.Handler) string {
	t.Helper()
	dir := t.TempDir()
	if err := ca.writeServing(dir, 7); err != nil {
		t.Fatal(err)
	}
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, server.CertName), filepath.Join(dir, server.KeyName))
	if err != nil {
		t.Fatal(err)
	}
	s := httptest.NewUnstartedServer(h)
	s.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	s.StartTLS()
	t.Cleanup(s.Close)
	return s.URL
}

func podCreate() admissionregistrationv1.RuleWithOperations {
	return admissionregistrationv1.RuleWithOperations{
		Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
		Rule:       admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}},
	}
}

type noTemplates struct{}

func (noTemplates) Index(namespace string) *inject.Index {
	return inject.NewIndex(namespace, injectorNS, nil)
}

type noNamespaces struct{}

func (noNamespaces) NamespaceLabels(string) (map[string]string, bool) { return nil, false }
