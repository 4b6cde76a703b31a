package materialize

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"strconv"
	"testing"

	"github.com/freshetdb/freshet/materialize/analyze"
	"github.com/freshetdb/freshet/materialize/cache"
)

// BenchmarkLookupHit is the cache-hit path a front end pays per read:
// memoized analysis, key encoding, store lookup, watermark checks.
func BenchmarkLookupHit(b *testing.B) {
	benchParallelHits(b, Config{}, func(m *Materializer, r *Request, key []byte) (bool, []byte) {
		a, key := m.Lookup(context.Background(), r, key)
		return a.Entry != nil, key
	})
}

// benchParallelHits fills one point read, then has every P ask for it
// through hit, each goroutine with its own Request as each session has.
func benchParallelHits(b *testing.B, cfg Config, hit func(m *Materializer, r *Request, key []byte) (bool, []byte)) {
	h := newHarness(b, cfg)
	r := &Request{Database: "db", Role: "alice", SQL: "SELECT v FROM t WHERE id = $1", Session: analyze.SessionKnown,
		Params: Params{Values: [][]byte{[]byte("5")}}}
	a, key := h.m.Lookup(context.Background(), r, nil)
	h.m.Put(a.Ticket, make([]byte, 100))
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		key := append([]byte(nil), key...)
		r := *r // Lookup writes the Request's fence and key context
		for pb.Next() {
			var ok bool
			if ok, key = hit(h.m, &r, key); !ok {
				b.Fatal("miss")
			}
		}
	})
}

// BenchmarkEntryOverheadWithIndex is the memory one cached point read
// costs beyond its response, with its dependency registered in the index:
// the store's entry and key plus the index's (table, column, value)
// bookkeeping and the dependency itself. It is measured at several
// sizes: ristretto keeps items in 256 maps whose fill (and so the bytes
// per item) depends on where the count falls between their growth steps;
// the last sub-benchmark reports the mean and the max over the sizes.
// Run it with -benchtime=1x: one fill per size is the measurement.
func BenchmarkEntryOverheadWithIndex(b *testing.B) {
	sizes := []int{10_000, 30_000, 100_000, 300_000, 1_000_000}
	var incl, excl []float64
	for _, n := range sizes {
		b.Run(fmt.Sprintf("entries=%d", n), func(b *testing.B) {
			in, ex := entryOverheadWithIndex(b, n)
			incl, excl = append(incl, in), append(excl, ex)
		})
	}
	if len(incl) != len(sizes) {
		return // some sizes were filtered out by -bench
	}
	b.Run("summary", func(b *testing.B) {
		for b.Loop() {
		}
		b.ReportMetric(mean(incl), "mean-overhead-B/entry")
		b.ReportMetric(slices.Max(incl), "max-overhead-B/entry")
		b.ReportMetric(mean(excl), "mean-overhead-excl-key-B/entry")
		b.ReportMetric(slices.Max(excl), "max-overhead-excl-key-B/entry")
	})
}

// greetingSettings are the settings a PostgreSQL 17 reports at startup
// to a client that sets none, as the pgwire front end puts them in
// Request.Settings.
func greetingSettings() *cache.Settings {
	return &cache.Settings{cache.TimeZone: "Etc/UTC", cache.DateStyle: "ISO, MDY", cache.IntervalStyle: "postgres",
		cache.ClientEncoding: "UTF8", cache.StandardConformingStrings: "on"}
}

func mean(xs []float64) float64 {
	var s float64
	for _, x := range xs {
		s += x
	}
	return s / float64(len(xs))
}

