package integration

import (
	"context"
	"math/rand/v2"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/freshetdb/freshet/ingest"
	"github.com/freshetdb/freshet/internal/embedded"
	"github.com/freshetdb/freshet/internal/testenv"
	"github.com/freshetdb/freshet/materialize"
)

// TestFreshetUpPrecision, through the PostgreSQL front end: after
// UPDATE t SET v = v + 1 WHERE id = 5 at the origin, the cached id = 5
// read is refreshed, id = 6 is still served from the cache (hit counter),
// and a join over t is invalidated; for prepared (extended protocol) and
// simple-protocol clients.
func TestFreshetUpPrecision(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	f := startUp(t, []string{"t", "o"}, `
		CREATE TABLE {name}_t (id int PRIMARY KEY, v int NOT NULL);
		CREATE TABLE {name}_o (id int PRIMARY KEY, t_id int NOT NULL);
		INSERT INTO {name}_t SELECT g, g * 10 FROM generate_series(1, 10) g;
		INSERT INTO {name}_o SELECT g, g FROM generate_series(1, 10) g;`, materialize.Hooks{}, 0)
	m := f.node.Materializer()
	point := "SELECT v FROM " + f.table("t") + " WHERE id = $1"
	join := "SELECT t.v FROM " + f.table("t") + " t JOIN " + f.table("o") + " o ON o.t_id = t.id WHERE o.id = $1"
	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeCacheStatement, pgx.QueryExecModeSimpleProtocol} {
		t.Run(mode.String(), func(t *testing.T) {
			c := f.connect(ctx)
			read := func(sql string, id, want int, wantHit bool) {
				t.Helper()
				before := m.Stats().Hits
				var v int
				if err := c.QueryRow(ctx, sql, mode, id).Scan(&v); err != nil {
					t.Fatal(err)
				}
				hit := m.Stats().Hits > before
				if v != want || hit != wantHit {
					t.Fatalf("%s [%d]: got %d hit %v, want %d hit %v; stats %+v", sql, id, v, hit, want, wantHit, m.Stats())
				}
			}
			var v5 int
			if err := f.super.QueryRow(ctx, "SELECT v FROM "+f.table("t")+" WHERE id = 5").Scan(&v5); err != nil {
				t.Fatal(err)
			}
			f.waitWatermark(ctx)
			read(point, 5, v5, false)
			read(point, 6, 60, false)
			read(join, 5, v5, false)
			read(point, 5, v5, true)
			read(point, 6, 60, true)
			read(join, 5, v5, true)
			if _, err := f.super.Exec(ctx, "UPDATE "+f.table("t")+" SET v = v + 1 WHERE id = 5"); err != nil {
				t.Fatal(err)
			}
			f.waitWatermark(ctx)
			read(point, 6, 60, true)
			read(point, 5, v5+1, false)
			read(join, 5, v5+1, false)
			read(point, 5, v5+1, true)
		})
	}
}

