package integration

import (
	"context"
	"reflect"
	"testing"
	"time"

	"github.com/freshetdb/freshet/connectors/postgres"
	"github.com/freshetdb/freshet/internal/testenv"
	"github.com/freshetdb/freshet/materialize"
	"github.com/freshetdb/freshet/materialize/analyze"
	"github.com/freshetdb/freshet/schemas"
)

// TestMaterializerPrecision: after UPDATE t SET v = v + 1 WHERE id = 5 at
// the real origin, the cached id = 5 read is refreshed, id = 6 is still a
// hit, and a join over t is invalidated.
func TestMaterializerPrecision(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	f := startMaterializer(t, []string{"t", "o"}, `
		CREATE TABLE {name}_t (id int PRIMARY KEY, v int NOT NULL);
		CREATE TABLE {name}_o (id int PRIMARY KEY, t_id int NOT NULL);
		INSERT INTO {name}_t SELECT g, g * 10 FROM generate_series(1, 10) g;
		INSERT INTO {name}_o SELECT g, g FROM generate_series(1, 10) g;`, materialize.Config{})
	t5 := "SELECT v::text FROM " + f.table("t") + " WHERE id = 5"
	t6 := "SELECT v::text FROM " + f.table("t") + " WHERE id = $1"
	join := "SELECT t.v::text FROM " + f.table("t") + " t JOIN " + f.table("o") + " o ON o.t_id = t.id WHERE o.id = 5"
	f.catchUp(ctx)
	mustRead := func(sql string, want string, wantHit bool, params ...string) {
		t.Helper()
		got, hit, err := f.read(ctx, schemas.Position{}, sql, params...)
		if err != nil {
			t.Fatal(err)
		}
		if got != want || hit != wantHit {
			t.Fatalf("%s: got %q hit %v, want %q hit %v", sql, got, hit, want, wantHit)
		}
	}
	mustRead(t5, "50", false)
	mustRead(t6, "60", false, "6")
	mustRead(join, "50", false)
	for _, sql := range []string{t5, join} {
		mustRead(sql, "50", true)
	}
	mustRead(t6, "60", true, "6")

	if _, err := f.pool.Exec(ctx, "UPDATE "+f.table("t")+" SET v = v + 1 WHERE id = 5"); err != nil {
		t.Fatal(err)
	}
	f.catchUp(ctx)
	before := f.m.Stats()
	mustRead(t6, "60", true, "6")
	if got := f.m.Stats().Hits - before.Hits; got != 1 {
		t.Fatalf("hit counter moved by %d for id = 6, want 1", got)
	}
	mustRead(t5, "51", false)
	mustRead(join, "51", false)
	mustRead(t5, "51", true)
	if s := f.m.Stats(); s.Invalidated < 2 {
		t.Fatalf("invalidated %d entries, want at least id = 5 and the join", s.Invalidated)
	}
}

// TestCatalogReloadStable: two loads of an unchanged origin catalog
// compare equal, so the periodic reload does not purge the cache; a
// redefined view makes them differ.
func TestCatalogReloadStable(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	f := startMaterializer(t, []string{"t"}, `
		CREATE TABLE {name}_t (id int PRIMARY KEY, v int NOT NULL);
		CREATE VIEW {name}_v AS SELECT id, v FROM {name}_t WHERE v > 0;`, materialize.Config{})
	loader, err := postgres.NewCatalogLoader(postgres.CatalogConfig{DB: f.pool})
	if err != nil {
		t.Fatal(err)
	}
	// Other tests run DDL on the same database concurrently, so a pair of
	// loads may straddle one of theirs; a loader that is unstable by
	// itself (say, unordered slices) never yields an equal pair.
	a := loadStablePair(ctx, t, loader)
	if _, err := f.pool.Exec(ctx, "CREATE OR REPLACE VIEW "+f.table("v")+" AS SELECT id, v FROM "+f.table("t")+" WHERE v > 1"); err != nil {
		t.Fatal(err)
	}
	c, err := loader.LoadCatalog(ctx)
	if err != nil {
		t.Fatal(err)
	}
	before, ok1 := a.Relation("public", f.table("v"))
	after, ok2 := c.Relation("public", f.table("v"))
	if !ok1 || !ok2 {
		t.Fatalf("view %s missing from a load (before %v, after %v)", f.table("v"), ok1, ok2)
	}
	if before.Definition == after.Definition || reflect.DeepEqual(a, c) {
		t.Fatalf("a redefined view left the catalog equal (definition %q)", after.Definition)
	}
}

// loadStablePair loads the catalog twice in a row until the two loads
// compare equal, and returns the first of them.
func loadStablePair(ctx context.Context, t *testing.T, loader *postgres.CatalogLoader) analyze.Catalog {
	t.Helper()
	for range 50 {
		a, err := loader.LoadCatalog(ctx)
		if err != nil {
			t.Fatal(err)
		}
		b, err := loader.LoadCatalog(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if reflect.DeepEqual(a, b) {
			return a
		}
	}
	t.Fatal("50 pairs of loads of the catalog all differ: the periodic reload would purge every time")
	return nil
}

// TestRoleDefaultsLoader: a role whose default search_path the front end
// cannot see is reported; one with only harmless defaults is not.
func TestRoleDefaultsLoader(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn := mustConnectPG(ctx, t, testenv.PostgresURL(t))
	hidden, harmless := testenv.UniqueName("rd_hidden"), testenv.UniqueName("rd_harmless")
	t.Cleanup(func() {
		_, _ = conn.Exec(context.Background(), "DROP ROLE IF EXISTS "+hidden)
		_, _ = conn.Exec(context.Background(), "DROP ROLE IF EXISTS "+harmless)
		conn.Close(context.Background())
	})
	for _, sql := range []string{
		"CREATE ROLE " + hidden, "ALTER ROLE " + hidden + " SET search_path = app, public",
		"CREATE ROLE " + harmless, "ALTER ROLE " + harmless + " SET work_mem = '64MB'",
	} {
		if _, err := conn.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	d, err := postgres.RoleDefaultsLoader{DB: conn}.LoadRoleDefaults(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !d.Roles[hidden] || d.Roles[harmless] {
		t.Fatalf("roles with unseen defaults: %v", d.Roles)
	}
}
