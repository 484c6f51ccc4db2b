package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	stdlog "log"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"sigs.k8s.io/controller-runtime/pkg/certwatcher"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	crwebhook "sigs.k8s.io/controller-runtime/pkg/webhook"

	"github.com/sidecar-dev/sidecar-injector/internal/webhook"
)

// The webhook server's HTTP limits. controller-runtime's own server (v0.25) sets only ReadHeaderTimeout (32 s) and
// IdleTimeout and exposes none of them, so the injector runs its own http.Server (webhookServer below) with the
// same TLS listener, certificate watcher and mux, and these values. The API server gives a webhook at most 30 s
// (10 s by default) for a whole call, so anything slower than that is not a client worth waiting for.
const (
	// ReadHeaderTimeout bounds the TLS handshake plus the request line and headers of a new connection: a client
	// that sends its headers slowly (slowloris) is disconnected after it.
	ReadHeaderTimeout = 10 * time.Second
	// ReadTimeout bounds reading a whole request, body included (at most 7 MiB, controller-runtime's limit).
	ReadTimeout = 20 * time.Second
	// WriteTimeout bounds the time from the end of the request headers to the end of the response.
	WriteTimeout = 30 * time.Second
	// IdleTimeout is how long a keep-alive connection may wait for its next request (the API server's client
	// keeps idle connections for 90 s).
	IdleTimeout = 90 * time.Second
	// MaxHeaderBytes bounds the request headers.
	MaxHeaderBytes = 1 << 20
	// ShutdownDrain is how long, at most, the server keeps answering on connections it already accepted after it
	// stopped accepting new ones, telling every client to close ("Connection: close"), before it shuts down. It
	// ends as soon as no connection is left. Without it, a keep-alive connection closed as idle can race with a
	// request the client is writing on it, and that request fails.
	ShutdownDrain = 2 * time.Second
	// ShutdownTimeout bounds the wait for in-flight requests after the drain.
	ShutdownTimeout = 30 * time.Second
)

// cipherSuites are the TLS 1.2 suites the webhook server accepts: ECDHE key exchange and AEAD ciphers only (no
// CBC, no RSA key exchange, no 3DES/RC4). TLS 1.3 suites are not configurable in Go and are all AEAD.
var cipherSuites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}

// webhookServer is a crwebhook.Server like controller-runtime's DefaultServer (same options, TLS listener,
// certwatcher, mux), with the timeouts above and a draining shutdown.
type webhookServer struct {
	opts crwebhook.Options
	log  logr.Logger

	mu      sync.Mutex
	paths   map[string]bool
	started bool
	mux     *http.ServeMux

	draining atomic.Bool
	conns    atomic.Int64 // open connections

	// onCertificate, when set, is called with every certificate the watcher loads (the expiry metric).
	onCertificate func(tls.Certificate)

	// The limits above; fields so that unit tests can shorten them.
	readHeaderTimeout, readTimeout, writeTimeout, idleTimeout, drain time.Duration
}

var _ crwebhook.Server = (*webhookServer)(nil)

// newWebhookServer returns the webhook server Run uses.
func newWebhookServer(o crwebhook.Options, log logr.Logger) *webhookServer {
	if o.WebhookMux == nil {
		o.WebhookMux = http.NewServeMux()
	}
	if o.Port == 0 {
		o.Port = DefaultWebhookPort
	}
	if o.CertName == "" {
		o.CertName = CertName
	}
	if o.KeyName == "" {
		o.KeyName = KeyName
	}
	return &webhookServer{opts: o, log: log, paths: map[string]bool{}, mux: o.WebhookMux,
		readHeaderTimeout: ReadHeaderTimeout, readTimeout: ReadTimeout, writeTimeout: WriteTimeout, idleTimeout: IdleTimeout,
		drain: ShutdownDrain}
}

// NewWebhookServer returns the webhook server as Run configures it from opts (address, certificate directory, TLS
// versions and suites, HTTP/2, the limits above), without client authentication: for benchmarks that serve the
// webhook path beside other servers in one process (test/bench/inprocess). Register the handler, then Start it.
func NewWebhookServer(opts Options, log logr.Logger) crwebhook.Server {
	return newWebhookServer(webhookServerOptions(opts), log)
}

// NeedLeaderElection is false: every replica serves admissions.
func (*webhookServer) NeedLeaderElection() bool { return false }

