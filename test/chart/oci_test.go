package chart

import (
	"encoding/json"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"
)

// TestPackagedChartIsServedFromAnOCIRegistry: the chart packaged as `make release` does is pushed with
// `helm push` to an OCI registry (go-containerregistry's, in this process, on loopback); `helm pull` and
// `helm template` read it back from oci://, and `helm install oci://...` installs it into a real API server (every
// object the chart renders is created; pods do not run there, so no --wait), which `helm uninstall` removes again.
func TestPackagedChartIsServedFromAnOCIRegistry(t *testing.T) {
	reg := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(reg.Close)
	host := strings.TrimPrefix(reg.URL, "http://") // 127.0.0.1:PORT
	repo := "oci://" + host + "/charts"

	dir := t.TempDir()
	run := func(args ...string) (stdout, stderr string) {
		t.Helper()
		stdout, stderr, err := helm(t, args...)
		if err != nil {
			t.Fatalf("helm %s: %v\n%s%s", strings.Join(args, " "), err, stdout, stderr)
		}
		return stdout, stderr
	}
	run("package", chartDir(t), "--destination", dir)
	pkgs, _ := filepath.Glob(filepath.Join(dir, "sidecar-injector-*.tgz"))
	if len(pkgs) != 1 {
		t.Fatalf("helm package wrote %v", pkgs)
	}
	version := chartVersion(t)

	stdout, stderr := run("push", pkgs[0], repo, "--plain-http")
	if pushed := stdout + stderr; !strings.Contains(pushed, "Digest: sha256:") {
		t.Errorf("helm push did not report a digest:\n%s", pushed)
	}

	pulled := filepath.Join(dir, "pulled")
	if err := os.Mkdir(pulled, 0o755); err != nil {
		t.Fatal(err)
	}
	run("pull", repo+"/sidecar-injector", "--version", version, "--plain-http", "--destination", pulled)
	want, _ := os.ReadFile(pkgs[0])
	got, err := os.ReadFile(filepath.Join(pulled, filepath.Base(pkgs[0])))
	if err != nil || string(got) != string(want) {
		t.Errorf("the pulled chart differs from the pushed one (%v)", err)
	}

	out, _ := run("template", releaseName, repo+"/sidecar-injector", "--version", version, "--plain-http", "--namespace", releaseNS)
	local := template(t)
	if out != local {
		t.Errorf("helm template from oci:// differs from the chart directory's rendering:\n%s", firstDiff(out, local))
	}

	c, kubeconfig := ownAPIServer(t)
	ctx := ctxFor(t, 2*time.Minute)
	on := []string{"--namespace", releaseNS, "--kubeconfig", kubeconfig}
	run(append([]string{"install", releaseName, repo + "/sidecar-injector", "--version", version, "--plain-http", "--create-namespace"}, on...)...)
	list, _ := run(append([]string{"list", "-o", "json"}, on...)...)
	var releases []struct{ Name, Chart, Status string }
	if err := json.Unmarshal([]byte(list), &releases); err != nil || len(releases) != 1 ||
		releases[0].Status != "deployed" || releases[0].Chart != "sidecar-injector-"+version {
		t.Errorf("helm list after install from oci:// = %s (%v), want %s deployed from chart sidecar-injector-%s", list, err, releaseName, version)
	}
	r := render(t)
	if !r.has("Deployment", fullname) || !r.has("MutatingWebhookConfiguration", fullname) {
		t.Fatalf("the rendering lacks the Deployment or the webhook configuration: %v", r.kinds())
	}
	objects := r.objects
	for _, o := range objects {
		if err := c.Get(ctx, installedKey(t, c, o), probe(o)); err != nil {
			t.Errorf("%s %s after helm install from oci://: %v", o.GetObjectKind().GroupVersionKind().Kind, o.GetName(), err)
		}
	}

	run(append([]string{"uninstall", releaseName, "--wait"}, on...)...)
	for _, o := range objects {
		kind := o.GetObjectKind().GroupVersionKind().Kind
		err := c.Get(ctx, installedKey(t, c, o), probe(o))
		switch kept := kind == "CustomResourceDefinition"; { // crds.keep (default true): uninstall keeps the CRD
		case kept && err != nil:
			t.Errorf("CRD %s after helm uninstall: %v, want it kept", o.GetName(), err)
		case !kept && !apierrors.IsNotFound(err):
			t.Errorf("%s %s after helm uninstall: %v, want NotFound", kind, o.GetName(), err)
		}
	}
}

// installedKey is where a rendered object lives once installed: namespaced objects the chart renders without a
// namespace go to the release's.
func installedKey(t *testing.T, c client.Client, o client.Object) types.NamespacedName {
	t.Helper()
	key := client.ObjectKeyFromObject(o)
	if namespaced, err := c.IsObjectNamespaced(o); err != nil {
		t.Fatalf("%s: %v", o.GetObjectKind().GroupVersionKind(), err)
	} else if namespaced && key.Namespace == "" {
		key.Namespace = releaseNS
	}
	return key
}

// probe is an empty object of o's kind to read the installed one into.
func probe(o client.Object) client.Object {
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(o.GetObjectKind().GroupVersionKind())
	return u
}

func chartVersion(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(chartDir(t), "Chart.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var c struct {
		Version string `json:"version"`
	}
	if err := yaml.Unmarshal(data, &c); err != nil || c.Version == "" {
		t.Fatalf("Chart.yaml version: %q, %v", c.Version, err)
	}
	return c.Version
}
