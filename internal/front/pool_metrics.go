package front

import (
	"time"

	"github.com/freshetdb/freshet/connectors/postgres"
	"github.com/prometheus/client_golang/prometheus"
)

// poolMetrics show the pool of reused origin connections: how many are
// open, idle and waited for, and how long clients wait.
type poolMetrics struct {
	wait *prometheus.HistogramVec
}

func newPoolMetrics() *poolMetrics {
	return &poolMetrics{wait: prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "freshet_origin_pool_wait_seconds",
		Help:    "Waits of client sessions for a pooled origin connection when --pool-size were all in use, by outcome: got (one came free) or gave_up (the wait timed out, or the session or node ended).",
		Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10),
	}, []string{"outcome"})}
}

func (m *poolMetrics) waited(d time.Duration, got bool) {
	outcome := "gave_up"
	if got {
		outcome = "got"
	}
	m.wait.WithLabelValues(outcome).Observe(d.Seconds())
}

// register adds the metrics to reg; on a registry that already has them
// (another front end's), the first front end's are shown.
func (m *poolMetrics) register(reg prometheus.Registerer, pool *postgres.OriginPool) {
	gauge := func(name, help string, f func() int) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, func() float64 { return float64(f()) })
	}
	for _, c := range []prometheus.Collector{
		m.wait,
		gauge("freshet_origin_pool_open", "Pooled origin connections open: lent to client sessions or idle.", pool.Open),
		gauge("freshet_origin_pool_idle", "Pooled origin connections idle, kept for reuse.", pool.Idle),
		gauge("freshet_origin_pool_waiting", "Client sessions waiting for a pooled origin connection (--pool-size reached).", pool.Waiting),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "freshet_origin_pool_ended_total",
			Help: "Idle pooled origin connections that the origin had ended (a restart, a failover, pg_terminate_backend, idle_session_timeout), closed instead of being lent.",
		}, func() float64 { return float64(pool.Ended()) }),
	} {
		_ = reg.Register(c)
	}
}
