package cache

import (
	"encoding/binary"
	"math"
	"sync/atomic"
)

// Dependency is one thing a cached result depends on: a whole table when
// Column is empty, else the rows of Table whose Column equals Value (in the
// dependency index's normalized form).
type Dependency struct {
	Table  string
	Column string
	Value  string
}

// Ref is a dependency as the dependency index registers it: Target is a
// handle the index gave the table or (table, column), Hash the hash of the
// value (zero for a table). The store keeps refs for the index, packed in
// the entry's one allocation, so that an entry's dependencies cost a few
// bytes instead of strings and slices of their own.
type Ref struct {
	Target uint32
	Hash   uint64
}

// refSize is a Ref's packed size: Target then Hash, big-endian.
const refSize = 12

// Entry is one cached response.
type Entry struct {
	// buf is the key, the response, then the packed refs: one
	// allocation per entry.
	buf    []byte
	keyLen uint32
	nrefs  uint32 // oversize when the bytes cannot be described in 32 bits
	// state is the store generation at Set, shifted left by one, with the
	// invalidation flag in bit 0.
	state atomic.Uint64
	// ValidAt is the materializer's watermark the response was filled at;
	// opaque to the store.
	ValidAt uint64
}

// NewEntry makes an entry for key, response and the dependency refs,
// copied into one buffer (once per fill, so that a hit touches a single
// allocation and an entry costs little beyond its bytes).
//
// A key of 4 GiB or more (beyond what a wire message can carry) makes an
// entry that the store refuses.
func NewEntry(key, response []byte, refs []Ref, validAt uint64) *Entry {
	if uint64(len(key)) > math.MaxUint32 || uint64(len(refs)) >= math.MaxUint32 {
		e := &Entry{nrefs: oversize, ValidAt: validAt}
		e.Invalidate()
		return e
	}
	buf := make([]byte, 0, len(key)+len(response)+refSize*len(refs))
	buf = append(append(buf, key...), response...)
	for _, r := range refs {
		buf = binary.BigEndian.AppendUint32(buf, r.Target)
		buf = binary.BigEndian.AppendUint64(buf, r.Hash)
	}
	return &Entry{buf: buf, keyLen: uint32(len(key)), nrefs: uint32(len(refs)), ValidAt: validAt}
}

const oversize = math.MaxUint32

// respEnd is where the response ends and the refs begin.
func (e *Entry) respEnd() int { return len(e.buf) - refSize*e.NumRefs() }

// Key is the entry's encoded key. Do not modify it.
func (e *Entry) Key() []byte { return e.buf[:e.keyLen:e.keyLen] }

// Response is the exact encoded wire response (row description, data rows,
// command completion), to be written to the client as is. Never modify it:
// readers write it to sockets concurrently.
func (e *Entry) Response() []byte {
	end := e.respEnd()
	return e.buf[e.keyLen:end:end]
}

// NumRefs is the number of dependency refs the entry was made with.
func (e *Entry) NumRefs() int {
	if e.nrefs == oversize {
		return 0
	}
	return int(e.nrefs)
}

// Ref returns the i-th dependency ref, 0 <= i < NumRefs.
func (e *Entry) Ref(i int) Ref {
	b := e.buf[e.respEnd()+i*refSize:]
	return Ref{Target: binary.BigEndian.Uint32(b), Hash: binary.BigEndian.Uint64(b[4:])}
}

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

// EntryOverhead is the estimated memory of an entry beyond its bytes
// (key, response, packed refs): the Entry itself and ristretto's per-item
// bookkeeping. RefOverhead is what the dependency index holds per ref.
// Both are charged in every entry's cost so that the budget covers real
// memory; BenchmarkEntryOverhead and materialize's
// BenchmarkEntryOverheadWithIndex measure the true figures.
const (
	EntryOverhead = 150
	RefOverhead   = 50
)

// cost is what an entry is charged against the memory budget.
func (e *Entry) cost() int64 {
	if e.nrefs == oversize {
		return math.MaxInt64
	}
	return int64(len(e.buf) + EntryOverhead + RefOverhead*e.NumRefs())
}
