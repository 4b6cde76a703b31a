package postgres_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/freshetdb/freshet/connectors/postgres"
	"github.com/freshetdb/freshet/internal/testenv"
	"github.com/freshetdb/freshet/schemas"
)

// TestDDLTriggerMarksCatalogChanges: Setup with DDLTrigger (as a
// superuser) leaves the event trigger in place, and the stream reports a
// catalog change in the transaction of each DDL command (GRANT included),
// run by any role, at its commit position and in commit order; row
// changes and DDL on temporary objects (their DROP included) bring none,
// unless a temporary table takes a permanent table's name. Setup replaces
// an older freshet's trigger function.
func TestDDLTriggerMarksCatalogChanges(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	f := newFixture(t, "ddl")
	f.exec(ctx, `CREATE TABLE `+f.table("ddl")+` (id int PRIMARY KEY)`)
	f.cfg.URL, f.cfg.DDLTrigger = testenv.PostgresURL(t), true
	if _, err := postgres.Setup(ctx, f.cfg, schemas.Position{}); err != nil {
		t.Fatal(err)
	}
	// An older function that works alike (other tests use the triggers
	// meanwhile): Setup puts this freshet's back.
	const older = "-- an older freshet"
	if _, err := f.super.Exec(ctx, `DO $do$ DECLARE def text; BEGIN
		SELECT pg_get_functiondef(to_regprocedure('public.freshet_ddl_message()')) INTO def;
		EXECUTE replace(def, 'EXCEPTION WHEN OTHERS', '`+older+`' || chr(10) || 'EXCEPTION WHEN OTHERS');
	END $do$`); err != nil {
		t.Fatal(err)
	}
	if _, err := postgres.Setup(ctx, f.cfg, schemas.Position{}); err != nil {
		t.Fatal(err)
	}
	var replaced bool
	if err := f.super.QueryRow(ctx, `SELECT prosrc NOT LIKE '%`+older+`%' FROM pg_proc WHERE oid = to_regprocedure('public.freshet_ddl_message()')`).Scan(&replaced); err != nil || !replaced {
		t.Fatalf("Setup left an older trigger function in place (%v)", err)
	}
	var triggers int
	if err := f.super.QueryRow(ctx, `SELECT count(*) FROM pg_event_trigger WHERE evtname IN ('freshet_ddl', 'freshet_ddl_drop') AND evtenabled = 'O'`).Scan(&triggers); err != nil || triggers != 2 {
		t.Fatalf("%d enabled freshet event triggers (%v), want 2", triggers, err)
	}
	run := f.start(t, schemas.Position{})
	f.exec(ctx, `INSERT INTO `+f.table("ddl")+` VALUES (1)`)
	grant := ddlXid(ctx, t, f.super, `GRANT SELECT ON `+f.table("ddl")+` TO PUBLIC`)
	alter := ddlXid(ctx, t, f.repl, `ALTER TABLE `+f.table("ddl")+` ADD COLUMN v int`) // not a superuser's
	temp := ddlXid(ctx, t, f.repl, `CREATE TEMP TABLE `+f.table("scratch")+` (x int)`)
	f.exec(ctx, `CREATE VIEW `+f.table("gone")+` AS SELECT 1 AS one`)
	drop := ddlXid(ctx, t, f.repl, `DROP VIEW `+f.table("gone"))
	dropTemp := ddlXid(ctx, t, f.repl, `DROP TABLE `+f.table("scratch"))
	shadow := ddlXid(ctx, t, f.super, `CREATE TEMP TABLE `+f.table("ddl")+` (id int)`) // hides the table from f.super only
	f.exec(ctx, `INSERT INTO `+f.table("ddl")+` VALUES (2)`)
	got := run.collect(t, 30*time.Second, hasRow("ddl", 2))
	var ops []schemas.Op
	for _, c := range got {
		switch {
		case c.Op == schemas.OpCatalogChange && c.TxID == grant:
			ops = append(ops, "grant")
		case c.Op == schemas.OpCatalogChange && c.TxID == alter:
			ops = append(ops, "alter")
		case c.Op == schemas.OpCatalogChange && c.TxID == temp:
			ops = append(ops, "temp")
		case c.Op == schemas.OpCatalogChange && c.TxID == drop:
			ops = append(ops, "drop")
		case c.Op == schemas.OpCatalogChange && c.TxID == dropTemp:
			ops = append(ops, "drop temp")
		case c.Op == schemas.OpCatalogChange && c.TxID == shadow:
			ops = append(ops, "shadow")
		case c.Op == schemas.OpCatalogChange && c.Table != "":
			t.Fatalf("catalog change naming a table: %+v", c)
		case c.Op == schemas.OpCreate && c.Table == f.table("ddl"):
			ops = append(ops, "insert")
		}
	}
	if want := []schemas.Op{"insert", "grant", "alter", "drop", "shadow", "insert"}; !slices.Equal(ops, want) {
		t.Fatalf("stream: %v, want %v", ops, want)
	}
}

// ddlXid runs sql in a transaction of its own on c and returns its xid.
func ddlXid(ctx context.Context, t *testing.T, c *pgx.Conn, sql string) uint32 {
	t.Helper()
	tx, err := c.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	if _, err := tx.Exec(ctx, sql); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	var xid int64
	if err := tx.QueryRow(ctx, "SELECT txid_current()").Scan(&xid); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	return uint32(xid)
}
