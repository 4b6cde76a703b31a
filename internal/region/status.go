package region

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/freshetdb/freshet/connectors/kafka"
	"github.com/freshetdb/freshet/internal/admin"
	"github.com/freshetdb/freshet/materialize"
)

// Status is a regional node's /status.
type Status struct {
	Region    string          `json:"region"`
	Topic     string          `json:"topic"`
	Watermark admin.Watermark `json:"watermark"`
	// Freshness says what the watermark means: "bound" (progress markers:
	// the lag is a bound), "unknown" (a Debezium source: no watermark,
	// every read goes to the origin) or "estimate" (a Debezium source
	// with an assumed lag: not a bound).
	Freshness string `json:"freshness"`
	// FreshnessReason explains a freshness other than "bound".
	FreshnessReason string         `json:"freshness_reason,omitempty"`
	Consumer        ConsumerStatus `json:"consumer"`
	// Cache is nil until the node has started.
	Cache *materialize.Stats `json:"cache,omitempty"`
}

// ConsumerStatus is what the Kafka consumer and the handler counted.
type ConsumerStatus struct {
	kafka.Stats
	// Invalid are undecodable records skipped (Malformed counts them
	// too); Purges the cache purges the handler made.
	Invalid uint64 `json:"invalid"`
	Purges  uint64 `json:"handler_purges"`
}

// Status reports the node's freshness and counters.
func (n *Node) Status() Status {
	m := n.m.Load()
	s := Status{Region: n.cfg.Region, Topic: n.cfg.Topic, Watermark: admin.WatermarkOf(m, n.cfg.StalenessBound, time.Now()), Freshness: "bound"}
	switch {
	case len(n.cfg.DebeziumTopics) == 0:
	case n.cfg.DebeziumAssumeLag > 0:
		s.Freshness = "estimate"
		s.FreshnessReason = "Debezium topics carry no progress markers; the lag is now minus the newest change's commit time, " +
			"counted only while every partition is read to its end. Not a bound: Kafka Connect may hold changes it has not produced (ADR 0006)"
		s.Watermark.Position = "" // EstimatePosition claims no commit position
	default:
		s.Freshness = "unknown"
		s.FreshnessReason = "Debezium topics carry no progress markers, so no staleness bound can be shown: every read goes to the origin (ADR 0006)"
	}
	if c := n.consumer.Load(); c != nil {
		s.Consumer.Stats = (*c).Stats()
	}
	if h := n.handler.Load(); h != nil {
		s.Consumer.Invalid, s.Consumer.Purges = h.Invalid(), h.Purges()
	}
	if m != nil {
		st := m.Stats()
		s.Cache = &st
	}
	return s
}

// register puts the region's series on reg; they read the node's state
// at scrape time.
func (n *Node) register(reg prometheus.Registerer) error {
	labels := prometheus.Labels{"region": n.cfg.Region}
	gauge := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help, ConstLabels: labels}, f)
	}
	counter := func(name, help string, f func(ConsumerStatus) uint64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help, ConstLabels: labels},
			func() float64 { return float64(f(n.Status().Consumer)) })
	}
	for _, c := range []prometheus.Collector{
		gauge("freshet_region_watermark_lag_seconds", "Now minus the commit time of the last progress marker applied from Kafka (-1 before the first).",
			func() float64 { return n.Status().Watermark.LagSeconds }),
		gauge("freshet_region_stale", "1 while reads are tunneled to the origin because the watermark is unset or older than the staleness bound.",
			func() float64 {
				if n.Status().Watermark.Stale {
					return 1
				}
				return 0
			}),
		counter("freshet_kafka_consumer_changes_total", "Row changes delivered by the Kafka consumer.", func(s ConsumerStatus) uint64 { return s.Changes }),
		counter("freshet_kafka_consumer_duplicates_total", "Records dropped as already delivered (a restarted ingest republishes).", func(s ConsumerStatus) uint64 { return s.Duplicates }),
		counter("freshet_kafka_consumer_malformed_total", "Records skipped because they did not decode.", func(s ConsumerStatus) uint64 { return s.Malformed }),
		counter("freshet_kafka_consumer_purges_total", "Times the region lost its offsets in the topic and purged.", func(s ConsumerStatus) uint64 { return s.Stats.Purges }),
		counter("freshet_kafka_consumer_fetch_resyncs_total", "Fetch connections made again because the Kafka client lost its place in the broker's responses.", func(s ConsumerStatus) uint64 { return s.Resyncs }),
		counter("freshet_region_handler_purges_total", "Cache purges by the region (lost offsets, undecodable records of unknown table).", func(s ConsumerStatus) uint64 { return s.Purges }),
	} {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}
