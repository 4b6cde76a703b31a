package materialize

import (
	"github.com/freshetdb/freshet/ingest"
	"github.com/freshetdb/freshet/materialize/cache"
)

// invalidateEarly invalidates what b's changes can affect as soon as the
// batch arrives, before the origin confirms its commits are visible, so
// that readers stop being served the old results one origin round trip
// (or more, on a loaded origin) sooner: their misses ask the origin,
// whose own snapshot then decides what they see.
//
// This does not replace the second pass that Apply makes after
// waitVisible. A fill that asked the origin between the two may have read
// a snapshot without the changes; the second pass refuses it if it is
// still in flight (its token is older) or invalidates its entry if it was
// admitted. Until then such an entry is no older than what the cache
// served before the batch arrived, and the watermark moves only after the
// second pass, so read-your-writes and the staleness bound are unchanged
// (ADR 0007).
//
// It returns the entries it invalidated: Apply hands them to refresh-ahead
// only after the second pass, when a refresh's snapshot holds the changes.
func (m *Materializer) invalidateEarly(b *ingest.Batch) []*cache.Entry {
	if m.cfg.Visibility == nil || len(b.Changes) == 0 {
		return nil // no wait to get ahead of
	}
	var inv Invalidation
	for i := range b.Changes {
		m.ix.apply(&b.Changes[i], &inv)
	}
	// Counted by Apply with the second pass's: a reader of the counters
	// then knows both passes are done.
	for _, e := range inv.Entries {
		m.store.Remove(e)
	}
	return inv.Entries
}

// unionEntries is early followed by the entries of late not in it.
func unionEntries(early, late []*cache.Entry) []*cache.Entry {
	if len(early) == 0 {
		return late
	}
	seen := make(map[*cache.Entry]struct{}, len(early))
	for _, e := range early {
		seen[e] = struct{}{}
	}
	for _, e := range late {
		if _, ok := seen[e]; !ok {
			early = append(early, e)
		}
	}
	return early
}
