// Package cli is the sidecar-injector command line: `serve` (the admission webhook), `inject` (offline
// injection), `explain`, `compile` (templates to admission policies) and `version`.
package cli

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
)

// Exit codes of the command line (README, "Exit codes").
const (
	ExitOK    = 0 // the command did what it was asked
	ExitError = 1 // anything else: bad flags or input, a document that could not be injected, a server that failed
)

// pluginPrefix is how kubectl names plugin binaries: `kubectl sidecar` runs kubectl-sidecar from $PATH.
const pluginPrefix = "kubectl-"

// NewRootCommand returns the `sidecar-injector` command with its subcommands.
func NewRootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "sidecar-injector",
		Short: "Add sidecars, defined once in SidecarTemplates, to pods when they are created",
		Long: "sidecar-injector is a Kubernetes mutating admission webhook that adds the sidecars described by " +
			"SidecarTemplate resources to pods when they are created, and an offline tool that does the same to " +
			"manifests.\n\nInstalled as kubectl-sidecar on the PATH, it is also the kubectl plugin `kubectl sidecar`.",
		SilenceUsage:  true, // a runtime error is not a usage error
		SilenceErrors: true, // Execute prints it once
	}
	// cobra adds `completion bash|zsh|fish|powershell` to a root with subcommands; its help says how to load it.
	root.AddCommand(NewServeCommand(), NewInjectCommand(), NewExplainCommand(), NewCheckCommand(), NewCompileCommand(), NewVersionCommand())
	return root
}

// displayName is what help text calls the command, from the name it was run as (os.Args[0]): "kubectl sidecar"
// for the kubectl plugin binary kubectl-sidecar (kubectl turns dashes into spaces: kubectl-a-b is `kubectl a b`),
// else "sidecar-injector".
func displayName(argv0 string) string {
	if binary := pluginBinary(argv0); binary != "" {
		return "kubectl " + strings.ReplaceAll(strings.TrimPrefix(binary, pluginPrefix), "-", " ")
	}
	return "sidecar-injector"
}

// runAs adapts the command line to the name it was run as (os.Args[0]): as the kubectl plugin, help, usage and
// examples say `kubectl sidecar`, and `completion` is kubectl's way of completing plugins.
func runAs(root *cobra.Command, argv0 string) {
	binary := pluginBinary(argv0)
	if binary == "" {
		return
	}
	name := displayName(argv0)
	root.CompletionOptions.DisableDefaultCmd = true
	root.AddCommand(newPluginCompletionCommand(binary, name))
	setDisplayName(root, name)
}

// setDisplayName makes help, usage and examples name the command as the user ran it.
func setDisplayName(root *cobra.Command, name string) {
	root.Annotations = map[string]string{cobra.CommandDisplayNameAnnotation: name}
	var walk func(*cobra.Command)
	walk = func(c *cobra.Command) {
		c.Example = strings.ReplaceAll(c.Example, root.Name()+" ", name+" ")
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
}

// Execute runs the command line with os.Args and returns the process exit code (ExitOK or ExitError). SIGINT and
// SIGTERM cancel the command's context (the server then shuts down gracefully).
func Execute() int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	root := NewRootCommand()
	runAs(root, os.Args[0])
	if err := root.ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "Error:", err)
		return ExitError
	}
	return ExitOK
}
