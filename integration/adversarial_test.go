package integration

import (
	"context"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/freshetdb/freshet/ingest"
	"github.com/freshetdb/freshet/materialize"
)

// adversarialHooks inject random delays between the steps of fills and
// of change application, and record in applied when each version's
// change was applied (its entries invalidated): from then on no read may
// return an older version, from the cache or the origin.
func adversarialHooks(applied *history) materialize.Hooks {
	return materialize.Hooks{
		AfterBegin: jitter(0.2, 3*time.Millisecond), BeforeEnd: jitter(0.2, 3*time.Millisecond),
		BeforeChange: jitter(0.05, 2*time.Millisecond),
		BeforeAdvance: func(b *ingest.Batch) {
			at := time.Now()
			for _, c := range b.Changes {
				if len(c.After) == 2 {
					applied.add(int(c.After[0].(int64)), int(c.After[1].(int64)), at)
				}
			}
			jitter(0.1, 2*time.Millisecond)()
		},
	}
}

// adversarialWorkload is the workload both adversarial consistency tests
// drive: writers bump the version of a row (mostly one of 8 hot rows)
// and sometimes read it back in the same session, readers read random
// rows, until both minOps and minTime are reached (or maxTime).
type adversarialWorkload struct {
	rows, readers, writers, minOps int
	minTime, maxTime               time.Duration
	hotShare                       float64 // share of writes to the hot rows
	rywShare                       float64 // share of writes read back at once
	// write sets row id's version up by one in writer w's session and
	// returns the new version.
	write func(ctx context.Context, w, id int) (int, error)
	// readBack reads row id in writer w's session right after its write.
	readBack func(ctx context.Context, w, id int) (int, error)
	// read reads row id in reader r's session.
	read func(ctx context.Context, r, id int) (ver int, hit bool, err error)
}

// adversarialResult is what a run saw: every acknowledged write, every
// reader's read, and the read-your-writes violations.
type adversarialResult struct {
	acks    *history
	reads   []readRecord
	ops     int64
	ryw     int64
	elapsed time.Duration
}

func (w *adversarialWorkload) pick(hot bool) int {
	if hot {
		return 1 + rand.N(8)
	}
	return 1 + rand.N(w.rows)
}

// run drives the workload; the first error stops it and fails t.
func (w *adversarialWorkload) run(ctx context.Context, t *testing.T) adversarialResult {
	res := adversarialResult{acks: &history{acks: map[int][]ack{}}}
	var ops, ryw atomic.Int64
	var stop atomic.Bool
	start := time.Now()
	done := func() bool {
		el := time.Since(start)
		return stop.Load() || el > w.maxTime || (el > w.minTime && ops.Load() >= int64(w.minOps))
	}
	fail := func(what string, err error) {
		if !stop.Swap(true) {
			t.Errorf("%s: %v", what, err)
		}
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i := range w.writers {
		wg.Go(func() {
			for !done() {
				id := w.pick(rand.Float64() < w.hotShare)
				ver, err := w.write(ctx, i, id)
				if err != nil {
					fail("write", err)
					return
				}
				res.acks.add(id, ver, time.Now())
				ops.Add(1)
				if rand.Float64() >= w.rywShare {
					continue
				}
				got, err := w.readBack(ctx, i, id)
				if err != nil {
					fail("read after write", err)
					return
				}
				if got < ver {
					ryw.Add(1)
				}
				ops.Add(1)
			}
		})
	}
	for i := range w.readers {
		wg.Go(func() {
			var local []readRecord
			for !done() {
				id := w.pick(rand.Float64() < 0.5)
				t0 := time.Now()
				v, hit, err := w.read(ctx, i, id)
				if err != nil {
					fail("read", err)
					return
				}
				local = append(local, readRecord{id: id, ver: v, start: t0, hit: hit})
				ops.Add(1)
			}
			mu.Lock()
			res.reads = append(res.reads, local...)
			mu.Unlock()
		})
	}
	wg.Wait()
	res.elapsed = time.Since(start)
	res.ops, res.ryw = ops.Load(), ryw.Load()
	return res
}

// check fails t for every read older than the staleness bound, every
// read older than a version already applied, every read-your-writes
// violation, and too few operations.
func (res *adversarialResult) check(t *testing.T, applied *history, bound time.Duration, minOps int) {
	t.Helper()
	if n, first := res.acks.stale(res.reads, bound); n > 0 {
		t.Errorf("%d reads older than the staleness bound %s; first: %s", n, bound, first)
	}
	applied.mu.Lock()
	n, first := applied.stale(res.reads, 0)
	applied.mu.Unlock()
	if n > 0 {
		t.Errorf("%d reads returned a version older than one already applied (a stale fill or a missed invalidation); first: %s", n, first)
	}
	if res.ryw > 0 {
		t.Errorf("%d read-your-writes violations", res.ryw)
	}
	if res.ops < int64(minOps) {
		t.Errorf("only %d operations in %s, want %d", res.ops, res.elapsed, minOps)
	}
}

// hits counts the reads answered from the cache, as far as the reader knew.
func (res *adversarialResult) hits() int {
	n := 0
	for _, r := range res.reads {
		if r.hit {
			n++
		}
	}
	return n
}
