package metrics

import (
	"crypto/tls"
	"crypto/x509"
	"slices"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sidecar-dev/sidecar-injector/internal/version"
)

// process holds the collectors about the injector process itself rather than its admissions: what build it is,
// when the certificate it serves expires, and whether its informer caches have synced. The alerts of the chart's
// PrometheusRule are built on them (docs/monitoring.md).
type process struct {
	buildInfo    *prometheus.GaugeVec
	certNotAfter *prometheus.GaugeVec // no labels: a vector only so that it is absent until Set
	caches       *cacheSyncCollector
}

func newProcess() *process {
	p := &process{
		buildInfo: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sidecar_injector_build_info",
			Help: "Always 1; the labels say which build this replica runs: version, commit and Go version.",
		}, []string{"version", "commit", "go_version"}),
		certNotAfter: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sidecar_injector_serving_certificate_not_after_seconds",
			Help: "When the webhook's serving certificate, as loaded from --cert-dir, expires (Unix seconds). " +
				"Absent until the webhook server has loaded a certificate.",
		}, nil),
		caches: &cacheSyncCollector{
			desc: prometheus.NewDesc("sidecar_injector_cache_synced",
				"1 when the informer cache (templates, namespaces, revisions) has delivered its initial list, else 0. "+
					"A replica is ready only when every cache has synced.", []string{"informer"}, nil),
			synced: map[string]func() bool{},
		},
	}
	b := version.Get()
	p.buildInfo.WithLabelValues(b.Version, b.Commit, b.GoVersion).Set(1)
	return p
}

// SetServingCertificate records the expiry of the certificate the webhook server now serves. The server calls it
// with every certificate its watcher loads (at start and on every rotation). Until the first call the gauge is
// absent, so that a replica that has no certificate yet exports no misleading zero.
func (m *Metrics) SetServingCertificate(cert tls.Certificate) {
	leaf := cert.Leaf
	if leaf == nil && len(cert.Certificate) > 0 {
		leaf, _ = x509.ParseCertificate(cert.Certificate[0])
	}
	if leaf == nil {
		return // a key pair that tls.X509KeyPair accepted always has a parsable leaf; nothing to report otherwise
	}
	m.process.certNotAfter.WithLabelValues().Set(float64(leaf.NotAfter.Unix()))
}

// TrackCacheSync exports sidecar_injector_cache_synced{informer=name} from synced, asked at every scrape (e.g.
// the HasSynced of the informer's event handler registration). A later call with the same name replaces it.
func (m *Metrics) TrackCacheSync(name string, synced func() bool) {
	m.process.caches.mu.Lock()
	defer m.process.caches.mu.Unlock()
	m.process.caches.synced[name] = synced
}

// cacheSyncCollector asks each informer at scrape time, so the value is never stale.
type cacheSyncCollector struct {
	desc   *prometheus.Desc
	mu     sync.Mutex
	synced map[string]func() bool
}

func (c *cacheSyncCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *cacheSyncCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	defer c.mu.Unlock()
	names := make([]string, 0, len(c.synced))
	for n := range c.synced {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		v := 0.0
		if c.synced[n]() {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, v, n)
	}
}
