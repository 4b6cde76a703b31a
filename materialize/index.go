package materialize

import (
	"hash/maphash"
	"sync"

	"github.com/freshetdb/freshet/materialize/cache"
	"github.com/freshetdb/freshet/schemas"
)

// index is the dependency index: which cached entries depend on which
// tables and (table, column, value) predicates, and the version of every
// dependency that a fill in flight might register, for the stale-fill
// guard (ADR 0007).
//
// Versions are sequence numbers of invalidation events. A fill takes a
// token (the current sequence) before it asks the origin; it is admitted
// only if no dependency it registers was invalidated after the token. The
// check and the registration happen under the same lock as invalidation,
// so an invalidation is either seen by the check or finds the entry
// registered.
type index struct {
	mu    sync.Mutex
	seq   uint64
	reset uint64 // seq of the last purge
	// hash hashes values (maphash, seeded at random): a value is indexed
	// by its hash, never by a copy of its string. Two values with one
	// hash share a slot, which only invalidates (or refuses) more than
	// needed, never less; the random seed keeps anyone from choosing such
	// values.
	hash   func(string) uint64
	tables map[string]*tableDeps
	// targets are the tables and (table, column) pairs by cache.Ref
	// target; they are never removed (their number is bounded by the
	// schema), so an entry's refs stay valid for its whole life.
	targets []target
	// pending counts the fills in flight by token, for pruning versions
	// that no fill can still need.
	pending map[uint64]int
	applied uint64 // changes applied since the last prune
}

// target is what a cache.Ref names: a table, or one of its columns.
type target struct {
	t *tableDeps
	c *colDeps // nil for the table itself
}

type tableDeps struct {
	ref   uint32 // the table's target
	any   uint64 // seq of the last change of any kind
	whole uint64 // seq of the last table-wide invalidation
	// entries depend on the whole table.
	entries map[*cache.Entry]struct{}
	// cols are the columns some entry or fill ever had a predicate on;
	// only the active ones are looked at by changes.
	cols []*colDeps
}

type colDeps struct {
	name string
	ref  uint32
	// pending counts fills in flight that will register on this column:
	// while any is, values changed in the stream are versioned.
	pending int
	// one and more are the entries by value hash: most values have one
	// entry, held in a slot of 9 bytes; a value with more, or an entry
	// with several values on the column, is in more.
	one  entryTable
	more map[uint64]*entrySet
	// versions are the seqs of the last changes to values while fills
	// were pending on the column; only a fill that began before such a
	// change can be refused by it, so nothing else is versioned.
	versions map[uint64]uint64
}

func newColDeps(name string, ref uint32) *colDeps {
	return &colDeps{name: name, ref: ref, one: newEntryTable(ref), more: map[uint64]*entrySet{}, versions: map[uint64]uint64{}}
}

// active reports whether a change must look at the column: an entry or a
// fill depends on it. An inactive column is as good as absent.
func (c *colDeps) active() bool { return c.pending > 0 || c.one.len() > 0 || len(c.more) > 0 }

// entrySet is a set of entries: a slice while small, a map beyond.
type entrySet struct {
	few  []*cache.Entry
	many map[*cache.Entry]struct{}
}

const entrySetSmall = 16

func (s *entrySet) add(e *cache.Entry) {
	if s.many != nil {
		s.many[e] = struct{}{}
		return
	}
	for _, x := range s.few {
		if x == e {
			return
		}
	}
	if len(s.few) < entrySetSmall {
		s.few = append(s.few, e)
		return
	}
	s.many = make(map[*cache.Entry]struct{}, 2*entrySetSmall)
	for _, x := range s.few {
		s.many[x] = struct{}{}
	}
	s.many[e] = struct{}{}
	s.few = nil
}

func (s *entrySet) remove(e *cache.Entry) {
	if s.many != nil {
		delete(s.many, e)
		return
	}
	for i, x := range s.few {
		if x == e {
			last := len(s.few) - 1
			s.few[i] = s.few[last]
			s.few[last] = nil
			s.few = s.few[:last]
			return
		}
	}
}

