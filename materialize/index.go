package materialize

import (
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
	mu     sync.Mutex
	seq    uint64
	reset  uint64 // seq of the last purge
	tables map[string]*tableDeps
	// pending counts the fills in flight by token, for pruning versions
	// that no fill can still need.
	pending map[uint64]int
	applied uint64 // changes applied since the last prune
}

type tableDeps struct {
	any   uint64 // seq of the last change of any kind
	whole uint64 // seq of the last table-wide invalidation
	// entries depend on the whole table.
	entries map[*cache.Entry]struct{}
	cols    map[string]*colDeps
}

type colDeps struct {
	// pending counts fills in flight that will register on this column:
	// while any is, values changed in the stream are versioned.
	pending int
	vals    map[string]*valDeps
}

type valDeps struct {
	seq     uint64
	entries entrySet
}

// entrySet is a set of entries: a slice while small (most values have
// one or two entries, and a map costs hundreds of bytes), a map beyond.
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
	return &index{tables: map[string]*tableDeps{}, pending: map[uint64]int{}}
}

func (ix *index) table(name string) *tableDeps {
	t := ix.tables[name]
	if t == nil {
		t = &tableDeps{entries: map[*cache.Entry]struct{}{}, cols: map[string]*colDeps{}}
		ix.tables[name] = t
	}
	return t
}

func (t *tableDeps) col(name string) *colDeps {
	c := t.cols[name]
	if c == nil {
		c = &colDeps{vals: map[string]*valDeps{}}
		t.cols[name] = c
	}
	return c
}

func (c *colDeps) val(v string) *valDeps {
	d := c.vals[v]
	if d == nil {
		d = &valDeps{}
		c.vals[v] = d
	}
	return d
}

// begin starts a fill of deps and returns its token.
func (ix *index) begin(deps []cache.Dependency) uint64 {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	tok := ix.seq
	ix.pending[tok]++
	for _, d := range deps {
		if d.Column != "" {
			ix.table(d.Table).col(d.Column).pending++
		}
	}
	return tok
}

// end finishes a fill begun with tok: it registers e when e is not nil
// and none of its dependencies was invalidated after tok, and reports
// whether it did.
func (ix *index) end(tok uint64, deps []cache.Dependency, e *cache.Entry) bool {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	if ix.pending[tok]--; ix.pending[tok] <= 0 {
		delete(ix.pending, tok)
	}
	for _, d := range deps {
		if d.Column != "" {
			ix.table(d.Table).col(d.Column).pending--
		}
	}
	if e == nil || !ix.fresh(tok, deps) {
		return false
	}
	for _, d := range deps {
		t := ix.table(d.Table)
		if d.Column == "" {
			t.entries[e] = struct{}{}
			continue
		}
		t.col(d.Column).val(d.Value).entries.add(e)
	}
	return true
}

// fresh reports whether no dependency was invalidated after tok.
func (ix *index) fresh(tok uint64, deps []cache.Dependency) bool {
	if ix.reset > tok {
		return false
	}
	for _, d := range deps {
		t := ix.tables[d.Table]
		if t == nil {
			continue
		}
		if d.Column == "" {
			if t.any > tok {
				return false
			}
			continue
		}
		if t.whole > tok {
			return false
		}
		if c := t.cols[d.Column]; c != nil {
			if v := c.vals[d.Value]; v != nil && v.seq > tok {
				return false
			}
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
	for _, d := range e.Deps {
		t := ix.tables[d.Table]
		if t == nil {
			continue
		}
		if d.Column == "" {
			delete(t.entries, e)
			continue
		}
		c := t.cols[d.Column]
		if c == nil {
			continue
		}
		if v := c.vals[d.Value]; v != nil {
			v.entries.remove(e)
		}
	}
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
	for name, col := range t.cols {
		i := columnIndex(c.Columns, name)
		if i < 0 {
			// The stream's shape does not know a column we depend on:
			// the schema moved under us.
			ix.invalidateTable(t, inv)
			return
		}
		k := kindOf(c.Columns[i].Type)
		before, bok := imageValue(c, c.Before, i, k, true)
		after, aok := imageValue(c, c.After, i, k, false)
		if !bok || !aok {
			ix.invalidateColumn(t, col, inv)
			inv.Fallback = append(inv.Fallback, name)
			continue
		}
		for _, v := range [2]*string{before, after} {
			if v == nil {
				continue
			}
			d := col.val(*v)
			d.seq = ix.seq
			inv.Entries = d.entries.takeAll(inv.Entries)
		}
	}
}

// imageValue is column i's normalized value in img: nil with ok when the
// image does not exist (the before image of an insert, the after image
// of a delete) or the value is NULL (which equals nothing); ok false
// when the value is not known.
func imageValue(c *schemas.Change, img []any, i int, k kind, before bool) (*string, bool) {
	if img == nil {
		switch {
		case before && c.Op == schemas.OpUpdate:
			// No old tuple: the replica identity did not change, so
			// key columns keep their new values; others are unknown.
			if c.Columns[i].Key {
				return nil, true
			}
			return nil, false
		case before && c.Op == schemas.OpDelete, !before && c.Op != schemas.OpDelete:
			return nil, false
		}
		return nil, true
	}
	if i >= len(img) {
		return nil, false
	}
	v := img[i]
	if v == nil {
		return nil, true
	}
	if schemas.IsAbsent(v) || schemas.IsUnchanged(v) {
		// An unchanged TOAST value equals the before image's, which
		// the before side accounts for; absent is unknown.
		if !before && schemas.IsUnchanged(v) && c.Before != nil && i < len(c.Before) && !schemas.IsAbsent(c.Before[i]) && !schemas.IsUnchanged(c.Before[i]) {
			return nil, true
		}
		return nil, false
	}
	s, ok := normalizeStream(k, v)
	if !ok {
		return nil, false
	}
	return &s, true
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
	for v, d := range col.vals {
		inv.Entries = d.entries.takeAll(inv.Entries)
		delete(col.vals, v)
	}
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
	for name, t := range ix.tables {
		for e := range t.entries {
			e.Invalidate()
		}
		for _, c := range t.cols {
			for _, v := range c.vals {
				for _, e := range v.entries.takeAll(nil) {
					e.Invalidate()
				}
			}
		}
		keep := &tableDeps{entries: map[*cache.Entry]struct{}{}, cols: map[string]*colDeps{}}
		for cn, c := range t.cols {
			if c.pending > 0 {
				keep.cols[cn] = &colDeps{pending: c.pending, vals: map[string]*valDeps{}}
			}
		}
		ix.tables[name] = keep
	}
}

// prune drops value versions no fill in flight can still need, and empty
// columns; it runs every so many applied changes.
func (ix *index) prune() {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	oldest := ix.seq
	for tok := range ix.pending {
		oldest = min(oldest, tok)
	}
	for _, t := range ix.tables {
		for cn, c := range t.cols {
			for v, d := range c.vals {
				if d.entries.len() == 0 && d.seq <= oldest {
					delete(c.vals, v)
				}
			}
			if len(c.vals) == 0 && c.pending == 0 {
				delete(t.cols, cn)
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
