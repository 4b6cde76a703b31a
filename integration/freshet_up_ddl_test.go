package integration

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/freshetdb/freshet/internal/embedded"
	"github.com/freshetdb/freshet/internal/ingestnode"
	"github.com/freshetdb/freshet/internal/testenv"
	"github.com/freshetdb/freshet/materialize"
)

// TestFreshetUpFollowsDDLInTheStream: with the DDL event trigger (and no
// periodic catalog reload at all), a REVOKE and a redefined view take
// effect at their commit: once the watermark covers them, the next read
// is the origin's refusal, or the new view's rows, never the cached
// result from before.
func TestFreshetUpFollowsDDLInTheStream(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		change func(f *upFixture, role string) string
		check  func(ctx context.Context, t *testing.T, f *upFixture, c *pgx.Conn)
	}{
		{"revoke", func(f *upFixture, role string) string { return "REVOKE SELECT ON " + f.table("t") + " FROM " + role },
			func(ctx context.Context, t *testing.T, f *upFixture, c *pgx.Conn) {
				err := c.QueryRow(ctx, "SELECT v FROM "+f.table("v")+" WHERE id = $1", 1).Scan(new(int))
				if err == nil {
					// The view reads t with its owner's rights: read t itself.
					err = c.QueryRow(ctx, "SELECT v FROM "+f.table("t")+" WHERE id = $1", 1).Scan(new(int))
				}
				var pgErr *pgconn.PgError
				if !errors.As(err, &pgErr) || pgErr.Code != "42501" {
					t.Fatalf("read after the REVOKE was applied: %v, want 42501", err)
				}
			}},
		{"view redefined", func(f *upFixture, _ string) string {
			return "CREATE OR REPLACE VIEW " + f.table("v") + " AS SELECT id, v * 100 AS v FROM " + f.table("t")
		}, func(ctx context.Context, t *testing.T, f *upFixture, c *pgx.Conn) {
			var v int
			if err := c.QueryRow(ctx, "SELECT v FROM "+f.table("v")+" WHERE id = $1", 1).Scan(&v); err != nil || v != 1000 {
				t.Fatalf("read of the view after it was redefined: %d, %v; want 1000", v, err)
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			f := startUpWith(t, []string{"t"}, `
				CREATE TABLE {name}_t (id int PRIMARY KEY, v int NOT NULL);
				INSERT INTO {name}_t VALUES (1, 10);
				CREATE VIEW {name}_v AS SELECT id, v FROM {name}_t;`, materialize.Hooks{}, 0,
				func(f *upFixture, cfg *embedded.Config) { cfg.DDLTrigger = true })
			t.Cleanup(func() { _, _ = f.super.Exec(context.Background(), "DROP VIEW IF EXISTS "+f.table("v")) })
			role, pw := f.name+"_reader", testenv.UniqueName("pw")
			execRoles(t, f, []string{"CREATE ROLE " + role + " LOGIN PASSWORD '" + pw + "'",
				"GRANT SELECT ON " + f.table("t") + ", " + f.table("v") + " TO " + role}, role)
			c, err := pgx.Connect(ctx, asRole(f.url(), role, pw))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close(context.Background())
			m := f.node.Materializer()
			for _, table := range []string{"t", "v"} {
				r := &rowReader{ctx: ctx, t: t, f: f, m: m, c: c}
				r.within("the role's read of "+table+" is cached", func() bool { _, hit := r.read(table); return hit })
			}
			followed := m.Stats().CatalogFollowed
			f.superExec(ctx, tc.change(f, role))
			f.waitWatermark(ctx)
			if m.Stats().CatalogFollowed == followed {
				t.Fatal("the watermark passed the change without a catalog reload")
			}
			tc.check(ctx, t, f, c)
		})
	}
}

