package analyze

import (
	"hash/maphash"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
)

// statementIDs hands out Result.StatementID: one counter for the process,
// so that no two memos (before and after a catalog reload, or two
// materializers) ever give one ID to two texts.
var statementIDs atomic.Uint64

// Memo keeps verdicts per (statement text, search_path, role) against one
// catalog, so that a statement is analyzed once, not per execution. Make a
// new Memo when the catalog is reloaded. The per-execution part of the
// verdict ([Admit]) is applied on every call. Safe for concurrent use.
type Memo struct {
	cat  Catalog
	max  int
	seed maphash.Seed

	mu      sync.RWMutex
	entries map[uint64][]*memoEntry
	n       int
}

type memoEntry struct {
	sql        string
	searchPath []string
	role       string
	res        Result
}

// NewMemo makes a Memo over cat holding at most maxEntries verdicts
// (default 10000 when maxEntries <= 0). When full it is emptied: verdicts
// are cheap to recompute, and a workload of ever-new texts must not grow
// memory without bound.
func NewMemo(cat Catalog, maxEntries int) *Memo {
	if maxEntries <= 0 {
		maxEntries = 10000
	}
	return &Memo{cat: cat, max: maxEntries, seed: maphash.MakeSeed(), entries: map[uint64][]*memoEntry{}}
}

// Analyze returns the verdict for in, from the memo when it has one. The
// Result is shared between callers and must not be modified; handing out
// the memo's own copy keeps a cache hit free of allocations.
func (m *Memo) Analyze(in Input) *Result {
	h := m.hash(&in)
	res, ok := m.lookup(h, &in)
	if !ok {
		stmt := in
		stmt.Tx, stmt.Session = TxNone, SessionKnown
		res = m.store(h, &in, Analyze(stmt, m.cat))
	}
	if r, ok := Admit(in.Tx, in.Session); !ok && res.Reason == "" {
		return &Result{Reason: r, Fingerprint: res.Fingerprint, ReadOnly: res.ReadOnly}
	}
	return res
}

func (m *Memo) hash(in *Input) uint64 {
	var h maphash.Hash
	h.SetSeed(m.seed)
	h.WriteString(in.SQL)
	for _, s := range in.SearchPath {
		h.WriteByte(0)
		h.WriteString(s)
	}
	h.WriteByte(1)
	h.WriteString(in.Role)
	return h.Sum64()
}

func (m *Memo) lookup(h uint64, in *Input) (*Result, bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	for _, e := range m.entries[h] {
		if e.matches(in) {
			return &e.res, true
		}
	}
	return nil, false
}

func (e *memoEntry) matches(in *Input) bool {
	return e.sql == in.SQL && e.role == in.Role && slices.Equal(e.searchPath, in.SearchPath) && (e.searchPath == nil) == (in.SearchPath == nil)
}

func (m *Memo) store(h uint64, in *Input, res Result) *Result {
	m.mu.Lock()
	defer m.mu.Unlock()
	// Another caller may have stored it since lookup: keep one verdict
	// (and so one StatementID) per text while it is memoized.
	for _, e := range m.entries[h] {
		if e.matches(in) {
			return &e.res
		}
	}
	if m.n >= m.max {
		clear(m.entries)
		m.n = 0
	}
	res.StatementID = statementIDs.Add(1)
	// The text may alias a front end's read buffer: keep a copy.
	e := &memoEntry{sql: strings.Clone(in.SQL), searchPath: slices.Clone(in.SearchPath), role: in.Role, res: res}
	m.entries[h] = append(m.entries[h], e)
	m.n++
	return &e.res
}

// Rebase returns a memo for cat that keeps this one's cacheable verdicts
// for which keep is true, with their StatementIDs (so that cache entries
// keyed by them stay reachable); everything else is analyzed again.
func (m *Memo) Rebase(cat Catalog, keep func(*Result) bool) *Memo {
	out := NewMemo(cat, m.max)
	out.seed = m.seed
	m.mu.RLock()
	defer m.mu.RUnlock()
	for h, es := range m.entries {
		for _, e := range es {
			if e.res.Cacheable && keep(&e.res) {
				out.entries[h] = append(out.entries[h], e)
				out.n++
			}
		}
	}
	return out
}
