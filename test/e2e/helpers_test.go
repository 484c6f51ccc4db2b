package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/sidecar-dev/sidecar-injector/internal/api/v1alpha1"
	"github.com/sidecar-dev/sidecar-injector/internal/testenv"
)

// The images hack/image.sh builds; hack/cluster.sh imports them into the node's containerd.
const (
	appImage        = "localhost/sidecar-e2e/app:v1"
	logshipperImage = "localhost/sidecar-e2e/logshipper:v1"
	proxyImage      = "localhost/sidecar-e2e/proxy:v1"
	injectorRepo    = "localhost/sidecar-injector"
	// injectorTag is the tag `make e2e-deps` builds the injector's image with; upgradeTag is a second name of
	// the same image, for the `helm upgrade` to a new tag.
	injectorTag = "e2e"
	upgradeTag  = "e2e-upgrade"

	release    = "sidecar-injector"
	injectorNS = "sidecar-injector"
)

// Deadlines of the waits; each is a bound on a poll, never a sleep used as a barrier.
const (
	podDeadline     = 90 * time.Second // a pod from creation to Running, or a container to its expected output
	rolloutDeadline = 3 * time.Minute  // a Deployment rollout or a helm install/upgrade on a busy 2-core machine
)

var (
	restConfig *rest.Config
	k8s        client.Client
	clientset  *kubernetes.Clientset
	scheme     = runtime.NewScheme()
)

// connect builds the clients from the cluster's admin kubeconfig (bin/kubeconfig).
func connect() error {
	// The clients log nothing the stories need; without a logger controller-runtime prints a stack trace once.
	ctrllog.SetLogger(logr.Discard())
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return err
	}
	if err := v1alpha1.AddToScheme(scheme); err != nil {
		return err
	}
	if err := apiextensionsv1.AddToScheme(scheme); err != nil { // the CRD upgrade story reads the CRD
		return err
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfigPath())
	if err != nil {
		return fmt.Errorf("read the cluster's kubeconfig: %w", err)
	}
	cfg.QPS, cfg.Burst = 50, 100
	restConfig = cfg
	if k8s, err = client.New(cfg, client.Options{Scheme: scheme}); err != nil {
		return err
	}
	clientset, err = kubernetes.NewForConfig(cfg)
	return err
}

func kubeconfigPath() string { return filepath.Join(repoRoot, "bin", "kubeconfig") }

// ctxFor is a context that ends with the test, bounded so that a hung call fails the test, not the package.
func ctxFor(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// helm runs bin/helm (or $HELM) against the cluster and returns its combined output.
func helm(t *testing.T, args ...string) string {
	t.Helper()
	bin := testenv.RequireHelm(t)
	ctx, cancel := context.WithTimeout(context.Background(), rolloutDeadline+30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, append([]string{"--kubeconfig", kubeconfigPath()}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("helm %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// tagImage gives the node's image SRC a second name DST, as a registry push of a new tag would.
func tagImage(t *testing.T, src, dst string) {
	t.Helper()
	sock := filepath.Join(repoRoot, "bin", "cluster", "containerd", "containerd.sock")
	ctr := filepath.Join(repoRoot, "bin", "ctr") // built with containerd by `make cluster-binaries`
	if _, err := os.Stat(ctr); err != nil {
		ctr = "ctr" // Debian's containerd package
	}
	out, err := exec.Command(ctr, "--address", sock, "-n", "k8s.io", "images", "tag", "--force", src, dst).CombinedOutput()
	if err != nil {
		t.Fatalf("ctr images tag %s %s: %v\n%s", src, dst, err, out)
	}
}

// namespace creates a fresh namespace for one story and deletes it (and so its pods) when the story ends.
func namespace(t *testing.T, prefix string) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "e2e-" + prefix + "-"}}
	if err := k8s.Create(ctxFor(t, 30*time.Second), ns); err != nil {
		t.Fatalf("create namespace: %v", err)
	}
	t.Cleanup(func() {
		if err := k8s.Delete(context.Background(), ns); err != nil && !apierrors.IsNotFound(err) {
			t.Errorf("cleanup: delete namespace %s: %v", ns.Name, err)
		}
	})
	return ns.Name
}

func createTemplate(t *testing.T, ns, name string, spec v1alpha1.SidecarTemplateSpec) {
	t.Helper()
	st := &v1alpha1.SidecarTemplate{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: spec}
	if err := k8s.Create(ctxFor(t, 30*time.Second), st); err != nil {
		t.Fatalf("create SidecarTemplate %s/%s: %v", ns, name, err)
	}
	// The webhook sees templates through its cache: wait until a dry-run pod that asks for it gets it.
	probe := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, GenerateName: "probe-",
		Annotations: map[string]string{v1alpha1.AnnotationInject: name}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "probe", Image: appImage}}}}
	testenv.Eventually(t, 30*time.Second, "the webhook injects template "+name, func() error {
		p := probe.DeepCopy()
		if err := k8s.Create(context.Background(), p, client.DryRunAll); err != nil {
			return err
		}
		if p.Annotations[v1alpha1.AnnotationStatus] == "" {
			return fmt.Errorf("dry-run pod not injected (annotations %v)", p.Annotations)
		}
		return nil
	})
}

