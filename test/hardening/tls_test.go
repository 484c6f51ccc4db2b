package hardening

import (
	"bytes"
	"crypto/tls"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

func handshake(cfg *tls.Config) (tls.ConnectionState, error) {
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", srv.addr, cfg)
	if err != nil {
		return tls.ConnectionState{}, err
	}
	defer c.Close()
	return c.ConnectionState(), nil
}

// TestTLSRefusesOldVersionsAndWeakSuites: TLS 1.0/1.1 clients are refused; a TLS 1.2 client offering only CBC
// or RSA-key-exchange suites is refused; TLS 1.2 with ECDHE+AEAD and TLS 1.3 are accepted; a client offering
// h2 gets http/1.1.
func TestTLSRefusesOldVersionsAndWeakSuites(t *testing.T) {
	refused := map[string]*tls.Config{
		"TLS 1.0": {MaxVersion: tls.VersionTLS10},
		"TLS 1.1": {MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11},
		"TLS 1.2 with ECDHE but CBC only": {MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{
			tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA, tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256}},
		"TLS 1.2 with RSA key exchange only": {MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{
			tls.TLS_RSA_WITH_AES_128_GCM_SHA256, tls.TLS_RSA_WITH_AES_256_GCM_SHA384, tls.TLS_RSA_WITH_AES_128_CBC_SHA}},
		"TLS 1.2 with 3DES only": {MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{tls.TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA, tls.TLS_RSA_WITH_3DES_EDE_CBC_SHA}},
	}
	for name, cfg := range refused {
		t.Run("a client offering "+name+" is refused", func(t *testing.T) {
			base := tlsConfig()
			base.MinVersion, base.MaxVersion, base.CipherSuites = cfg.MinVersion, cfg.MaxVersion, cfg.CipherSuites
			st, err := handshake(base)
			if err == nil {
				t.Fatalf("handshake succeeded: version %x, suite %s", st.Version, tls.CipherSuiteName(st.CipherSuite))
			}
		})
	}
	for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		cfg := tlsConfig()
		cfg.MaxVersion = v
		cfg.NextProtos = []string{"h2", "http/1.1"}
		st, err := handshake(cfg)
		if err != nil {
			t.Fatalf("TLS %x client refused: %v", v, err)
		}
		if st.Version != v {
			t.Errorf("negotiated version %x, want %x", st.Version, v)
		}
		if n := tls.CipherSuiteName(st.CipherSuite); !strings.Contains(n, "GCM") && !strings.Contains(n, "CHACHA20") {
			t.Errorf("negotiated suite %s is not AEAD", n)
		}
		if v == tls.VersionTLS12 && !strings.HasPrefix(tls.CipherSuiteName(st.CipherSuite), "TLS_ECDHE_") {
			t.Errorf("negotiated suite %s is not ECDHE", tls.CipherSuiteName(st.CipherSuite))
		}
		if st.NegotiatedProtocol != "http/1.1" {
			t.Errorf("ALPN negotiated %q for a client offering h2, want http/1.1 (HTTP/2 is off by default)", st.NegotiatedProtocol)
		}
	}
	// And over HTTP: an HTTP/2-capable client still speaks HTTP/1.1.
	c := &http.Client{Timeout: webhookTimeout, Transport: &http.Transport{TLSClientConfig: tlsConfig(), ForceAttemptHTTP2: true}}
	resp, err := c.Post("https://"+srv.addr+webhookPath, "application/json", bytes.NewReader(reviewJSON("h2", "load", podJSON("load", ""))))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.ProtoMajor != 1 {
		t.Errorf("protocol %s, want HTTP/1.1", resp.Proto)
	}
}
