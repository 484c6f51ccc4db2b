package server

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/sidecar-dev/sidecar-injector/internal/api/v1alpha1"
	"github.com/sidecar-dev/sidecar-injector/internal/testenv"
)

// requestLog records the paths (and queries) of the API requests a server makes.
type requestLog struct {
	mu    sync.Mutex
	paths []string
}

func (l *requestLog) wrap(rt http.RoundTripper) http.RoundTripper {
	return roundTripperFunc(func(req *http.Request) (*http.Response, error) {
		l.mu.Lock()
		l.paths = append(l.paths, req.Method+" "+req.URL.Path+"?"+req.URL.RawQuery)
		l.mu.Unlock()
		return rt.RoundTrip(req)
	})
}

// matching returns the recorded requests whose path contains part.
func (l *requestLog) matching(part string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, p := range l.paths {
		if strings.Contains(p, part) {
			out = append(out, p)
		}
	}
	return out
}

type roundTripperFunc func(*http.Request) (*http.Response, error)

func (f roundTripperFunc) RoundTrip(req *http.Request) (*http.Response, error) { return f(req) }

// TestAFollowerNeitherListsNorWatchesPodsAndCountsThemOnceItLeads runs the server with --leader-elect while
// another replica holds the lease: it serves (ready), but asks the API server for no pod at all, so it does not
// receive and decode every pod created in the cluster. When the lease is freed it takes over, and the status
// controller, now running here, counts the pods that were created while it was a follower.
func TestAFollowerNeitherListsNorWatchesPodsAndCountsThemOnceItLeads(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a kube-apiserver")
	}
	logf.SetLogger(logr.Discard())
	assets := testenv.Require(t)
	env := &envtest.Environment{CRDs: []*apiextensionsv1.CustomResourceDefinition{sidecarTemplateCRD()}, BinaryAssetsDirectory: assets}
	cfg, k8s := testenv.Start(t, env, NewScheme(), "envtest")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	o := validOptions(t)
	for _, ns := range []string{"team-a", o.Namespace} {
		if err := k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
			t.Fatal(err)
		}
	}
	now := metav1.NewMicroTime(time.Now())
	held := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: o.Namespace, Name: LeaderElectionID},
		Spec: coordinationv1.LeaseSpec{HolderIdentity: ptr.To("another-replica"), LeaseDurationSeconds: ptr.To[int32](3600),
			AcquireTime: &now, RenewTime: &now}}
	if err := k8s.Create(ctx, held); err != nil {
		t.Fatal(err)
	}
	if err := k8s.Create(ctx, &v1alpha1.SidecarTemplate{ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", Name: "shipper"},
		Spec: v1alpha1.SidecarTemplateSpec{Containers: []corev1.Container{{Name: "shipper", Image: "example.com/shipper:1"}}}}); err != nil {
		t.Fatal(err)
	}
	record := `{"templates":[{"namespace":"team-a","name":"shipper","generation":1,"hash":"0123456789abcdef","containers":["shipper"]}]}`
	if err := k8s.Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", Name: "web",
		Annotations: map[string]string{v1alpha1.AnnotationStatus: record}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "example.com/web:1"}}}}); err != nil {
		t.Fatal(err)
	}

	requests := &requestLog{}
	o.RestConfig = rest.CopyConfig(cfg)
	o.RestConfig.Wrap(requests.wrap)
	o.LeaderElect = true
	o.HealthProbeBindAddress = net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(t)))
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- Run(runCtx, o) }()
	defer func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("Run returned %v after its context was cancelled, want nil", err)
		}
	}()

	// The manager tries for the lease only once its caches have started and synced: by then a pod informer
	// known to the cache would have listed pods.
	lease := "/apis/coordination.k8s.io/v1/namespaces/" + o.Namespace + "/leases/" + LeaderElectionID
	testenv.Eventually(t, time.Minute, "the server tries for the lease", func() error {
		if len(requests.matching(lease)) == 0 {
			return fmt.Errorf("no request for %s yet", lease)
		}
		return nil
	})
	testenv.Eventually(t, time.Minute, "a follower is ready: it serves admissions", func() error {
		if code := probe(o.HealthProbeBindAddress, "/readyz"); code != http.StatusOK {
			return fmt.Errorf("/readyz = %d", code)
		}
		return nil
	})
	if got := requests.matching("/pods"); len(got) > 0 {
		t.Errorf("a follower asked the API server for pods: %v", got)
	}

	// Another replica gone: the lease is free, this one takes it and counts the pod.
	if err := k8s.Delete(ctx, held); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, time.Minute, "the new leader counts the pod created before it led", func() error {
		var st v1alpha1.SidecarTemplate
		if err := k8s.Get(ctx, client.ObjectKey{Namespace: "team-a", Name: "shipper"}, &st); err != nil {
			return err
		}
		if st.Status.InjectedPods != 1 {
			return fmt.Errorf("status.injectedPods = %d, want 1", st.Status.InjectedPods)
		}
		return nil
	})
	if len(requests.matching("/api/v1/pods")) == 0 {
		t.Error("the leader counted pods without listing them from the API server")
	}
}

// probe returns the status code of GET http://addr/path; 0 when it cannot connect.
func probe(addr, path string) int {
	resp, err := http.Get("http://" + addr + path)
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	return resp.StatusCode
}
