package materialize

import (
	"context"
	"testing"

	"github.com/freshetdb/freshet/materialize/analyze"
)

// BenchmarkLookupHit is the cache-hit path a front end pays per read:
// memoized analysis, key encoding, store lookup, watermark checks.
func BenchmarkLookupHit(b *testing.B) {
	h := newHarness(b, Config{})
	ctx := context.Background()
	r := &Request{Database: "db", Role: "alice", SQL: "SELECT v FROM t WHERE id = $1", Session: analyze.SessionKnown,
		Params: Params{Values: [][]byte{[]byte("5")}}}
	a, key := h.m.Lookup(ctx, r, nil)
	h.m.Put(a.Ticket, make([]byte, 100))
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		key := append([]byte(nil), key...)
		for pb.Next() {
			var a Answer
			a, key = h.m.Lookup(ctx, r, key)
			if a.Entry == nil {
				b.Fatal("miss")
			}
		}
	})
}
