package webhook

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/go-logr/logr/funcr"
	"golang.org/x/time/rate"
)

// lines collects the JSON lines of a funcr logger.
type lines struct {
	mu  sync.Mutex
	all []map[string]any
}

func (l *lines) logger(t *testing.T, verbosity int) *ClientErrorLog {
	return NewClientErrorLog(funcr.NewJSON(func(obj string) {
		var m map[string]any
		if err := json.Unmarshal([]byte(obj), &m); err != nil {
			t.Errorf("log line %q is not one JSON object: %v", obj, err)
		}
		l.mu.Lock()
		l.all = append(l.all, m)
		l.mu.Unlock()
	}, funcr.Options{Verbosity: verbosity}))
}

func TestAFloodOfClientErrorsWritesABurstThenOneLineAtATimeAtInfoLevel(t *testing.T) {
	var l lines
	c := l.logger(t, 0)
	const flood = 1000
	for i := range flood {
		c.Log("admission: bad request", fmt.Errorf("junk %d", i), "uid", "u")
	}
	// The flood takes far less than ClientErrorInterval, so at most one token came back during it.
	if n := len(l.all); n < ClientErrorBurst || n > ClientErrorBurst+1 {
		t.Fatalf("%d lines for %d client errors, want the burst of %d (+1 if the flood took over %s)", n, flood, ClientErrorBurst, ClientErrorInterval)
	}
	for _, m := range l.all {
		if m["level"] != float64(0) || m["msg"] != "admission: bad request" || !strings.HasPrefix(fmt.Sprint(m["error"]), "junk ") {
			t.Errorf("line %v: want level 0 (info, never an error with a stack trace), the message and the error's text", m)
		}
	}
	// The next line after the limit refills says how many were left out.
	written := len(l.all)
	c.limit.SetLimit(rate.Inf) // as if the interval had passed, without waiting for it
	c.Log("admission: bad request", errors.New("after"))
	last := l.all[len(l.all)-1]
	if got, want := last["suppressedBefore"], float64(flood-written); got != want {
		t.Errorf("suppressedBefore = %v, want %v (the client errors not written)", got, want)
	}
}

func TestWithDebugLoggingEveryClientErrorIsWritten(t *testing.T) {
	var l lines
	c := l.logger(t, 1)
	for i := range 100 {
		c.Log("admission: cannot read pod", fmt.Errorf("junk %d", i))
	}
	if len(l.all) != 100 {
		t.Errorf("%d lines at V(1) for 100 client errors, want 100", len(l.all))
	}
}

func TestTheWriterMakesOneEventPerWrite(t *testing.T) {
	var l lines
	w := l.logger(t, 0).Writer("webhook server: connection error")
	fmt.Fprintf(w, "http: TLS handshake error from 127.0.0.1:4242: EOF\n")
	if len(l.all) != 1 || l.all[0]["error"] != "http: TLS handshake error from 127.0.0.1:4242: EOF" ||
		l.all[0]["msg"] != "webhook server: connection error" {
		t.Errorf("lines = %v, want one line with the trimmed text as error", l.all)
	}
}
