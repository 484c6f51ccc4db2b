// Command sidecar-injector is the admission webhook server and offline injection tool; see internal/cli.
package main

import (
	"os"

	"github.com/sidecar-dev/sidecar-injector/internal/cli"
)

func main() { os.Exit(cli.Execute()) }
