package cli

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// Version is the release version, set at build time:
// -ldflags "-X github.com/sidecar-dev/sidecar-injector/internal/cli.Version=v1.2.3".
var Version = "dev"

// Commit is the git commit the binary was built from, set at build time by `make image` and the Dockerfile
// (-X github.com/sidecar-dev/sidecar-injector/internal/cli.Commit=...), which build with -buildvcs=false so that
// the binary does not depend on the checkout's state. Empty means: read it from the Go build info.
var Commit = ""

// VersionString describes this build: version, commit (-ldflags, else the Go build info when built from a git
// checkout) and Go version.
func VersionString() string {
	commit := "unknown"
	if Commit != "" {
		commit = Commit
	} else if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				commit = s.Value
			}
		}
		for _, s := range bi.Settings {
			if s.Key == "vcs.modified" && s.Value == "true" {
				commit += "-dirty"
			}
		}
	}
	return fmt.Sprintf("sidecar-injector %s (commit %s, %s %s/%s)", Version, commit, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}

// NewVersionCommand returns the `version` command.
func NewVersionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version of sidecar-injector",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := fmt.Fprintln(cmd.OutOrStdout(), VersionString())
			return err
		},
	}
}
