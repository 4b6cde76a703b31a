package materialize

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the materializer's Prometheus series, on the registry
// passed in Config.Registerer (never the global one).
type metrics struct {
	// hits, misses and bypasses are lookups' children, resolved once:
	// WithLabelValues hashes labels on every call.
	hits, misses, bypasses prometheus.Counter
	lookups                *prometheus.CounterVec
	bypass                 *prometheus.CounterVec
	fills                  *prometheus.CounterVec
	catalog                *prometheus.CounterVec
	invalidated            prometheus.Counter
	changes                prometheus.Counter
	hitSeconds             prometheus.Histogram
	fillSeconds            prometheus.Histogram
}

// latencyBuckets span a cache hit (microseconds) to a slow origin query.
var latencyBuckets = prometheus.ExponentialBuckets(1e-6, 2, 25)

func newMetrics(reg prometheus.Registerer, m *Materializer) (*metrics, error) {
	mt := &metrics{
		lookups: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "freshet_cache_lookups_total",
			Help: "Cacheable reads by result: hit, miss (filled from the origin) or bypass (origin, unfilled)."}, []string{"result"}),
		bypass: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "freshet_cache_bypass_total",
			Help: "Reads sent to the origin without filling, by reason (analysis reasons and staleness_bound, read_your_writes, ...)."}, []string{"reason"}),
		fills: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "freshet_cache_fills_total",
			Help: "Origin answers offered to the cache, by outcome: admitted, or refused by the stale-fill guard."}, []string{"outcome"}),
		catalog: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "freshet_catalog_changes_total",
			Help: "Changes of the origin's catalog adopted, by effect: scoped (only what read the relations concerned was dropped) or purge (the whole cache)."}, []string{"effect"}),
		invalidated: prometheus.NewCounter(prometheus.CounterOpts{Name: "freshet_cache_invalidated_entries_total",
			Help: "Cached entries invalidated by changes."}),
		changes: prometheus.NewCounter(prometheus.CounterOpts{Name: "freshet_changes_applied_total",
			Help: "Row changes applied from the change stream."}),
		hitSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "freshet_cache_hit_seconds",
			Help: "Time to answer a read from the cache, in the materializer.", Buckets: latencyBuckets}),
		fillSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "freshet_cache_miss_seconds",
			Help: "Time from a miss to the origin's complete answer.", Buckets: latencyBuckets}),
	}
	lag := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "freshet_watermark_age_seconds",
		Help: "Now minus the commit time of the last progress marker applied (-1 before the first)."}, func() float64 {
		_, at, ok := m.wm.get()
		if !ok {
			return -1
		}
		return m.cfg.Now().Sub(at).Seconds()
	})
	mt.hits, mt.misses, mt.bypasses = mt.lookups.WithLabelValues("hit"), mt.lookups.WithLabelValues("miss"), mt.lookups.WithLabelValues("bypass")
	for _, c := range []prometheus.Collector{mt.lookups, mt.bypass, mt.fills, mt.catalog, mt.invalidated, mt.changes, mt.hitSeconds, mt.fillSeconds, lag, newTemplateCollector(m)} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return mt, nil
}

func (mt *metrics) hit(d time.Duration) {
	if mt != nil {
		mt.hits.Inc()
		mt.hitSeconds.Observe(d.Seconds())
	}
}

func (mt *metrics) miss() {
	if mt != nil {
		mt.misses.Inc()
	}
}

func (mt *metrics) bypassed(reason string) {
	if mt != nil {
		mt.bypasses.Inc()
		mt.bypass.WithLabelValues(reason).Inc()
	}
}

func (mt *metrics) filled(admitted bool, d time.Duration) {
	if mt == nil {
		return
	}
	if !admitted {
		mt.fills.WithLabelValues("refused").Inc()
		return
	}
	mt.fills.WithLabelValues("admitted").Inc()
	mt.fillSeconds.Observe(d.Seconds())
}

func (mt *metrics) applied(changes, invalidated int) {
	if mt != nil {
		mt.changes.Add(float64(changes))
		mt.invalidated.Add(float64(invalidated))
	}
}

func (mt *metrics) catalogChanged(effect string) {
	if mt != nil {
		mt.catalog.WithLabelValues(effect).Inc()
	}
}
