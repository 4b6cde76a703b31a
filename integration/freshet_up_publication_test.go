package integration

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/freshetdb/freshet/internal/embedded"
	"github.com/freshetdb/freshet/materialize"
)

// TestFreshetUpFollowsThePublication changes the publication under a
// running node. A table added to it is cached after the next catalog
// reload. A table dropped from it stops being cached, and an update made
// after the drop, which the stream no longer carries, is read from the
// origin: before, the published set was read once at start, so the
// cached row stayed as it was while the watermark moved on.
func TestFreshetUpFollowsThePublication(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	f := startUpWith(t, []string{"kept", "added"}, `
		CREATE TABLE {name}_kept (id int PRIMARY KEY, v int NOT NULL);
		CREATE TABLE {name}_added (id int PRIMARY KEY, v int NOT NULL);
		INSERT INTO {name}_kept VALUES (1, 10);
		INSERT INTO {name}_added VALUES (1, 20);`, materialize.Hooks{}, 0,
		func(f *upFixture, cfg *embedded.Config) {
			cfg.Tables = cfg.Tables[:1] // added starts outside the publication
			cfg.CatalogInterval = 100 * time.Millisecond
		})
	r := newRowReader(ctx, t, f)
	read, within := r.read, r.within
	if _, hit := read("added"); hit {
		t.Fatal("a table outside the publication was answered from the cache")
	}
	f.superExec(ctx, "ALTER PUBLICATION "+f.name+"_pub ADD TABLE "+f.table("added"))
	within("the added table is cached", func() bool { _, hit := read("added"); return hit })

	within("the kept table is cached", func() bool { _, hit := read("kept"); return hit })
	f.superExec(ctx, "ALTER PUBLICATION "+f.name+"_pub DROP TABLE "+f.table("kept"))
	within("the dropped table goes to the origin", func() bool {
		return r.bypassed("kept", "not_replicated")
	})
	f.superExec(ctx, "UPDATE "+f.table("kept")+" SET v = 11 WHERE id = 1")
	for range 3 {
		if v, hit := read("kept"); v != 11 || hit {
			t.Fatalf("after the drop and an update: got %d (hit %v), want 11 from the origin", v, hit)
		}
	}
}

func (f *upFixture) superExec(ctx context.Context, sql string) {
	f.t.Helper()
	f.mustExec(ctx, f.super, sql)
}

// TestFreshetUpIncompletePublication runs on a publication made by hand
// that does not stream every change: a row filter leaves out the changes
// of rows outside it, and publish = 'insert, update' leaves out deletes
// and truncates. Results such changes would have invalidated are never
// cached; a table whose every change comes still is.
func TestFreshetUpIncompletePublication(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	f := startUpWith(t, []string{"filtered", "full"}, `
		CREATE TABLE {name}_filtered (id int PRIMARY KEY, v int NOT NULL);
		CREATE TABLE {name}_full (id int PRIMARY KEY, v int NOT NULL);
		INSERT INTO {name}_filtered VALUES (1, 10);
		INSERT INTO {name}_full VALUES (1, 20);
		CREATE PUBLICATION {name}_pub FOR TABLE {name}_filtered WHERE (id > 100), {name}_full;`, materialize.Hooks{}, 0,
		func(f *upFixture, cfg *embedded.Config) { cfg.CatalogInterval = 100 * time.Millisecond })
	r := newRowReader(ctx, t, f)
	read := r.read
	for range 3 {
		if _, hit := read("filtered"); hit {
			t.Fatal("a table with a row filter was answered from the cache")
		}
	}
	f.superExec(ctx, "UPDATE "+f.table("filtered")+" SET v = 11 WHERE id = 1") // not in the stream
	if v, _ := read("filtered"); v != 11 {
		t.Fatalf("after an update outside the row filter: got %d, want 11", v)
	}
	r.within("the fully published table is cached", func() bool { _, hit := read("full"); return hit })
	f.superExec(ctx, "ALTER PUBLICATION "+f.name+"_pub SET (publish = 'insert, update')")
	r.within("a table whose deletes are no longer published goes to the origin", func() bool { return r.bypassed("full", "not_replicated") })
	f.superExec(ctx, "DELETE FROM "+f.table("full")+" WHERE id = 1") // not in the stream
	if err := r.c.QueryRow(ctx, "SELECT v FROM "+f.table("full")+" WHERE id = $1", 1).Scan(new(int)); err != pgx.ErrNoRows {
		t.Fatalf("after a delete the publication leaves out: %v, want no rows", err)
	}
}

// rowReader reads row 1 of a fixture's tables through freshet and tells
// whether the cache answered.
type rowReader struct {
	ctx context.Context
	t   *testing.T
	f   *upFixture
	m   *materialize.Materializer
	c   *pgx.Conn
}

func newRowReader(ctx context.Context, t *testing.T, f *upFixture) *rowReader {
	return &rowReader{ctx: ctx, t: t, f: f, m: f.node.Materializer(), c: f.connect(ctx)}
}

func (r *rowReader) read(table string) (v int, hit bool) {
	r.t.Helper()
	before := r.m.Stats().Hits
	if err := r.c.QueryRow(r.ctx, "SELECT v FROM "+r.f.table(table)+" WHERE id = $1", 1).Scan(&v); err != nil {
		r.t.Fatalf("read %s: %v", table, err)
	}
	return v, r.m.Stats().Hits > before
}

// bypassed reads table and reports whether the read went to the origin
// for reason.
func (r *rowReader) bypassed(table, reason string) bool {
	before := r.m.Stats().Bypassed[reason]
	r.read(table)
	return r.m.Stats().Bypassed[reason] > before
}

// within waits for cond. Other tests change the catalog too, and each
// change purges the cache: wait for what must happen rather than count
// on one read.
func (r *rowReader) within(what string, cond func() bool) {
	r.t.Helper()
	for deadline := time.Now().Add(20 * time.Second); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			r.t.Fatalf("%s: not within 20s; stats %+v", what, r.m.Stats())
		}
	}
}
