package integration

import (
	"context"
	"math/rand/v2"
	"slices"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/freshetdb/freshet/ingest"
	"github.com/freshetdb/freshet/materialize"
	"github.com/freshetdb/freshet/schemas"
)

// jitter sleeps up to max with probability p: injected between the steps
// of fills and of change delivery so that the races they guard show.
func jitter(p float64, max time.Duration) func() {
	return func() {
		if rand.Float64() < p {
			time.Sleep(rand.N(max))
		}
	}
}

// history is, per row, every version whose commit a writer saw
// acknowledged, and when.
type history struct {
	mu   sync.Mutex
	acks map[int][]ack
}

type ack struct {
	ver int
	at  time.Time
}

func (h *history) add(id, ver int, at time.Time) {
	h.mu.Lock()
	h.acks[id] = append(h.acks[id], ack{ver, at})
	h.mu.Unlock()
}

// readRecord is one read: of row id, started at start, returned ver.
type readRecord struct {
	id, ver int
	start   time.Time
	hit     bool
}

// stale counts the reads that returned a version older than one whose
// commit had been acknowledged more than bound before the read started.
func (h *history) stale(reads []readRecord, bound time.Duration) (n int, first string) {
	// Per row: acknowledgements by time, with the running maximum version.
	type idx struct {
		at  []time.Time
		max []int
	}
	byID := map[int]idx{}
	for id, acks := range h.acks {
		acks = slices.Clone(acks)
		sort.Slice(acks, func(i, j int) bool { return acks[i].at.Before(acks[j].at) })
		var x idx
		m := 0
		for _, a := range acks {
			m = max(m, a.ver)
			x.at = append(x.at, a.at)
			x.max = append(x.max, m)
		}
		byID[id] = x
	}
	for _, r := range reads {
		x := byID[r.id]
		cut := r.start.Add(-bound)
		i := sort.Search(len(x.at), func(i int) bool { return !x.at[i].Before(cut) })
		if i > 0 && x.max[i-1] > r.ver {
			if n == 0 {
				first = "row " + strconv.Itoa(r.id) + ": read version " + strconv.Itoa(r.ver) + " (hit " + strconv.FormatBool(r.hit) +
					"), version " + strconv.Itoa(x.max[i-1]) + " committed before " + cut.Format(time.StampMicro)
			}
			n++
		}
	}
	return n, first
}

