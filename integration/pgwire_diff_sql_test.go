package integration

import (
	"context"
	"database/sql"
	"fmt"
	"testing"
	"time"

	"github.com/freshetdb/freshet/internal/testenv"
	"github.com/freshetdb/freshet/serve/pgwire"
	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx"
)

var sqlScript = []pgxStep{
	{sql: `CREATE TEMP TABLE accounts (id serial PRIMARY KEY, owner text, balance numeric(12,2), opened date)`},
	{sql: `INSERT INTO accounts (owner, balance, opened) VALUES ($1, $2, $3), ($4, $5, $6)`, args: []any{"ann", "10.50", "2024-01-01", "bob", "0", "2024-02-02"}},
	{sql: `SELECT id, owner, balance, opened FROM accounts ORDER BY id`},
	{sql: `SELECT owner FROM accounts WHERE balance > $1`, args: []any{5}},
	{sql: `UPDATE accounts SET balance = balance + 1`},
	{sql: `SELECT sum(balance)::text, count(*) FROM accounts`},
	{sql: `SELECT 1/0`},
	{sql: `INSERT INTO accounts (id, owner) VALUES (1, 'dup')`},
	{sql: `SELECT NULL::text, true, 1.5::float8, now() IS NOT NULL`},
	{sql: `DROP TABLE accounts`},
}

// runSQLScript runs sqlScript on one connection of db: Exec for
// statements without rows, Query for the rest, and a transaction that
// fails half-way.
func runSQLScript(ctx context.Context, t *testing.T, db *sql.DB) *transcript {
	t.Helper()
	conn, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	tr := &transcript{}
	for _, st := range sqlScript {
		tr.add("> %s", st.sql)
		rows, err := conn.QueryContext(ctx, st.sql, st.args...)
		if err != nil {
			tr.err(err)
			continue
		}
		recordSQLRows(tr, rows)
	}
	tr.add("> tx")
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	res, err := tx.ExecContext(ctx, `CREATE TEMP TABLE t2 (i int)`)
	tr.err(err)
	if err == nil {
		n, _ := res.RowsAffected()
		tr.add("  affected %d", n)
	}
	_, err = tx.ExecContext(ctx, `SELECT 1/0`)
	tr.err(err)
	_, err = tx.ExecContext(ctx, `SELECT 1`)
	tr.err(err)
	tr.err(tx.Commit())
	var one int
	tr.err(conn.QueryRowContext(ctx, `SELECT 1`).Scan(&one))
	tr.add("  one %d", one)
	return tr
}

func recordSQLRows(tr *transcript, rows *sql.Rows) {
	defer rows.Close()
	types, err := rows.ColumnTypes()
	if err != nil {
		tr.err(err)
		return
	}
	for _, ct := range types {
		tr.add("  col %s %s", ct.Name(), ct.DatabaseTypeName())
	}
	vals := make([]any, len(types))
	ptrs := make([]any, len(types))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	n := 0
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			tr.err(err)
			continue
		}
		tr.add("  row %s", fmt.Sprint(vals...))
		n++
	}
	tr.err(rows.Err())
	tr.add("  rows %d", n)
}

// TestPgwireDifferentialDatabaseSQL runs a scripted session through
// database/sql over pgx's stdlib driver, directly and through freshet.
func TestPgwireDifferentialDatabaseSQL(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	p := startProxy(t, pgwire.Config{})
	direct := testenv.PostgresURL(t)
	run := func(url string) *transcript {
		db, err := sql.Open("pgx", url)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		return runSQLScript(ctx, t, db)
	}
	diffTranscripts(t, run(direct), run(p.url(t, direct)))
}
