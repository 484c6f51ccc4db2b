package cli

import (
	"encoding/json"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/sidecar-dev/sidecar-injector/internal/version"
)

// VersionString describes this build on one line: version, commit, Go version and platform.
func VersionString() string {
	b := version.Get()
	return fmt.Sprintf("sidecar-injector %s (commit %s, %s %s)", b.Version, b.Commit, b.GoVersion, b.Platform)
}

// NewVersionCommand returns the `version` command.
func NewVersionCommand() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "version [-o text|json]",
		Short: "Print the version of sidecar-injector",
		Long: "Print the version, commit, Go version and platform of this build. -o json prints them as a JSON " +
			`object: {"version":…,"commit":…,"goVersion":…,"platform":…}.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			switch output {
			case "text":
				_, err := fmt.Fprintln(cmd.OutOrStdout(), VersionString())
				return err
			case "json":
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(version.Get())
			}
			return fmt.Errorf("--output %q is not supported: use text or json", output)
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json")
	_ = cmd.RegisterFlagCompletionFunc("output", cobra.FixedCompletions([]string{"text", "json"}, cobra.ShellCompDirectiveNoFileComp))
	return cmd
}