// Register serves hook on path; it panics on a duplicate path, as controller-runtime's server does.
func (s *webhookServer) Register(path string, hook http.Handler) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.paths[path] {
		panic(fmt.Errorf("can't register duplicate path: %v", path))
	}
	s.paths[path] = true
	s.mux.Handle(path, hook)
}

// WebhookMux returns the server's mux.
func (s *webhookServer) WebhookMux() *http.ServeMux { return s.mux }

// Start serves until ctx is done, then drains and shuts down (see ShutdownDrain).
func (s *webhookServer) Start(ctx context.Context) error {
	log := s.log
	cfg := &tls.Config{NextProtos: []string{"h2"}}
	for _, op := range s.opts.TLSOpts {
		op(cfg)
	}
	if cfg.GetCertificate == nil {
		w, err := certwatcher.New(filepath.Join(s.opts.CertDir, s.opts.CertName), filepath.Join(s.opts.CertDir, s.opts.KeyName))
		if err != nil {
			return err
		}
		cfg.GetCertificate = w.GetCertificate
		if s.onCertificate != nil {
			w.RegisterCallback(s.onCertificate) // called at once with the certificate New loaded
		}
		go func() {
			if err := w.Start(ctx); err != nil {
				log.Error(err, "certificate watcher error")
			}
		}()
	}
	ln, err := tls.Listen("tcp", net.JoinHostPort(s.opts.Host, strconv.Itoa(s.opts.Port)), cfg)
	if err != nil {
		return err
	}
	srv := &http.Server{
		// Requests are not cancelled by the shutdown itself: in-flight admissions are answered.
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
		Handler:           http.HandlerFunc(s.serveHTTP),
		ReadHeaderTimeout: s.readHeaderTimeout,
		ReadTimeout:       s.readTimeout,
		WriteTimeout:      s.writeTimeout,
		IdleTimeout:       s.idleTimeout,
		MaxHeaderBytes:    MaxHeaderBytes,
		// What net/http logs is about connections (failed TLS handshakes, clients that went away): the client's
		// doing, so rate-limited instead of one line on stderr each.
		ErrorLog: stdlog.New(webhook.NewClientErrorLog(log).Writer("webhook server: connection error"), "", 0),
		ConnState: func(_ net.Conn, st http.ConnState) {
			switch st {
			case http.StateNew:
				s.conns.Add(1)
			case http.StateClosed, http.StateHijacked:
				s.conns.Add(-1)
			}
		},
	}
	if !slices.Contains(cfg.NextProtos, "h2") {
		srv.TLSNextProto = map[string]func(*http.Server, *tls.Conn, http.Handler){} // no HTTP/2 at all
	}

	s.mu.Lock()
	s.started = true
	s.mu.Unlock()
	log.Info("serving webhook server", "host", s.opts.Host, "port", s.opts.Port)

	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	select {
	case err := <-served:
		return err
	case <-ctx.Done():
	}

	// Stop accepting, keep answering the connections already open with "Connection: close" until none is left
	// or ShutdownDrain passed, then shut down (closing idle connections, waiting for in-flight requests).
	s.draining.Store(true)
	_ = ln.Close()
	deadline := time.Now().Add(s.drain)
	for s.conns.Load() > 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	sctx, cancel := context.WithTimeout(context.Background(), ShutdownTimeout)
	defer cancel()
	log.Info("shutting down webhook server", "openConnections", s.conns.Load())
	err = srv.Shutdown(sctx)
	if serr := <-served; serr != nil && !errors.Is(serr, http.ErrServerClosed) && !errors.Is(serr, net.ErrClosed) {
		log.Error(serr, "webhook server")
	}
	if err != nil {
		return fmt.Errorf("webhook server shutdown: %w", err)
	}
	return nil
}

func (s *webhookServer) serveHTTP(w http.ResponseWriter, r *http.Request) {
	if s.draining.Load() {
		w.Header().Set("Connection", "close")
	}
	s.mux.ServeHTTP(w, r)
}

// StartedChecker is healthy once the server accepts TLS connections.
func (s *webhookServer) StartedChecker() healthz.Checker {
	return func(*http.Request) error {
		s.mu.Lock()
		started := s.started
		s.mu.Unlock()
		if !started {
			return errors.New("webhook server has not been started yet")
		}
		host := s.opts.Host
		d := &net.Dialer{Timeout: 10 * time.Second}
		conn, err := tls.DialWithDialer(d, "tcp", net.JoinHostPort(host, strconv.Itoa(s.opts.Port)), &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // a reachability probe
		if err != nil {
			return fmt.Errorf("webhook server is not reachable: %w", err)
		}
		return conn.Close()
	}
}
