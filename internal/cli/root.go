// Package cli is the sidecar-injector command line: `serve` (the admission webhook), `inject` (offline
// injection), `explain`, `compile` (templates to admission policies) and `version`.
package cli

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
)

// NewRootCommand returns the `sidecar-injector` command with its subcommands.
func NewRootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "sidecar-injector",
		Short: "Add sidecars, defined once in SidecarTemplates, to pods when they are created",
		Long: "sidecar-injector is a Kubernetes mutating admission webhook that adds the sidecars described by " +
			"SidecarTemplate resources to pods when they are created, and an offline tool that does the same to " +
			"manifests.",
		SilenceUsage:  true, // a runtime error is not a usage error
		SilenceErrors: true, // Execute prints it once
	}
	root.AddCommand(NewServeCommand(), NewInjectCommand(), NewExplainCommand(), NewCompileCommand(), NewVersionCommand())
	return root
}

// Execute runs the command line with os.Args and returns the process exit code. SIGINT and SIGTERM cancel the
// command's context (the server then shuts down gracefully).
func Execute() int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := NewRootCommand().ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "Error:", err)
		return 1
	}
	return 0
}
