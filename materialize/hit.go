package materialize

import (
	"time"

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
	res := m.analyzeRequest(r)
	if !res.Cacheable || timeDependentParams(&r.Params) {
		return nil, key
	}
	if pos, bypass := m.watermarkNow(); bypass != "" || !pos.Covers(r.Fence) {
		return nil, key
	}
	key = m.appendRequestKey(key[:0], r, res)
	e, ok := m.store.Get(key)
	if !ok {
		return nil, key
	}
	r.Fence = schemas.Position{} // the watermark covers it now
	m.countHit(t0, false)
	m.observe(r, res, key, &Answer{Entry: e, Cacheable: true, ReadOnly: true})
	return e, key
}