func (s *entrySet) len() int { return len(s.few) + len(s.many) }

// takeAll appends every entry to out and empties the set.
func (s *entrySet) takeAll(out []*cache.Entry) []*cache.Entry {
	out = append(out, s.few...)
	for e := range s.many {
		out = append(out, e)
	}
	s.few, s.many = nil, nil
	return out
}

func newIndex() *index {
	seed := maphash.MakeSeed()
	return &index{
		hash:   func(v string) uint64 { return maphash.String(seed, v) },
		tables: map[string]*tableDeps{}, pending: map[uint64]int{},
	}
}

func (ix *index) table(name string) *tableDeps {
	t := ix.tables[name]
	if t == nil {
		t = &tableDeps{ref: uint32(len(ix.targets)), entries: map[*cache.Entry]struct{}{}}
		ix.targets = append(ix.targets, target{t: t})
		ix.tables[name] = t
	}
	return t
}

func (ix *index) col(t *tableDeps, name string) *colDeps {
	for _, c := range t.cols {
		if c.name == name {
			return c
		}
	}
	c := newColDeps(name, uint32(len(ix.targets)))
	ix.targets = append(ix.targets, target{t: t, c: c})
	t.cols = append(t.cols, c)
	return c
}

// add registers e under value hash h.
func (c *colDeps) add(h uint64, e *cache.Entry) {
	if set := c.more[h]; set != nil {
		set.add(e)
		return
	}
	i := c.one.find(h)
	switch {
	case i < 0 && c.one.fits(e):
		c.one.put(h, e)
		return
	case i >= 0 && c.one.slots[i] == e:
		return
	}
	// A second entry for the value, or an entry with several values on
	// the column (an IN list), which the table cannot hold.
	set := &entrySet{}
	if i >= 0 {
		set.add(c.one.slots[i])
		c.one.delete(i)
	}
	set.add(e)
	c.more[h] = set
}

// remove unregisters e from value hash h.
func (c *colDeps) remove(h uint64, e *cache.Entry) {
	if i := c.one.find(h); i >= 0 && c.one.slots[i] == e {
		c.one.delete(i)
		return
	}
	if set := c.more[h]; set != nil {
		set.remove(e)
		if set.len() == 0 {
			delete(c.more, h)
		}
	}
}

// changed takes the entries of value hash h, and versions it at seq if a
// fill is pending on the column.
func (c *colDeps) changed(h, seq uint64, out []*cache.Entry) []*cache.Entry {
	if i := c.one.find(h); i >= 0 {
		out = append(out, c.one.slots[i])
		c.one.delete(i)
	}
	if set := c.more[h]; set != nil {
		out = set.takeAll(out)
		delete(c.more, h)
	}
	if c.pending > 0 {
		c.versions[h] = seq
	}
	return out
}

// takeAll appends every entry on the column to out and forgets them and
// the versions (the caller versions the column as a whole).
func (c *colDeps) takeAll(out []*cache.Entry) []*cache.Entry {
	out = c.one.takeAll(out)
	for _, set := range c.more {
		out = set.takeAll(out)
	}
	c.more, c.versions = map[uint64]*entrySet{}, map[uint64]uint64{}
	return out
}

// refs resolves deps to the index's refs, creating targets as needed.
func (ix *index) refs(deps []cache.Dependency) []cache.Ref {
	refs := make([]cache.Ref, len(deps))
	for i, d := range deps {
		t := ix.table(d.Table)
		if d.Column == "" {
			refs[i] = cache.Ref{Target: t.ref}
			continue
		}
		refs[i] = cache.Ref{Target: ix.col(t, d.Column).ref, Hash: ix.hash(d.Value)}
	}
	return refs
}

