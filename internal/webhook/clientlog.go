package webhook

import (
	"bytes"
	"errors"
	"io"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"golang.org/x/time/rate"
)

// The rate of ClientErrorLog at the default log level: a burst of ClientErrorBurst lines, then one line per
// ClientErrorInterval. Enough to see that something is sending junk and what; the metrics
// (sidecar_injector_webhook_requests_total by code) count every request.
const (
	ClientErrorInterval = time.Second
	ClientErrorBurst    = 10
)

// ClientErrorLog writes what a client got wrong (a body that is not an AdmissionReview, a pod that cannot be
// read, a TLS handshake that failed, a client that went away), so that a flood of junk cannot become a flood of
// logs. Each event is one line at info level, never an error with a stack trace (the injector did nothing wrong);
// at the default level the lines are rate-limited and the next line written says how many were suppressed
// before it; with debug logging on (V(1)) every event is written. Safe for concurrent use.
type ClientErrorLog struct {
	log        logr.Logger
	limit      *rate.Limiter
	suppressed atomic.Int64
}

// NewClientErrorLog returns a ClientErrorLog writing to log.
func NewClientErrorLog(log logr.Logger) *ClientErrorLog {
	return &ClientErrorLog{log: log, limit: rate.NewLimiter(rate.Every(ClientErrorInterval), ClientErrorBurst)}
}

// Log writes msg with the error's text and the key/value pairs, or counts it as suppressed.
func (c *ClientErrorLog) Log(msg string, err error, kv ...any) {
	if c == nil {
		return
	}
	kv = append(kv, "error", err.Error())
	if v := c.log.V(1); v.Enabled() {
		v.Info(msg, kv...)
		return
	}
	if !c.limit.Allow() {
		c.suppressed.Add(1)
		return
	}
	if n := c.suppressed.Swap(0); n > 0 {
		kv = append(kv, "suppressedBefore", n)
	}
	c.log.Info(msg, kv...)
}

// Writer returns an io.Writer for a log.Logger (http.Server.ErrorLog): each write is one event, logged under msg.
func (c *ClientErrorLog) Writer(msg string) io.Writer { return clientErrorWriter{c, msg} }

type clientErrorWriter struct {
	c   *ClientErrorLog
	msg string
}

func (w clientErrorWriter) Write(p []byte) (int, error) {
	w.c.Log(w.msg, errors.New(string(bytes.TrimSpace(p))))
	return len(p), nil
}
