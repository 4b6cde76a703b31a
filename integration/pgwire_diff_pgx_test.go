package integration

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/freshetdb/freshet/internal/testenv"
	"github.com/freshetdb/freshet/serve/pgwire"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// transcript records everything a client sees of a scripted session, so
// the same script run directly and through freshet can be compared.
type transcript struct{ lines []string }

func (tr *transcript) add(format string, args ...any) {
	tr.lines = append(tr.lines, fmt.Sprintf(format, args...))
}

func (tr *transcript) err(err error) {
	var pgErr *pgconn.PgError
	switch {
	case err == nil:
	case errors.As(err, &pgErr):
		tr.add("  error %s %s %s", pgErr.Severity, pgErr.Code, pgErr.Message)
	default:
		tr.add("  error (client) %v", err)
	}
}

// diffTranscripts fails the test at the first line the two differ.
func diffTranscripts(t *testing.T, direct, proxied *transcript) {
	t.Helper()
	for i := 0; i < len(direct.lines) || i < len(proxied.lines); i++ {
		var d, p string
		if i < len(direct.lines) {
			d = direct.lines[i]
		}
		if i < len(proxied.lines) {
			p = proxied.lines[i]
		}
		if d != p {
			t.Fatalf("transcripts differ at line %d:\n direct:  %q\n freshet: %q", i, d, p)
		}
	}
	if len(direct.lines) < 20 {
		t.Fatalf("transcript suspiciously short (%d lines): the script did not run", len(direct.lines))
	}
}

// pgxStep is one step of the scripted pgx session.
type pgxStep struct {
	sql  string
	args []any
}

var pgxScript = []pgxStep{
	{sql: `CREATE TEMP TABLE items (id int PRIMARY KEY, name text NOT NULL, price numeric(10,2), tags text[], at timestamptz, doc jsonb, raw bytea, f float8, ok bool)`},
	{sql: `INSERT INTO items VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`, args: []any{1, "apple", "1.25", []string{"red", "fruit"}, time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC), `{"a": 1}`, []byte{0, 1, 2, 255}, 1.5, true}},
	{sql: `INSERT INTO items (id, name) VALUES ($1, $2), ($3, $4)`, args: []any{2, "pear", 3, ""}},
	{sql: `SELECT * FROM items ORDER BY id`},
	{sql: `SELECT id, name FROM items WHERE id = $1`, args: []any{1}},
	{sql: `SELECT id, name FROM items WHERE id = $1`, args: []any{99}},
	{sql: `SELECT NULL::int AS n, ''::text AS e, 'x'::varchar(3) AS v, 1::int2 AS s, 2::int8 AS l, 3.5::float4 AS r, '2024-01-01'::date AS d, '12:00'::time AS tm, interval '1 day' AS iv, '00000000-0000-0000-0000-000000000001'::uuid AS u`},
	{sql: `SELECT g, md5(g::text) FROM generate_series(1, 2000) g`},
	{sql: `SELECT repeat('x', 200000) AS big`},
	{sql: `SELECT length($1::text)`, args: []any{strings.Repeat("y", 300000)}},
	{sql: `UPDATE items SET price = price * 2 WHERE id = $1 RETURNING id, price`, args: []any{1}},
	{sql: `BEGIN`},
	{sql: `INSERT INTO items (id, name) VALUES (10, 'in tx')`},
	{sql: `SAVEPOINT sp`},
	{sql: `SELECT 1/0`},
	{sql: `SELECT 1`},
	{sql: `ROLLBACK TO SAVEPOINT sp`},
	{sql: `SELECT count(*) FROM items`},
	{sql: `INSERT INTO items (id, name) VALUES (1, 'dup')`},
	{sql: `SELECT 1`},
	{sql: `ROLLBACK`},
	{sql: `SELECT count(*) FROM items`},
	{sql: `SELEC broken`},
	{sql: `SELECT * FROM no_such_table_anywhere`},
	{sql: `SELECT $1::int`, args: []any{"not a number"}},
	{sql: `DELETE FROM items WHERE id > $1`, args: []any{1}},
	{sql: `SHOW search_path`},
	{sql: `SET search_path TO pg_catalog, public`},
	{sql: `SHOW search_path`},
	{sql: `SELECT current_setting('application_name'), current_user, current_database()`},
	{sql: `DROP TABLE items`},
}

