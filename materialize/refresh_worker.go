package materialize

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/freshetdb/freshet/materialize/analyze"
	"github.com/freshetdb/freshet/materialize/cache"
)

// runRefresh runs the refresh workers and the heat decay until ctx ends,
// and waits for them.
func (m *Materializer) runRefresh(ctx context.Context) {
	rf := m.refresh
	var wg sync.WaitGroup
	for range rf.cfg.Concurrency {
		wg.Go(func() {
			for {
				select {
				case <-ctx.Done():
					return
				case he := <-rf.queue:
					rf.mu.Lock()
					he.pending = false // an invalidation from now on queues it again
					rf.mu.Unlock()
					m.refreshOne(ctx, he)
				}
			}
		})
	}
	t := time.NewTicker(rf.cfg.HotWindow)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			wg.Wait()
			return
		case <-t.C:
			rf.heat.decay()
		}
	}
}

// refreshOne re-executes he's read at the origin and fills the cache
// through the ticket path of any miss: dependency versions are taken
// before the origin is asked and the stale-fill guard judges the answer;
// a client miss of the same key waits for it (single flight).
func (m *Materializer) refreshOne(ctx context.Context, he *hotEntry) {
	rf := m.refresh
	r := &he.req
	sess := r.Session
	if m.sessionUnseen(r) {
		sess = analyze.SessionUnknown
	}
	res := m.Analyze(analyze.Input{SQL: r.SQL, SearchPath: r.SearchPath, Role: r.Role, Tx: r.Tx, Session: sess})
	if !res.Cacheable {
		rf.forget(he.key)
		rf.count(&rf.skipped, "skipped")
		return
	}
	key := []byte(he.key)
	if id := cache.KeyStatementID(key); id != 0 && id != res.StatementID {
		// The memo gave the text a new ID since (it was emptied): reads
		// now use a new key, which heats up on its own; this one only
		// names entries that age out.
		rf.forget(he.key)
		rf.count(&rf.skipped, "skipped")
		return
	}
	q := &Query{Key: key, Analysis: res, Params: &r.Params}
	if m.servable(ctx, q) != "" {
		rf.count(&rf.skipped, "skipped")
		return
	}
	if _, ok := m.store.Get(key); ok {
		rf.count(&rf.skipped, "skipped") // a client filled it first
		return
	}
	tk := m.beginRefresh(q)
	if tk == nil {
		rf.count(&rf.skipped, "skipped") // a client is filling it
		return
	}
	rctx, cancel := context.WithTimeout(ctx, rf.cfg.Timeout)
	resp, err := rf.cfg.Refresher.Refresh(rctx, &RefreshRequest{Database: r.Database, Role: r.Role, SQL: r.SQL,
		Shape: r.Shape, Params: r.Params, ResultFormats: r.ResultFormats, Settings: *r.Settings})
	cancel()
	if err != nil {
		m.Abandon(tk)
		if errors.Is(err, ErrRefreshRole) {
			rf.disableRole(r.Role, err)
		} else if ctx.Err() == nil {
			rf.log.Debug("refresh-ahead: origin query failed", "sql", r.SQL, "err", err)
		}
		rf.count(&rf.failed, "failed")
		return
	}
	if !m.Put(tk, resp) {
		rf.count(&rf.refused, "refused")
		rf.retry(m.cfg.Now(), he)
		return
	}
	rf.mu.Lock()
	he.refreshed, he.mark = tk.flight.entry, rf.heat.read(he.slot)
	rf.mu.Unlock()
	rf.count(&rf.done, "done")
}

// beginRefresh takes a fill ticket for q as its flight's leader; nil when
// a fill of the key is already in flight.
func (m *Materializer) beginRefresh(q *Query) *Ticket {
	fl := m.flights.lead(q.Key)
	if fl == nil {
		return nil
	}
	return m.ticket(q, fl)
}
