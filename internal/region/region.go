// Package region runs a regional node, `freshet serve --region NAME`: a
// Kafka consumer reading every partition of the source's topic feeds the
// materializer, and the PostgreSQL front end answers clients from it,
// tunneling everything else to the origin. It is the embedded wiring
// (internal/embedded) with Kafka in place of change capture. ADR 0009.
package region

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/freshetdb/freshet/connectors/kafka"
	"github.com/freshetdb/freshet/connectors/postgres"
	"github.com/freshetdb/freshet/internal/front"
	"github.com/freshetdb/freshet/materialize"
)

// Config configures a regional Node.
type Config struct {
	// Region names the node; its Kafka offsets are stored under it, so a
	// restarted region resumes where it stopped. Required.
	Region string
	// Brokers are Kafka's bootstrap brokers. Required.
	Brokers []string
	// KafkaSecurity is TLS and SASL for the brokers; zero: plaintext.
	KafkaSecurity kafka.Security
	// Topic is the source's topic (freshet ingest's --topic). Required
	// unless DebeziumTopics is set.
	Topic string
	// DebeziumTopics, when set, feed the region instead of Topic: Debezium
	// table topics named prefix.schema.table (Debezium's default), whose
	// tables are the ones cached. Such a source has no watermark (ADR
	// 0006): the region tunnels every read unless DebeziumAssumeLag is
	// set.
	DebeziumTopics []string
	// DebeziumAssumeLag, when positive, serves cached reads of a Debezium
	// region while every partition is delivered up to its end and the
	// newest change committed within this long: an estimate, not a bound,
	// since Kafka Connect may hold changes it has not produced. It replaces
	// StalenessBound. Zero: no estimate.
	DebeziumAssumeLag time.Duration
	// DebeziumFromBeginning makes a Debezium region with no committed
	// offsets read its topics from the start (default: the end).
	DebeziumFromBeginning bool
	// Origin is the origin PostgreSQL URL: misses, writes and
	// transactions are tunneled there, and the catalog is read from it.
	// Required.
	Origin string
	// Publication is the ingest's publication: reads of its tables are
	// cached. A region waits for it to exist. Default "freshet".
	Publication string
	// Listen is the address for PostgreSQL clients: host:port, or the
	// path of a Unix socket. Default 127.0.0.1:6432.
	Listen string
	// CacheBytes is the cache's memory budget. Default 256 MiB.
	CacheBytes int64
	// RefreshURL, when set, enables refresh-ahead of hot invalidated reads
	// through this login (ADR 0008).
	RefreshURL string
	// Clients are the PostgreSQL endpoint's TLS, limits, timeouts and
	// pooling.
	Clients front.Clients
	// StalenessBound: when the last progress marker's commit time is older
	// than this, reads go to the origin. Default 5s.
	StalenessBound time.Duration
	// CatalogInterval: see embedded.Config. Default 5s; negative disables.
	CatalogInterval time.Duration
	// Registerer receives the metrics; optional.
	Registerer prometheus.Registerer
	// Hooks are the materializer's test hooks.
	Hooks materialize.Hooks
	// Logger; nil discards.
	Logger *slog.Logger
}

// Node is one regional node.
type Node struct {
	cfg           Config
	log           *slog.Logger
	m             atomic.Pointer[materialize.Materializer]
	front.Current // what /ready and /queries report
	consumer      atomic.Pointer[stream]
	handler       atomic.Pointer[Handler]
}

// stream is what feeds the handler: a kafka.Consumer or a
// kafka.DebeziumConsumer.
type stream interface {
	Run(ctx context.Context) error
	Stats() kafka.Stats
}

