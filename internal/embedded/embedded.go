// Package embedded runs freshet in one process, the `freshet up` mode:
// the origin's change stream → the in-process bus → the materializer ←
// the PostgreSQL front end. cmd/freshet parses flags into a Config; the
// integration tests run the same wiring with test hooks.
package embedded

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/freshetdb/freshet/connectors/memory"
	"github.com/freshetdb/freshet/connectors/postgres"
	"github.com/freshetdb/freshet/ingest"
	"github.com/freshetdb/freshet/internal/front"
	"github.com/freshetdb/freshet/materialize"
	"github.com/freshetdb/freshet/schemas"
)

// Config configures a Node.
type Config struct {
	// Origin is the origin PostgreSQL URL. Its role needs REPLICATION,
	// SELECT on the published tables, and superuser to create a FOR ALL
	// TABLES publication (or an existing Publication). Required.
	Origin string
	// Listen is the address for PostgreSQL clients: host:port, or the
	// path of a Unix socket. Default 127.0.0.1:6432.
	Listen string
	// Slot and Publication are created when missing. Default "freshet".
	Slot, Publication string
	// Tables, when set, are the schema-qualified tables a publication
	// created here includes; default FOR ALL TABLES.
	Tables []string
	// CacheBytes is the cache's memory budget. Default 256 MiB.
	CacheBytes int64
	// StalenessBound: beyond this lag reads go to the origin. Default 5s.
	StalenessBound time.Duration
	// Heartbeat is how often a heartbeat is written into the WAL, so an
	// idle origin keeps the watermark fresh. Default 50ms.
	Heartbeat time.Duration
	// DDLTrigger creates (when missing) the origin's event trigger that
	// marks DDL, GRANT and REVOKE in the change stream, and follows it:
	// the catalog is reloaded at each such change's position instead of
	// at the next periodic reload. Creating it needs a superuser.
	DDLTrigger bool
	// CatalogInterval is how often the origin's catalog is reloaded to
	// notice DDL without change events (a changed catalog purges the
	// cache). Default 5s; negative disables.
	CatalogInterval time.Duration
	// RefreshURL, when set, enables refresh-ahead of hot invalidated
	// entries through this login (a member of the client roles it
	// refreshes for; ADR 0008). Empty: no refresh.
	RefreshURL string
	// Clients are the PostgreSQL endpoint's TLS, limits, timeouts and
	// pooling.
	Clients front.Clients
	// Registerer receives the metrics; optional.
	Registerer prometheus.Registerer
	// Hooks are the materializer's test hooks.
	Hooks materialize.Hooks
	// Logger; nil discards.
	Logger *slog.Logger
}

// Node is one embedded freshet.
type Node struct {
	cfg           Config
	log           *slog.Logger
	addr          string
	m             atomic.Pointer[materialize.Materializer]
	front.Current // what /ready and /queries report
	pipe          atomic.Pointer[ingest.Pipeline]
}

// New validates cfg.
func New(cfg Config) (*Node, error) {
	if cfg.Origin == "" {
		return nil, errors.New("embedded: Config.Origin is required")
	}
	dialing, err := front.OriginDialing(cfg.Origin)
	if err != nil {
		return nil, fmt.Errorf("embedded: Config.Origin: %w", err)
	}
	if cfg.CacheBytes < 0 || cfg.StalenessBound < 0 || cfg.Heartbeat < 0 {
		return nil, errors.New("embedded: negative value in Config")
	}
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:6432"
	}
	if cfg.Slot == "" {
		cfg.Slot = "freshet"
	}
	if cfg.Publication == "" {
		cfg.Publication = "freshet"
	}
	if cfg.Heartbeat == 0 {
		cfg.Heartbeat = 50 * time.Millisecond
	}
	if cfg.CatalogInterval == 0 {
		cfg.CatalogInterval = 5 * time.Second
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Node{cfg: cfg, log: log, addr: dialing.Addr}, nil
}

// Materializer is the node's materializer once Run has started it (for
// statistics); nil before.
func (n *Node) Materializer() *materialize.Materializer { return n.m.Load() }

// Run sets up the publication and slot, starts everything, calls ready
// with the listening address, and serves until ctx ends or a part fails.
func (n *Node) Run(ctx context.Context, ready func(addr string)) error {
	cfg := n.cfg
	pcfg := postgres.Config{URL: cfg.Origin, Name: "origin", Slot: cfg.Slot, Publication: cfg.Publication,
		Tables: cfg.Tables, HeartbeatInterval: cfg.Heartbeat, DDLTrigger: cfg.DDLTrigger, Logger: n.log}
	report, err := postgres.Setup(ctx, pcfg, schemas.Position{})
	if err != nil {
		return fmt.Errorf("embedded: %w", err)
	}
	var published []string
	for _, t := range report.Tables {
		published = append(published, t.Schema+"."+t.Table)
		if t.Advice != "" {
			n.log.Warn("table setup", "table", t.Schema+"."+t.Table, "advice", t.Advice)
		}
	}
	f, err := front.Open(ctx, front.Config{
		Origin: cfg.Origin, Listen: cfg.Listen, Publication: cfg.Publication,
		CacheBytes: cfg.CacheBytes, StalenessBound: cfg.StalenessBound, CatalogInterval: cfg.CatalogInterval,
		RefreshURL: cfg.RefreshURL, Registerer: cfg.Registerer, Hooks: cfg.Hooks, Logger: n.log,
		Clients: cfg.Clients,
	})
	if err != nil {
		return fmt.Errorf("embedded: %w", err)
	}
	defer f.Close()
	n.m.Store(f.M)
	n.Set(f)
	reader, err := postgres.NewReader(pcfg)
	if err != nil {
		return err
	}
	bus, err := memory.New(memory.Config{})
	if err != nil {
		return err
	}
	sub := bus.Subscribe()
	pipe, err := ingest.New(ingest.Config{Source: reader, Bus: bus, Name: pcfg.Name, Logger: n.log})
	if err != nil {
		return err
	}
	n.pipe.Store(pipe)
	parts := []front.Part{
		{Name: "ingest", Run: pipe.Run},
		{Name: "materializer", Run: func(ctx context.Context) error { return f.M.Run(ctx, sub) }},
		{Name: "front end", Run: f.Serve, Drain: f.Drain},
	}
	started := func() {
		n.log.Info("freshet up", "listen", f.Addr(), "origin", n.addr, "slot", cfg.Slot,
			"publication", cfg.Publication, "tables", len(published))
		if ready != nil {
			ready(f.Addr())
		}
	}
	return front.RunParts(ctx, parts, started, func() { f.Close(); bus.Close() })
}
