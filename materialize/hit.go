package materialize

import (
	"time"

	"github.com/freshetdb/freshet/materialize/analyze"
	"github.com/freshetdb/freshet/materialize/cache"
	"github.com/freshetdb/freshet/schemas"
)

// HitLooker is implemented by a Cache that can tell a hit without
// blocking (*Materializer does). A front end that must not block, such
// as an event loop, asks it first and hands anything else to Lookup.
type HitLooker interface {
	// LookupHit returns the entry answering r when Lookup would answer
	// it from the cache right now, and counts it as Lookup counts a hit.
	// Otherwise it returns nil and changes nothing, so that the Lookup
	// the front end then makes counts the read once. key is a scratch
	// buffer, as for Lookup.
	LookupHit(r *Request, key []byte) (*cache.Entry, []byte)
}

var _ HitLooker = (*Materializer)(nil)

// LookupHit is Lookup restricted to what needs no waiting: it never asks
// the origin for a fence's position, never waits for the watermark or a
// concurrent fill, and takes no ticket.
func (m *Materializer) LookupHit(r *Request, key []byte) (*cache.Entry, []byte) {
	if r.FencePending {
		return nil, key // resolving it asks the origin
	}
	t0 := time.Now()
	sess := r.Session
	if m.sessionUnseen(r) {
		sess = analyze.SessionUnknown
	}
	res := m.Analyze(analyze.Input{SQL: r.SQL, SearchPath: r.SearchPath, Role: r.Role, Tx: r.Tx, Session: sess})
	if !res.Cacheable || timeDependentParams(&r.Params) || !m.servableNow(r.Fence) {
		return nil, key
	}
	key = m.appendRequestKey(key[:0], r, res)
	e, ok := m.store.Get(key)
	if !ok {
		return nil, key
	}
	r.Fence = schemas.Position{} // the watermark covers it now
	m.stats.hits.Add(1)
	m.metrics.hit(time.Since(t0))
	a := Answer{Entry: e, Cacheable: true}
	m.templates.record(res.Fingerprint, &a)
	if m.refresh != nil {
		m.refresh.observe(m.cfg.Now, key, r, &a)
	}
	return e, key
}

// servableNow is servable for an analyzed cacheable read, without
// waiting: a fence is passed only if the watermark covers it already.
func (m *Materializer) servableNow(fence schemas.Position) bool {
	if m.reload.Load() {
		return false
	}
	pos, at, ok := m.wm.get()
	if !ok || m.cfg.Now().Sub(at) > m.cfg.StalenessBound {
		return false
	}
	return fence.IsZero() || pos.Covers(fence)
}
