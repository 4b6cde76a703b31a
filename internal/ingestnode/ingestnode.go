// Package ingestnode runs `freshet ingest`: the origin's change stream
// (a PostgreSQL logical replication slot) into the source's Kafka topic.
//
// The slot is acknowledged only up to what Kafka acknowledged (the
// ingest.Pipeline's contract: the Reader reports Pipeline.Durable, which
// moves only when the Producer reported every batch up to it durable). A
// failed Kafka write poisons the Producer, so the pipeline stops; the node
// closes the producer, backs off, and starts a new pipeline with a new
// producer from the durable position. Consumers drop what is published
// twice. ADR 0009.
package ingestnode

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/freshetdb/freshet/connectors/kafka"
	"github.com/freshetdb/freshet/connectors/postgres"
	"github.com/freshetdb/freshet/ingest"
	"github.com/freshetdb/freshet/schemas"
)

// Config configures a Node.
type Config struct {
	// Source is the origin PostgreSQL URL; the role needs REPLICATION, and
	// superuser to create a FOR ALL TABLES publication. Required.
	Source string
	// Name is the source's name in change events. Default "origin".
	Name string
	// Brokers are Kafka's bootstrap brokers. Required.
	Brokers []string
	// KafkaSecurity is TLS and SASL for the brokers; zero: plaintext.
	KafkaSecurity kafka.Security
	// Topic is the source's topic. Default "freshet." + Slot.
	Topic string
	// Partitions and ReplicationFactor apply when the topic is created.
	// Defaults 3 and 1 (the producer's: every write puts a marker on every
	// partition, so each partition adds a produce request and a fetch per
	// write; ADR 0006).
	Partitions, ReplicationFactor int
	// Slot and Publication are created when missing. Default "freshet".
	Slot, Publication string
	// Tables, when set, are the schema-qualified tables a publication
	// created here includes; default FOR ALL TABLES.
	Tables []string
	// Heartbeat is how often a heartbeat is written into the WAL, so that
	// an idle origin still sends progress markers to every region.
	// Default 50ms.
	Heartbeat time.Duration
	// DDLTrigger creates (when missing) the origin's event trigger that
	// marks DDL, GRANT and REVOKE in the change stream, and forwards those
	// marks to the regions, which reload their catalogs at them. Creating
	// it needs a superuser.
	DDLTrigger bool
	// StatusInterval is how often the slot is acknowledged. Default 1s.
	StatusInterval time.Duration
	// MinBackoff and MaxBackoff bound the wait before a new producer after
	// Kafka failed (doubling). Defaults 200ms and 10s.
	MinBackoff, MaxBackoff time.Duration
	// WriteTimeout bounds one Kafka write attempt. Default 10s.
	WriteTimeout time.Duration
	// Registerer receives the metrics; optional.
	Registerer prometheus.Registerer
	// Logger; nil discards.
	Logger *slog.Logger
}

// Node is one ingest process's work. Status is safe for concurrent use
// with Run.
type Node struct {
	cfg Config
	log *slog.Logger

	pipe     atomic.Pointer[ingest.Pipeline] // the pipeline running now
	mu       sync.Mutex
	durable  schemas.Position // of the pipelines that ended
	restarts atomic.Uint64
	// setupRetries counts failed attempts to set up the source that were
	// tried again (the origin unreachable or starting).
	setupRetries atomic.Uint64
	kafkaUp      atomic.Bool
	lastErr      atomic.Pointer[string]
}

// New validates cfg.
func New(cfg Config) (*Node, error) {
	switch {
	case cfg.Source == "":
		return nil, errors.New("ingestnode: Config.Source is required")
	case len(cfg.Brokers) == 0:
		return nil, errors.New("ingestnode: Config.Brokers is required")
	case cfg.Partitions < 0 || cfg.ReplicationFactor < 0 || cfg.Heartbeat < 0 || cfg.MinBackoff < 0 || cfg.MaxBackoff < 0:
		return nil, errors.New("ingestnode: negative value in Config")
	}
	cfg.Name = or(cfg.Name, "origin")
	cfg.Slot = or(cfg.Slot, "freshet")
	cfg.Publication = or(cfg.Publication, "freshet")
	cfg.Topic = or(cfg.Topic, DefaultTopic(cfg.Slot))
	cfg.Heartbeat = or(cfg.Heartbeat, 50*time.Millisecond)
	cfg.StatusInterval = or(cfg.StatusInterval, time.Second)
	cfg.MinBackoff = or(cfg.MinBackoff, 200*time.Millisecond)
	cfg.MaxBackoff = max(or(cfg.MaxBackoff, 10*time.Second), cfg.MinBackoff)
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	n := &Node{cfg: cfg, log: log.With("topic", cfg.Topic, "slot", cfg.Slot)}
	if cfg.Registerer != nil {
		if err := n.register(cfg.Registerer); err != nil {
			return nil, fmt.Errorf("ingestnode: metrics: %w", err)
		}
	}
	return n, nil
}

