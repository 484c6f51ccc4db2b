// Command pause is the pod sandbox's process in the e2e cluster (containerd's sandbox_image): it holds the pod's
// namespaces and exits on SIGTERM or SIGINT. No registry is reachable, so the cluster cannot pull the upstream one.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	c := make(chan os.Signal, 1)
	signal.Notify(c, syscall.SIGTERM, syscall.SIGINT)
	<-c
}