// TestMaterializerConsistencyAdversarial runs concurrent writers and
// readers against the real origin through the change capture and the
// materializer, with random delays between the steps of fills and of
// change application, and checks every read against the origin's
// history: no read older than the staleness bound, no read-your-writes
// violation, and, once the stream has caught up, no entry that disagrees
// with the origin (a stale fill that survived).
func TestMaterializerConsistencyAdversarial(t *testing.T) {
	t.Parallel()
	const (
		rows     = 64
		readers  = 6
		writers  = 3
		minOps   = 100_000
		maxTime  = 60 * time.Second
		bound    = 500 * time.Millisecond
		minTime  = 5 * time.Second
		hotShare = 0.8 // share of writes to the 8 hot rows; the rest are rarely written
	)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	// applied is, per row, when each version's change had been applied
	// (its entries invalidated): from then on no read may return an older
	// version, from the cache or the origin.
	applied := &history{acks: map[int][]ack{}}
	f := startMaterializer(t, []string{"acct"}, `
		CREATE TABLE {name}_acct (id int PRIMARY KEY, ver int NOT NULL);
		INSERT INTO {name}_acct SELECT g, 0 FROM generate_series(1, 64) g;`,
		materialize.Config{
			StalenessBound: bound, FenceWait: 20 * time.Millisecond,
			Hooks: materialize.Hooks{
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
			},
		})
	byParam := "SELECT ver::text FROM " + f.table("acct") + " WHERE id = $1"
	literal := func(id int) string {
		return "SELECT ver::text FROM " + f.table("acct") + " WHERE id = " + strconv.Itoa(id)
	}
	pick := func(hot bool) int {
		if hot {
			return 1 + rand.N(8)
		}
		return 1 + rand.N(rows)
	}
	h := &history{acks: map[int][]ack{}}
	var ops, rywViolations atomic.Int64
	var stop atomic.Bool
	start := time.Now()
	done := func() bool {
		el := time.Since(start)
		return stop.Load() || el > maxTime || (el > minTime && ops.Load() >= minOps)
	}
	var mu sync.Mutex
	var reads []readRecord
	var wg sync.WaitGroup
	for range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !done() {
				id := pick(rand.Float64() < hotShare)
				var ver int
				if err := f.pool.QueryRow(ctx, "UPDATE "+f.table("acct")+" SET ver = ver + 1 WHERE id = $1 RETURNING ver", id).Scan(&ver); err != nil {
					t.Errorf("write: %v", err)
					stop.Store(true)
					return
				}
				h.add(id, ver, time.Now())
				ops.Add(1)
				if rand.N(4) != 0 {
					continue
				}
				// Read-your-writes: the session's next read must see it.
				fence, err := f.pos.CurrentPosition(ctx)
				if err != nil {
					t.Errorf("position: %v", err)
					stop.Store(true)
					return
				}
				got, _, err := f.read(ctx, fence, byParam, strconv.Itoa(id))
				if err != nil {
					t.Errorf("read after write: %v", err)
					stop.Store(true)
					return
				}
				if v, _ := strconv.Atoi(got); v < ver {
					rywViolations.Add(1)
				}
				ops.Add(1)
			}
		}()
	}
	for r := range readers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var local []readRecord
			for !done() {
				id := pick(rand.Float64() < 0.5)
				t0 := time.Now()
				var got string
				var hit bool
				var err error
				if r%2 == 0 {
					got, hit, err = f.read(ctx, schemas.Position{}, byParam, strconv.Itoa(id))
				} else {
					got, hit, err = f.read(ctx, schemas.Position{}, literal(id))
				}
				if err != nil {
					t.Errorf("read: %v", err)
					stop.Store(true)
					return
				}
				v, _ := strconv.Atoi(got)
				local = append(local, readRecord{id: id, ver: v, start: t0, hit: hit})
				ops.Add(1)
			}
			mu.Lock()
			reads = append(reads, local...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)

	// Caught up, every cached entry must equal the origin.
	f.catchUp(ctx)
	time.Sleep(50 * time.Millisecond)
	staleFills := 0
	for id := 1; id <= rows; id++ {
		for _, sql := range []string{byParam, literal(id)} {
			var params []string
			if sql == byParam {
				params = []string{strconv.Itoa(id)}
			}
			got, hit, err := f.read(ctx, schemas.Position{}, sql, params...)
			if err != nil {
				t.Fatal(err)
			}
			var want string
			if err := f.pool.QueryRow(ctx, "SELECT ver::text FROM "+f.table("acct")+" WHERE id = $1", id).Scan(&want); err != nil {
				t.Fatal(err)
			}
			if hit && got != want {
				staleFills++
				t.Errorf("row %d: cache holds version %s, origin %s", id, got, want)
			}
		}
	}
	n, first := h.stale(reads, bound)
	applied.mu.Lock()
	strict, firstStrict := applied.stale(reads, 0)
	applied.mu.Unlock()
	s := f.m.Stats()
	hits := 0
	for _, r := range reads {
		if r.hit {
			hits++
		}
	}
	t.Logf("%d ops in %s: %d reads (%d hits), stats %+v", ops.Load(), elapsed.Round(time.Millisecond), len(reads), hits, s)
	if n > 0 {
		t.Errorf("%d reads older than the staleness bound %s; first: %s", n, bound, first)
	}
	if strict > 0 {
		t.Errorf("%d reads returned a version older than one already applied (a stale fill or a missed invalidation); first: %s", strict, firstStrict)
	}
	if v := rywViolations.Load(); v > 0 {
		t.Errorf("%d read-your-writes violations", v)
	}
	if staleFills > 0 {
		t.Errorf("%d stale fills survived", staleFills)
	}
	if ops.Load() < minOps {
		t.Errorf("only %d operations in %s, want %d", ops.Load(), elapsed, minOps)
	}
	if hits == 0 || s.StaleFills == 0 || s.Invalidated == 0 {
		t.Errorf("the test did not exercise the cache: %d hits, %d refused fills, %d invalidations", hits, s.StaleFills, s.Invalidated)
	}
}
