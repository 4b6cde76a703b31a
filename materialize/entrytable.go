package materialize

import "github.com/freshetdb/freshet/materialize/cache"

// entryTable maps a column's value hashes to the one entry registered
// under each (colDeps.one), which is most of what the dependency index
// holds per cached point read.
//
// It is laid out as Go's maps are, a control byte per slot and linear
// probing, but a slot holds only the entry: the hash an entry was
// registered under is read back from its refs, which name the column's
// target and the value's hash. A slot thus costs 9 bytes where a
// map[uint64]*cache.Entry's costs 17 (DESIGN.md's 200-byte target per
// entry; BenchmarkEntryOverheadWithIndex).
//
// An entry may be put only under the hash of its one ref on the target
// (fits); one with several, an IN list's, goes to colDeps.more, so that
// every slot's hash is known.
type entryTable struct {
	target uint32
	ctrl   []byte
	slots  []*cache.Entry
	live   int // slots holding an entry
	used   int // slots holding an entry or deleted: probes pass them
}

// Control bytes: an empty slot ends a probe, a deleted one does not, a
// full one carries 7 bits of the hash its entry is registered under, so
// that most probes pass other slots without reading their entries.
const (
	ctrlEmpty   = 0x00
	ctrlDeleted = 0x01
	ctrlFull    = 0x80
)

func newEntryTable(target uint32) entryTable { return entryTable{target: target} }

func (t *entryTable) len() int { return t.live }

func tagOf(h uint64) byte { return ctrlFull | byte(h>>57) }

// find returns the slot of h's entry, or -1. The table always keeps an
// empty slot (see put), which ends every probe.
func (t *entryTable) find(h uint64) int {
	if t.live == 0 {
		return -1
	}
	mask := len(t.slots) - 1
	tag := tagOf(h)
	for i := int(h) & mask; ; i = (i + 1) & mask {
		switch c := t.ctrl[i]; {
		case c == ctrlEmpty:
			return -1
		case c == tag && t.holds(i, h):
			return i
		}
	}
}

// fits reports whether e may be put in the table: it has exactly one ref
// on the target, so that a slot's entry names the slot's hash.
func (t *entryTable) fits(e *cache.Entry) bool {
	_, ok := t.hashOf(e)
	return ok
}

// hashOf is the hash of e's one ref on the target; ok is false when it
// has none or several.
func (t *entryTable) hashOf(e *cache.Entry) (h uint64, ok bool) {
	n := 0
	for i := range e.NumRefs() {
		if r := e.Ref(i); r.Target == t.target {
			h, n = r.Hash, n+1
		}
	}
	return h, n == 1
}

// holds reports whether slot i's entry is registered under h: its one
// ref on the target has that hash.
func (t *entryTable) holds(i int, h uint64) bool {
	hh, _ := t.hashOf(t.slots[i])
	return hh == h
}

// put registers e under h, which must hold no entry yet; e must fit and
// h be the hash of its ref on the target.
func (t *entryTable) put(h uint64, e *cache.Entry) {
	if (t.used+1)*8 > len(t.slots)*7 {
		t.rehash()
	}
	mask := len(t.slots) - 1
	i := int(h) & mask
	for t.ctrl[i] >= ctrlFull {
		i = (i + 1) & mask
	}
	if t.ctrl[i] == ctrlEmpty {
		t.used++
	}
	t.ctrl[i], t.slots[i] = tagOf(h), e
	t.live++
}

// delete empties slot i, found by find.
func (t *entryTable) delete(i int) {
	mask := len(t.slots) - 1
	t.slots[i] = nil
	t.live--
	if t.ctrl[(i+1)&mask] != ctrlEmpty {
		t.ctrl[i] = ctrlDeleted // a probe may pass here to a later slot
		return
	}
	// No probe goes past an empty slot, so this one and the deleted
	// ones right before it can end probes too.
	t.ctrl[i] = ctrlEmpty
	t.used--
	for j := (i - 1) & mask; t.ctrl[j] == ctrlDeleted; j = (j - 1) & mask {
		t.ctrl[j] = ctrlEmpty
		t.used--
	}
}

// rehash makes room: twice the slots when more than 7/16 of them would
// hold entries, else the same number without the deleted ones.
func (t *entryTable) rehash() {
	n := max(len(t.slots), 8)
	if len(t.slots) > 0 && (t.live+1)*16 > len(t.slots)*7 {
		n *= 2
	}
	old := *t
	*t = entryTable{target: t.target, ctrl: make([]byte, n), slots: make([]*cache.Entry, n)}
	for i, e := range old.slots {
		if old.ctrl[i] < ctrlFull {
			continue
		}
		h, ok := t.hashOf(e)
		if !ok {
			// Cannot happen (put takes only entries that fit); were
			// it to, the entry could not be found by its value, so it
			// is never served.
			e.Invalidate()
			continue
		}
		t.put(h, e)
	}
}

// takeAll appends every entry to out and empties the table.
func (t *entryTable) takeAll(out []*cache.Entry) []*cache.Entry {
	for i, e := range t.slots {
		if t.ctrl[i] >= ctrlFull {
			out = append(out, e)
		}
	}
	*t = newEntryTable(t.target)
	return out
}
