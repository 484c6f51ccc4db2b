package metrics

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/sidecar-dev/sidecar-injector/internal/version"
)

func TestBuildInfoNamesThisBuild(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	New(reg)
	b := version.Get()
	want := `
# HELP sidecar_injector_build_info Always 1; the labels say which build this replica runs: version, commit and Go version.
# TYPE sidecar_injector_build_info gauge
sidecar_injector_build_info{commit="` + b.Commit + `",go_version="` + b.GoVersion + `",version="` + b.Version + `"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "sidecar_injector_build_info"); err != nil {
		t.Error(err)
	}
}

// selfSigned returns a certificate (DER only, no Leaf, as tls.Certificate may come) valid until notAfter.
func selfSigned(t *testing.T, notAfter time.Time) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: notAfter.Add(-time.Hour), NotAfter: notAfter}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

func TestServingCertificateExpiryIsAbsentUntilACertificateIsLoadedThenFollowsRotation(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	m, err := New(reg)
	if err != nil {
		t.Fatal(err)
	}
	const name = "sidecar_injector_serving_certificate_not_after_seconds"
	if n, err := testutil.GatherAndCount(reg, name); err != nil || n != 0 {
		t.Fatalf("before any certificate: %d series (%v), want none (a zero would read as expired)", n, err)
	}
	first := time.Date(2027, 1, 2, 3, 4, 5, 0, time.UTC)
	m.SetServingCertificate(selfSigned(t, first))
	if got := testutil.ToFloat64(m.process.certNotAfter.WithLabelValues()); got != float64(first.Unix()) {
		t.Errorf("not after = %v, want %v", got, first.Unix())
	}
	rotated := first.AddDate(1, 0, 0)
	m.SetServingCertificate(selfSigned(t, rotated))
	if got := testutil.ToFloat64(m.process.certNotAfter.WithLabelValues()); got != float64(rotated.Unix()) {
		t.Errorf("after rotation not after = %v, want %v", got, rotated.Unix())
	}
	m.SetServingCertificate(tls.Certificate{}) // nothing to read: the last value stays
	if got := testutil.ToFloat64(m.process.certNotAfter.WithLabelValues()); got != float64(rotated.Unix()) {
		t.Errorf("an empty certificate changed the value to %v", got)
	}
}

func TestCacheSyncIsAskedAtEveryScrape(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	m, err := New(reg)
	if err != nil {
		t.Fatal(err)
	}
	templatesSynced := false
	m.TrackCacheSync("templates", func() bool { return templatesSynced })
	m.TrackCacheSync("namespaces", func() bool { return true })
	want := func(templates string) string {
		return `
# HELP sidecar_injector_cache_synced 1 when the informer cache (templates, namespaces, revisions) has delivered its initial list, else 0. A replica is ready only when every cache has synced.
# TYPE sidecar_injector_cache_synced gauge
sidecar_injector_cache_synced{informer="namespaces"} 1
sidecar_injector_cache_synced{informer="templates"} ` + templates + "\n"
	}
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want("0")), "sidecar_injector_cache_synced"); err != nil {
		t.Error(err)
	}
	templatesSynced = true
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want("1")), "sidecar_injector_cache_synced"); err != nil {
		t.Error(err)
	}
}