// TestKafkaRegionFollowsDDL: the ingest's DDL marks travel through Kafka
// to every region, which reloads its catalog at them: a role's cached
// read in a region is refused once the region's watermark covers the
// REVOKE (no periodic reload runs).
func TestKafkaRegionFollowsDDL(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	f := startKafkaRegionsWith(t, []string{"t"}, `CREATE TABLE {name}_t (id int PRIMARY KEY, v int NOT NULL);
		INSERT INTO {name}_t VALUES (1, 10);`, 1, 5*time.Second, func(c *ingestnode.Config) { c.DDLTrigger = true })
	role, pw := f.name+"_reader", testenv.UniqueName("pw")
	for _, s := range []string{"CREATE ROLE " + role + " LOGIN PASSWORD '" + pw + "'", "GRANT SELECT ON " + f.table("t") + " TO " + role} {
		if _, err := f.super.Exec(ctx, s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
	t.Cleanup(func() {
		_, _ = f.super.Exec(context.Background(), "DROP OWNED BY "+role)
		_, _ = f.super.Exec(context.Background(), "DROP ROLE IF EXISTS "+role)
	})
	r := f.regions[0]
	c, err := pgx.Connect(ctx, asRole(withHost(testenv.PostgresURL(t), r.addr), role, pw))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	m := r.node.Materializer()
	read := func() error { return c.QueryRow(ctx, "SELECT v FROM "+f.table("t")+" WHERE id = $1", 1).Scan(new(int)) }
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		before := m.Stats().Hits
		if err := read(); err != nil {
			t.Fatal(err)
		}
		if m.Stats().Hits > before {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the role's read never became a hit")
		}
	}
	if _, err := f.super.Exec(ctx, "REVOKE SELECT ON "+f.table("t")+" FROM "+role); err != nil {
		t.Fatal(err)
	}
	f.catchUp(ctx, r)
	var pgErr *pgconn.PgError
	if err := read(); !errors.As(err, &pgErr) || pgErr.Code != "42501" {
		t.Fatalf("read in the region after the REVOKE was applied: %v, want 42501; stats %+v", err, m.Stats())
	}
}

// TestFreshetUpTemporaryTableShadows: a session's temporary table hides a
// published table of the same name from that session's unqualified
// reads (pg_temp comes first in every search_path). Once it exists, those
// reads are the temporary table's, never the cache's: at once when the
// session created it itself (seen in its words or, for SELECT ... INTO
// TEMP, by analysis, with or without the DDL trigger), and once the watermark covers its creation when a function
// did (the DDL trigger marks a temporary relation that shadows another).
// No periodic catalog reload runs here.
func TestFreshetUpTemporaryTableShadows(t *testing.T) {
	t.Parallel()
	for _, trigger := range []bool{true, false} {
		t.Run(map[bool]string{true: "ddl_trigger", false: "no_ddl_trigger"}[trigger], func(t *testing.T) {
			t.Parallel()
			temporaryTableShadows(t, trigger)
		})
	}
}

func temporaryTableShadows(t *testing.T, trigger bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	f := startUpWith(t, []string{"t", "u", "w"}, `
		CREATE TABLE {name}_t (id int PRIMARY KEY, v int NOT NULL);
		INSERT INTO {name}_t VALUES (1, 10);
		CREATE TABLE {name}_u (id int PRIMARY KEY, v int NOT NULL);
		INSERT INTO {name}_u VALUES (1, 10);
		CREATE TABLE {name}_w (id int PRIMARY KEY, v int NOT NULL);
		INSERT INTO {name}_w VALUES (1, 10);
		CREATE FUNCTION {name}_shadow() RETURNS void LANGUAGE plpgsql AS $$
		BEGIN
			CREATE TEMP TABLE {name}_u (id int, v int);
			INSERT INTO {name}_u VALUES (1, 777);
		END $$;`, materialize.Hooks{}, 0,
		func(f *upFixture, cfg *embedded.Config) { cfg.DDLTrigger = trigger })
	t.Cleanup(func() { _, _ = f.super.Exec(context.Background(), "DROP FUNCTION IF EXISTS "+f.table("shadow")+"()") })
	m := f.node.Materializer()
	read := func(t *testing.T, c *pgx.Conn, table string, want int) {
		t.Helper()
		for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeCacheStatement, pgx.QueryExecModeSimpleProtocol} {
			var v int
			if err := c.QueryRow(ctx, "SELECT v FROM "+f.table(table)+" WHERE id = $1", mode, 1).Scan(&v); err != nil || v != want {
				t.Fatalf("read (%s): %d, %v; want %d", mode, v, err, want)
			}
		}
	}
	shadowed := func(t *testing.T, table, create string, want int) {
		c := f.connect(ctx)
		// Other tests' DDL in the database may purge the cache meanwhile.
		for deadline := time.Now().Add(10 * time.Second); ; {
			before := m.Stats().Hits
			read(t, c, table, 10)
			read(t, c, table, 10)
			if m.Stats().Hits > before {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("the read was not cached to begin with")
			}
		}
		if _, err := c.Exec(ctx, create); err != nil {
			t.Fatal(err)
		}
		// The first reads resolve the session's read-your-writes fence
		// (they may go to the origin while the watermark is behind it);
		// past the watermark, the cache may answer the next ones.
		read(t, c, table, want)
		f.waitWatermark(ctx)
		read(t, c, table, want)
	}
	t.Run("created by the session", func(t *testing.T) {
		shadowed(t, "t", "CREATE TEMP TABLE "+f.table("t")+" (id int, v int); INSERT INTO "+f.table("t")+" VALUES (1, 999)", 999)
	})
	t.Run("selected into", func(t *testing.T) {
		shadowed(t, "w", "SELECT 1 AS id, 555 AS v INTO TEMP "+f.table("w"), 555)
	})
	if trigger {
		t.Run("created by a function", func(t *testing.T) {
			shadowed(t, "u", "SELECT "+f.table("shadow")+"()", 777)
		})
	}
}
