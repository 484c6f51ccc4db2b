// Command floor is the benchmark's floor server: the least an admission webhook must do, to compare the
// injector with. It serves every path over TLS 1.3 and HTTP/1.1 keep-alive (no HTTP/2), reads the
// AdmissionReview with encoding/json and answers allowed with a fixed one-operation JSON patch.
//
//	-mode=review  decodes the AdmissionReview into admissionv1.AdmissionReview (request.object left raw) and
//	              encodes the answer: the cost of any webhook
//	-mode=pod     also decodes request.object into a corev1.Pod: the cost of a webhook that reads the pod
//
// Usage: floor -mode=review -addr=127.0.0.1:9444 -cert-dir=DIR (tls.crt, tls.key)
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/sidecar-dev/sidecar-injector/test/bench/floor/floorserver"
)

func main() {
	mode := flag.String("mode", "review", "review: decode the AdmissionReview only; pod: also decode request.object into a Pod")
	addr := flag.String("addr", "127.0.0.1:9444", "listen address")
	certDir := flag.String("cert-dir", "", "directory holding tls.crt and tls.key")
	flag.Parse()
	h, err := floorserver.NewHandler(*mode)
	if err != nil {
		log.Fatal(err)
	}
	cert, err := tls.LoadX509KeyPair(filepath.Join(*certDir, "tls.crt"), filepath.Join(*certDir, "tls.key"))
	if err != nil {
		log.Fatalf("serving certificate: %v", err)
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	srv := floorserver.NewServer(h, cert)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	fmt.Fprintf(os.Stderr, "floor: mode=%s listening on %s\n", *mode, ln.Addr())
	if err := srv.ServeTLS(ln, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Fatal(err)
	}
}
