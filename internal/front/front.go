// Package front builds the part of a freshet node that answers clients:
// the materializer (cache, dependency index, watermark) and the
// PostgreSQL front end that serves cached reads and tunnels everything
// else to the origin. `freshet up` (internal/embedded) feeds it from the
// in-process bus, `freshet serve --region` (internal/region) from Kafka.
package front

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/freshetdb/freshet/connectors/postgres"
	"github.com/freshetdb/freshet/materialize"
	"github.com/freshetdb/freshet/serve/pgwire"
)

// Config configures a Front.
type Config struct {
	// Origin is the origin PostgreSQL URL: the catalog, visibility checks
	// and read-your-writes positions are read through it. Required.
	Origin string
	// Listen is the address for PostgreSQL clients: host:port, or the
	// path of a Unix socket. Default 127.0.0.1:6432.
	Listen string
	// Publication names the publication of the change stream: only reads
	// of its tables are cached, read again with every catalog reload.
	Publication string
	// Published are the tables in the change stream when it comes from no
	// publication (Debezium topics); used when Publication is empty.
	Published []string
	// CacheBytes is the cache's memory budget. Default 256 MiB.
	CacheBytes int64
	// StalenessBound: beyond this lag reads go to the origin. Default 5s.
	StalenessBound time.Duration
	// CatalogInterval is how often the catalog is reloaded (a changed
	// catalog purges the cache); zero or negative: only after schema
	// changes.
	CatalogInterval time.Duration
	// RefreshURL, when set, is the login that re-executes hot invalidated
	// reads (refresh-ahead, ADR 0008); empty: no refresh-ahead.
	RefreshURL string
	// Clients are the endpoint's TLS, limits, timeouts and pooling.
	Clients Clients
	// Registerer receives the metrics; optional.
	Registerer prometheus.Registerer
	// Hooks are the materializer's test hooks.
	Hooks materialize.Hooks
	// Logger; nil discards.
	Logger *slog.Logger
}

// Front is a materializer and the front end serving it. Open starts
// nothing: Serve serves clients, the caller feeds the materializer.
type Front struct {
	Pool    *pgxpool.Pool
	M       *materialize.Materializer
	refresh *postgres.Refresher
	clients clientSide
	srv     *pgwire.Server
	ln      net.Listener
	closed  sync.Once
	drain   time.Duration
	log     *slog.Logger
	// state is what Ready reports: starting, serving or stopping.
	state atomic.Int32
}

const (
	starting int32 = iota
	serving
	stopping
)

// Errors Ready returns.
var (
	ErrStarting = errors.New("starting: not serving clients yet")
	ErrStopping = errors.New("stopping: accepting no clients, draining sessions")
)

// Current is the front end a node serves with, once it does: what the
// node's /ready and /queries report. A node embeds it.
type Current struct{ f atomic.Pointer[Front] }

// Set records f as the node's front end.
func (c *Current) Set(f *Front) { c.f.Store(f) }

// Ready is nil while the node serves clients, its /ready probe: not
// while it starts, nor once it begins to stop.
func (c *Current) Ready() error {
	if f := c.f.Load(); f != nil {
		return f.Ready()
	}
	return ErrStarting
}

// Queries lists the query templates the node has seen (its /queries),
// the most read first; empty before it starts.
func (c *Current) Queries() []materialize.QueryStats {
	if f := c.f.Load(); f != nil && f.M != nil {
		return f.M.Queries()
	}
	return []materialize.QueryStats{}
}

// Ready is the front end's answer to a readiness probe: nil from the time
// it serves clients until it begins to drain or close, so that a load
// balancer sends new clients only to a node that takes them.
func (f *Front) Ready() error {
	switch f.state.Load() {
	case serving:
		return nil
	case stopping:
		return ErrStopping
	}
	return ErrStarting
}

