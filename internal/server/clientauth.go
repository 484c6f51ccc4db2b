package server

import (
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/sidecar-dev/sidecar-injector/internal/metrics"
	"github.com/sidecar-dev/sidecar-injector/internal/webhook"
)

// clientAuth authenticates the caller of the webhook path as the API server, when the options ask for it: a
// client certificate issued by the CA of ClientCAFile (and, with ClientNames, naming one of them), and/or the
// bearer token of ClientTokenFile. The API server presents either one through the kubeConfigFile of its
// WebhookAdmissionConfiguration (--admission-control-config-file). Without them, anyone who can reach the port
// can post an AdmissionReview and read what a template renders for a pod of any namespace.
//
// The TLS layer only verifies a certificate when one is offered (tls.VerifyClientCertIfGiven): the readiness
// probe dials the port without one, and a caller without credentials gets an HTTP 401 that says what is missing
// instead of a failed handshake. A certificate from another CA still fails the handshake.
type clientAuth struct {
	pool  *x509.CertPool // nil: no client certificate required
	names []string       // when set, the certificate's CN or a DNS SAN must be one of them
	token []byte         // nil: no bearer token required
}

// loadClientAuth reads the files named by the options; nil when no client authentication is configured.
func loadClientAuth(o *Options) (*clientAuth, error) {
	if len(o.ClientNames) > 0 && o.ClientCAFile == "" {
		return nil, errors.New("--client-names needs --client-ca-file: the names are checked in the client certificate that CA issued")
	}
	if o.ClientCAFile == "" && o.ClientTokenFile == "" {
		return nil, nil
	}
	a := &clientAuth{names: o.ClientNames}
	if o.ClientCAFile != "" {
		pem, err := os.ReadFile(o.ClientCAFile)
		if err != nil {
			return nil, fmt.Errorf("cannot read --client-ca-file: %w", err)
		}
		a.pool = x509.NewCertPool()
		if !a.pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--client-ca-file %q holds no PEM certificate", o.ClientCAFile)
		}
	}
	if o.ClientTokenFile != "" {
		data, err := os.ReadFile(o.ClientTokenFile)
		if err != nil {
			return nil, fmt.Errorf("cannot read --client-token-file: %w", err)
		}
		if a.token = []byte(strings.TrimSpace(string(data))); len(a.token) == 0 {
			return nil, fmt.Errorf("--client-token-file %q is empty", o.ClientTokenFile)
		}
	}
	return a, nil
}

// configureTLS makes the server ask for a client certificate and verify any it gets against the CA.
func (a *clientAuth) configureTLS(c *tls.Config) {
	if a != nil && a.pool != nil {
		c.ClientCAs = a.pool
		c.ClientAuth = tls.VerifyClientCertIfGiven
	}
}

// wrap returns next behind the checks. A request that fails them is answered with HTTP 401 (no or wrong
// credentials) or 403 (a certificate of the CA for a name not allowed), logged through log and counted in m:
// the caller is not the API server, so there is no AdmissionReview to answer.
func (a *clientAuth) wrap(next http.Handler, m *metrics.Metrics, log *webhook.ClientErrorLog) http.Handler {
	if a == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		code, err := a.check(r)
		if err == nil {
			next.ServeHTTP(w, r)
			return
		}
		log.Log("admission: client not authenticated", err, "remote", r.RemoteAddr, "code", code)
		if code == http.StatusUnauthorized && a.token != nil {
			w.Header().Set("WWW-Authenticate", `Bearer realm="sidecar-injector"`)
		}
		http.Error(w, "sidecar-injector: "+err.Error(), code)
		m.ObserveRequest(code, time.Since(start))
	})
}

func (a *clientAuth) check(r *http.Request) (int, error) {
	if a.pool != nil {
		if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 {
			return http.StatusUnauthorized, errors.New("a client certificate issued by the --client-ca-file CA is required")
		}
		if leaf := r.TLS.VerifiedChains[0][0]; len(a.names) > 0 && !a.allowed(leaf) {
			return http.StatusForbidden, fmt.Errorf("the client certificate (CN %q, DNS names %q) names none of --client-names", leaf.Subject.CommonName, leaf.DNSNames)
		}
	}
	if a.token != nil {
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || subtle.ConstantTimeCompare([]byte(got), a.token) != 1 {
			return http.StatusUnauthorized, errors.New("the bearer token of --client-token-file is required")
		}
	}
	return 0, nil
}

func (a *clientAuth) allowed(leaf *x509.Certificate) bool {
	if slices.Contains(a.names, leaf.Subject.CommonName) {
		return true
	}
	return slices.ContainsFunc(leaf.DNSNames, func(n string) bool { return slices.Contains(a.names, n) })
}
