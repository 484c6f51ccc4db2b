package hardening

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/sidecar-dev/sidecar-injector/internal/server"
	"github.com/sidecar-dev/sidecar-injector/internal/webhook"
)

// logCapture keeps every line a logger writes.
type logCapture struct {
	mu    sync.Mutex
	lines []string
}

func (c *logCapture) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	sc := bufio.NewScanner(bytes.NewReader(p))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		c.lines = append(c.lines, sc.Text())
	}
	return len(p), nil
}

func (c *logCapture) snapshot() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.lines...)
}

// TestAJunkFloodDoesNotBecomeALogFlood runs a server logging as `serve` does by default (zap, JSON, info level,
// stack traces on errors) and sends it junk: bodies that are not AdmissionReviews, wrong Content-Types, reviews
// without a uid, pods it cannot read, and connections that are not TLS. Every request is answered; the log gets
// at most a burst and then one line per second per source, each one JSON line at info level without a stack
// trace.
func TestAJunkFloodDoesNotBecomeALogFlood(t *testing.T) {
	var logs logCapture
	logger := zap.New(zap.WriteTo(&logs), zap.UseDevMode(false))
	s, err := startInProcessWith(filepath.Join(t.TempDir(), "certs"), false, func(o *server.Options) { o.Log = logger })
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := s.stop(); err != nil {
			t.Error(err)
		}
	}()
	before := len(logs.snapshot())

	junk := []struct {
		contentType string
		body        []byte
	}{
		{"application/json", []byte(`{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionRev`)},
		{"text/plain", reviewJSON("ct", "load", podJSON("load", ""))},
		{"application/json", reviewJSON("", "load", podJSON("load", ""))},
		{"application/json", reviewJSON("m1", "load", `{"spec":{"containers":"app"}}`)},
	}
	const requests, workers, rawConns = 2000, 8, 200
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, requests)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := newClient()
			defer c.CloseIdleConnections()
			for i := w; i < requests; i += workers {
				j := junk[i%len(junk)]
				status, ar, data, err := post(c, s.addr, j.contentType, bytes.NewReader(j.body))
				if err == nil && (status != 200 || ar == nil || ar.Response.Allowed) {
					err = fmt.Errorf("HTTP %d: %.200s", status, data)
				}
				if err != nil {
					errs <- err
				}
			}
		}()
	}
	for range rawConns { // not TLS: net/http logs a failed handshake for each
		c, err := net.DialTimeout("tcp", s.addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = c.Write([]byte("GET / HTTP/1.1\r\nHost: junk\r\n\r\n"))
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, _ = c.Read(make([]byte, 512))
		_ = c.Close()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("a junk request was not answered with a refusal: %v", err)
	}
	elapsed := time.Since(start)
	time.Sleep(200 * time.Millisecond) // the last handshake errors are logged after the connection closes

	lines := logs.snapshot()[before:]
	// Two sources (the admission handler, the HTTP server's connection errors), each a burst then one per interval.
	budget := 2 * (webhook.ClientErrorBurst + int(elapsed/webhook.ClientErrorInterval) + 1)
	t.Logf("%d junk requests and %d junk connections in %s: %d log lines (budget %d)", requests, rawConns, elapsed.Round(time.Millisecond), len(lines), budget)
	if len(lines) > budget {
		t.Errorf("%d log lines for %d junk requests, more than %d: %q", len(lines), requests+rawConns, budget, lines[:min(len(lines), 5)])
	}
	var sawHandler, sawConn bool
	for _, l := range lines {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Errorf("not one JSON line: %q", l)
			continue
		}
		if m["level"] != "info" || m["stacktrace"] != nil {
			t.Errorf("a client's junk was logged at level %v with stacktrace %v: %.300s", m["level"], m["stacktrace"] != nil, l)
		}
		msg := fmt.Sprint(m["msg"])
		sawHandler = sawHandler || strings.HasPrefix(msg, "admission: ")
		sawConn = sawConn || msg == "webhook server: connection error"
	}
	if !sawHandler || !sawConn {
		t.Errorf("junk lines from the handler: %v, from the HTTP server: %v; want both, rate-limited, not silence", sawHandler, sawConn)
	}
}