// OriginDialing is how the relayed client sessions reach the origin, as
// its URL (or key=value string) says: its hosts and ports, tried in order
// as libpq tries them, and TLS with libpq's sslmode meaning (pgconn's
// parsing, sslrootcert and the rest): disable and allow are plaintext,
// prefer (the default) uses TLS when the origin offers it, require,
// verify-ca and verify-full insist on it. With a target_session_attrs,
// each host is checked on a connection of freshet's own before a relayed
// session is sent to it (hostCheck): the session's login is the client's
// and cannot be retried elsewhere. Logger is left to the caller.
func OriginDialing(origin string) (postgres.OriginConfig, error) {
	pc, err := pgconn.ParseConfig(origin)
	if err != nil {
		return postgres.OriginConfig{}, fmt.Errorf("the origin: %w", err)
	}
	var hosts []postgres.OriginHost
	add := func(host string, port uint16, tc *tls.Config) error {
		if host == "" || strings.HasPrefix(host, "/") {
			return errors.New("the origin must be reached over TCP: give it a host, not a Unix socket directory")
		}
		addr := net.JoinHostPort(host, strconv.Itoa(int(port)))
		for i := range hosts {
			if hosts[i].Addr == addr {
				if hosts[i].TLS != nil && tc == nil {
					hosts[i].TLSOptional = true // prefer: pgconn's second try is in plaintext
				}
				return nil
			}
		}
		hosts = append(hosts, postgres.OriginHost{Addr: addr, TLS: tc})
		return nil
	}
	if err := add(pc.Host, pc.Port, pc.TLSConfig); err != nil {
		return postgres.OriginConfig{}, err
	}
	for _, fb := range pc.Fallbacks {
		if err := add(fb.Host, fb.Port, fb.TLSConfig); err != nil {
			return postgres.OriginConfig{}, err
		}
	}
	first := hosts[0]
	oc := postgres.OriginConfig{Addr: first.Addr, TLS: first.TLS, TLSOptional: first.TLSOptional, Fallbacks: hosts[1:]}
	if pc.ValidateConnect != nil {
		oc.CheckHost = hostCheck(pc)
	}
	return oc, nil
}

// hostCheckMetrics counts the origin hosts' checks by outcome and shows
// whether each host may serve relayed sessions now.
func hostCheckMetrics(reg prometheus.Registerer) func(host, outcome string) {
	checks := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "freshet_origin_host_checks_total",
		Help: "Checks of the origin's hosts for the URL's target_session_attrs, by host and outcome: fits, not_preferred (prefer-standby's primary), refused (its role, or unreachable).",
	}, []string{"host", "outcome"})
	fits := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "freshet_origin_host_fits",
		Help: "1 while the last check lets the host serve relayed sessions (fits or not_preferred), else 0.",
	}, []string{"host"})
	if err := reg.Register(checks); err != nil {
		return nil // another front end on this registry counts them
	}
	if err := reg.Register(fits); err != nil {
		reg.Unregister(checks)
		return nil
	}
	return func(host, outcome string) {
		checks.WithLabelValues(host, outcome).Inc()
		v := 0.0
		if outcome != "refused" {
			v = 1
		}
		fits.WithLabelValues(host).Set(v)
	}
}

// hostCheck is libpq's target_session_attrs check of one of the origin's
// hosts, made as pgconn makes it (its validation for the attrs), on a
// connection of freshet's own with the origin URL's credentials and that
// host's tries alone (with sslmode=prefer, TLS then plaintext).
func hostCheck(pc *pgconn.Config) postgres.HostCheck {
	return func(ctx context.Context, addr string) error {
		c := pc.Copy()
		tries := append([]*pgconn.FallbackConfig{{Host: c.Host, Port: c.Port, TLSConfig: c.TLSConfig}}, c.Fallbacks...)
		c.Fallbacks = nil
		found := false
		for _, t := range tries {
			switch {
			case net.JoinHostPort(t.Host, strconv.Itoa(int(t.Port))) != addr:
			case !found:
				c.Host, c.Port, c.TLSConfig, found = t.Host, t.Port, t.TLSConfig, true
			default:
				c.Fallbacks = append(c.Fallbacks, t)
			}
		}
		if !found {
			return fmt.Errorf("%s is not one of the origin's hosts", addr)
		}
		// pgconn connects to a host that is not preferred when no other
		// is; this check reports that instead.
		notPreferred := false
		validate := c.ValidateConnect
		c.ValidateConnect = func(ctx context.Context, conn *pgconn.PgConn) error {
			err := validate(ctx, conn)
			var np *pgconn.NotPreferredError
			if errors.As(err, &np) {
				notPreferred = true
			}
			return err
		}
		conn, err := pgconn.ConnectConfig(ctx, c)
		if err != nil {
			return err
		}
		_ = conn.Close(ctx)
		if notPreferred {
			return postgres.ErrHostNotPreferred
		}
		return nil
	}
}

