// Command load sends AdmissionReviews for one of the benchmark pods to a webhook on a loopback address and
// prints requests/s, latency percentiles and errors; see package loadgen for what is measured and verified.
//
// Usage: load -url=https://127.0.0.1:9443/mutate-v1-pod -ca=CERTDIR/ca.crt -pod=realistic -c=8 -duration=5s
package main

import (
	"crypto/x509"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/sidecar-dev/sidecar-injector/internal/fixtures"
	"github.com/sidecar-dev/sidecar-injector/test/bench/loadgen"
)

func main() {
	target := flag.String("url", "https://127.0.0.1:9443/mutate-v1-pod?timeout=10s", "webhook URL (loopback only)")
	caFile := flag.String("ca", "", "PEM file of the CA that signed the server's certificate")
	size := flag.String("pod", "realistic", "pod: small, realistic or large")
	c := flag.Int("c", 1, "workers (one connection each)")
	duration := flag.Duration("duration", 5*time.Second, "measured window")
	warmup := flag.Duration("warmup", time.Second, "warm-up before the measured window (not measured)")
	n := flag.Int("n", 0, "stop after this many measured requests (0: no limit)")
	expect := flag.Int("expect-containers", 0, "require a patch giving the pod this many containers (0: any valid answer)")
	pid := flag.Int("server-pid", 0, "sample this process's CPU time and RSS over the measured window")
	serverCPU := flag.Int("server-cpu", -1, "the CPU the server is pinned to: report how much of it other processes used (-1: do not)")
	asJSON := flag.Bool("json", false, "print the result as JSON")
	flag.Parse()

	if err := run(*target, *caFile, *size, *c, *duration, *warmup, *n, *expect, *pid, *serverCPU, *asJSON); err != nil {
		fmt.Fprintln(os.Stderr, "load:", err)
		os.Exit(2)
	}
}

func run(target, caFile, size string, c int, duration, warmup time.Duration, n, expect, pid, serverCPU int, asJSON bool) error {
	if _, err := loadgen.CheckLoopback(target); err != nil {
		return err
	}
	if duration <= 0 || duration > 10*time.Minute || warmup < 0 || warmup > time.Minute {
		return fmt.Errorf("-duration must be in (0, 10m] and -warmup in [0, 1m]")
	}
	pool := x509.NewCertPool()
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return err
		}
		if !pool.AppendCertsFromPEM(pem) {
			return fmt.Errorf("%s: no PEM certificate", caFile)
		}
	}
	pod, err := fixtures.Pod(size)
	if err != nil {
		return err
	}
	body, err := fixtures.Review(pod)
	if err != nil {
		return err
	}
	res, err := loadgen.Run(loadgen.Options{URL: target, RootCAs: pool, Body: body, Workers: c, Warmup: warmup,
		Duration: duration, N: n, ExpectContainers: expect, ServerPID: pid, ServerCPU: serverCPU})
	if err != nil {
		return err
	}
	if asJSON {
		return json.NewEncoder(os.Stdout).Encode(res)
	}
	fmt.Printf("pod=%s (%d B review) c=%d: %.0f requests/s over %.1fs (%d requests)  p50 %.2fms  p90 %.2fms  p99 %.2fms  max %.2fms  errors %d  (client verify %.0fµs/request)\n",
		size, len(body), c, res.RPS, res.Seconds, res.Requests, res.P50/1e3, res.P90/1e3, res.P99/1e3, res.Max/1e3, res.Errors, res.VerifyMeanUS)
	if pid > 0 {
		fmt.Printf("server pid %d: CPU %.0fµs/request, RSS %.1f MiB", pid, res.ServerCPUPerReqUS, float64(res.ServerRSSKiB)/1024)
		if res.OtherCPUPct >= 0 {
			fmt.Printf(", other processes used %.0f%% of CPU %d", res.OtherCPUPct, serverCPU)
		}
		fmt.Println()
	}
	if res.FirstError != "" {
		fmt.Printf("first error: %s\n", res.FirstError)
	}
	if res.Errors > 0 {
		os.Exit(1)
	}
	return nil
}