// DefaultTopic is the topic of a source read through slot when none is
// configured: "freshet." + slot.
func DefaultTopic(slot string) string { return "freshet." + slot }

func or[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// Topic is the topic the node publishes to.
func (n *Node) Topic() string { return n.cfg.Topic }

// Run sets up the publication and slot and streams into Kafka until ctx
// ends or the source must be reset (a lost slot: the reset is published
// and Run returns the *ingest.ResetError). Kafka failures never end it.
func (n *Node) Run(ctx context.Context) error {
	pcfg := postgres.Config{URL: n.cfg.Source, Name: n.cfg.Name, Slot: n.cfg.Slot, Publication: n.cfg.Publication,
		Tables: n.cfg.Tables, HeartbeatInterval: n.cfg.Heartbeat, StatusInterval: n.cfg.StatusInterval, DDLTrigger: n.cfg.DDLTrigger,
		Logger: n.log}
	report, err := n.setup(ctx, pcfg)
	if err != nil {
		return fmt.Errorf("ingestnode: %w", err)
	}
	if report == nil {
		return nil // ctx ended
	}
	for _, t := range report.Tables {
		if t.Advice != "" {
			n.log.Warn("table setup", "table", t.Schema+"."+t.Table, "advice", t.Advice)
		}
	}
	reader, err := postgres.NewReader(pcfg)
	if err != nil {
		return fmt.Errorf("ingestnode: %w", err)
	}
	n.log.Info("freshet ingest", "tables", len(report.Tables), "publication", n.cfg.Publication, "brokers", n.cfg.Brokers)
	backoff := n.cfg.MinBackoff
	for {
		began := time.Now()
		err := n.runOnce(ctx, reader)
		var reset *ingest.ResetError
		switch {
		case ctx.Err() != nil:
			return nil
		case errors.As(err, &reset):
			return err
		}
		if time.Since(began) > 30*time.Second {
			backoff = n.cfg.MinBackoff // it had been running fine
		}
		n.restarts.Add(1)
		msg := err.Error()
		n.lastErr.Store(&msg)
		n.log.Warn("ingest stopped; starting again from the durable position with a new producer",
			"err", err, "in", backoff, "from", n.Durable().String())
		if !n.pause(ctx, &backoff) {
			return nil
		}
	}
}

// pause waits backoff, then doubles it up to MaxBackoff; false when ctx
// ended first.
func (n *Node) pause(ctx context.Context, backoff *time.Duration) bool {
	select {
	case <-ctx.Done():
		return false
	case <-time.After(*backoff):
	}
	*backoff = min(2**backoff, n.cfg.MaxBackoff)
	return true
}

// runOnce runs one producer and one pipeline until either fails.
func (n *Node) runOnce(ctx context.Context, reader ingest.Source) error {
	pctx, cancel := context.WithTimeout(ctx, n.cfg.WriteTimeout+10*time.Second)
	prod, err := kafka.NewProducer(pctx, kafka.ProducerConfig{Brokers: n.cfg.Brokers, Topic: n.cfg.Topic,
		Partitions: n.cfg.Partitions, ReplicationFactor: n.cfg.ReplicationFactor, WriteTimeout: n.cfg.WriteTimeout,
		Security: n.cfg.KafkaSecurity, Logger: n.log})
	cancel()
	if err != nil {
		n.kafkaUp.Store(false)
		return err
	}
	defer func() { _ = prod.Close() }()
	n.kafkaUp.Store(true)
	bus := &watchedBus{Bus: prod, failed: func() { n.kafkaUp.Store(false) }}
	pipe, err := ingest.New(ingest.Config{Source: reader, Bus: bus, Name: n.cfg.Name, From: n.Durable(), Logger: n.log})
	if err != nil {
		return err
	}
	n.pipe.Store(pipe)
	err = pipe.Run(ctx)
	n.mu.Lock()
	if d := pipe.Durable(); !n.durable.Covers(d) {
		n.durable = d
	}
	n.mu.Unlock()
	n.pipe.Store(nil)
	if err == nil && ctx.Err() == nil {
		err = errors.New("pipeline ended")
	}
	return err
}

// Durable is the position up to which everything is in Kafka: the slot
// is acknowledged no further.
func (n *Node) Durable() schemas.Position {
	n.mu.Lock()
	d := n.durable
	n.mu.Unlock()
	if p := n.pipe.Load(); p != nil && !d.Covers(p.Durable()) {
		d = p.Durable()
	}
	return d
}

// watchedBus notes a failed write (the producer is poisoned from then on).
type watchedBus struct {
	ingest.Bus
	failed func()
}

func (b *watchedBus) Publish(ctx context.Context, batch *ingest.Batch, done func(error)) error {
	err := b.Bus.Publish(ctx, batch, func(err error) {
		if err != nil {
			b.failed()
		}
		done(err)
	})
	if err != nil {
		b.failed()
	}
	return err
}
