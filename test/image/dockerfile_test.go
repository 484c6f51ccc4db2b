package image

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/sidecar-dev/sidecar-injector/internal/testenv"
)

// pinned is an image reference with a tag and the sha256 digest that fixes it: the tag says what it is, the digest
// makes it immutable.
var pinned = regexp.MustCompile(`^[a-z0-9.\-/]+:([\w.\-]+)@sha256:[0-9a-f]{64}$`)

// dockerfileStage is one FROM of the Dockerfile.
type dockerfileStage struct{ image, name string }

func dockerfileStages(t *testing.T, root string) []dockerfileStage {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	var stages []dockerfileStage
	for line := range strings.Lines(string(b)) {
		f := strings.Fields(line)
		if len(f) == 0 || !strings.EqualFold(f[0], "FROM") {
			continue
		}
		f = f[1:]
		for len(f) > 0 && strings.HasPrefix(f[0], "--") { // --platform=...
			f = f[1:]
		}
		if len(f) == 0 {
			t.Fatalf("the Dockerfile has a FROM without an image: %q", line)
		}
		s := dockerfileStage{image: f[0]}
		if len(f) == 3 && strings.EqualFold(f[1], "AS") {
			s.name = f[2]
		}
		stages = append(stages, s)
	}
	if len(stages) == 0 {
		t.Fatal("the Dockerfile has no FROM")
	}
	return stages
}

func TestEveryDockerfileBaseIsScratchOrPinnedByDigest(t *testing.T) {
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	stages := dockerfileStages(t, root)
	earlier := map[string]bool{}
	for _, s := range stages {
		switch {
		case s.image == "scratch", earlier[s.image]:
		case strings.Contains(s.image, "$"):
			t.Errorf("FROM %s: a build argument can replace the pinned base; write the pinned reference itself", s.image)
		case !pinned.MatchString(s.image):
			t.Errorf("FROM %s: pin the base by digest (image:tag@sha256:...) or use scratch", s.image)
		}
		if s.name != "" {
			earlier[s.name] = true
		}
	}
	// make image (hack/ociimage) assembles the image on an empty base; the Dockerfile's final stage must too.
	if final := stages[len(stages)-1]; final.image != "scratch" {
		t.Errorf("the final stage is FROM %s, want scratch, the empty base `make image` uses", final.image)
	}
}

// With GOTOOLCHAIN=local the builder builds with the Go it ships; it has to be the version go.mod names, so a Go
// bump that forgets the Dockerfile (tag and digest) fails here rather than in someone's docker build.
func TestTheDockerfileBuilderIsGoModsGo(t *testing.T) {
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	goDirective := regexp.MustCompile(`(?m)^go\s+(\S+)\s*$`).FindSubmatch(b)
	if goDirective == nil {
		t.Fatal("go.mod has no go directive")
	}
	goVersion := string(goDirective[1])
	found := false
	for _, s := range dockerfileStages(t, root) {
		if !strings.HasPrefix(s.image, "golang:") {
			continue
		}
		found = true
		if m := pinned.FindStringSubmatch(s.image); m == nil || m[1] != goVersion {
			t.Errorf("FROM %s: want golang:%s (go.mod's go directive) pinned by digest", s.image, goVersion)
		}
	}
	if !found {
		t.Error("no golang builder stage in the Dockerfile")
	}
}
