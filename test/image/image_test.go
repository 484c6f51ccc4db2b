// Package image checks `make image` (hack/image.sh, hack/ociimage): the injector's image is built without Docker,
// reproducibly, for amd64 and arm64, non-root, stamped with version and commit, and equivalent to the Dockerfile's
// (same user, entrypoint, command, ports and labels).
package image

import (
	"archive/tar"
	"bufio"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"

	"github.com/sidecar-dev/sidecar-injector/internal/testenv"
)

const (
	version = "v0.0.0-imagetest"
	commit  = "0123456789abcdef0123456789abcdef01234567"
)

// build runs hack/image.sh injector into a fresh directory and returns the printed digest and the layout.
func build(t *testing.T, root string) (string, string) {
	t.Helper()
	dir := t.TempDir()
	cmd := exec.Command(filepath.Join(root, "hack/image.sh"), "injector")
	cmd.Env = append(os.Environ(), "IMAGE_DIR="+dir, "VERSION="+version, "COMMIT="+commit, "IMAGE_TAG=test",
		"IMAGE_PLATFORMS=linux/amd64 linux/arm64")
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("hack/image.sh injector: %v", err)
	}
	layoutDir := filepath.Join(dir, "layout")
	untar(t, filepath.Join(dir, "sidecar-injector.tar"), layoutDir)
	return strings.TrimSpace(string(out)), layoutDir
}