// runPgxScript runs the script on conn in mode and returns the transcript.
func runPgxScript(ctx context.Context, t *testing.T, conn *pgx.Conn, mode pgx.QueryExecMode) *transcript {
	t.Helper()
	tr := &transcript{}
	for _, st := range pgxScript {
		tr.add("> %s", st.sql)
		args := append([]any{mode}, st.args...)
		rows, err := conn.Query(ctx, st.sql, args...)
		if err != nil {
			tr.err(err)
		} else {
			recordRows(tr, rows)
		}
		tr.add("  tx %c", conn.PgConn().TxStatus())
	}
	runPgxBatch(ctx, tr, conn, mode)
	runMultiStatement(ctx, tr, conn)
	return tr
}

func recordRows(tr *transcript, rows pgx.Rows) {
	defer rows.Close()
	var cols []string
	for _, fd := range rows.FieldDescriptions() {
		cols = append(cols, fmt.Sprintf("%s:%d:%d", fd.Name, fd.DataTypeOID, fd.Format))
	}
	tr.add("  cols %s", strings.Join(cols, ","))
	n := 0
	for rows.Next() {
		vals, err := rows.Values()
		if err != nil {
			tr.add("  values error %v", err)
			continue
		}
		if n < 50 {
			tr.add("  row %s", clip(fmt.Sprintf("%v", vals)))
		}
		n++
	}
	tr.err(rows.Err())
	tr.add("  rows %d tag %q", n, rows.CommandTag().String())
}

func clip(s string) string {
	if len(s) > 200 {
		return fmt.Sprintf("%s...(%d bytes)", s[:200], len(s))
	}
	return s
}

// runPgxBatch pipelines several queries, one failing, in one round trip.
func runPgxBatch(ctx context.Context, tr *transcript, conn *pgx.Conn, mode pgx.QueryExecMode) {
	b := &pgx.Batch{}
	b.Queue("SELECT 1::int AS a")
	b.Queue("SELECT $1::text AS b", "two")
	b.Queue("SELECT 1/0")
	b.Queue("SELECT 4")
	br := conn.SendBatch(ctx, b)
	for i := 0; i < b.Len(); i++ {
		tr.add("> batch %d", i)
		rows, err := br.Query()
		if err != nil {
			tr.err(err)
			continue
		}
		recordRows(tr, rows)
	}
	tr.err(br.Close())
	tr.add("  tx %c", conn.PgConn().TxStatus())
	_ = mode
}

// runMultiStatement sends one simple Query holding several statements.
func runMultiStatement(ctx context.Context, tr *transcript, conn *pgx.Conn) {
	tr.add("> multi")
	results, err := conn.PgConn().Exec(ctx, "SELECT 1 AS x; SELECT 'a' AS y, 2 AS z; CREATE TEMP TABLE m(i int); INSERT INTO m VALUES (1),(2); DROP TABLE m").ReadAll()
	for _, r := range results {
		tr.add("  tag %q rows %v cols %d", r.CommandTag.String(), r.Rows, len(r.FieldDescriptions))
	}
	tr.err(err)
	_, err = conn.PgConn().Exec(ctx, "SELECT 1; SELECT 1/0; SELECT 3").ReadAll()
	tr.err(err)
	tr.add("  tx %c", conn.PgConn().TxStatus())
}

// TestPgwireDifferentialPgx runs the scripted session in every pgx
// QueryExecMode directly against PostgreSQL and through freshet, and
// compares what the client saw.
func TestPgwireDifferentialPgx(t *testing.T) {
	p := startProxy(t, pgwire.Config{})
	direct := testenv.PostgresURL(t)
	modes := []pgx.QueryExecMode{
		pgx.QueryExecModeCacheStatement, pgx.QueryExecModeCacheDescribe,
		pgx.QueryExecModeDescribeExec, pgx.QueryExecModeExec, pgx.QueryExecModeSimpleProtocol,
	}
	for _, mode := range modes {
		t.Run(mode.String(), func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			run := func(url string) *transcript {
				cfg, err := pgx.ParseConfig(url)
				if err != nil {
					t.Fatal(err)
				}
				cfg.DefaultQueryExecMode = mode
				conn, err := pgx.ConnectConfig(ctx, cfg)
				if err != nil {
					t.Fatal(err)
				}
				defer conn.Close(ctx)
				return runPgxScript(ctx, t, conn, mode)
			}
			diffTranscripts(t, run(direct), run(p.url(t, direct)))
		})
	}
}
