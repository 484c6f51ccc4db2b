// Package release tests `make release` (hack/release.sh): its artifacts, and that building them twice gives
// byte-identical files.
package release

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sidecar-dev/sidecar-injector/internal/testenv"
)

// release runs hack/release.sh into a new directory and returns it.
func release(t *testing.T, root string) string {
	t.Helper()
	dir := t.TempDir()
	cmd := exec.Command(filepath.Join(root, "hack", "release.sh"))
	cmd.Dir = root
	home := t.TempDir()
	// One platform: test/image checks both; here the image's place among the artifacts and its name matter.
	cmd.Env = append(os.Environ(), "RELEASE_DIR="+dir, "HELM="+testenv.RequireHelm(t), "VERSION=v0.0.0-test", "IMAGE_PLATFORMS=linux/amd64",
		"CYCLONEDX_GOMOD="+testenv.RequireTool(t, testenv.CycloneDXGomod),
		"HELM_CACHE_HOME="+home+"/c", "HELM_CONFIG_HOME="+home+"/f", "HELM_DATA_HOME="+home+"/d")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("hack/release.sh: %v\n%s", err, out)
	}
	return dir
}

func TestReleaseArtifactsAreCompleteAndReproducible(t *testing.T) {
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	first, second := release(t, root), release(t, root)

	sums, err := os.ReadFile(filepath.Join(first, "SHA256SUMS"))
	if err != nil {
		t.Fatal(err)
	}
	again, _ := os.ReadFile(filepath.Join(second, "SHA256SUMS"))
	if !bytes.Equal(sums, again) {
		t.Errorf("two releases of the same commit differ:\n%s---\n%s", sums, again)
	}

	// Every artifact is checksummed, and the checksums are right.
	files, _ := filepath.Glob(filepath.Join(first, "*"))
	var names []string
	for _, f := range files {
		if b := filepath.Base(f); b != "SHA256SUMS" {
			names = append(names, b)
		}
	}
	for _, want := range []string{"sidecar-injector.cdx.json", "sidecar-injector.tar"} {
		if !strings.Contains(string(sums), "  "+want+"\n") {
			t.Errorf("SHA256SUMS lacks %s:\n%s", want, sums)
		}
	}
	check := exec.Command("sha256sum", "--check", "--strict", "SHA256SUMS")
	check.Dir = first
	if out, err := check.CombinedOutput(); err != nil || strings.Count(string(out), ": OK") != len(names) {
		t.Errorf("sha256sum --check over %v: %v\n%s", names, err, out)
	}

	charts, _ := filepath.Glob(filepath.Join(first, "sidecar-injector-*.tgz"))
	if len(charts) != 1 {
		t.Fatalf("release has charts %v, want one", charts)
	}
	show := exec.Command(testenv.RequireHelm(t), "show", "chart", charts[0])
	out, err := show.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "appVersion: 0.0.0-test") {
		t.Errorf("helm show chart of the packaged chart: %v; want appVersion 0.0.0-test (the release version)\n%s", err, out)
	}

	// The image is named as the packaged chart installs it by default: pushed under its own name, it is found.
	rendered := exec.Command(testenv.RequireHelm(t), "template", "r", charts[0], "--show-only", "templates/deployment.yaml")
	out, err = rendered.Output()
	want := "ghcr.io/sidecar-dev/sidecar-injector:0.0.0-test"
	if err != nil || !strings.Contains(string(out), "image: "+want+"\n") {
		t.Errorf("the packaged chart's default image is not %s (%v):\n%s", want, err, out)
	}
	if got := imageName(t, filepath.Join(first, "sidecar-injector.tar")); got != want {
		t.Errorf("the release's image is named %q, want %q, the chart's default image", got, want)
	}

	var sbom struct {
		BOMFormat string `json:"bomFormat"`
		Metadata  struct {
			Component struct {
				Name string `json:"name"`
			} `json:"component"`
		} `json:"metadata"`
		Components []struct {
			Name string `json:"name"`
		} `json:"components"`
	}
	data, err := os.ReadFile(filepath.Join(first, "sidecar-injector.cdx.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &sbom); err != nil || sbom.BOMFormat != "CycloneDX" || sbom.Metadata.Component.Name != "github.com/sidecar-dev/sidecar-injector" {
		t.Fatalf("the SBOM is not a CycloneDX document about the injector (%v): %+v", err, sbom.Metadata)
	}
	found := false
	for _, c := range sbom.Components {
		found = found || c.Name == "sigs.k8s.io/controller-runtime"
	}
	if !found {
		t.Errorf("the SBOM lists %d components, not controller-runtime, which the binary links", len(sbom.Components))
	}
}

// imageName reads the name of the image in an OCI layout tarball (index.json's containerd name annotation).
func imageName(t *testing.T, tarball string) string {
	t.Helper()
	f, err := os.Open(tarball)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err != nil {
			t.Fatalf("no index.json in %s: %v", tarball, err)
		}
		if h.Name != "index.json" {
			continue
		}
		var index struct {
			Manifests []struct {
				Annotations map[string]string `json:"annotations"`
			} `json:"manifests"`
		}
		if err := json.NewDecoder(tr).Decode(&index); err != nil || len(index.Manifests) != 1 {
			t.Fatalf("index.json of %s: %v, %d manifests, want one", tarball, err, len(index.Manifests))
		}
		return index.Manifests[0].Annotations["io.containerd.image.name"]
	}
}
