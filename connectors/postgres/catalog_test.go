package postgres_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/freshetdb/freshet/connectors/postgres"
	"github.com/freshetdb/freshet/internal/testenv"
	"github.com/freshetdb/freshet/materialize/analyze"
)

// catalogConn opens a connection to the test origin, closed at cleanup.
func catalogConn(t *testing.T, ctx context.Context) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(ctx, testenv.PostgresURL(t))
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	return conn
}

// ownDatabaseConn creates a database for the test, dropped at cleanup,
// and opens a connection to it, closed before.
func ownDatabaseConn(t *testing.T, ctx context.Context) *pgx.Conn {
	t.Helper()
	super := catalogConn(t, ctx)
	name := testenv.UniqueName("own")
	catalogExec(t, ctx, super, "CREATE DATABASE "+name)
	t.Cleanup(func() {
		_, _ = super.Exec(context.Background(), "DROP DATABASE "+name+" WITH (FORCE)")
	})
	cfg, err := pgx.ParseConfig(testenv.PostgresURL(t))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Database = name
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatalf("connect to %s: %v", name, err)
	}
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	return conn
}

func catalogExec(t *testing.T, ctx context.Context, conn *pgx.Conn, sqls ...string) {
	t.Helper()
	for _, sql := range sqls {
		if _, err := conn.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
}

// TestCatalogLoaderVerdicts loads the real catalog of the test PostgreSQL
// after creating functions, views, partitions, a materialized view, a
// row-security table and another session's temporary table, and checks
// Analyze's verdicts against it.
func TestCatalogLoaderVerdicts(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	conn := catalogConn(t, ctx)
	s := testenv.UniqueName("cat")
	tmp := testenv.UniqueName("tmp")
	t.Cleanup(func() {
		_, _ = conn.Exec(context.Background(), "DROP SCHEMA "+s+" CASCADE")
	})
	catalogExec(t, ctx, conn,
		"CREATE SCHEMA "+s,
		"SET search_path = "+s,
		"CREATE TABLE t (id int4 PRIMARY KEY, name text, score float8)",
		"CREATE FUNCTION vol() RETURNS float8 VOLATILE LANGUAGE sql AS 'SELECT random()'",
		"CREATE FUNCTION stab() RETURNS int STABLE LANGUAGE sql AS 'SELECT 1'",
		"CREATE FUNCTION imm(int) RETURNS int IMMUTABLE LANGUAGE sql AS 'SELECT $1 + 1'",
		"CREATE FUNCTION ov(int) RETURNS int IMMUTABLE LANGUAGE sql AS 'SELECT $1'",
		"CREATE FUNCTION ov(int, int) RETURNS int VOLATILE LANGUAGE sql AS 'SELECT $1'",
		"CREATE FUNCTION d(int, int DEFAULT 1) RETURNS int IMMUTABLE LANGUAGE sql AS 'SELECT $1 + $2'",
		"CREATE VIEW v AS SELECT id, name FROM t WHERE name = 'x'",
		"CREATE VIEW vv AS SELECT id, vol() AS r FROM t",
		"CREATE TABLE p (id int8, kind text) PARTITION BY LIST (kind)",
		"CREATE TABLE p_a PARTITION OF p FOR VALUES IN ('a')",
		"CREATE TABLE p_b PARTITION OF p FOR VALUES IN ('b')",
		"CREATE MATERIALIZED VIEW mv AS SELECT count(*) FROM t",
		"CREATE TABLE sec (id int)",
		"CREATE UNLOGGED TABLE ul (id int)",
		"ALTER TABLE sec ENABLE ROW LEVEL SECURITY",
	)
	other := catalogConn(t, ctx)
	catalogExec(t, ctx, other, "CREATE TEMP TABLE "+tmp+" (id int)")

	loader, err := postgres.NewCatalogLoader(postgres.CatalogConfig{DB: conn})
	if err != nil {
		t.Fatal(err)
	}
	cat, err := loader.Load(ctx)
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	tests := []struct {
		sql    string
		reason analyze.Reason
		tables string // comma-separated, without the schema prefix
	}{
		{"SELECT * FROM t WHERE id = $1", "", "t"},
		{"SELECT imm(id) FROM t WHERE id = 1", "", "t"},
		{"SELECT ov(1)", "", ""},
		{"SELECT d(1), d(1, 2)", "", ""},
		{"SELECT ov(1, 2)", analyze.ReasonVolatileFunction, ""},
		{"SELECT vol()", analyze.ReasonVolatileFunction, ""},
		{"SELECT stab()", analyze.ReasonStableFunction, ""},
		{"SELECT * FROM v WHERE id = 3", "", "t"},
		{"SELECT * FROM vv", analyze.ReasonVolatileFunction, ""},
		{"SELECT * FROM p WHERE kind = 'a'", "", "p,p_a,p_b"},
		{"SELECT * FROM mv", analyze.ReasonNotReplicated, ""},
		{"SELECT * FROM sec", analyze.ReasonRowSecurity, ""},
		{"SELECT * FROM ul", analyze.ReasonNotReplicated, ""},
		{"SELECT * FROM " + tmp, analyze.ReasonTemporaryTable, ""},
		{"SELECT relname FROM pg_class", analyze.ReasonSystemCatalog, ""},
		{"SELECT * FROM information_schema.tables", analyze.ReasonSystemCatalog, ""},
		{"SELECT count(*), max(score), lower(name) FROM t WHERE id = ANY($1) GROUP BY name", "", "t"},
		{"SELECT now()", analyze.ReasonStableFunction, ""},
		{"SELECT random()", analyze.ReasonVolatileFunction, ""},
		{"SELECT date_trunc('day', now())", analyze.ReasonStableFunction, ""},
		{"SELECT substring(name FROM 2), abs(id), coalesce(name, 'x') FROM t", "", "t"},
		// extract(text, timestamptz) is stable and argument types are not
		// resolved, so every extract is treated as stable: conservative.
		{"SELECT extract(year FROM '2024-05-01'::date)", analyze.ReasonStableFunction, ""},
		{"SELECT CURRENT_USER", analyze.ReasonSQLValueFunction, ""},
		{"SELECT * FROM t FOR UPDATE", analyze.ReasonLockingClause, ""},
	}
	for _, tt := range tests {
		t.Run(tt.sql, func(t *testing.T) {
			res := analyze.Analyze(analyze.Input{SQL: tt.sql, SearchPath: []string{s}, Session: analyze.SessionKnown}, cat)
			if res.Reason != tt.reason || res.Cacheable != (tt.reason == "") {
				t.Fatalf("cacheable=%v reason=%q (%s); want reason %q", res.Cacheable, res.Reason, res.Detail, tt.reason)
			}
			if got := strings.Join(res.Tables, ","); got != qualify(s, tt.tables) {
				t.Fatalf("tables %q, want %q", got, qualify(s, tt.tables))
			}
		})
	}
	checkPredicates(t, cat, s)
	checkReload(t, ctx, conn, loader, s)
}

// checkReload shows that a reload after a schema change sees a function
// the previous snapshot did not know.
func checkReload(t *testing.T, ctx context.Context, conn *pgx.Conn, loader *postgres.CatalogLoader, s string) {
	t.Helper()
	in := analyze.Input{SQL: "SELECT later()", SearchPath: []string{s}, Session: analyze.SessionKnown}
	before, err := loader.LoadCatalog(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if r := analyze.Analyze(in, before).Reason; r != analyze.ReasonUnknownFunction {
		t.Fatalf("before: reason %q, want unknown_function", r)
	}
	catalogExec(t, ctx, conn, "CREATE FUNCTION "+s+".later() RETURNS int VOLATILE LANGUAGE sql AS 'SELECT 1'")
	after, err := loader.LoadCatalog(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if r := analyze.Analyze(in, after).Reason; r != analyze.ReasonVolatileFunction {
		t.Fatalf("after reload: reason %q, want volatile_function", r)
	}
}

// checkPredicates verifies that column types from pg_attribute decide
// which predicates are emitted, through the view and onto partitions.
func checkPredicates(t *testing.T, cat analyze.Catalog, s string) {
	t.Helper()
	res := analyze.Analyze(analyze.Input{SQL: "SELECT * FROM t WHERE id = 5 AND score = 1.5 AND name = $1", SearchPath: []string{s}, Session: analyze.SessionKnown}, cat)
	got := fmt.Sprint(res.Scans)
	want := fmt.Sprintf("[{%s.t   [{id int4 [{0 false 5 integer }]} {name text [{1 false   }]}]}]", s)
	if got != want {
		t.Fatalf("scans\n got %s\nwant %s", got, want)
	}
	res = analyze.Analyze(analyze.Input{SQL: "SELECT * FROM p WHERE kind = 'b'", SearchPath: []string{s}, Session: analyze.SessionKnown}, cat)
	for _, sc := range res.Scans {
		if len(sc.Predicates) != 1 || sc.Predicates[0].Column != "kind" {
			t.Fatalf("partition scan %+v lacks the kind predicate", sc)
		}
	}
}

func qualify(schema, tables string) string {
	if tables == "" {
		return ""
	}
	parts := strings.Split(tables, ",")
	for i, p := range parts {
		parts[i] = schema + "." + p
	}
	return strings.Join(parts, ",")
}

// TestCatalogLoaderSettingsFunctions: the functions whose bodies set a
// setting PostgreSQL does not report, in PL/pgSQL or a SQL-standard body,
// are found; one whose own SET clause is restored on return is not. In a
// database of its own: functions created in the shared one make other
// tests' freshets purge their caches at their next catalog reload.
func TestCatalogLoaderSettingsFunctions(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	conn := ownDatabaseConn(t, ctx)
	s := testenv.UniqueName("setfn")
	catalogExec(t, ctx, conn,
		"CREATE SCHEMA "+s,
		"CREATE FUNCTION "+s+"."+s+"_plpgsql() RETURNS void LANGUAGE plpgsql AS $$ BEGIN SET search_path TO "+s+"; END $$",
		"CREATE FUNCTION "+s+"."+s+"_atomic() RETURNS text LANGUAGE sql BEGIN ATOMIC SELECT pg_catalog.set_config('bytea_output', 'escape', false); END",
		"CREATE FUNCTION "+s+"."+s+"_caller() RETURNS text LANGUAGE sql AS $$ SELECT "+s+"."+s+"_atomic() $$",
		"CREATE FUNCTION "+s+"."+s+"_own_clause() RETURNS int LANGUAGE sql SET search_path = pg_catalog AS 'SELECT 1'",
		"CREATE FUNCTION "+s+"."+s+"_dynamic(k text, v text) RETURNS void LANGUAGE plpgsql AS $$ BEGIN EXECUTE format('SET %I = %L', k, v); END $$",
	)
	loader, err := postgres.NewCatalogLoader(postgres.CatalogConfig{DB: conn})
	if err != nil {
		t.Fatal(err)
	}
	snap, err := loader.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	names, _ := snap.SettingsFunctions()
	for fn, want := range map[string]bool{s + "_plpgsql": true, s + "_atomic": true, s + "_caller": true, s + "_own_clause": false, s + "_dynamic": true} {
		if got := slices.Contains(names, fn); got != want {
			t.Errorf("%s among the settings functions: %v, want %v (%q)", fn, got, want, names)
		}
	}
	if !snap.MayChangeSettings("SELECT "+s+"."+s+"_caller()", func() bool { return false }) {
		t.Error("a call of the caller is not seen")
	}
}

func TestNewCatalogLoaderRequiresDB(t *testing.T) {
	if _, err := postgres.NewCatalogLoader(postgres.CatalogConfig{}); err == nil {
		t.Fatal("NewCatalogLoader without DB: want an error")
	}
}

// TestCatalogLoadSurvivesConcurrentDDL: views created and dropped while
// the catalog loads (other sessions' DDL, a deploy; here another
// session's temporary views) do not fail the load:
// pg_get_viewdef reads the current catalog, not the load's snapshot, and
// a view dropped in between made the whole load fail.
func TestCatalogLoadSurvivesConcurrentDDL(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	conn, ddl := catalogConn(t, ctx), catalogConn(t, ctx)
	loader, err := postgres.NewCatalogLoader(postgres.CatalogConfig{DB: conn})
	if err != nil {
		t.Fatal(err)
	}
	name := testenv.UniqueName("churn")
	stop := make(chan struct{})
	churned := make(chan int)
	go func() {
		n := 0
		defer func() { churned <- n }()
		// A few hundred suffice to race the first loads; more would keep
		// other tests' periodic reloads purging (a view changed) longer.
		for n < 300 {
			select {
			case <-stop:
				return
			default:
			}
			v := fmt.Sprintf("%s_%d", name, n%4)
			// Temporary: freshet's DDL trigger marks no temporary view in
			// the stream, so the churn does not flood other tests' slots.
			if _, err := ddl.Exec(ctx, "CREATE TEMP VIEW "+v+" AS SELECT 1 AS one"); err != nil {
				t.Errorf("create view: %v", err)
				return
			}
			if _, err := ddl.Exec(ctx, "DROP VIEW "+v); err != nil {
				t.Errorf("drop view: %v", err)
				return
			}
			n++
		}
	}()
	var failed error
	for range 150 {
		if _, err := loader.Load(ctx); err != nil {
			failed = err
			break
		}
	}
	close(stop)
	n := <-churned
	if failed != nil {
		t.Fatalf("a catalog load failed while %d views were created and dropped: %v", n, failed)
	}
	t.Logf("150 loads while %d views were created and dropped", n)
}
