package hardening

import (
	"testing"
	"time"

	"github.com/sidecar-dev/sidecar-injector/internal/server"
)

// This file's name puts it last: its test waits for the slow clients that TestMain started, which ran while
// every other test used the server.

// TestSlowClientsAreDisconnectedWithinTheServerTimeouts checks the slow clients TestMain started: a connection
// that never starts TLS and one that sends its headers a byte at a time are closed within ReadHeaderTimeout;
// one that trickles its body is closed within ReadTimeout. Meanwhile every other test ran against the server.
func TestSlowClientsAreDisconnectedWithinTheServerTimeouts(t *testing.T) {
	select {
	case <-slow.done:
	case <-time.After(90 * time.Second):
		t.Fatal("the slow clients did not finish within 90s")
	}
	const slack = 3 * time.Second
	for name, limit := range map[string]time.Duration{
		"no TLS handshake":  server.ReadHeaderTimeout,
		"slowloris headers": server.ReadHeaderTimeout,
		"slow body":         server.ReadTimeout,
	} {
		r, ok := slow.results[name]
		switch {
		case !ok:
			t.Errorf("%s: no result", name)
		case r.err != nil:
			t.Errorf("%s: %v", name, r.err)
		case r.closedAfter > limit+slack:
			t.Errorf("%s: closed after %s, want within %s (+%s)", name, r.closedAfter.Round(time.Millisecond), limit, slack)
		case r.closedAfter < limit-slack:
			t.Errorf("%s: closed after %s already; the limit is %s", name, r.closedAfter.Round(time.Millisecond), limit)
		default:
			t.Logf("%s: closed by the server after %s (limit %s)", name, r.closedAfter.Round(time.Millisecond), limit)
		}
	}
	assertServes(t, srv.addr, "the slow clients")
}
