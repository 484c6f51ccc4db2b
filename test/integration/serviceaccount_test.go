package integration

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/sidecar-dev/sidecar-injector/internal/testenv"
)

// tokenPath is where the ServiceAccount admission plugin mounts the pod's API token.
const tokenPath = "/var/run/secrets/kubernetes.io/serviceaccount"

// startServiceAccountAPIServer starts a second API server (its own etcd) with the ServiceAccount admission
// plugin on, as every real cluster runs it (envtest turns it off: it has no controller to create the default
// ServiceAccounts). It sends pods to the suite's webhook server through a copy of our webhook configuration;
// that server reads templates and namespaces from the suite's API server, so a story creates its namespace
// (and its templates) there and a namespace of the same name, with its default ServiceAccount, here.
func startServiceAccountAPIServer(t *testing.T) (*rest.Config, client.Client) {
	t.Helper()
	env := &envtest.Environment{BinaryAssetsDirectory: testEnv.BinaryAssetsDirectory, Scheme: scheme}
	env.ControlPlane.GetAPIServer().Configure().Disable("disable-admission-plugins") // the defaults: ServiceAccount on
	cfg, c := testenv.Start(t, env, scheme, "the second API server")
	hook := ours.DeepCopy()
	hook.ObjectMeta = metav1.ObjectMeta{Name: ours.Name}
	if err := c.Create(ctxFor(t), hook); err != nil {
		t.Fatalf("register our webhook with the second API server: %v", err)
	}
	return cfg, c
}

// TestTheAPIServerCallsOurWebhookOncePerPodWithItsServiceAccountPluginOn: the ServiceAccount plugin mounts the
// token into the pod's containers before the webhooks. The engine gives the containers it adds the same
// mount, so when the API server runs its plugins again after our patch, the plugin changes nothing, and our
// webhook (reinvocationPolicy IfNeeded) is not called a second time. The stored pod is the one the second
// call used to leave: the plugin's mount on every container, the sidecar's last.
func TestTheAPIServerCallsOurWebhookOncePerPodWithItsServiceAccountPluginOn(t *testing.T) {
	cfg, c := startServiceAccountAPIServer(t)
	ns := createNamespace(t, "satoken", nil)
	createTemplate(t, ns, "log-shipper", logShipperSpec())
	waitUntilServed(t, ns, ns, "log-shipper")
	if err := c.Create(ctxFor(t), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		t.Fatal(err)
	}
	if err := c.Create(ctxFor(t), &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "default"}}); err != nil {
		t.Fatal(err)
	}
	var ourHook string
	for _, w := range ours.Webhooks {
		if w.ReinvocationPolicy != nil && *w.ReinvocationPolicy == admissionregistrationv1.IfNeededReinvocationPolicy {
			ourHook = w.Name
		}
	}
	testenv.Eventually(t, 30*time.Second, "the second API server calls our webhook", func() error {
		p := newPod(ns, "probe-sa", withInject("log-shipper"))
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := c.Create(ctx, p, client.DryRunAll); err != nil {
			return err
		}
		if findContainer(p.Spec.Containers, "log-shipper") == nil {
			return fmt.Errorf("dry-run pod has %v", containerNames(p.Spec.Containers))
		}
		return nil
	})

	before, err := webhookCallsOn(t, cfg, ourHook)
	if err != nil {
		t.Fatal(err)
	}
	got := newPod(ns, "one-call", withInject("log-shipper"))
	if err := c.Create(ctxFor(t), got); err != nil {
		t.Fatalf("create pod: %v", err)
	}
	after, err := webhookCallsOn(t, cfg, ourHook)
	if err != nil {
		t.Fatal(err)
	}
	if n := after - before; n != 1 {
		t.Errorf("the API server called our webhook %q %d times for the pod, want once", ourHook, n)
	}

	i := slices.IndexFunc(got.Spec.Volumes, func(v corev1.Volume) bool { return strings.HasPrefix(v.Name, "kube-api-access-") })
	if i < 0 {
		t.Fatalf("the pod has no token volume (volumes %v): the ServiceAccount plugin did not run", volumeNames(got.Spec.Volumes))
	}
	token := corev1.VolumeMount{Name: got.Spec.Volumes[i].Name, ReadOnly: true, MountPath: tokenPath}
	if g, w := containerNames(got.Spec.Containers), []string{"app", "log-shipper"}; !slices.Equal(g, w) {
		t.Errorf("containers = %v, want %v", g, w)
	}
	if ls := findContainer(got.Spec.Containers, "log-shipper"); ls != nil {
		want := append(slices.Clone(logShipperSpec().Containers[0].VolumeMounts), token)
		if !apiequality.Semantic.DeepEqual(ls.VolumeMounts, want) {
			t.Errorf("log-shipper mounts = %+v, want the template's, then the plugin's token mount %+v", ls.VolumeMounts, want)
		}
	}
	if app := findContainer(got.Spec.Containers, "app"); app != nil && !slices.ContainsFunc(app.VolumeMounts, func(m corev1.VolumeMount) bool { return apiequality.Semantic.DeepEqual(m, token) }) {
		t.Errorf("app mounts = %+v, want the plugin's token mount", app.VolumeMounts)
	}
}
