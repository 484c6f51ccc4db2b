// Package version says what this build is: its release version and commit, set at link time by `make build`
// and the image build, and the Go toolchain that built it. The version command and the build-info metric read
// it; it imports nothing of the project, so every layer may.
package version

import (
	"runtime"
	"runtime/debug"
)

// Version and Commit are set at link time:
//
//	-ldflags "-X github.com/sidecar-dev/sidecar-injector/internal/version.Version=v1.2.3
//	          -X github.com/sidecar-dev/sidecar-injector/internal/version.Commit=$(git rev-parse HEAD)"
//
// Without them Version is "dev" and Commit comes from the Go build info (vcs.revision, present when Go stamped
// the build from a git checkout), else "unknown".
var (
	Version = "dev"
	Commit  = ""
)

// Build describes this binary. The JSON names are part of `version -o json`'s output.
type Build struct {
	Version   string `json:"version"`
	Commit    string `json:"commit"`
	GoVersion string `json:"goVersion"`
	Platform  string `json:"platform"`
}

// Get returns this binary's Build.
func Get() Build {
	return Build{Version: Version, Commit: commit(), GoVersion: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
}

func commit() string {
	if Commit != "" {
		return Commit
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	rev, dirty := "", false
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	switch {
	case rev == "":
		return "unknown"
	case dirty:
		return rev + "-dirty"
	}
	return rev
}
