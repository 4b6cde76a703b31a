package materialize

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/freshetdb/freshet/materialize/cache"
	"github.com/prometheus/client_golang/prometheus"
)

// Refresher re-executes a cached read at the origin on the cache's own
// initiative and returns the response exactly as a client's fill would
// have captured it for the same key (the messages after the request's
// Parse up to and including ReadyForQuery). connectors/postgres.Refresher
// implements it.
type Refresher interface {
	Refresh(ctx context.Context, r *RefreshRequest) ([]byte, error)
}

// ErrRefreshRole is wrapped by a Refresher that cannot act as the
// request's role (its login is not a member): that role is not refreshed
// again.
var ErrRefreshRole = errors.New("refresh: cannot act as the role")

// RefreshRequest is everything a cache key holds about a read: the
// Refresher must reproduce the response bytes from it alone.
type RefreshRequest struct {
	Database, Role string
	SQL            string
	// Shape is the message sequence ("" simple Query, "BES", "BDPES",
	// "BDSES": Bind, Describe portal or statement, Execute, Sync).
	Shape         string
	Params        Params
	ResultFormats []int16
	Settings      cache.Settings
}

// RefreshConfig configures refresh-ahead: hot entries that a change
// invalidates are re-executed at once, so the next read is a hit.
type RefreshConfig struct {
	// Refresher, when set, enables refresh-ahead.
	Refresher Refresher
	// Concurrency is the number of refreshes in flight. Default 2.
	Concurrency int
	// Share bounds refreshes to this fraction of the origin queries the
	// front end sent over the last second, plus Floor per second.
	// Defaults 0.1 and 20.
	Share, Floor float64
	// HotHits is how many hits within HotWindow make an entry hot.
	// Defaults 3 and 10s.
	HotHits   int
	HotWindow time.Duration
	// HotEntries bounds the hot table. Default 1024.
	HotEntries int
	// Timeout bounds one refresh at the origin. Default 5s.
	Timeout time.Duration
}

// RefreshStats are refresh-ahead's counters since New.
type RefreshStats struct {
	// Done were admitted to the cache; Refused were turned away by the
	// stale-fill guard; Failed got no answer from the origin.
	Done, Refused, Failed uint64
	// Dropped exceeded the rate limit; Coalesced found a refresh of the
	// key already queued; Skipped found nothing to do (the key was
	// filled or being filled by a client, or not servable now).
	Dropped, Coalesced, Skipped uint64
	// Wasted are refreshed entries invalidated again before any read.
	Wasted uint64
	// RoleFailures are roles the refresh login could not act as.
	RoleFailures uint64
	// Hot is the hot table's size now.
	Hot int
}

// maxStrikes is how many refreshes in a row wasted demote a hot entry:
// a key written more often than read is not worth refreshing.
const maxStrikes = 2

// refresher is the materializer's refresh-ahead state: the hot table, a
// copy of each hot key's request (cold keys have none), and the queue.
type refresher struct {
	cfg   RefreshConfig
	log   *slog.Logger
	heat  *heat
	limit *refreshLimiter
	queue chan *hotEntry

	mu       sync.Mutex
	hot      map[string]*hotEntry
	badRoles map[string]bool

	done, refused, failed, dropped, coalesced, skipped, wasted, roleFailures atomic.Uint64
	outcomes                                                                 *prometheus.CounterVec
	wastedMetric                                                             prometheus.Counter
}

// hotEntry is one hot key. req is immutable; the other fields are
// guarded by refresher.mu.
type hotEntry struct {
	key  string
	slot uint32
	req  Request
	// pending is set while a refresh is queued.
	pending bool
	// refreshed is the entry the last refresh cached and mark the slot's
	// read count then: invalidated with no read since, it was wasted.
	refreshed *cache.Entry
	mark      uint32
	strikes   int
	// retried is set when a refresh refused by the stale-fill guard was
	// queued again; the next invalidation clears it.
	retried bool
}