// container is a container of the e2e app image (or another test image) with args.
func container(name, image string, args ...string) corev1.Container {
	return corev1.Container{Name: name, Image: image, Args: args, ImagePullPolicy: corev1.PullNever}
}

// createPod creates pod and returns it as the API server stored it (injected).
func createPod(t *testing.T, pod *corev1.Pod) *corev1.Pod {
	t.Helper()
	if err := k8s.Create(ctxFor(t, 30*time.Second), pod); err != nil {
		t.Fatalf("create pod %s/%s: %v", pod.Namespace, pod.Name, err)
	}
	return pod
}

// getPod returns the pod's current state.
func getPod(t *testing.T, ns, name string) *corev1.Pod {
	t.Helper()
	p := &corev1.Pod{}
	if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, p); err != nil {
		t.Fatalf("get pod %s/%s: %v", ns, name, err)
	}
	return p
}

// logs returns a container's log as the kubelet kept it.
func logs(ns, pod, container string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b, err := clientset.CoreV1().Pods(ns).GetLogs(pod, &corev1.PodLogOptions{Container: container}).DoRaw(ctx)
	return string(b), err
}

// waitForLog waits until the container's log contains every one of want and returns the log.
func waitForLog(t *testing.T, ns, pod, container string, want ...string) string {
	t.Helper()
	var got string
	testenv.Eventually(t, podDeadline, fmt.Sprintf("the log of %s/%s[%s] has %q", ns, pod, container, want), func() error {
		var err error
		if got, err = logs(ns, pod, container); err != nil {
			return err
		}
		for _, w := range want {
			if !strings.Contains(got, w) {
				return fmt.Errorf("%q missing; the log so far:\n%s%s", w, got, podSummary(ns, pod))
			}
		}
		return nil
	})
	return got
}

// podSummary describes a pod's containers' states, for failure messages.
func podSummary(ns, name string) string {
	p := &corev1.Pod{}
	if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, p); err != nil {
		return "\n(pod: " + err.Error() + ")"
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "\npod %s/%s: phase %s", ns, name, p.Status.Phase)
	for _, s := range append(p.Status.InitContainerStatuses, p.Status.ContainerStatuses...) {
		fmt.Fprintf(&b, "\n  %s: %+v", s.Name, s.State)
	}
	return b.String()
}

// terminated waits until the named container (init or app) has terminated and returns its state.
func terminated(t *testing.T, ns, pod, name string) *corev1.ContainerStateTerminated {
	t.Helper()
	var term *corev1.ContainerStateTerminated
	testenv.Eventually(t, podDeadline, fmt.Sprintf("container %s of %s/%s terminates", name, ns, pod), func() error {
		p := getPod(t, ns, pod)
		for _, s := range append(p.Status.InitContainerStatuses, p.Status.ContainerStatuses...) {
			if s.Name == name && s.State.Terminated != nil {
				term = s.State.Terminated
				return nil
			}
		}
		return fmt.Errorf("not terminated yet%s", podSummary(ns, pod))
	})
	return term
}

// containerNames lists a pod spec's init containers and containers, in order.
func containerNames(cs []corev1.Container) []string {
	n := make([]string, len(cs))
	for i, c := range cs {
		n[i] = c.Name
	}
	return n
}

// logf prints progress to the test log and, with -v off, to stderr too, so that a CI log shows the figures.
func logf(t *testing.T, format string, a ...any) {
	t.Helper()
	t.Logf(format, a...)
	if !testing.Verbose() {
		fmt.Fprintf(os.Stderr, "e2e: "+format+"\n", a...)
	}
}

func chartDir() string { return filepath.Join(repoRoot, "charts", "sidecar-injector") }
