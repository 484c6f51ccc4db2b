// Package release tests `make release` (hack/release.sh): its artifacts, and that building them twice gives
// byte-identical files.
package release

import (
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
	cmd.Env = append(os.Environ(), "RELEASE_DIR="+dir, "HELM="+testenv.RequireHelm(t), "VERSION=v0.0.0-test",
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
	for _, want := range []string{"sidecar-injector.cdx.json"} {
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