func newRefresher(cfg RefreshConfig, log *slog.Logger, reg prometheus.Registerer) (*refresher, error) {
	if cfg.Concurrency < 0 || cfg.Share < 0 || cfg.Floor < 0 || cfg.HotHits < 0 || cfg.HotWindow < 0 || cfg.HotEntries < 0 || cfg.Timeout < 0 {
		return nil, errors.New("materialize: negative value in RefreshConfig")
	}
	if cfg.Concurrency == 0 {
		cfg.Concurrency = 2
	}
	if cfg.Share == 0 {
		cfg.Share = 0.1
	}
	if cfg.Floor == 0 {
		cfg.Floor = 20
	}
	if cfg.HotHits == 0 {
		cfg.HotHits = 3
	}
	if cfg.HotWindow == 0 {
		cfg.HotWindow = 10 * time.Second
	}
	if cfg.HotEntries == 0 {
		cfg.HotEntries = 1024
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 5 * time.Second
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	rf := &refresher{cfg: cfg, log: log, heat: newHeat(cfg.HotHits),
		limit: &refreshLimiter{share: cfg.Share, floor: cfg.Floor},
		queue: make(chan *hotEntry, cfg.HotEntries),
		hot:   map[string]*hotEntry{}, badRoles: map[string]bool{}}
	if reg != nil {
		rf.outcomes = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "freshet_refresh_total",
			Help: "Refreshes of hot invalidated entries, by outcome: done, refused (stale-fill guard), failed, dropped (rate limit), coalesced, skipped."}, []string{"outcome"})
		rf.wastedMetric = prometheus.NewCounter(prometheus.CounterOpts{Name: "freshet_refresh_wasted_total",
			Help: "Refreshed entries invalidated again before any read."})
		hot := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "freshet_refresh_hot_entries",
			Help: "Keys in the refresh-ahead hot table."}, func() float64 { return float64(rf.hotLen()) })
		for _, c := range []prometheus.Collector{rf.outcomes, rf.wastedMetric, hot} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return rf, nil
}

func (rf *refresher) count(c *atomic.Uint64, outcome string) {
	c.Add(1)
	if rf.outcomes != nil {
		rf.outcomes.WithLabelValues(outcome).Inc()
	}
}

func (rf *refresher) hotLen() int {
	rf.mu.Lock()
	defer rf.mu.Unlock()
	return len(rf.hot)
}

// observe sees every answered lookup: hits heat their key, anything else
// went to the origin and raises the refresh budget.
func (rf *refresher) observe(now func() time.Time, key []byte, r *Request, a *Answer) {
	if a.Entry == nil {
		rf.limit.originQuery(now(), 1)
		return
	}
	if slot, crossed := rf.heat.hit(key); crossed {
		rf.promote(key, slot, r)
	}
}

// promote adds key to the hot table with a copy of its request, evicting
// the coolest entry when full (or not adding it, when every entry is at
// least as hot).
func (rf *refresher) promote(key []byte, slot uint32, r *Request) {
	rf.mu.Lock()
	defer rf.mu.Unlock()
	if _, ok := rf.hot[string(key)]; ok || rf.badRoles[r.Role] {
		return
	}
	if len(rf.hot) >= rf.cfg.HotEntries {
		var coolest *hotEntry
		for _, he := range rf.hot {
			if coolest == nil || rf.heat.current(he.slot) < rf.heat.current(coolest.slot) {
				coolest = he
			}
		}
		if rf.heat.current(coolest.slot) >= rf.heat.current(slot) {
			return
		}
		delete(rf.hot, coolest.key)
	}
	he := &hotEntry{key: string(key), slot: slot, req: cloneRequest(r)}
	rf.hot[he.key] = he
}

