package cache

import (
	"encoding/binary"
	"math"
	"sync/atomic"
	"unsafe"
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
//
// An entry is one allocation: this header, then the key, the response and
// the packed refs. The allocation is made as []uint64, which has no
// pointers (the GC does not scan it) and is 8-byte aligned for the atomic
// state; the *Entry points at its start, and interior pointers (Key,
// Response) keep it alive like any other. Beyond its bytes an entry thus
// costs its 16-byte header and the malloc size class's rounding, with
// ristretto's bookkeeping and the dependency index most of what it costs
// (DESIGN.md's target is 200 B).
type Entry struct {
	size   uint32 // bytes after the header
	keyLen uint32 // oversize: the entry could not be made and is refused
	// state is the store generation at Set (its low 31 bits), shifted
	// left by one, with the invalidation flag in bit 0.
	state   atomic.Uint32
	numRefs uint32
}

const (
	headerSize = int(unsafe.Sizeof(Entry{}))
	oversize   = math.MaxUint32
)

// NewEntry makes an entry for key, response and the dependency refs,
// copied into one allocation (once per fill, so that a hit touches a
// single allocation and an entry costs little beyond its bytes).
//
// Entries of 4 GiB or more cannot be described; such an entry is made
// invalidated and the store refuses it.
func NewEntry(key, response []byte, refs []Ref) *Entry {
	n := uint64(len(key)) + uint64(len(response)) + refSize*uint64(len(refs))
	if n >= math.MaxUint32-uint64(headerSize) {
		e := alloc(0)
		e.keyLen = oversize
		e.Invalidate()
		return e
	}
	e := alloc(int(n))
	e.size, e.keyLen, e.numRefs = uint32(n), uint32(len(key)), uint32(len(refs))
	buf := append(append(e.bytes()[:0], key...), response...)
	for _, r := range refs {
		buf = binary.BigEndian.AppendUint32(buf, r.Target)
		buf = binary.BigEndian.AppendUint64(buf, r.Hash)
	}
	return e
}

// alloc makes a zero entry with room for n bytes after its header.
func alloc(n int) *Entry {
	words := make([]uint64, (headerSize+n+7)/8)
	return (*Entry)(unsafe.Pointer(unsafe.SliceData(words)))
}

// bytes is the entry's key, response and refs, after its header.
func (e *Entry) bytes() []byte {
	if e.keyLen == oversize || e.size == 0 {
		return nil // and no pointer one past the allocation
	}
	return unsafe.Slice((*byte)(unsafe.Add(unsafe.Pointer(e), headerSize)), e.size)
}

// Key is the entry's encoded key. Do not modify it.
func (e *Entry) Key() []byte {
	if e.keyLen == oversize {
		return nil
	}
	return e.bytes()[:e.keyLen:e.keyLen]
}

// respEnd is where the response ends and the refs begin.
func (e *Entry) respEnd() int { return int(e.size) - refSize*int(e.numRefs) }

// Response is the exact encoded wire response (row description, data rows,
// command completion), to be written to the client as is. Never modify it:
// readers write it to sockets concurrently.
func (e *Entry) Response() []byte {
	if e.keyLen == oversize {
		return nil
	}
	end := e.respEnd()
	return e.bytes()[e.keyLen:end:end]
}

// NumRefs is the number of dependency refs the entry was made with.
func (e *Entry) NumRefs() int { return int(e.numRefs) }

// Ref returns the i-th dependency ref, 0 <= i < NumRefs.
func (e *Entry) Ref(i int) Ref {
	b := e.bytes()[e.respEnd()+i*refSize:]
	return Ref{Target: binary.BigEndian.Uint32(b), Hash: binary.BigEndian.Uint64(b[4:])}
}

// Invalidate makes the entry unservable from now on; it is idempotent.
func (e *Entry) Invalidate() { e.state.Or(1) }

// Invalidated reports whether Invalidate was called.
func (e *Entry) Invalidated() bool { return e.state.Load()&1 != 0 }

// servable reports whether the entry is valid in store generation gen.
// Generations are compared modulo 2^31: an entry would have to be Set
// across 2^31 Clears to be mistaken for a current one.
func (e *Entry) servable(gen uint64) bool {
	st := e.state.Load()
	return st&1 == 0 && st>>1 == uint32(gen)&genMask
}

const genMask = 1<<31 - 1

// stamp records the store generation, keeping the invalidation flag.
func (e *Entry) stamp(gen uint64) {
	for {
		old := e.state.Load()
		if e.state.CompareAndSwap(old, (uint32(gen)&genMask)<<1|old&1) {
			return
		}
	}
}

// EntryOverhead is the memory of an entry beyond its bytes (key,
// response, packed refs): its 16-byte header, malloc's size-class
// rounding, and ristretto's per-item bookkeeping (its store map's slot,
// 33 B with the patched ristretto of third_party/, and its cost map's,
// 17 B, at a fill that varies between 7/16 and 7/8 with the count).
// RefOverhead is what the dependency index holds per ref: a 9 B slot of
// its entry table at the same fills, or a share of a set when a value has
// several entries. Both are charged in every entry's cost so that the
// budget covers real memory: together they are at least the worst figure
// materialize's BenchmarkEntryOverheadWithIndex measures from 10k to 1M
// entries (ADR 0007, ADR 0010), not the mean, so that the budget holds at
// any count. BenchmarkEntryOverhead measures the store's part alone.
const (
	EntryOverhead = 160
	RefOverhead   = 32
)

// cost is what an entry is charged against the memory budget.
func (e *Entry) cost() int64 {
	if e.keyLen == oversize {
		return math.MaxInt64
	}
	return int64(int(e.size) + EntryOverhead + RefOverhead*e.NumRefs())
}
