package cli

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
)

// pluginBinary is the file name kubectl runs for a plugin (kubectl-sidecar), from the name the command was run as,
// or "" when it was not run as a kubectl plugin.
func pluginBinary(argv0 string) string {
	base := strings.TrimSuffix(filepath.Base(argv0), ".exe")
	if plugin, ok := strings.CutPrefix(base, pluginPrefix); ok && plugin != "" {
		return base
	}
	return ""
}

// newPluginCompletionCommand replaces cobra's `completion SHELL` for the kubectl plugin: a script for the shell
// would complete a command named kubectl-sidecar, which nobody types. kubectl (1.26 and later) completes a plugin's
// arguments itself, in every shell its own `kubectl completion SHELL` supports, by running the executable
// kubectl_complete-<plugin> from the PATH with the words typed after the plugin's name; this command prints that
// executable, which hands the words to the plugin's own (cobra) completion.
func newPluginCompletionCommand(binary, name string) *cobra.Command {
	helper := "kubectl_complete-" + strings.TrimPrefix(binary, pluginPrefix)
	return &cobra.Command{
		Use:   "completion",
		Short: fmt.Sprintf("Print the %s executable that makes kubectl complete `%s`", helper, name),
		Long: fmt.Sprintf("kubectl completes the arguments of its plugins itself (kubectl 1.26 or later, with kubectl's "+
			"own completion loaded: source <(kubectl completion bash), or zsh, fish, powershell): for `%[1]s <TAB>` it "+
			"runs the executable %[2]s from your PATH, which this command prints. Install it next to %[3]s:\n\n"+
			"  %[1]s completion > \"$(dirname \"$(command -v %[3]s)\")/%[2]s\"\n"+
			"  chmod +x \"$(dirname \"$(command -v %[3]s)\")/%[2]s\"\n\n"+
			"It is a POSIX shell script, the same for every shell, so this command takes no shell name.", name, helper, binary),
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) > 0 {
				return fmt.Errorf("as a kubectl plugin, completion goes through kubectl's own completion and takes no "+
					"shell name: run `%s completion` and install its output as %s (see --help)", name, helper)
			}
			return nil
		},
		ValidArgsFunction: cobra.NoFileCompletions,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := fmt.Fprintf(cmd.OutOrStdout(), "#!/bin/sh\n"+
				"# kubectl runs this for `%s <TAB>` with the words after the plugin's name; the plugin answers.\n"+
				"exec %s __complete \"$@\"\n", name, binary)
			return err
		},
	}
}
