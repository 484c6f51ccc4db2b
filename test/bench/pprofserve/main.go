// Command pprofserve is `sidecar-injector` with a net/http/pprof listener, for the benchmark's profiles: the
// same command line (cli.Execute: `pprofserve serve --...` runs exactly what `sidecar-injector serve` runs) plus
// /debug/pprof/ on $BENCH_PPROF_ADDR, a loopback address. It is never what the benchmark table measures.
package main

import (
	"fmt"
	"net"
	"net/http"
	_ "net/http/pprof" // registers /debug/pprof/ on http.DefaultServeMux
	"os"

	"github.com/sidecar-dev/sidecar-injector/internal/cli"
)

func main() {
	if addr := os.Getenv("BENCH_PPROF_ADDR"); addr != "" {
		host, _, err := net.SplitHostPort(addr)
		if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
			fmt.Fprintf(os.Stderr, "pprofserve: BENCH_PPROF_ADDR=%q must be a loopback host:port\n", addr)
			os.Exit(2)
		}
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			fmt.Fprintln(os.Stderr, "pprofserve:", err)
			os.Exit(2)
		}
		go func() { _ = http.Serve(ln, nil) }()
	}
	os.Exit(cli.Execute())
}