func TestTheImageIsReproducibleMultiArchNonRootAndStamped(t *testing.T) {
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	first, dir := build(t, root)
	second, _ := build(t, root)
	if first == "" || first != second {
		t.Fatalf("two builds of the same commit gave the digests %q and %q, want one", first, second)
	}
	p, err := layout.FromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	outer, err := p.ImageIndex()
	if err != nil {
		t.Fatal(err)
	}
	om, err := outer.IndexManifest()
	if err != nil || len(om.Manifests) != 1 {
		t.Fatalf("the layout's index.json should name one image index, got %+v (%v)", om, err)
	}
	if got := om.Manifests[0].Annotations["io.containerd.image.name"]; got != "localhost/sidecar-injector:test" {
		t.Errorf("containerd's image name annotation = %q, want localhost/sidecar-injector:test", got)
	}
	if om.Manifests[0].Digest.String() != first {
		t.Errorf("the printed digest %s is not the index's %s", first, om.Manifests[0].Digest)
	}
	idx, err := outer.ImageIndex(om.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	var platforms []string
	want := dockerfileConfig(t, root)
	for _, m := range im.Manifests {
		platforms = append(platforms, m.Platform.String())
		img, err := idx.Image(m.Digest)
		if err != nil {
			t.Fatal(err)
		}
		cf, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		if cf.OS+"/"+cf.Architecture != m.Platform.String() {
			t.Errorf("the %s image's config says %s/%s", m.Platform, cf.OS, cf.Architecture)
		}
		checkConfig(t, m.Platform.String(), cf.Config, want)
		checkBinary(t, img, m.Platform.Architecture)
	}
	slices.Sort(platforms)
	if !slices.Equal(platforms, []string{"linux/amd64", "linux/arm64"}) {
		t.Errorf("platforms = %v, want linux/amd64 and linux/arm64", platforms)
	}
}

// checkConfig compares an image's config with the Dockerfile's and with the stamps.
func checkConfig(t *testing.T, platform string, got v1.Config, want v1.Config) {
	t.Helper()
	if got.User != want.User || got.User == "" || strings.HasPrefix(got.User, "0") {
		t.Errorf("%s: user %q, want the Dockerfile's non-root %q", platform, got.User, want.User)
	}
	if !slices.Equal(got.Entrypoint, want.Entrypoint) || !slices.Equal(got.Cmd, want.Cmd) {
		t.Errorf("%s: entrypoint %q cmd %q, want the Dockerfile's %q %q", platform, got.Entrypoint, got.Cmd, want.Entrypoint, want.Cmd)
	}
	for p := range want.ExposedPorts {
		if _, ok := got.ExposedPorts[p]; !ok {
			t.Errorf("%s: port %s of the Dockerfile is not exposed", platform, p)
		}
	}
	for k, v := range want.Labels {
		if got.Labels[k] != v {
			t.Errorf("%s: label %s = %q, want the Dockerfile's %q", platform, k, got.Labels[k], v)
		}
	}
	if got.Labels["org.opencontainers.image.version"] != version || got.Labels["org.opencontainers.image.revision"] != commit {
		t.Errorf("%s: version/revision labels %q/%q, want %q/%q", platform, got.Labels["org.opencontainers.image.version"],
			got.Labels["org.opencontainers.image.revision"], version, commit)
	}
}

// checkBinary checks that the image holds the injector, built for arch, stamped with version and commit.
func checkBinary(t *testing.T, img v1.Image, arch string) {
	t.Helper()
	layers, err := img.Layers()
	if err != nil || len(layers) != 1 {
		t.Fatalf("want one layer, got %d (%v)", len(layers), err)
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			t.Fatalf("%s: no sidecar-injector in the layer", arch)
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Name != "sidecar-injector" {
			continue
		}
		if h.Mode&0o111 == 0 || h.Uid != 0 {
			t.Errorf("%s: /sidecar-injector mode %o owner %d, want executable and owned by root (not writable by the user)", arch, h.Mode, h.Uid)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range []string{version, commit} {
			if !strings.Contains(string(b), s) {
				t.Errorf("%s: the binary does not carry %q (-ldflags stamp)", arch, s)
			}
		}
		return
	}
}

// dockerfileConfig reads USER, ENTRYPOINT, CMD, EXPOSE and LABEL of the Dockerfile's final stage.
func dockerfileConfig(t *testing.T, root string) v1.Config {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	// Join continuation lines, then keep the instructions after the last FROM.
	text := regexp.MustCompile(`\\\n\s*`).ReplaceAllString(string(b), " ")
	cfg := v1.Config{Labels: map[string]string{}, ExposedPorts: map[string]struct{}{}}
	label := regexp.MustCompile(`([\w.-]+)="([^"]*)"`)
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		instr, rest, _ := strings.Cut(line, " ")
		switch strings.ToUpper(instr) {
		case "FROM":
			cfg = v1.Config{Labels: map[string]string{}, ExposedPorts: map[string]struct{}{}}
		case "USER":
			cfg.User = strings.TrimSpace(rest)
		case "ENTRYPOINT":
			cfg.Entrypoint = jsonArray(rest)
		case "CMD":
			cfg.Cmd = jsonArray(rest)
		case "EXPOSE":
			for _, p := range strings.Fields(rest) {
				cfg.ExposedPorts[p+"/tcp"] = struct{}{}
			}
		case "LABEL":
			for _, m := range label.FindAllStringSubmatch(rest, -1) {
				if !strings.Contains(m[2], "$") { // build-arg values (version, revision) are checked against the stamps
					cfg.Labels[m[1]] = m[2]
				}
			}
		}
	}
	if cfg.User == "" || len(cfg.Entrypoint) == 0 || len(cfg.Labels) == 0 {
		t.Fatalf("could not read USER, ENTRYPOINT and LABEL from the Dockerfile: %+v", cfg)
	}
	return cfg
}

func jsonArray(s string) []string {
	var out []string
	for _, m := range regexp.MustCompile(`"([^"]*)"`).FindAllStringSubmatch(s, -1) {
		out = append(out, m[1])
	}
	return out
}

func untar(t *testing.T, file, dir string) {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		dst := filepath.Join(dir, filepath.FromSlash(h.Name))
		if !strings.HasPrefix(dst, dir+string(filepath.Separator)) {
			t.Fatalf("tar entry %q escapes the layout", h.Name)
		}
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