// begin starts a fill of deps and returns its token and the refs to
// end it and make its entry with.
func (ix *index) begin(deps []cache.Dependency) (uint64, []cache.Ref) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	tok := ix.seq
	ix.pending[tok]++
	refs := ix.refs(deps)
	for _, r := range refs {
		if c := ix.targets[r.Target].c; c != nil {
			c.pending++
		}
	}
	return tok, refs
}

// end finishes a fill begun with tok: it registers e when e is not nil
// and none of its dependencies was invalidated after tok, and reports
// whether it did.
func (ix *index) end(tok uint64, refs []cache.Ref, e *cache.Entry) bool {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	if ix.pending[tok]--; ix.pending[tok] <= 0 {
		delete(ix.pending, tok)
	}
	for _, r := range refs {
		if c := ix.targets[r.Target].c; c != nil {
			c.pending--
		}
	}
	if e == nil || !ix.fresh(tok, refs) {
		return false
	}
	// Register e under its own refs, which unregister reads back (and
	// colDeps.one requires); a fill makes them from refs.
	for i := range e.NumRefs() {
		r := e.Ref(i)
		tg := ix.targets[r.Target]
		if tg.c == nil {
			tg.t.entries[e] = struct{}{}
			continue
		}
		tg.c.add(r.Hash, e)
	}
	return true
}

// fresh reports whether no dependency was invalidated after tok.
func (ix *index) fresh(tok uint64, refs []cache.Ref) bool {
	if ix.reset > tok {
		return false
	}
	for _, r := range refs {
		tg := ix.targets[r.Target]
		if tg.c == nil {
			if tg.t.any > tok {
				return false
			}
			continue
		}
		if tg.t.whole > tok {
			return false
		}
		if tg.c.versions[r.Hash] > tok {
			return false
		}
	}
	return true
}

// forget removes e from the index (evicted, or refused by the store).
func (ix *index) forget(e *cache.Entry) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	ix.unregister(e)
}

func (ix *index) unregister(e *cache.Entry) {
	for i := range e.NumRefs() {
		r := e.Ref(i)
		if int(r.Target) >= len(ix.targets) {
			continue // not made by this index
		}
		tg := ix.targets[r.Target]
		if tg.c == nil {
			delete(tg.t.entries, e)
			continue
		}
		tg.c.remove(r.Hash, e)
	}
}

// registered counts the entries registered, per registration; for tests.
func (ix *index) registered() int {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	n := 0
	for _, t := range ix.tables {
		n += len(t.entries)
		for _, c := range t.cols {
			n += c.one.len()
			for _, set := range c.more {
				n += set.len()
			}
		}
	}
	return n
}

// Invalidation is what one change did to the index.
type Invalidation struct {
	// Entries are the entries to invalidate; the caller removes them from
	// the store outside the index lock.
	Entries []*cache.Entry
	// Fallback names the predicate columns invalidated whole because the
	// change's before image lacked them (REPLICA IDENTITY DEFAULT).
	Fallback []string
	// Whole is set when the table was invalidated whole.
	Whole bool
}

// apply invalidates what c can affect, appending to inv.
//
// The entries are marked invalidated before apply returns, under the
// lock: once the watermark moves past c, none of them is served.
func (ix *index) apply(c *schemas.Change, inv *Invalidation) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	n := len(inv.Entries)
	ix.applyLocked(c, inv)
	for _, e := range inv.Entries[n:] {
		if !e.Invalidated() {
			e.Invalidate()
			ix.unregister(e)
		}
	}
}