// New validates cfg.
func New(cfg Config) (*Node, error) {
	switch {
	case cfg.Region == "":
		return nil, errors.New("region: Config.Region is required")
	case len(cfg.Brokers) == 0:
		return nil, errors.New("region: Config.Brokers is required")
	case cfg.Topic == "" && len(cfg.DebeziumTopics) == 0:
		return nil, errors.New("region: Config.Topic is required")
	case cfg.CacheBytes < 0 || cfg.StalenessBound < 0 || cfg.DebeziumAssumeLag < 0:
		return nil, errors.New("region: negative value in Config")
	case cfg.DebeziumAssumeLag > 0 && len(cfg.DebeziumTopics) == 0:
		return nil, errors.New("region: Config.DebeziumAssumeLag needs DebeziumTopics")
	}
	for _, topic := range cfg.DebeziumTopics {
		if _, table := kafka.DebeziumTopicTable(topic); table == "" {
			return nil, fmt.Errorf("region: Debezium topic %q is not named prefix.schema.table", topic)
		}
	}
	if len(cfg.DebeziumTopics) > 0 {
		cfg.Topic = strings.Join(cfg.DebeziumTopics, ",")
		if cfg.DebeziumAssumeLag > 0 {
			cfg.StalenessBound = cfg.DebeziumAssumeLag
		}
	}
	if _, err := front.OriginDialing(cfg.Origin); err != nil {
		return nil, fmt.Errorf("region: Config.Origin: %w", err)
	}
	if cfg.Publication == "" {
		cfg.Publication = "freshet"
	}
	if cfg.StalenessBound == 0 {
		cfg.StalenessBound = 5 * time.Second
	}
	if cfg.CatalogInterval == 0 {
		cfg.CatalogInterval = 5 * time.Second
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	n := &Node{cfg: cfg, log: log.With("region", cfg.Region)}
	if cfg.Registerer != nil {
		if err := n.register(cfg.Registerer); err != nil {
			return nil, fmt.Errorf("region: metrics: %w", err)
		}
	}
	return n, nil
}

// Materializer is the node's materializer once Run has started it; nil
// before.
func (n *Node) Materializer() *materialize.Materializer { return n.m.Load() }

// Run waits for the publication, starts the front end and the consumer,
// calls ready with the listening address, and serves until ctx ends or a
// part fails. The cache starts empty and serves nothing before the first
// progress marker arrives from Kafka.
func (n *Node) Run(ctx context.Context, ready func(addr string)) error {
	published, err := n.tables(ctx)
	if err != nil {
		return err
	}
	cfg := n.cfg
	f, err := front.Open(ctx, front.Config{
		Origin: cfg.Origin, Listen: cfg.Listen, Publication: n.publication(), Published: published,
		CacheBytes: cfg.CacheBytes, StalenessBound: cfg.StalenessBound, CatalogInterval: cfg.CatalogInterval,
		RefreshURL: cfg.RefreshURL,
		Registerer: cfg.Registerer, Hooks: cfg.Hooks, Logger: n.log,
		Clients: cfg.Clients,
	})
	if err != nil {
		return fmt.Errorf("region: %w", err)
	}
	defer f.Close()
	h, c, err := n.stream(f.M)
	if err != nil {
		return fmt.Errorf("region: %w", err)
	}
	n.m.Store(f.M)
	n.Set(f)
	n.handler.Store(h)
	n.consumer.Store(&c)
	return n.serve(ctx, f, c, ready, len(published))
}

// stream builds the consumer feeding m: the native one, or Debezium's.
func (n *Node) stream(m *materialize.Materializer) (*Handler, stream, error) {
	cfg := n.cfg
	if len(cfg.DebeziumTopics) == 0 {
		h := NewHandler(m, cfg.Topic, n.log)
		c, err := kafka.NewConsumer(kafka.ConsumerConfig{Brokers: cfg.Brokers, Topic: cfg.Topic, Region: cfg.Region, Handler: h,
			Security: cfg.KafkaSecurity, Logger: n.log})
		return h, c, err
	}
	estimate := cfg.DebeziumAssumeLag > 0
	h := NewDebeziumHandler(m, cfg.Topic, estimate, n.log)
	dc := kafka.DebeziumConfig{Brokers: cfg.Brokers, Topics: cfg.DebeziumTopics, Region: cfg.Region, Handler: h,
		FromBeginning: cfg.DebeziumFromBeginning, Security: cfg.KafkaSecurity, Logger: n.log}
	if estimate {
		// Check often against the lag assumed, so the estimate's own age
		// stays small next to it.
		dc.CaughtUpInterval = min(max(cfg.DebeziumAssumeLag/10, 20*time.Millisecond), time.Second)
	}
	c, err := kafka.NewDebeziumConsumer(dc)
	return h, c, err
}

// publication is the publication whose tables are cached, re-read with
// the catalog; none for Debezium topics, whose tables are fixed.
func (n *Node) publication() string {
	if len(n.cfg.DebeziumTopics) > 0 {
		return ""
	}
	return n.cfg.Publication
}

// tables are the tables whose reads are cached: the ingest's
// publication's, or those the Debezium topics name.
func (n *Node) tables(ctx context.Context) ([]string, error) {
	if len(n.cfg.DebeziumTopics) == 0 {
		return n.published(ctx)
	}
	var out []string
	for _, topic := range n.cfg.DebeziumTopics {
		schema, table := kafka.DebeziumTopicTable(topic)
		out = append(out, schema+"."+table)
	}
	return out, nil
}

func (n *Node) serve(ctx context.Context, f *front.Front, c stream, ready func(string), tables int) error {
	parts := []front.Part{
		{Name: "kafka consumer", Run: c.Run},
		{Name: "front end", Run: f.Serve, Drain: f.Drain},
		{Name: "materializer", Run: func(ctx context.Context) error { f.M.Background(ctx); return nil }},
	}
	started := func() {
		n.log.Info("freshet serve", "listen", f.Addr(), "topic", n.cfg.Topic, "publication", n.cfg.Publication, "tables", tables)
		if ready != nil {
			ready(f.Addr())
		}
	}
	if err := front.RunParts(ctx, parts, started, f.Close); err != nil {
		return fmt.Errorf("region: %w", err)
	}
	return nil
}

// published reads the publication's tables, waiting while it does not
// exist yet (the ingest creates it) or the origin cannot be reached.
func (n *Node) published(ctx context.Context) ([]string, error) {
	pool, err := pgxpool.New(ctx, n.cfg.Origin)
	if err != nil {
		return nil, fmt.Errorf("region: origin pool: %w", err)
	}
	defer pool.Close()
	for wait := 100 * time.Millisecond; ; wait = min(2*wait, 5*time.Second) {
		tables, err := postgres.PublishedTables(ctx, pool, n.cfg.Publication)
		if err == nil {
			return tables, nil
		}
		n.log.Warn("waiting for the publication", "err", err, "retry_in", wait)
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(wait):
		}
	}
}
