package ingestnode

import "github.com/prometheus/client_golang/prometheus"

// Status is the ingest's /status.
type Status struct {
	Topic string `json:"topic"`
	Slot  string `json:"slot"`
	// Durable is the position up to which every change is in Kafka and
	// the slot may be acknowledged; empty before the first.
	Durable string `json:"durable_position"`
	// Restarts counts pipelines started again after a failure.
	Restarts uint64 `json:"restarts"`
	// SetupRetries counts attempts to set up the publication and slot
	// that failed because the origin was unreachable or not ready.
	SetupRetries uint64 `json:"setup_retries"`
	// KafkaUp: the current producer was created and has not failed.
	KafkaUp bool `json:"kafka_up"`
	// LastError is what stopped the last pipeline.
	LastError string `json:"last_error,omitempty"`
}

// Status reports the node's progress.
func (n *Node) Status() Status {
	s := Status{Topic: n.cfg.Topic, Slot: n.cfg.Slot, Restarts: n.restarts.Load(), SetupRetries: n.setupRetries.Load(), KafkaUp: n.kafkaUp.Load()}
	if d := n.Durable(); !d.IsZero() {
		s.Durable = d.String()
	}
	if e := n.lastErr.Load(); e != nil {
		s.LastError = *e
	}
	return s
}

func (n *Node) register(reg prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "freshet_ingest_restarts_total",
			Help: "Pipelines started again from the durable position after a failure (Kafka down, source lost)."},
			func() float64 { return float64(n.restarts.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "freshet_ingest_kafka_up",
			Help: "1 while the current Kafka producer works, 0 while Kafka is unreachable or the producer failed."},
			func() float64 {
				if n.kafkaUp.Load() {
					return 1
				}
				return 0
			}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "freshet_ingest_durable_lsn",
			Help: "The position (PostgreSQL LSN as a number) up to which every change is in Kafka."},
			func() float64 { return float64(n.Durable().LSN) }),
	} {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}