// Open connects to the origin, loads its catalog and listens; Close
// undoes it.
func Open(ctx context.Context, cfg Config) (f *Front, err error) {
	dialing, err := OriginDialing(cfg.Origin)
	if err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:6432"
	}
	f = &Front{drain: cfg.Clients.ShutdownTimeout, log: log}
	// What was opened before a failure is closed: the Front being built,
	// not the nil that an error return leaves in f.
	built := f
	defer func() {
		if err != nil {
			built.Close()
		}
	}()
	dialing.Logger = log
	if dialing.CheckHost != nil && cfg.Registerer != nil {
		dialing.OnHostCheck = hostCheckMetrics(cfg.Registerer)
	}
	origin, err := postgres.NewOrigin(dialing)
	if err != nil {
		return nil, err
	}
	wire := pgwire.Config{Logger: log, Registerer: cfg.Registerer}
	if f.clients, err = cfg.Clients.apply(&wire, origin.Fits); err != nil {
		return nil, err
	}
	if f.Pool, err = pgxpool.New(ctx, cfg.Origin); err != nil {
		return nil, fmt.Errorf("origin pool: %w", err)
	}
	var refresh materialize.RefreshConfig
	if cfg.RefreshURL != "" {
		if f.refresh, err = postgres.NewRefresher(postgres.RefresherConfig{URL: cfg.RefreshURL, Logger: log}); err != nil {
			return nil, err
		}
		refresh.Refresher = f.refresh
	}
	if f.M, err = newMaterializer(cfg, refresh, f.Pool, log); err != nil {
		return nil, err
	}
	if err := f.M.LoadCatalog(ctx); err != nil {
		return nil, err
	}
	wire.Connector, wire.Cache = origin, f.M
	if f.srv, err = pgwire.New(wire); err != nil {
		return nil, err
	}
	if f.ln, err = listen(cfg.Listen); err != nil {
		return nil, err
	}
	return f, nil
}

func newMaterializer(cfg Config, refresh materialize.RefreshConfig, pool *pgxpool.Pool, log *slog.Logger) (*materialize.Materializer, error) {
	loader, err := postgres.NewCatalogLoader(postgres.CatalogConfig{DB: pool, Logger: log})
	if err != nil {
		return nil, err
	}
	return materialize.New(materialize.Config{
		MaxBytes: cfg.CacheBytes, StalenessBound: cfg.StalenessBound,
		Loader:     publishedLoader(loader, cfg, pool),
		Visibility: postgres.Visibility{DB: pool}, Positions: postgres.Positions{DB: pool},
		RoleDefaults:    postgres.RoleDefaultsLoader{DB: pool},
		CatalogInterval: max(cfg.CatalogInterval, 0), Refresh: refresh,
		Registerer: cfg.Registerer, Hooks: cfg.Hooks, Logger: log,
	})
}

// publishedLoader restricts caching to the tables of the change stream:
// the publication's as of each catalog load, or a fixed set.
func publishedLoader(loader materialize.CatalogLoader, cfg Config, pool *pgxpool.Pool) materialize.PublishedLoader {
	if cfg.Publication == "" {
		return materialize.PublishedLoader{Loader: loader, Published: cfg.Published}
	}
	return materialize.PublishedLoader{Loader: loader, Tables: func(ctx context.Context) ([]string, error) {
		tables, err := postgres.PublishedTables(ctx, pool, cfg.Publication)
		if errors.Is(err, postgres.ErrNoPublication) {
			return []string{}, nil // dropped: nothing is in the stream
		}
		return tables, err
	}}
}

// Addr is the address clients connect to.
func (f *Front) Addr() string { return f.ln.Addr().String() }

// Serve serves clients until ctx ends, Drain or Close.
func (f *Front) Serve(ctx context.Context) error {
	f.state.CompareAndSwap(starting, serving)
	if err := f.srv.Serve(ctx, f.ln); !errors.Is(err, pgwire.ErrServerClosed) {
		return err
	}
	return nil
}

// Drain stops accepting clients and ends each session at its next
// transaction boundary, for at most the Clients' ShutdownTimeout, then
// closes what is left (pgwire.Server.Shutdown). Without a timeout it
// does nothing: Close ends every session at once.
func (f *Front) Drain(ctx context.Context) {
	f.state.Store(stopping)
	if f.drain <= 0 {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, f.drain)
	defer cancel()
	start, clients := time.Now(), f.srv.Clients()
	f.log.Info("draining client sessions", "clients", clients, "timeout", f.drain)
	if err := f.srv.Shutdown(ctx); err != nil {
		f.log.Warn("shutdown timeout: client sessions still in a transaction were closed", "timeout", f.drain)
		return
	}
	f.log.Info("client sessions drained", "clients", clients, "took", time.Since(start).Round(time.Millisecond))
}

// Close stops serving and releases everything Open took; it may be
// called more than once.
func (f *Front) Close() { f.closed.Do(f.close) }

func (f *Front) close() {
	f.state.Store(stopping)
	if f.srv != nil {
		_ = f.srv.Close()
	}
	if f.ln != nil {
		_ = f.ln.Close() // Serve may never have taken it over
	}
	f.clients.close()
	if f.M != nil {
		f.M.Close()
	}
	if f.refresh != nil {
		f.refresh.Close()
	}
	if f.Pool != nil {
		f.Pool.Close()
	}
}
