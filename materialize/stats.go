package materialize

import (
	"sync"
	"sync/atomic"
)

type counters struct {
	hits, misses, coalesced, fills, staleFills atomic.Uint64
	changes, invalidated, fallbacks, resets    atomic.Uint64
	catalogPurges, catalogScoped               atomic.Uint64
	catalogFollowed                            atomic.Uint64
	mu                                         sync.Mutex
	bypassed                                   map[string]uint64
}

func (c *counters) bypass(reason string) {
	c.mu.Lock()
	if c.bypassed == nil {
		c.bypassed = map[string]uint64{}
	}
	c.bypassed[reason]++
	c.mu.Unlock()
}

// Stats are the materializer's counters since New.
type Stats struct {
	// Hits are reads answered from the cache; Coalesced those of them
	// that waited for a concurrent fill of the same key.
	Hits, Coalesced uint64
	// Misses are reads that went to the origin with a ticket to fill.
	Misses uint64
	// Fills were cached; StaleFills were refused by the stale-fill guard
	// (a change to a dependency arrived while the origin was asked).
	Fills, StaleFills uint64
	// Changes applied, entries Invalidated by them, changes that fell
	// back to column-wide invalidation, resets.
	Changes, Invalidated, Fallbacks, Resets uint64
	// CatalogPurges are purges of the whole cache after a periodic reload
	// found functions, operators, views or the published set changed;
	// CatalogScoped are reloads that found only other relations changed
	// and invalidated only what read them.
	CatalogPurges, CatalogScoped uint64
	// CatalogFollowed are catalog reloads made at a catalog change in the
	// stream (the origin's DDL event trigger), before the watermark
	// passed it.
	CatalogFollowed uint64
	// Bypassed counts cacheable reads sent to the origin unfilled, by
	// reason.
	Bypassed map[string]uint64
}

// Stats returns the counters.
func (m *Materializer) Stats() Stats {
	c := &m.stats
	s := Stats{
		Hits: c.hits.Load(), Coalesced: c.coalesced.Load(), Misses: c.misses.Load(),
		Fills: c.fills.Load(), StaleFills: c.staleFills.Load(), Changes: c.changes.Load(),
		Invalidated: c.invalidated.Load(), Fallbacks: c.fallbacks.Load(), Resets: c.resets.Load(),
		CatalogPurges: c.catalogPurges.Load(), CatalogScoped: c.catalogScoped.Load(),
		CatalogFollowed: c.catalogFollowed.Load(),
		Bypassed:        map[string]uint64{},
	}
	c.mu.Lock()
	for k, v := range c.bypassed {
		s.Bypassed[k] = v
	}
	c.mu.Unlock()
	return s
}