func (ix *index) applyLocked(c *schemas.Change, inv *Invalidation) {
	ix.seq++
	ix.applied++
	t := ix.table(c.Schema + "." + c.Table)
	t.any = ix.seq
	inv.Entries = takeAll(inv.Entries, t.entries)
	if c.Op == schemas.OpTruncate || c.Op == schemas.OpSchemaChange {
		ix.invalidateTable(t, inv)
		return
	}
	for _, col := range t.cols {
		if !col.active() {
			continue
		}
		i := columnIndex(c.Columns, col.name)
		if i < 0 {
			// The stream's shape does not know a column we depend on:
			// the schema moved under us.
			ix.invalidateTable(t, inv)
			return
		}
		k := kindOf(c.Columns[i].Type)
		before, bnull, bok := imageValue(c, c.Before, i, k, true)
		after, anull, aok := imageValue(c, c.After, i, k, false)
		if !bok || !aok {
			ix.invalidateColumn(t, col, inv)
			inv.Fallback = append(inv.Fallback, col.name)
			continue
		}
		if !bnull {
			inv.Entries = col.changed(ix.hash(before), ix.seq, inv.Entries)
		}
		if !anull {
			inv.Entries = col.changed(ix.hash(after), ix.seq, inv.Entries)
		}
	}
}

// imageValue is column i's normalized value in img: none (with ok) when
// the image does not exist (the before image of an insert, the after
// image of a delete) or the value is NULL (which equals nothing); ok
// false when the value is not known.
func imageValue(c *schemas.Change, img []any, i int, k kind, before bool) (s string, none, ok bool) {
	if img == nil {
		switch {
		case before && c.Op == schemas.OpUpdate:
			// No old tuple: the replica identity did not change, so
			// key columns keep their new values; others are unknown.
			if c.Columns[i].Key {
				return "", true, true
			}
			return "", true, false
		case before && c.Op == schemas.OpDelete, !before && c.Op != schemas.OpDelete:
			return "", true, false
		}
		return "", true, true
	}
	if i >= len(img) {
		return "", true, false
	}
	v := img[i]
	if v == nil {
		return "", true, true
	}
	if schemas.IsAbsent(v) || schemas.IsUnchanged(v) {
		// An unchanged TOAST value equals the before image's, which
		// the before side accounts for; absent is unknown.
		if !before && schemas.IsUnchanged(v) && c.Before != nil && i < len(c.Before) && !schemas.IsAbsent(c.Before[i]) && !schemas.IsUnchanged(c.Before[i]) {
			return "", true, true
		}
		return "", true, false
	}
	s, ok = normalizeStream(k, v)
	return s, !ok, ok
}

func (ix *index) invalidateTable(t *tableDeps, inv *Invalidation) {
	inv.Whole = true
	for _, col := range t.cols {
		ix.invalidateColumn(t, col, inv)
	}
}

// invalidateColumn invalidates every entry with a predicate on col. Fills
// in flight on the table fail too (t.whole): values they registered are
// not individually versioned here. Conservative; they are retried.
func (ix *index) invalidateColumn(t *tableDeps, col *colDeps, inv *Invalidation) {
	t.whole = ix.seq
	inv.Entries = col.takeAll(inv.Entries)
}

// takeAll appends every entry of set to out and empties set.
func takeAll(out []*cache.Entry, set map[*cache.Entry]struct{}) []*cache.Entry {
	for e := range set {
		out = append(out, e)
	}
	clear(set)
	return out
}

// purge drops every entry and fails every fill in flight (a reset).
func (ix *index) purge() {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	ix.seq++
	ix.reset = ix.seq
	for _, t := range ix.tables {
		for e := range t.entries {
			e.Invalidate()
		}
		t.entries = map[*cache.Entry]struct{}{}
		for _, c := range t.cols {
			for _, e := range c.takeAll(nil) {
				e.Invalidate()
			}
		}
	}
}

// prune drops value versions no fill in flight can still need; it runs
// every so many applied changes.
func (ix *index) prune() {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	oldest := ix.seq
	for tok := range ix.pending {
		oldest = min(oldest, tok)
	}
	for _, t := range ix.tables {
		for _, c := range t.cols {
			for h, seq := range c.versions {
				if seq <= oldest {
					delete(c.versions, h)
				}
			}
		}
	}
	ix.applied = 0
}

func columnIndex(cols []schemas.Column, name string) int {
	for i, c := range cols {
		if c.Name == name {
			return i
		}
	}
	return -1
}

func (ix *index) appliedSince() uint64 {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	return ix.applied
}
