package integration

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/freshetdb/freshet/internal/embedded"
	"github.com/freshetdb/freshet/internal/testenv"
	"github.com/freshetdb/freshet/materialize"
)

// TestFreshetUpKeepsEntriesAcrossOtherDDL: another application creating a
// temporary table changes the origin's catalog, which the node sees at its
// next periodic reload. Only what read a relation of that name may have
// changed, so a cached read of another table stays a hit. Every catalog
// change used to purge the whole cache. (Other tests' functions and views
// still purge everything; such an attempt is retried.)
func TestFreshetUpKeepsEntriesAcrossOtherDDL(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	f := startOneRowReloading(t)
	r := newRowReader(ctx, t, f)
	other, err := pgx.Connect(ctx, testenv.PostgresURL(t))
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close(context.Background())
	for attempt := 0; ; attempt++ {
		r.within("the table is cached", func() bool { _, hit := r.read("t"); return hit })
		before := r.m.Stats()
		f.mustExec(ctx, other, "CREATE TEMP TABLE "+f.name+"_scratch_"+string(rune('a'+attempt))+" (x int)")
		// Another test's view or function changes make a reload purge
		// instead (counted, then tried again below).
		r.within("the reload sees the temporary table", func() bool {
			s := r.m.Stats()
			return s.CatalogScoped > before.CatalogScoped || s.CatalogPurges > before.CatalogPurges
		})
		_, hit := r.read("t")
		if r.m.Stats().CatalogPurges != before.CatalogPurges {
			if attempt == 5 {
				t.Fatal("another test's DDL purged the cache on every attempt")
			}
			continue
		}
		if !hit {
			t.Fatalf("a temporary table elsewhere dropped the cached read: %+v", r.m.Stats())
		}
		return
	}
}

func (f *upFixture) mustExec(ctx context.Context, c *pgx.Conn, sql string) {
	f.t.Helper()
	if _, err := c.Exec(ctx, sql, pgx.QueryExecModeSimpleProtocol); err != nil {
		f.t.Fatalf("%s: %v", sql, err)
	}
}

// TestFreshetUpLostPrivilegeStopsServing: a role's read is cached; then
// the role loses the right to read the table at the origin, by a REVOKE
// or by the table changing owner. Within the next catalog reload the
// role's read is refused as the origin refuses it, not served from the
// cache: privileges and owners are part of the catalog, so such a change
// drops what was cached from that table. Before, a role that lost access
// kept reading cached rows until a change to them invalidated the entry.
func TestFreshetUpLostPrivilegeStopsServing(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name  string
		grant func(table, role string) string // makes role able to read table
		take  func(table, role string) string // takes it away
	}{
		{"revoke", func(table, role string) string { return "GRANT SELECT ON " + table + " TO " + role },
			func(table, role string) string { return "REVOKE SELECT ON " + table + " FROM " + role }},
		{"owner change", func(table, role string) string { return "ALTER TABLE " + table + " OWNER TO " + role },
			func(table, role string) string { return "ALTER TABLE " + table + " OWNER TO CURRENT_USER" }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			f := startOneRowReloading(t)
			role, pw := f.name+"_reader", testenv.UniqueName("pw")
			execRoles(t, f, []string{"CREATE ROLE " + role + " LOGIN PASSWORD '" + pw + "'", tc.grant(f.table("t"), role)}, role)
			c, err := pgx.Connect(ctx, asRole(f.url(), role, pw))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close(context.Background())
			r := &rowReader{ctx: ctx, t: t, f: f, m: f.node.Materializer(), c: c}
			r.within("the role's read is cached", func() bool { _, hit := r.read("t"); return hit })
			f.superExec(ctx, tc.take(f.table("t"), role))
			r.within("the origin's refusal reaches the role", func() bool {
				err := c.QueryRow(ctx, "SELECT v FROM "+f.table("t")+" WHERE id = $1", 1).Scan(new(int))
				var pgErr *pgconn.PgError
				return errors.As(err, &pgErr) && pgErr.Code == "42501"
			})
		})
	}
}

// startOneRowReloading starts freshet up on a table t holding row (1, 10),
// reloading the catalog every 100 ms.
func startOneRowReloading(t *testing.T) *upFixture {
	t.Helper()
	return startUpWith(t, []string{"t"}, `
		CREATE TABLE {name}_t (id int PRIMARY KEY, v int NOT NULL);
		INSERT INTO {name}_t VALUES (1, 10);`, materialize.Hooks{}, 0,
		func(f *upFixture, cfg *embedded.Config) { cfg.CatalogInterval = 100 * time.Millisecond })
}
