package materialize

import (
	"sync/atomic"

	"github.com/cespare/xxhash/v2"
)

// heat counts cache hits per key in a fixed array of counters indexed by
// the key's hash, so that cold entries cost no memory of their own: a key
// is hot when its counter grew by threshold since the last decay. Keys
// sharing a slot add up; the error only makes a cold key look hot, and
// the hot table is bounded.
type heat struct {
	reads     []atomic.Uint32 // hits since start, per slot
	base      []atomic.Uint32 // reads at the last decay
	mask      uint64
	threshold uint32
}

// heatSlots is the number of counters: 2 × 4 × 64Ki = 512 KiB, fixed.
const heatSlots = 1 << 16

func newHeat(threshold int) *heat {
	return &heat{reads: make([]atomic.Uint32, heatSlots), base: make([]atomic.Uint32, heatSlots),
		mask: heatSlots - 1, threshold: uint32(threshold)}
}

func (h *heat) slot(key []byte) uint32 { return uint32(xxhash.Sum64(key) & h.mask) }

// hit counts a hit on key; crossed is true for the hits that make the
// key's heat in this window reach the threshold, and twice, four
// times... that: a key that keeps getting hotter asks again for a place
// in a full hot table, with a higher claim.
func (h *heat) hit(key []byte) (slot uint32, crossed bool) {
	slot = h.slot(key)
	d := h.reads[slot].Add(1) - h.base[slot].Load()
	if d < h.threshold || d%h.threshold != 0 {
		return slot, false
	}
	k := d / h.threshold
	return slot, k&(k-1) == 0
}

// read is the slot's hit count since start (to tell whether a key was read
// between two moments).
func (h *heat) read(slot uint32) uint32 { return h.reads[slot].Load() }

// current is the slot's hits in this window.
func (h *heat) current(slot uint32) uint32 { return h.reads[slot].Load() - h.base[slot].Load() }

// decay starts a new window: keys must earn their heat again.
func (h *heat) decay() {
	for i := range h.reads {
		h.base[i].Store(h.reads[i].Load())
	}
}
