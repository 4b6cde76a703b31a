package cache_test

import (
	"fmt"
	"runtime"
	"testing"

	"github.com/freshetdb/freshet/materialize/cache"
)

var sink []byte

func pointKey(buf []byte, id string) []byte {
	return cache.AppendKey(buf[:0], &cache.Key{
		Database: "app", Role: "web", Statement: "SELECT id, name, email FROM users WHERE id = $1",
		ParamTypes: []uint32{23}, ParamFormats: []int16{0}, Params: [][]byte{[]byte(id)},
		ResultFormats: []int16{1}, Settings: &cache.Settings{cache.SearchPath: `"$user", public`, cache.TimeZone: "UTC"},
	})
}

// BenchmarkGetHit is the whole hit path: build the key into a reused
// buffer, look it up, verify the full key. The response size must not
// change allocations (there should be none).
func BenchmarkGetHit(b *testing.B) {
	for _, size := range []int{128, 16 << 10, 1 << 20} {
		b.Run(fmt.Sprintf("response=%dB", size), func(b *testing.B) {
			s := newStore(b, cache.Config{MaxBytes: 64 << 20, MaxEntryBytes: 4 << 20})
			buf := make([]byte, 0, 256)
			k := pointKey(buf, "42")
			if !s.Set(cache.NewEntry(k, make([]byte, size), nil)) {
				b.Fatal("Set refused")
			}
			s.Wait()
			b.ReportAllocs()
			for b.Loop() {
				k = pointKey(buf, "42")
				e, ok := s.Get(k)
				if !ok {
					b.Fatal("miss")
				}
				sink = e.Response()
			}
		})
	}
}

// BenchmarkAppendKey measures building a point-select key alone.
func BenchmarkAppendKey(b *testing.B) {
	buf := make([]byte, 0, 256)
	b.ReportAllocs()
	for b.Loop() {
		sink = pointKey(buf, "42")
	}
}

// BenchmarkEntryOverhead inserts 100k entries and reports the heap bytes
// per entry beyond the response payload ("overhead-B/entry") and beyond
// payload and key ("overhead-excl-key-B/entry"). Ristretto's admission
// counters, sized by ExpectedEntries at New, are counted separately
// ("fixed-B/entry").
func BenchmarkEntryOverhead(b *testing.B) {
	const n = 100_000
	const payload = 64
	for b.Loop() {
		runtime.GC()
		var m0, m1, m2 runtime.MemStats
		runtime.ReadMemStats(&m0)
		s, err := cache.New(cache.Config{MaxBytes: 1 << 30, ExpectedEntries: n})
		if err != nil {
			b.Fatal(err)
		}
		runtime.GC()
		runtime.ReadMemStats(&m1)
		keyBytes := 0
		buf := make([]byte, 0, 256)
		for i := range n {
			k := pointKey(buf, fmt.Sprint(i))
			keyBytes += len(k)
			for !s.Set(cache.NewEntry(k, make([]byte, payload), nil)) {
				s.Wait() // a full set buffer drops; retry so all n are held
			}
		}
		s.Wait()
		runtime.GC()
		runtime.ReadMemStats(&m2)
		held := 0
		for i := range n {
			if _, ok := s.Get(pointKey(buf, fmt.Sprint(i))); ok {
				held++
			}
		}
		if held < n*9/10 {
			b.Fatalf("only %d of %d entries held", held, n)
		}
		grow := float64(m2.HeapAlloc - m1.HeapAlloc)
		b.ReportMetric(grow/float64(held)-payload, "overhead-B/entry")
		b.ReportMetric((grow-float64(keyBytes))/float64(held)-payload, "overhead-excl-key-B/entry")
		b.ReportMetric(float64(keyBytes)/float64(n), "key-B/entry")
		b.ReportMetric(float64(m1.HeapAlloc-m0.HeapAlloc)/float64(n), "fixed-B/entry")
		s.Close()
	}
}
