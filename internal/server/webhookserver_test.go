package server

import (
	"bufio"
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
)

// startShortServer runs the webhook server with short limits, serving /ok at once and /slow after 800 ms.
func startShortServer(t *testing.T, configure func(*webhookServer)) (string, context.CancelFunc, *error, <-chan struct{}) {
	t.Helper()
	o := validOptions(t)
	s := newWebhookServer(webhookServerOptions(o), logr.Discard())
	s.readHeaderTimeout, s.readTimeout, s.writeTimeout, s.idleTimeout, s.drain = 300*time.Millisecond, 600*time.Millisecond, 300*time.Millisecond, 400*time.Millisecond, time.Second
	if configure != nil {
		configure(s)
	}
	s.Register("/ok", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		_, _ = w.Write([]byte("ok"))
	}))
	s.Register("/slow", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		time.Sleep(800 * time.Millisecond)
		_, _ = w.Write([]byte("slow"))
	}))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	var startErr error
	go func() { startErr = s.Start(ctx); close(done) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("the server did not stop")
		}
	})
	addr := net.JoinHostPort(o.WebhookHost, strconv.Itoa(o.WebhookPort))
	deadline := time.Now().Add(10 * time.Second)
	for s.StartedChecker()(nil) != nil {
		if time.Now().After(deadline) {
			t.Fatal("not serving")
		}
		time.Sleep(20 * time.Millisecond)
	}
	return addr, cancel, &startErr, done
}

func dialTLS(t *testing.T, addr string) *tls.Conn {
	t.Helper()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// closedWithin reads from c until the server closes it and returns how long that took (failing after 5 s).
func closedWithin(t *testing.T, c net.Conn, start time.Time) time.Duration {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := io.Copy(io.Discard, c)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatal("the server kept the connection open for 5s")
	}
	return time.Since(start)
}

func TestTheWebhookServerEnforcesItsTimeouts(t *testing.T) {
	addr, _, _, _ := startShortServer(t, nil)

	t.Run("headers sent too slowly: closed at ReadHeaderTimeout", func(t *testing.T) {
		start := time.Now()
		c := dialTLS(t, addr)
		_, _ = c.Write([]byte("POST /ok HTTP/1.1\r\nHost: x\r\n"))
		if d := closedWithin(t, c, start); d < 250*time.Millisecond || d > 2*time.Second {
			t.Errorf("closed after %s, want about 300ms", d)
		}
	})
	t.Run("a body sent too slowly: closed at ReadTimeout", func(t *testing.T) {
		start := time.Now()
		c := dialTLS(t, addr)
		_, _ = c.Write([]byte("POST /ok HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nabc"))
		if d := closedWithin(t, c, start); d < 500*time.Millisecond || d > 2*time.Second {
			t.Errorf("closed after %s, want about 600ms", d)
		}
	})
	t.Run("a response that takes longer than WriteTimeout is not sent", func(t *testing.T) {
		c := dialTLS(t, addr)
		_, _ = c.Write([]byte("GET /slow HTTP/1.1\r\nHost: x\r\n\r\n"))
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			t.Errorf("got %s %q after the write timeout", resp.Status, body)
		}
	})
	t.Run("an idle keep-alive connection: closed at IdleTimeout", func(t *testing.T) {
		c := dialTLS(t, addr)
		_, _ = c.Write([]byte("GET /ok HTTP/1.1\r\nHost: x\r\n\r\n"))
		br := bufio.NewReader(c)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.ReadAll(resp.Body)
		idleFrom := time.Now()
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err = io.Copy(io.Discard, br)
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Fatal("idle connection still open after 5s")
		}
		if d := time.Since(idleFrom); d < 300*time.Millisecond || d > 2*time.Second {
			t.Errorf("idle connection closed after %s, want about 400ms", d)
		}
	})
}

func TestTheWebhookServerUsesTheDocumentedLimitsAndSuites(t *testing.T) {
	s := newWebhookServer(webhookServerOptions(validOptions(t)), logr.Discard())
	if s.readHeaderTimeout != ReadHeaderTimeout || s.readTimeout != ReadTimeout || s.writeTimeout != WriteTimeout || s.idleTimeout != IdleTimeout || s.drain != ShutdownDrain {
		t.Errorf("limits %v %v %v %v %v differ from the documented constants", s.readHeaderTimeout, s.readTimeout, s.writeTimeout, s.idleTimeout, s.drain)
	}
	if ReadHeaderTimeout >= 10*time.Second+time.Millisecond || ReadTimeout > 30*time.Second || WriteTimeout > 30*time.Second {
		t.Errorf("limits beyond the API server's webhook timeout")
	}
	var cfg tls.Config
	for _, op := range webhookServerOptions(validOptions(t)).TLSOpts {
		op(&cfg)
	}
	for _, id := range cfg.CipherSuites {
		name := tls.CipherSuiteName(id)
		if !strings.HasPrefix(name, "TLS_ECDHE_") || !(strings.Contains(name, "GCM") || strings.Contains(name, "CHACHA20")) {
			t.Errorf("suite %s is not ECDHE+AEAD", name)
		}
	}
	if len(cfg.CipherSuites) == 0 || cfg.MinVersion != tls.VersionTLS12 {
		t.Errorf("suites %v, min version %x", cfg.CipherSuites, cfg.MinVersion)
	}
}

// TestShutdownAnswersInFlightRequests: a request in flight when the context is cancelled is answered, the
// server returns nil, and a connection opened after the cancel is refused.
func TestShutdownAnswersInFlightRequests(t *testing.T) {
	addr, cancel, startErr, done := startShortServer(t, func(s *webhookServer) { s.writeTimeout = 5 * time.Second })
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	type result struct {
		status int
		body   string
		err    error
	}
	res := make(chan result, 1)
	go func() {
		resp, err := client.Get("https://" + addr + "/slow")
		if err != nil {
			res <- result{err: err}
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		res <- result{status: resp.StatusCode, body: string(b)}
	}()
	time.Sleep(200 * time.Millisecond) // the request is in the handler (which takes 800 ms)
	cancel()
	r := <-res
	if r.err != nil || r.status != http.StatusOK || r.body != "slow" {
		t.Errorf("in-flight request: %d %q %v; want 200 slow", r.status, r.body, r.err)
	}
	select {
	case <-done:
		if *startErr != nil {
			t.Errorf("Start returned %v", *startErr)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Start did not return")
	}
	if _, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		t.Error("the server still accepts connections after shutdown")
	}
}
