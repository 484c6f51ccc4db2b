// Command proxy is the e2e tests' localhost-proxy sidecar: it listens on 127.0.0.1 only, so that only containers
// of its own pod (which share its network namespace) can reach it, and answers every request with
// "proxy <name> says hello".
//
//	proxy -listen 127.0.0.1:15001 -name v1
package main

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:15001", "the address to listen on")
	name := flag.String("name", "proxy", "the name the proxy answers with")
	flag.Parse()
	srv := &http.Server{Addr: *listen, ReadHeaderTimeout: 5 * time.Second,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Printf("proxy: %s %s from %s\n", r.Method, r.URL.Path, r.RemoteAddr)
			fmt.Fprintf(w, "proxy %s says hello\n", *name)
		})}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdown)
	}()
	fmt.Println("proxy: listening on", *listen)
	if err := srv.ListenAndServe(); err != http.ErrServerClosed {
		fmt.Fprintln(os.Stderr, "proxy:", err)
		os.Exit(1)
	}
}
