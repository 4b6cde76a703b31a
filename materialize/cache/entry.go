package cache

import "sync/atomic"

// Dependency is one thing a cached result depends on: a whole table when
// Column is empty, else the rows of Table whose Column equals Value (in the
// dependency index's normalized form).
type Dependency struct {
	Table  string
	Column string
	Value  string
}

// Entry is one cached response.
type Entry struct {
	// buf is the key followed by the response: one allocation per entry.
	buf    []byte
	keyLen int
	// state is the store generation at Set, shifted left by one, with the
	// invalidation flag in bit 0.
	state atomic.Uint64
	// ValidAt is the materializer's watermark the response was filled at;
	// opaque to the store.
	ValidAt uint64
	// Deps are the dependencies registered for the response.
	Deps []Dependency
}

// NewEntry makes an entry for key and response, copied into one buffer
// (once per fill, so that a hit touches a single allocation); deps are
// kept, not copied.
func NewEntry(key, response []byte, deps []Dependency, validAt uint64) *Entry {
	buf := make([]byte, 0, len(key)+len(response))
	buf = append(append(buf, key...), response...)
	return &Entry{buf: buf, keyLen: len(key), Deps: deps, ValidAt: validAt}
}

// Key is the entry's encoded key. Do not modify it.
func (e *Entry) Key() []byte { return e.buf[:e.keyLen:e.keyLen] }

// Response is the exact encoded wire response (row description, data rows,
// command completion), to be written to the client as is. Never modify it:
// readers write it to sockets concurrently.
func (e *Entry) Response() []byte { return e.buf[e.keyLen:] }

// Invalidate makes the entry unservable from now on; it is idempotent.
func (e *Entry) Invalidate() { e.state.Or(1) }

// Invalidated reports whether Invalidate was called.
func (e *Entry) Invalidated() bool { return e.state.Load()&1 != 0 }

// servable reports whether the entry is valid in store generation gen.
func (e *Entry) servable(gen uint64) bool {
	st := e.state.Load()
	return st&1 == 0 && st>>1 == gen
}

// stamp records the store generation, keeping the invalidation flag.
func (e *Entry) stamp(gen uint64) {
	for {
		old := e.state.Load()
		if e.state.CompareAndSwap(old, gen<<1|old&1) {
			return
		}
	}
}

// EntryOverhead is the estimated memory of an entry beyond its response
// and key: the Entry itself and ristretto's per-item bookkeeping. It is
// charged in every entry's cost so that the budget covers real memory;
// BenchmarkEntryOverhead measures the true figure.
const EntryOverhead = 200

// cost is what an entry is charged against the memory budget.
func (e *Entry) cost() int64 {
	n := len(e.buf) + EntryOverhead
	for _, d := range e.Deps {
		n += len(d.Table) + len(d.Column) + len(d.Value) + 48
	}
	return int64(n)
}
