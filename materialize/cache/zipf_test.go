package cache_test

import (
	"fmt"
	"math/rand"
	"testing"

	"github.com/freshetdb/freshet/materialize/cache"
)

// TestZipfHitRatio checks that the budget, cost and admission settings
// keep the hot entries: with room for a tenth of the keys, a Zipf workload
// must hit far more often than a tenth of the time.
func TestZipfHitRatio(t *testing.T) {
	const keys, payload = 10_000, 512
	keyOf := func(i uint64) []byte { return key(fmt.Sprint("SELECT * FROM t WHERE id = ", i)) }
	perEntry := int64(payload + cache.EntryOverhead + len(keyOf(keys)))
	s := newStore(t, cache.Config{MaxBytes: perEntry * keys / 10, ExpectedEntries: keys})
	z := rand.NewZipf(rand.New(rand.NewSource(1)), 1.1, 2, keys-1)
	resp := make([]byte, payload)
	var hits, total int
	for round := range 200_000 {
		k := keyOf(z.Uint64())
		if _, ok := s.Get(k); ok {
			if round >= 50_000 { // after warm-up
				hits++
			}
		} else {
			s.Set(cache.NewEntry(k, resp, nil))
		}
		if round >= 50_000 {
			total++
		}
	}
	ratio := float64(hits) / float64(total)
	t.Logf("hit ratio %.3f with room for 10%% of %d keys", ratio, keys)
	if ratio < 0.5 {
		t.Fatalf("hit ratio %.3f: the store does not keep hot entries", ratio)
	}
}
