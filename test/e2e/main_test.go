// Package e2e shows the product's promises on a real one-node cluster (hack/cluster.sh): the chart installed
// with `helm install --wait` from the locally built image, the injector running as two pods behind its Service,
// and pods whose injected sidecars actually run: their logs and exit codes are what the tests assert.
//
// Needs root on Linux, the cluster's binaries and the images (`make cluster-binaries image e2e-images`, which
// `make test` runs when it is root). Without root the package is skipped with a message saying why, except under
// CI (CI=true), where it fails. The cluster is started when it is not running and stopped again at the end, also
// when a test fails, when the run is interrupted (SIGINT, SIGTERM) or when it exceeds E2E_DEADLINE; a cluster that
// was already running is left running. E2E_KEEP_CLUSTER=1 keeps a cluster the tests started.
package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sidecar-dev/sidecar-injector/internal/testenv"
)

// e2eDeadline bounds the whole package, cluster start and stop included; past it the cluster is stopped and the
// run fails (go test's own -timeout would kill the binary before it could clean up).
const e2eDeadline = 14 * time.Minute

var (
	repoRoot string
	// stopCluster stops the cluster when this run started it; it runs at most once.
	stopCluster = func() {}
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	if why := unsupported(); why != "" {
		if testenv.InCI() {
			fmt.Fprintf(os.Stderr, "e2e: %s; CI is set, so this is a failure\n", why)
			return 1
		}
		fmt.Fprintf(os.Stderr, "e2e: %s; skipping the real-cluster tests (CI is not set)\n", why)
		return 0
	}
	root, err := testenv.RepoRoot()
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	repoRoot = root
	wasUp := exec.Command(filepath.Join(repoRoot, "hack/cluster.sh"), "status").Run() == nil
	if !wasUp && os.Getenv("E2E_KEEP_CLUSTER") != "1" {
		var once sync.Once
		stopCluster = func() { once.Do(func() { clusterScript("down") }) }
	}
	defer stopCluster()
	// An interrupt or the deadline stops the cluster before the process ends.
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		s := <-sig
		fmt.Fprintf(os.Stderr, "e2e: %s: stopping the cluster\n", s)
		stopCluster()
		os.Exit(130)
	}()
	watchdog := time.AfterFunc(e2eDeadline, func() {
		fmt.Fprintf(os.Stderr, "e2e: still running after %s: stopping the cluster and failing\n", e2eDeadline)
		stopCluster()
		os.Exit(1)
	})
	defer watchdog.Stop()

	start := time.Now()
	if err := clusterScript("up"); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: the cluster did not come up:", err)
		return 1
	}
	fmt.Fprintf(os.Stderr, "e2e: cluster up in %s\n", time.Since(start).Round(time.Second))
	if err := connect(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	return m.Run()
}

// unsupported says why this machine cannot run the cluster, or "" when it can.
func unsupported() string {
	if runtime.GOOS != "linux" {
		return "the real cluster runs on Linux only (this is " + runtime.GOOS + ")"
	}
	if os.Geteuid() != 0 {
		return "the real cluster needs root (containerd, kubelet, network namespaces); run `sudo make test` or use the envtest suites"
	}
	return ""
}

// clusterScript runs hack/cluster.sh CMD, its output going to the test's stderr.
func clusterScript(cmd string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	c := exec.CommandContext(ctx, filepath.Join(repoRoot, "hack/cluster.sh"), cmd)
	c.Stdout, c.Stderr = os.Stderr, os.Stderr
	return c.Run()
}
