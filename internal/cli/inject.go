package cli

import (
	"errors"

	"github.com/spf13/cobra"
)

// NewInjectCommand returns the `inject` command: offline injection of pods and workloads read from files.
func NewInjectCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "inject",
		Short: "Inject sidecars into pods and workloads read from files (offline)",
		RunE:  func(*cobra.Command, []string) error { return errors.New("inject: work in progress") },
	}
}
