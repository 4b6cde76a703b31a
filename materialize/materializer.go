package materialize

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"sync"
	"sync/atomic"
	"time"

	"github.com/freshetdb/freshet/ingest"
	"github.com/freshetdb/freshet/materialize/analyze"
	"github.com/freshetdb/freshet/materialize/cache"
	"github.com/freshetdb/freshet/schemas"
	"github.com/prometheus/client_golang/prometheus"
)

// Config configures a Materializer.
type Config struct {
	// MaxBytes is the cache's memory budget. Default 256 MiB.
	MaxBytes int64
	// Catalog is the origin's catalog to analyze statements against; nil
	// makes nothing that reads a table cacheable until Loader has loaded
	// one (LoadCatalog).
	Catalog analyze.Catalog
	// Loader reloads the catalog after a schema change; optional.
	Loader CatalogLoader
	// RoleDefaults, when set, is loaded with the catalog: sessions of
	// (database, role) pairs with unseen defaults are never cached.
	RoleDefaults RoleDefaultsLoader
	// CatalogInterval, when positive (and Loader set), reloads the catalog
	// this often while Run runs: DDL that produces no change event (a
	// view redefined, a function's volatility altered) is noticed within
	// it, and a catalog that changed purges the cache. Zero: only after
	// schema-change events.
	CatalogInterval time.Duration
	// StalenessBound is how far behind the origin (now minus the commit
	// time of the last progress marker) the cache may be and still
	// answer; beyond it every read is tunneled. Default 5s.
	StalenessBound time.Duration
	// FenceWait is how long a read after a write in the same session
	// waits for the watermark to pass the write before going to the
	// origin. Default 5ms.
	FenceWait time.Duration
	// FlightWait is how long a miss waits for a concurrent fill of the
	// same key before asking the origin itself. Default 2s.
	FlightWait time.Duration
	// Visibility, when set, is waited on before a batch's changes are
	// applied: logical decoding may report a commit before it is visible
	// to new snapshots, and a fill that asked the origin in that moment
	// would cache the old rows (ADR 0007). Required against a real
	// origin; connectors/postgres.Visibility implements it.
	Visibility Visibility
	// Positions reads the origin's position for read-your-writes fences
	// (Request.FencePending). Without it, pending fences are dropped:
	// only set it nil where no session writes.
	Positions PositionSource
	// Registerer, when set, receives the materializer's Prometheus
	// metrics.
	Registerer prometheus.Registerer
	// Logger receives resets, fallbacks and catalog reloads; nil discards.
	Logger *slog.Logger
	// Refresh configures refresh-ahead of hot invalidated entries; off
	// without a Refresher.
	Refresh RefreshConfig
	// Hooks inject delays between the steps of fills and change
	// application; for tests.
	Hooks Hooks
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// Hooks are called at the steps where a race between a fill and a change
// would show. Nil hooks are skipped.
type Hooks struct {
	// AfterBegin runs after a miss took its fill token, before the
	// caller asks the origin.
	AfterBegin func()
	// BeforeEnd runs when the origin's answer is offered, before the
	// stale-fill check.
	BeforeEnd func()
	// BeforeChange runs before each change is applied.
	BeforeChange func()
	// BeforeAdvance runs after a batch's changes were applied (their
	// entries invalidated), before the watermark moves.
	BeforeAdvance func(*ingest.Batch)
}

// Materializer answers cacheable reads from the cache and keeps it exact
// from the change stream. See the package documentation and ADR 0007.
type Materializer struct {
	cfg   Config
	log   *slog.Logger
	store *cache.Store
	ix    *index
	wm    *watermark

	memo      atomic.Pointer[memoGen]
	reload    atomic.Bool // a schema change is being followed by a catalog reload
	flights   flights
	stats     counters
	metrics   *metrics
	templates templates
	keyCtxs   keyContexts

	roleDefaults atomic.Pointer[RoleDefaults]
	refresh      *refresher // nil when refresh-ahead is off
}

type memoGen struct {
	memo *analyze.Memo
	cat  analyze.Catalog
	gen  uint64
}

// New validates cfg and makes a Materializer.
func New(cfg Config) (*Materializer, error) {
	if cfg.MaxBytes < 0 || cfg.StalenessBound < 0 || cfg.FenceWait < 0 || cfg.FlightWait < 0 {
		return nil, errors.New("materialize: MaxBytes, StalenessBound, FenceWait and FlightWait must not be negative")
	}
	if cfg.MaxBytes == 0 {
		cfg.MaxBytes = 256 << 20
	}
	if cfg.StalenessBound == 0 {
		cfg.StalenessBound = 5 * time.Second
	}
	if cfg.FenceWait == 0 {
		cfg.FenceWait = 5 * time.Millisecond
	}
	if cfg.FlightWait == 0 {
		cfg.FlightWait = 2 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m := &Materializer{cfg: cfg, log: log, ix: newIndex(), wm: newWatermark()}
	m.flights.m = map[string]*flight{}
	store, err := cache.New(cache.Config{MaxBytes: cfg.MaxBytes, OnEvict: m.ix.forget})
	if err != nil {
		return nil, fmt.Errorf("materialize: %w", err)
	}
	m.store = store
	if cfg.Registerer != nil {
		if m.metrics, err = newMetrics(cfg.Registerer, m); err != nil {
			store.Close()
			return nil, fmt.Errorf("materialize: metrics: %w", err)
		}
	}
	if cfg.Refresh.Refresher != nil {
		if m.refresh, err = newRefresher(cfg.Refresh, log, cfg.Registerer); err != nil {
			store.Close()
			return nil, fmt.Errorf("materialize: refresh: %w", err)
		}
	}
	m.memo.Store(&memoGen{memo: analyze.NewMemo(cfg.Catalog, 0), cat: cfg.Catalog})
	return m, nil
}

// Close stops the cache's goroutines.
func (m *Materializer) Close() { m.store.Close() }

// LoadCatalog (re)loads the catalog with cfg.Loader and re-analyzes
// statements against it from now on (see adopt).
func (m *Materializer) LoadCatalog(ctx context.Context) error {
	if m.cfg.Loader == nil {
		return errors.New("materialize: no catalog loader configured")
	}
	cat, err := m.cfg.Loader.LoadCatalog(ctx)
	if err != nil {
		return fmt.Errorf("materialize: load catalog: %w", err)
	}
	if err := m.loadRoleDefaults(ctx); err != nil {
		return fmt.Errorf("materialize: load role defaults: %w", err)
	}
	m.adopt(cat)
	return nil
}

// checkCatalog reloads the catalog and, if it changed, adopts it.
func (m *Materializer) checkCatalog(ctx context.Context) {
	if err := m.loadRoleDefaults(ctx); err != nil && ctx.Err() == nil {
		m.log.Warn("periodic reload of role defaults failed", "err", err)
	}
	if err := m.adoptIfChanged(ctx); err != nil && ctx.Err() == nil {
		m.log.Warn("periodic catalog reload failed", "err", err)
	}
}

// adoptIfChanged loads the catalog and adopts it if it changed.
func (m *Materializer) adoptIfChanged(ctx context.Context) error {
	cat, err := m.cfg.Loader.LoadCatalog(ctx)
	if err != nil {
		return err
	}
	if !reflect.DeepEqual(cat, m.memo.Load().cat) {
		m.adopt(cat)
	}
	return nil
}

// refreshCatalog reloads the role defaults and the catalog, and adopts
// the catalog if it changed: what a catalog change in the stream (DDL,
// GRANT or REVOKE, marked by the origin's event trigger) needs, so that
// what it affects is dropped as a periodic reload drops it, but at the
// change's position.
func (m *Materializer) refreshCatalog(ctx context.Context) error {
	if err := m.loadRoleDefaults(ctx); err != nil {
		return err
	}
	return m.adoptIfChanged(ctx)
}

// adopt makes cat the catalog statements are analyzed against, and drops
// what analysis under the old one may have got wrong. When only relations
// changed (another application's temporary table, a table created or
// altered), that is the verdicts and entries that looked their names up:
// the others keep their statement IDs and stay reachable. Otherwise
// (functions, operators, views, the published set) it is everything.
// Fills in flight are refused either way (a new generation).
func (m *Materializer) adopt(cat analyze.Catalog) {
	old := m.memo.Load()
	if names, ok := changedRelations(old.cat, cat); ok {
		keep := func(r *analyze.Result) bool { return !r.Touches(names) }
		m.memo.Store(&memoGen{memo: old.memo.Rebase(cat, keep), cat: cat, gen: old.gen + 1})
		n := m.purgeNamed(names)
		if len(names) > 0 {
			m.stats.catalogScoped.Add(1)
			m.metrics.catalogChanged("scoped")
			m.log.Debug("the origin's catalog changed: invalidating what read the relations concerned", "relations", len(names), "entries", n)
		}
		return
	}
	m.memo.Store(&memoGen{memo: analyze.NewMemo(cat, 0), cat: cat, gen: old.gen + 1})
	if old.cat == nil {
		return // the first catalog: nothing analyzed yet
	}
	m.log.Info("the origin's catalog changed: purging the cache")
	m.ix.purge()
	m.store.Clear()
	m.stats.catalogPurges.Add(1)
	m.metrics.catalogChanged("purge")
}

func (m *Materializer) watchCatalog(ctx context.Context) {
	t := time.NewTicker(m.cfg.CatalogInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			m.checkCatalog(ctx)
		}
	}
}

// Analyze returns the verdict on a statement, once per statement text,
// search_path and role (a memo), with the execution's transaction and
// session state applied.
func (m *Materializer) Analyze(in analyze.Input) *analyze.Result {
	return m.memo.Load().memo.Analyze(in)
}

// Query is one execution of a statement that analysis found cacheable.
type Query struct {
	// Key is the encoded cache key (cache.AppendKey).
	Key []byte
	// Analysis is the verdict from Analyze.
	Analysis *analyze.Result
	// Params are the bound parameters; nil for a simple query.
	Params *Params
	// Fence is the origin position of the session's last committed
	// write; zero if none is pending.
	Fence schemas.Position
}

// Bypass reasons: why a cacheable read went to the origin unfilled.
const (
	BypassNoWatermark  = "no_watermark"    // no progress marker yet (or after a reset)
	BypassStale        = "staleness_bound" // the cache is behind by more than the bound
	BypassFence        = "read_your_writes"
	BypassReload       = "catalog_reload"
	BypassTimeLiteral  = "time_parameter"
	BypassUncacheable  = "uncacheable"
	BypassFlightFailed = "flight_failed"
)

// Get answers q from the cache (entry set: write its Response as is), or
// returns a ticket for the caller to fill from the origin (then Put or
// Abandon it), or neither (bypass names why): the caller asks the origin
// and does not fill.
func (m *Materializer) Get(ctx context.Context, q *Query) (e *cache.Entry, tk *Ticket, bypass string) {
	t0 := time.Now()
	if reason := m.servable(ctx, q); reason != "" {
		m.stats.bypass(reason)
		m.metrics.bypassed(reason)
		return nil, nil, reason
	}
	if e, ok := m.store.Get(q.Key); ok {
		m.countHit(t0, false)
		return e, nil, ""
	}
	if f := m.flights.join(q.Key); f != nil {
		if f.wait(ctx, m.cfg.FlightWait) {
			// The leader's entry, even before ristretto applies its Set
			// asynchronously; the invalidation flag still rules.
			if e := f.entry; e != nil && !e.Invalidated() {
				m.countHit(t0, true)
				return e, nil, ""
			}
			if e, ok := m.store.Get(q.Key); ok {
				m.countHit(t0, true)
				return e, nil, ""
			}
		}
		// The leader's fill failed or was refused: ask the origin as a
		// plain miss, without filling, rather than stampede.
		m.stats.bypass(BypassFlightFailed)
		m.metrics.bypassed(BypassFlightFailed)
		return nil, nil, BypassFlightFailed
	}
	m.stats.misses.Add(1)
	m.metrics.miss()
	return nil, m.begin(q), ""
}

// servable returns why q may not be answered from the cache now, or "".
func (m *Materializer) servable(ctx context.Context, q *Query) string {
	if q.Analysis == nil || !q.Analysis.Cacheable {
		return BypassUncacheable
	}
	if _, bypass := m.watermarkNow(); bypass != "" {
		return bypass
	}
	if !q.Fence.IsZero() && !m.wm.waitFor(ctx, q.Fence, m.cfg.FenceWait) {
		return BypassFence
	}
	return ""
}

// watermarkNow is the watermark reads may be served at now, or why none
// may be: the catalog is reloading, no watermark yet, or it is older than
// the staleness bound.
func (m *Materializer) watermarkNow() (schemas.Position, string) {
	if m.reload.Load() {
		return schemas.Position{}, BypassReload
	}
	pos, at, ok := m.wm.get()
	switch {
	case !ok:
		return pos, BypassNoWatermark
	case m.cfg.Now().Sub(at) > m.cfg.StalenessBound:
		return pos, BypassStale
	}
	return pos, ""
}

// countHit counts a hit that took since t0; coalesced when it was a
// concurrent fill's entry.
func (m *Materializer) countHit(t0 time.Time, coalesced bool) {
	m.stats.hits.Add(1)
	if coalesced {
		m.stats.coalesced.Add(1)
	}
	m.metrics.hit(time.Since(t0))
}

// Ticket is a fill in progress: the origin is being asked for a result
// the cache missed.
type Ticket struct {
	key    []byte
	deps   []cache.Dependency
	refs   []cache.Ref // deps as the index registers them
	tok    uint64
	gen    uint64
	flight *flight
	done   bool
	start  time.Time
}

// Deps are the dependencies the result will be registered under.
func (t *Ticket) Deps() []cache.Dependency { return t.deps }

func (m *Materializer) begin(q *Query) *Ticket { return m.ticket(q, m.flights.lead(q.Key)) }

// ticket starts a fill of q led by fl: the dependency versions are taken
// now, before the origin is asked (the stale-fill guard).
func (m *Materializer) ticket(q *Query, fl *flight) *Ticket {
	deps := Dependencies(q.Analysis, q.Params)
	tk := &Ticket{key: append([]byte(nil), q.Key...), deps: deps, gen: m.memo.Load().gen, start: time.Now(), flight: fl}
	tk.tok, tk.refs = m.ix.begin(deps)
	if h := m.cfg.Hooks.AfterBegin; h != nil {
		h()
	}
	return tk
}

// Put offers the origin's complete response for tk. It is cached only
// if no change to its dependencies was applied since Get took the ticket
// (the stale-fill guard); it reports whether it was.
func (m *Materializer) Put(tk *Ticket, response []byte) bool {
	if tk == nil || tk.done {
		return false
	}
	tk.done = true
	defer m.flights.land(tk.key, tk.flight)
	if h := m.cfg.Hooks.BeforeEnd; h != nil {
		h()
	}
	e := cache.NewEntry(tk.key, response, tk.refs)
	if tk.gen != m.memo.Load().gen || m.reload.Load() {
		m.ix.end(tk.tok, tk.refs, nil)
		m.stats.staleFills.Add(1)
		m.metrics.filled(false, 0)
		return false
	}
	if !m.ix.end(tk.tok, tk.refs, e) {
		m.stats.staleFills.Add(1)
		m.metrics.filled(false, 0)
		return false
	}
	m.metrics.filled(true, time.Since(tk.start))
	if !m.store.Set(e) {
		m.ix.forget(e)
		return false
	}
	// ristretto applies sets asynchronously; wait, on this miss path
	// that already paid an origin round trip, so the next read hits.
	m.store.Wait()
	if tk.flight != nil {
		tk.flight.entry = e
	}
	m.stats.fills.Add(1)
	return true
}

// Abandon ends tk without a result (the origin failed, or answered with
// an error, which is never cached).
func (m *Materializer) Abandon(tk *Ticket) {
	if tk == nil || tk.done {
		return
	}
	tk.done = true
	m.ix.end(tk.tok, tk.refs, nil)
	m.flights.land(tk.key, tk.flight)
}

// Subscription is a stream of batches from the bus, in order
// (connectors/memory.Subscription, a Kafka consumer).
type Subscription interface {
	Next(ctx context.Context) (*ingest.Batch, error)
}

// Visibility waits until committed transactions are visible to new
// snapshots at the origin.
type Visibility interface {
	WaitVisible(ctx context.Context, xids []uint32) error
}

// Run applies batches from sub until ctx ends or sub fails.
func (m *Materializer) Run(ctx context.Context, sub Subscription) error {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { m.Background(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	for {
		b, err := sub.Next(ctx)
		if err == nil {
			err = m.Apply(ctx, b)
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("materialize: %w", err)
		}
	}
}

// waitVisible waits until b's transactions are visible at the origin,
// retrying while the origin cannot be asked: until then nothing of b is
// applied and the watermark stays (reads tunnel past the staleness bound).
func (m *Materializer) waitVisible(ctx context.Context, b *ingest.Batch) error {
	if m.cfg.Visibility == nil || len(b.Changes) == 0 {
		return nil
	}
	var xids []uint32
	for i := range b.Changes {
		if x := b.Changes[i].TxID; x != 0 && (len(xids) == 0 || xids[len(xids)-1] != x) {
			xids = append(xids, x)
		}
	}
	if len(xids) == 0 {
		return nil
	}
	for backoff := 10 * time.Millisecond; ; backoff = min(2*backoff, time.Second) {
		err := m.cfg.Visibility.WaitVisible(ctx, xids)
		if err == nil || ctx.Err() != nil {
			return err
		}
		m.log.Warn("cannot confirm the origin sees a batch's commits; holding the batch", "err", err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
	}
}

// pruneEvery is how many applied changes pass between prunes of the
// index's value versions.
const pruneEvery = 4096

// Apply invalidates what b's changes can affect, then moves the
// watermark to b's progress marker. A reset purges everything. It fails
// only when ctx ends before b's commits are confirmed visible.
func (m *Materializer) Apply(ctx context.Context, b *ingest.Batch) error {
	if b.Reset != nil {
		m.purge(b.Reset)
		return nil
	}
	early := m.invalidateEarly(b)
	if err := m.waitVisible(ctx, b); err != nil {
		return fmt.Errorf("wait for visibility: %w", err)
	}
	var inv Invalidation
	schema, catalog := false, false
	for i := range b.Changes {
		if h := m.cfg.Hooks.BeforeChange; h != nil {
			h()
		}
		c := &b.Changes[i]
		switch c.Op {
		case schemas.OpSchemaChange:
			m.reload.Store(true)
			schema = true
		case schemas.OpCatalogChange:
			catalog = true // the reload finds what it changed
			continue
		}
		n := len(inv.Fallback)
		m.ix.apply(c, &inv)
		if len(inv.Fallback) > n {
			m.stats.fallbacks.Add(1)
			m.log.Warn("before image lacks a predicate column: invalidated by column; set REPLICA IDENTITY FULL for precision",
				"table", c.Schema+"."+c.Table, "columns", inv.Fallback[n:])
		}
	}
	for _, e := range inv.Entries {
		m.store.Remove(e)
	}
	gone := unionEntries(early, inv.Entries)
	m.stats.changes.Add(uint64(len(b.Changes)))
	m.stats.invalidated.Add(uint64(len(gone)))
	m.metrics.applied(len(b.Changes), len(gone))
	if m.refresh != nil && len(gone) > 0 {
		m.refresh.invalidated(m.cfg.Now(), gone)
	}
	if m.ix.appliedSince() >= pruneEvery {
		m.ix.prune()
	}
	switch {
	case schema:
		m.reloadCatalog(ctx, "schema change", m.LoadCatalog)
	case catalog:
		if m.reloadCatalog(ctx, "catalog change", m.refreshCatalog) {
			m.stats.catalogFollowed.Add(1)
		}
	}
	if h := m.cfg.Hooks.BeforeAdvance; h != nil {
		h(b)
	}
	if !b.Progress.Position.IsZero() {
		m.wm.advance(b.Progress)
	}
	return nil
}

// reloadCatalog runs load after a schema or catalog change in the
// stream, before the watermark passes it, so that no read served as fresh
// past the change predates it. Until a load succeeds caching stays off:
// the old verdicts may be wrong.
func (m *Materializer) reloadCatalog(ctx context.Context, change string, load func(context.Context) error) bool {
	err := errors.New("no catalog loader")
	if m.cfg.Loader != nil {
		err = load(ctx)
	}
	if err != nil {
		m.reload.Store(true)
		m.log.Error("catalog reload after a "+change+" failed: caching stays off until the next one", "err", err)
		return false
	}
	m.reload.Store(false)
	return true
}

func (m *Materializer) purge(r *schemas.Reset) {
	m.log.Error("source reset: purging the whole cache", "source", r.Source, "reason", r.Reason, "position", r.Position.String())
	m.wm.reset()
	m.ix.purge()
	m.store.Clear()
	m.stats.resets.Add(1)
}

// Watermark returns the applied position and the commit time of the
// marker that reported it; ok is false before the first marker.
func (m *Materializer) Watermark() (schemas.Position, time.Time, bool) { return m.wm.get() }

// WaitFor waits at most d for the watermark to cover p.
func (m *Materializer) WaitFor(ctx context.Context, p schemas.Position, d time.Duration) bool {
	return m.wm.waitFor(ctx, p, d)
}

// flights single-flights misses: one fill per key at a time.
type flights struct {
	mu sync.Mutex
	m  map[string]*flight
}

type flight struct {
	done chan struct{}
	// entry is the leader's admitted entry, set before done is closed.
	entry *cache.Entry
}

// join returns the fill in flight for key, if any.
func (f *flights) join(key []byte) *flight {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.m[string(key)]
}

// lead registers a fill for key; nil if another one is in flight.
func (f *flights) lead(key []byte) *flight {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.m[string(key)]; ok {
		return nil
	}
	fl := &flight{done: make(chan struct{})}
	f.m[string(key)] = fl
	return fl
}

func (f *flights) land(key []byte, fl *flight) {
	if fl == nil {
		return
	}
	f.mu.Lock()
	if f.m[string(key)] == fl {
		delete(f.m, string(key))
	}
	f.mu.Unlock()
	close(fl.done)
}

func (fl *flight) wait(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-fl.done:
		return true
	case <-t.C:
	case <-ctx.Done():
	}
	return false
}
