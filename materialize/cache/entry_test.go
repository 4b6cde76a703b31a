package cache_test

import (
	"bytes"
	"testing"

	"github.com/freshetdb/freshet/materialize/cache"
)

// TestEntryLayout checks that key, response and refs come back exactly
// from the entry's single packed allocation, and that the response
// cannot be appended into the refs.
func TestEntryLayout(t *testing.T) {
	refs := []cache.Ref{{Target: 0, Hash: 0}, {Target: 1<<32 - 1, Hash: 1<<64 - 1}, {Target: 7, Hash: 42}}
	for _, c := range []struct {
		name          string
		key, response []byte
		refs          []cache.Ref
	}{
		{"empty", nil, nil, nil},
		{"key only", []byte("k"), nil, nil},
		{"no refs", []byte("key"), []byte("response"), nil},
		{"one ref", []byte("key"), []byte("response"), refs[:1]},
		{"refs, empty response", []byte("key"), nil, refs},
		{"large response", []byte("key"), bytes.Repeat([]byte("r"), 1<<20), refs},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := cache.NewEntry(c.key, c.response, c.refs)
			if !bytes.Equal(e.Key(), c.key) || !bytes.Equal(e.Response(), c.response) {
				t.Fatalf("key %q response %d bytes, want %q and %d", e.Key(), len(e.Response()), c.key, len(c.response))
			}
			if e.NumRefs() != len(c.refs) {
				t.Fatalf("%d refs, want %d", e.NumRefs(), len(c.refs))
			}
			for i, r := range c.refs {
				if got := e.Ref(i); got != r {
					t.Errorf("ref %d = %+v, want %+v", i, got, r)
				}
			}
			if r := e.Response(); cap(r) != len(r) {
				t.Errorf("response capacity %d beyond its length %d", cap(r), len(r))
			}
			if k := e.Key(); cap(k) != len(k) {
				t.Errorf("key capacity %d beyond its length %d", cap(k), len(k))
			}
			if e.Invalidated() {
				t.Errorf("a new entry is invalidated")
			}
		})
	}
}