// cloneRequest copies what a refresh needs: the front end's Request
// aliases its read buffer and is reused for the session's next read.
func cloneRequest(r *Request) Request {
	c := Request{Database: strings.Clone(r.Database), Role: strings.Clone(r.Role), SQL: strings.Clone(r.SQL),
		Shape: strings.Clone(r.Shape), Tx: r.Tx, Session: r.Session}
	c.Params.Types = slices.Clone(r.Params.Types)
	c.Params.Formats = slices.Clone(r.Params.Formats)
	if r.Params.Values != nil {
		c.Params.Values = make([][]byte, len(r.Params.Values))
		for i, v := range r.Params.Values {
			if v != nil {
				c.Params.Values[i] = append(make([]byte, 0, len(v)), v...)
			}
		}
	}
	c.ResultFormats = slices.Clone(r.ResultFormats)
	c.SearchPath = make([]string, len(r.SearchPath))
	for i, s := range r.SearchPath {
		c.SearchPath[i] = strings.Clone(s)
	}
	if r.SearchPath == nil {
		c.SearchPath = nil
	}
	s := cache.Settings{}
	if r.Settings != nil {
		for i, v := range r.Settings {
			s[i] = strings.Clone(v)
		}
	}
	c.Settings = &s
	return c
}

// invalidated queues a refresh of every hot entry among entries
// (coalesced by key, rate limited). Called by Apply after the entries
// were flagged, so a refresh begins after the change that invalidated
// it was applied and is visible at the origin.
func (rf *refresher) invalidated(now time.Time, entries []*cache.Entry) {
	rf.mu.Lock()
	defer rf.mu.Unlock()
	for _, e := range entries {
		he, ok := rf.hot[string(e.Key())]
		if !ok {
			continue
		}
		if he.refreshed == e {
			if rf.heat.read(he.slot) == he.mark {
				rf.wasted.Add(1)
				if rf.wastedMetric != nil {
					rf.wastedMetric.Inc()
				}
				if he.strikes++; he.strikes >= maxStrikes {
					delete(rf.hot, he.key)
					continue
				}
			} else {
				he.strikes = 0
			}
		}
		he.retried = false
		rf.enqueue(now, he)
	}
}

// enqueue queues he's refresh unless one is pending or the rate limit
// refuses it. Called with rf.mu held.
func (rf *refresher) enqueue(now time.Time, he *hotEntry) {
	if he.pending {
		rf.count(&rf.coalesced, "coalesced")
		return
	}
	if !rf.limit.allow(now) {
		rf.count(&rf.dropped, "dropped")
		return
	}
	select {
	case rf.queue <- he:
		he.pending = true
	default:
		rf.count(&rf.dropped, "dropped")
	}
}

// retry queues he once more after the stale-fill guard refused its
// refresh: the change that caused the refusal has been applied (and is
// visible), so a new refresh sees it; once per invalidation, so a key
// under constant writes is not refreshed in a loop.
func (rf *refresher) retry(now time.Time, he *hotEntry) {
	rf.mu.Lock()
	defer rf.mu.Unlock()
	if he.retried || rf.hot[he.key] != he {
		return
	}
	he.retried = true
	rf.enqueue(now, he)
}

// disableRole stops refreshing role: the refresh login cannot act as it.
func (rf *refresher) disableRole(role string, err error) {
	rf.mu.Lock()
	defer rf.mu.Unlock()
	if rf.badRoles[role] {
		return
	}
	rf.badRoles[role] = true
	rf.roleFailures.Add(1)
	rf.log.Warn("refresh-ahead: cannot act as the role; its entries are no longer refreshed (grant the role to the refresh login)",
		"role", role, "err", err)
	for k, he := range rf.hot {
		if he.req.Role == role {
			delete(rf.hot, k)
		}
	}
}

// forget drops key from the hot table.
func (rf *refresher) forget(key string) {
	rf.mu.Lock()
	delete(rf.hot, key)
	rf.mu.Unlock()
}

func (rf *refresher) stats() RefreshStats {
	return RefreshStats{Done: rf.done.Load(), Refused: rf.refused.Load(), Failed: rf.failed.Load(),
		Dropped: rf.dropped.Load(), Coalesced: rf.coalesced.Load(), Skipped: rf.skipped.Load(),
		Wasted: rf.wasted.Load(), RoleFailures: rf.roleFailures.Load(), Hot: rf.hotLen()}
}

// RefreshStats returns refresh-ahead's counters (zero when it is off).
func (m *Materializer) RefreshStats() RefreshStats {
	if m.refresh == nil {
		return RefreshStats{}
	}
	return m.refresh.stats()
}