// entryOverheadWithIndex returns the overhead per entry including and
// excluding the key, from the last iteration.
func entryOverheadWithIndex(b *testing.B, n int) (incl, excl float64) {
	const payload = 64
	for b.Loop() {
		h := newHarness(b, Config{MaxBytes: 1 << 31})
		ctx := context.Background()
		r := &Request{Database: "db", Role: "alice", SQL: "SELECT v FROM t WHERE id = $1", Session: analyze.SessionKnown,
			Settings: greetingSettings()}
		// One fill first, so that what the first fill of a statement
		// makes once (its analysis, metric series) is not counted.
		r.Params = Params{Values: [][]byte{[]byte("-1")}}
		a, key := h.m.Lookup(ctx, r, nil)
		h.m.Put(a.Ticket, make([]byte, payload))
		runtime.GC()
		var m1, m2 runtime.MemStats
		runtime.ReadMemStats(&m1)
		keyBytes := 0
		for i := range n {
			r.Params = Params{Values: [][]byte{[]byte(strconv.Itoa(i))}}
			var a Answer
			a, key = h.m.Lookup(ctx, r, key)
			if a.Ticket == nil {
				b.Fatalf("no ticket: %+v", a)
			}
			keyBytes += len(key)
			h.m.Put(a.Ticket, make([]byte, payload))
		}
		runtime.GC()
		runtime.ReadMemStats(&m2)
		if s := h.m.Stats(); s.Fills < uint64(n*9/10) {
			b.Fatalf("only %d of %d filled", s.Fills, n)
		}
		grow := float64(m2.HeapAlloc) - float64(m1.HeapAlloc)
		incl = grow/float64(n) - payload
		excl = (grow-float64(keyBytes))/float64(n) - payload
		b.ReportMetric(incl, "overhead-B/entry")
		b.ReportMetric(excl, "overhead-excl-key-B/entry")
		b.ReportMetric(float64(keyBytes)/float64(n), "key-B/entry")
		h.m.Close()
	}
	return incl, excl
}

// BenchmarkLookupHitExtended is BenchmarkLookupHit for an extended-protocol
// request, whose message shape is part of the key, with the settings a
// pgwire session has.
func BenchmarkLookupHitExtended(b *testing.B) {
	h := newHarness(b, Config{})
	ctx := context.Background()
	r := &Request{Database: "db", Role: "alice", SQL: "SELECT v FROM t WHERE id = $1", Shape: "BDPES",
		Session: analyze.SessionKnown, Params: Params{Values: [][]byte{[]byte("5")}}, Settings: greetingSettings()}
	a, key := h.m.Lookup(ctx, r, nil)
	h.m.Put(a.Ticket, make([]byte, 100))
	b.ReportAllocs()
	for b.Loop() {
		if a, key = h.m.Lookup(ctx, r, key); a.Entry == nil {
			b.Fatal("miss")
		}
	}
}

// BenchmarkLookupHitRefresh is BenchmarkLookupHit with refresh-ahead on:
// every hit also counts toward its key's heat (one hash, one atomic add
// on a counter all readers of the key share).
func BenchmarkLookupHitRefresh(b *testing.B) {
	benchParallelHits(b, Config{Refresh: RefreshConfig{Refresher: &fakeRefresher{}}}, func(m *Materializer, r *Request, key []byte) (bool, []byte) {
		a, key := m.Lookup(context.Background(), r, key)
		return a.Entry != nil, key
	})
}

// BenchmarkLookupHitNoWait is BenchmarkLookupHit through LookupHit, the
// non-blocking lookup the front end's event loop makes.
func BenchmarkLookupHitNoWait(b *testing.B) {
	benchParallelHits(b, Config{}, func(m *Materializer, r *Request, key []byte) (bool, []byte) {
		e, key := m.LookupHit(r, key)
		return e != nil, key
	})
}

// BenchmarkIndexApply is what the dependency index pays per row change
// with 100k point reads registered: an update of a cached row (its entry
// is taken) and of a row nothing depends on, alternately, each re-filled
// so the index keeps its size.
func BenchmarkIndexApply(b *testing.B) {
	const n = 100_000
	ix := newIndex()
	fill := func(id int64) {
		tok, refs := ix.begin([]cache.Dependency{{Table: "public.t", Column: "id", Value: strconv.FormatInt(id, 10)}})
		ix.end(tok, refs, cache.NewEntry(strconv.AppendInt(nil, id, 10), nil, refs))
	}
	for id := range int64(n) {
		fill(id)
	}
	var inv Invalidation
	b.ReportAllocs()
	i := int64(0)
	for b.Loop() {
		id := i % n
		if i%2 == 1 {
			id += n // not cached
		}
		c := update(id, 1, 2)
		c.Schema, c.Columns = "public", tColumns
		inv.Entries = inv.Entries[:0]
		ix.apply(&c, &inv)
		if i%2 == 0 {
			if len(inv.Entries) != 1 {
				b.Fatalf("update of %d took %d entries", id, len(inv.Entries))
			}
			fill(id)
		}
		i++
	}
}