// TestFreshetUpConsistencyAdversarial: concurrent writers and readers
// through the front end against the real origin, with random delays
// between the steps of fills (refreshes included: refresh-ahead is on)
// and of change application; every read is checked against the origin's
// history (see TestMaterializerConsistencyAdversarial for the checks).
func TestFreshetUpConsistencyAdversarial(t *testing.T) {
	t.Parallel()
	const (
		rows    = 64
		readers = 6
		writers = 2
		minOps  = 100_000
		minTime = 5 * time.Second
		maxTime = 75 * time.Second
		bound   = 500 * time.Millisecond
	)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	applied := &history{acks: map[int][]ack{}}
	f := startUpWith(t, []string{"acct"}, `
		CREATE TABLE {name}_acct (id int PRIMARY KEY, ver int NOT NULL);
		INSERT INTO {name}_acct SELECT g, 0 FROM generate_series(1, 64) g;`,
		materialize.Hooks{
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
		}, bound, func(f *upFixture, cfg *embedded.Config) {
			u, _ := url.Parse(testenv.PostgresURL(t))
			cfg.RefreshURL = makeRefreshLogin(t, f, u.User.Username())
		})
	sel := "SELECT ver FROM " + f.table("acct") + " WHERE id = $1"
	pick := func(hot bool) int {
		if hot {
			return 1 + rand.N(8)
		}
		return 1 + rand.N(rows)
	}
	h := &history{acks: map[int][]ack{}}
	var ops, ryw atomic.Int64
	var stop atomic.Bool
	start := time.Now()
	done := func() bool {
		el := time.Since(start)
		return stop.Load() || el > maxTime || (el > minTime && ops.Load() >= minOps)
	}
	fail := func(what string, err error) {
		if !stop.Swap(true) {
			t.Errorf("%s: %v", what, err)
		}
	}
	var mu sync.Mutex
	var reads []readRecord
	var wg sync.WaitGroup
	for range writers {
		c := f.connect(ctx)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !done() {
				id := pick(rand.Float64() < 0.8)
				var ver int
				if err := c.QueryRow(ctx, "UPDATE "+f.table("acct")+" SET ver = ver + 1 WHERE id = $1 RETURNING ver", id).Scan(&ver); err != nil {
					fail("write", err)
					return
				}
				h.add(id, ver, time.Now())
				ops.Add(1)
				var got int
				if err := c.QueryRow(ctx, sel, id).Scan(&got); err != nil {
					fail("read after write", err)
					return
				}
				if got < ver {
					ryw.Add(1)
				}
				ops.Add(1)
			}
		}()
	}
	for r := range readers {
		c := f.connect(ctx)
		mode := pgx.QueryExecModeCacheStatement
		if r%2 == 1 {
			mode = pgx.QueryExecModeSimpleProtocol
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			var local []readRecord
			for !done() {
				id := pick(rand.Float64() < 0.5)
				t0 := time.Now()
				var v int
				if err := c.QueryRow(ctx, sel, mode, id).Scan(&v); err != nil {
					fail("read", err)
					return
				}
				local = append(local, readRecord{id: id, ver: v, start: t0})
				ops.Add(1)
			}
			mu.Lock()
			reads = append(reads, local...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)

	f.waitWatermark(ctx)
	sweep := f.connect(ctx)
	staleEntries := 0
	for id := 1; id <= rows; id++ {
		for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeCacheStatement, pgx.QueryExecModeSimpleProtocol} {
			var got, want int
			if err := sweep.QueryRow(ctx, sel, mode, id).Scan(&got); err != nil {
				t.Fatal(err)
			}
			if err := f.super.QueryRow(ctx, sel, id).Scan(&want); err != nil {
				t.Fatal(err)
			}
			if got != want {
				staleEntries++
				t.Errorf("row %d (%s): freshet returns version %d, origin %d", id, mode, got, want)
			}
		}
	}
	s := f.node.Materializer().Stats()
	t.Logf("%d ops in %s through the front end: %d reads; stats %+v", ops.Load(), elapsed.Round(time.Millisecond), len(reads), s)
	if n, first := h.stale(reads, bound); n > 0 {
		t.Errorf("%d reads older than the staleness bound %s; first: %s", n, bound, first)
	}
	applied.mu.Lock()
	n, first := applied.stale(reads, 0)
	applied.mu.Unlock()
	if n > 0 {
		t.Errorf("%d reads returned a version older than one already applied; first: %s", n, first)
	}
	if v := ryw.Load(); v > 0 {
		t.Errorf("%d read-your-writes violations", v)
	}
	if ops.Load() < minOps {
		t.Errorf("only %d operations in %s, want %d", ops.Load(), elapsed, minOps)
	}
	if s.Hits == 0 || s.StaleFills == 0 || s.Invalidated == 0 {
		t.Errorf("the cache was not exercised: %d hits, %d refused fills, %d invalidations", s.Hits, s.StaleFills, s.Invalidated)
	}
	rs := f.node.Materializer().RefreshStats()
	t.Logf("refresh-ahead: %+v", rs)
	if rs.Done == 0 {
		t.Errorf("refresh-ahead was not exercised: %+v", rs)
	}
	_ = strconv.Itoa
}

// TestFreshetUpSessionRules: reads inside a transaction, after a SET, or
// that fail are never answered from (or put in) the cache.
func TestFreshetUpSessionRules(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	f := startUp(t, []string{"t"}, `
		CREATE TABLE {name}_t (id int PRIMARY KEY, v int NOT NULL);
		INSERT INTO {name}_t VALUES (1, 10), (2, 0);`, materialize.Hooks{}, 0)
	m := f.node.Materializer()
	sel := "SELECT v FROM " + f.table("t") + " WHERE id = $1"
	c := f.connect(ctx)
	hits := func() uint64 { return m.Stats().Hits }
	read := func(c *pgx.Conn) {
		t.Helper()
		var v int
		if err := c.QueryRow(ctx, sel, 1).Scan(&v); err != nil || v != 10 {
			t.Fatalf("read: %d, %v", v, err)
		}
	}
	read(c)
	read(c)
	if hits() != 1 {
		t.Fatalf("warm-up: %d hits, want 1", hits())
	}
	tx, err := c.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	before := hits()
	var v int
	if err := tx.QueryRow(ctx, sel, 1).Scan(&v); err != nil {
		t.Fatal(err)
	}
	if hits() != before {
		t.Fatal("a read inside a transaction was answered from the cache")
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	failing := "SELECT 1 / v FROM " + f.table("t") + " WHERE id = $1"
	for range 2 {
		if err := c.QueryRow(ctx, failing, 2).Scan(&v); err == nil {
			t.Fatal("division by zero succeeded: an error was answered from the cache?")
		}
	}
	s := f.connect(ctx)
	read(s)
	if _, err := s.Exec(ctx, "SET TimeZone = 'Asia/Tokyo'"); err != nil {
		t.Fatal(err)
	}
	before = hits()
	read(s)
	read(s)
	if hits() != before {
		t.Fatal("a session that changed a setting was answered from the cache")
	}
}
