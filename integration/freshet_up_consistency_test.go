package integration

import (
	"context"
	"net/url"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/freshetdb/freshet/internal/embedded"
	"github.com/freshetdb/freshet/internal/front"
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
// Once with a backend per client, once with transaction pooling, where
// each request may reach another backend and hits reach none.
func TestFreshetUpConsistencyAdversarial(t *testing.T) {
	t.Parallel()
	for _, pooled := range []bool{false, true} {
		t.Run(map[bool]string{false: "session", true: "transaction_pooling"}[pooled], func(t *testing.T) {
			t.Parallel()
			consistencyAdversarial(t, pooled)
		})
	}
}

func consistencyAdversarial(t *testing.T, txPooling bool) {
	const (
		rows   = 64
		minOps = 100_000
		bound  = 500 * time.Millisecond
	)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	applied := &history{acks: map[int][]ack{}}
	f := startUpWith(t, []string{"acct"}, `
		CREATE TABLE {name}_acct (id int PRIMARY KEY, ver int NOT NULL);
		INSERT INTO {name}_acct SELECT g, 0 FROM generate_series(1, 64) g;`,
		adversarialHooks(applied), bound, func(f *upFixture, cfg *embedded.Config) {
			u, _ := url.Parse(testenv.PostgresURL(t))
			cfg.RefreshURL = makeRefreshLogin(t, f, u.User.Username())
			if txPooling {
				cfg.Clients = front.Clients{AuthURL: testenv.PostgresURL(t), TransactionPooling: true}
			}
		})
	sel := "SELECT ver FROM " + f.table("acct") + " WHERE id = $1"
	w := adversarialWorkload{
		rows: rows, readers: 6, writers: 2, minOps: minOps,
		minTime: 5 * time.Second, maxTime: 75 * time.Second, hotShare: 0.8, rywShare: 1,
	}
	writers := make([]*pgx.Conn, w.writers)
	for i := range writers {
		writers[i] = f.connect(ctx)
	}
	readers := make([]*pgx.Conn, w.readers)
	for i := range readers {
		readers[i] = f.connect(ctx)
	}
	w.write = func(ctx context.Context, i, id int) (int, error) {
		var ver int
		err := writers[i].QueryRow(ctx, "UPDATE "+f.table("acct")+" SET ver = ver + 1 WHERE id = $1 RETURNING ver", id).Scan(&ver)
		return ver, err
	}
	w.readBack = func(ctx context.Context, i, id int) (int, error) {
		var got int
		err := writers[i].QueryRow(ctx, sel, id).Scan(&got)
		return got, err
	}
	w.read = func(ctx context.Context, i, id int) (int, bool, error) {
		mode := pgx.QueryExecModeCacheStatement
		if i%2 == 1 {
			mode = pgx.QueryExecModeSimpleProtocol
		}
		var v int
		err := readers[i].QueryRow(ctx, sel, mode, id).Scan(&v)
		return v, false, err
	}
	res := w.run(ctx, t)

	f.waitWatermark(ctx)
	sweep := f.connect(ctx)
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
				t.Errorf("row %d (%s): freshet returns version %d, origin %d", id, mode, got, want)
			}
		}
	}
	s := f.node.Materializer().Stats()
	t.Logf("%d ops in %s through the front end: %d reads; stats %+v", res.ops, res.elapsed.Round(time.Millisecond), len(res.reads), s)
	res.check(t, applied, bound, minOps)
	if s.Hits == 0 || s.StaleFills == 0 || s.Invalidated == 0 {
		t.Errorf("the cache was not exercised: %d hits, %d refused fills, %d invalidations", s.Hits, s.StaleFills, s.Invalidated)
	}
	rs := f.node.Materializer().RefreshStats()
	t.Logf("refresh-ahead: %+v", rs)
	if rs.Done == 0 {
		t.Errorf("refresh-ahead was not exercised: %+v", rs)
	}
}

// TestFreshetUpSessionRules: reads inside a transaction, after a SET the
// key does not follow, or that fail are never answered from (or put in)
// the cache.
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
	// A setting the key does not follow (TestFreshetUpSettings has those
	// it follows).
	if _, err := s.Exec(ctx, "SET extra_float_digits = 1"); err != nil {
		t.Fatal(err)
	}
	before = hits()
	read(s)
	read(s)
	if hits() != before {
		t.Fatal("a session that changed a setting was answered from the cache")
	}
}

// TestFreshetUpReadOnlyReadsSetNoFence: reads the cache may not answer
// but that cannot write (a catalog query, now(), a table outside the
// publication), in either protocol, leave the session's next cached read
// a hit. They used to set a read-your-writes fence as a write does, and
// the next cached read then waited for the watermark to pass the origin's
// position (past FenceWait: sent to the origin).
func TestFreshetUpReadOnlyReadsSetNoFence(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	f := startUp(t, []string{"t"}, `
		CREATE TABLE {name}_t (id int PRIMARY KEY, v int NOT NULL);
		CREATE TABLE {name}_local (id int PRIMARY KEY);
		INSERT INTO {name}_t VALUES (1, 10);`, materialize.Hooks{}, 0)
	m := f.node.Materializer()
	sel := "SELECT v FROM " + f.table("t") + " WHERE id = $1"
	c := f.connect(ctx)
	read := func() {
		t.Helper()
		var v int
		if err := c.QueryRow(ctx, sel, 1).Scan(&v); err != nil || v != 10 {
			t.Fatalf("read: %d, %v", v, err)
		}
	}
	read()
	read()
	reads := []string{
		"SELECT count(*) FROM pg_catalog.pg_class",
		"SELECT now()",
		"SELECT count(*) FROM " + f.table("local"),
	}
	for round := range 5 {
		for _, q := range reads {
			for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeCacheStatement, pgx.QueryExecModeSimpleProtocol} {
				if _, err := c.Exec(ctx, q, mode); err != nil {
					t.Fatalf("%s: %v", q, err)
				}
				before := m.Stats()
				read()
				if after := m.Stats(); after.Hits != before.Hits+1 {
					t.Fatalf("round %d: after %q (%v) the cached read was not a hit: bypassed %v, then %v",
						round, q, mode, before.Bypassed, after.Bypassed)
				}
			}
		}
	}
}
