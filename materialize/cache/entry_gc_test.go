package cache

import (
	"bytes"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"unsafe"
)

// TestEntryHeaderInAllocation checks the unsafe layout: every entry's
// header is 8-byte aligned (its state is atomic) and directly followed
// by its bytes, in one allocation.
func TestEntryHeaderInAllocation(t *testing.T) {
	for n := range 40 {
		e := NewEntry(bytes.Repeat([]byte("k"), n), bytes.Repeat([]byte("r"), n), nil)
		if p := uintptr(unsafe.Pointer(e)); p%8 != 0 {
			t.Fatalf("entry with %d-byte key at %#x: not 8-byte aligned", n, p)
		}
		if n > 0 && uintptr(unsafe.Pointer(&e.Key()[0])) != uintptr(unsafe.Pointer(e))+uintptr(headerSize) {
			t.Fatalf("entry with %d-byte key: key not right after the header", n)
		}
	}
}

// TestEntrySurvivesGC keeps entries reachable only through the *Entry or
// only through a slice into its bytes while the GC runs and other
// goroutines allocate and read: a freed or moved allocation would show
// as changed bytes (and -race's checkptr checks the pointer arithmetic).
func TestEntrySurvivesGC(t *testing.T) {
	const n = 2000
	want := func(i int) (key, resp []byte) {
		return fmt.Appendf(nil, "key-%d", i), bytes.Repeat([]byte{byte(i)}, 1+i%300)
	}
	entries := make([]*Entry, n)
	responses := make([][]byte, n)
	for i := range n {
		k, r := want(i)
		e := NewEntry(k, r, []Ref{{Target: uint32(i), Hash: uint64(i) * 7}})
		if i%2 == 0 {
			entries[i] = e
		} else {
			responses[i] = e.Response() // the header itself is unreachable
		}
	}
	var wg sync.WaitGroup
	for g := range 2 {
		wg.Go(func() {
			var garbage [][]byte
			for round := range 20 {
				for i := range 500 {
					garbage = append(garbage, make([]byte, 16+(i+g)%200))
				}
				garbage = garbage[:0]
				runtime.GC()
				for i := g; i < n; i += 2 {
					k, r := want(i)
					if e := entries[i]; e != nil {
						if !bytes.Equal(e.Key(), k) || !bytes.Equal(e.Response(), r) || e.Ref(0).Hash != uint64(i)*7 {
							t.Errorf("round %d: entry %d changed", round, i)
							return
						}
						e.Invalidate()
					} else if !bytes.Equal(responses[i], r) {
						t.Errorf("round %d: response %d changed", round, i)
						return
					}
				}
			}
		})
	}
	wg.Wait()
}
