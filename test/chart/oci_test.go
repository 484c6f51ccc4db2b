package chart

import (
	"io"
	"log"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/registry"
	"sigs.k8s.io/yaml"
)

// TestPackagedChartIsServedFromAnOCIRegistry: the chart packaged as `make release` does is pushed with
// `helm push` to an OCI registry (go-containerregistry's, in this process, on loopback), and `helm pull` and
// `helm template` read it back from oci://.
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
