package materialize

import "github.com/freshetdb/freshet/ingest"

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
func (m *Materializer) invalidateEarly(b *ingest.Batch) {
	if m.cfg.Visibility == nil || len(b.Changes) == 0 {
		return // no wait to get ahead of
	}
	var inv Invalidation
	for i := range b.Changes {
		m.ix.apply(&b.Changes[i], &inv)
	}
	m.stats.invalidated.Add(uint64(len(inv.Entries)))
	m.metrics.applied(0, len(inv.Entries))
	for _, e := range inv.Entries {
		m.store.Remove(e)
	}
}
