package integration

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/freshetdb/freshet/internal/testenv"
	"github.com/freshetdb/freshet/serve/pgwire"
	"github.com/jackc/pgx/v5"
)

func connectMode(ctx context.Context, t *testing.T, url string, mode pgx.QueryExecMode) *pgx.Conn {
	t.Helper()
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	cfg.DefaultQueryExecMode = mode
	c, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close(context.Background()) })
	return c
}

func backendPID(ctx context.Context, t *testing.T, c *pgx.Conn) int {
	t.Helper()
	var pid int
	if err := c.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid); err != nil {
		t.Fatal(err)
	}
	return pid
}

// TestPgwireTransactionPooling: clients share backends between
// transactions; a transaction keeps its backend; SETs follow the client
// to whichever backend it gets; opaque state pins.
func TestPgwireTransactionPooling(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	p, _ := startPooledProxy(t, pgwire.Config{Mode: pgwire.TransactionMode})
	url := p.url(t, testenv.PostgresReplURL(t))

	t.Run("clients share backends", func(t *testing.T) {
		pids := map[int]bool{}
		for i := 0; i < 10; i++ {
			c := connectMode(ctx, t, url, pgx.QueryExecModeExec)
			pids[backendPID(ctx, t, c)] = true
		}
		if len(pids) > 2 {
			t.Fatalf("10 sequential clients used %d backends; transaction pooling shares them", len(pids))
		}
	})
	t.Run("a transaction keeps its backend", func(t *testing.T) {
		a := connectMode(ctx, t, url, pgx.QueryExecModeExec)
		b := connectMode(ctx, t, url, pgx.QueryExecModeExec)
		if _, err := a.Exec(ctx, "BEGIN"); err != nil {
			t.Fatal(err)
		}
		inTx := backendPID(ctx, t, a)
		if got := backendPID(ctx, t, b); got == inTx {
			t.Fatal("another client got the backend of an open transaction")
		}
		if got := backendPID(ctx, t, a); got != inTx {
			t.Fatalf("the transaction moved from backend %d to %d", inTx, got)
		}
		if _, err := a.Exec(ctx, "COMMIT"); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("settings follow the client", func(t *testing.T) {
		a := connectMode(ctx, t, url, pgx.QueryExecModeSimpleProtocol)
		b := connectMode(ctx, t, url, pgx.QueryExecModeSimpleProtocol)
		if _, err := a.Exec(ctx, "SET application_name = 'client_a'"); err != nil {
			t.Fatal(err)
		}
		if _, err := b.Exec(ctx, "SET TimeZone = 'Asia/Tokyo'"); err != nil {
			t.Fatal(err)
		}
		shared := false
		for i := 0; i < 10; i++ {
			var appA, tzA, appB, tzB string
			var pidA, pidB int
			if err := a.QueryRow(ctx, "SELECT current_setting('application_name'), current_setting('TimeZone'), pg_backend_pid()").Scan(&appA, &tzA, &pidA); err != nil {
				t.Fatal(err)
			}
			if err := b.QueryRow(ctx, "SELECT current_setting('application_name'), current_setting('TimeZone'), pg_backend_pid()").Scan(&appB, &tzB, &pidB); err != nil {
				t.Fatal(err)
			}
			shared = shared || pidA == pidB
			if appA != "client_a" || tzA == "Asia/Tokyo" || appB == "client_a" || tzB != "Asia/Tokyo" {
				t.Fatalf("round %d: a sees (%q, %q), b sees (%q, %q)", i, appA, tzA, appB, tzB)
			}
		}
		if !shared {
			t.Fatal("the two clients never shared a backend: replay was not exercised")
		}
	})
	t.Run("named statements do not pin", func(t *testing.T) {
		// pgx's default mode prepares a named statement per query.
		a := connectMode(ctx, t, url, pgx.QueryExecModeCacheStatement)
		b := connectMode(ctx, t, url, pgx.QueryExecModeCacheStatement)
		shared := false
		for i := 0; i < 10; i++ {
			var sumA, sumB, pidA, pidB int
			if err := a.QueryRow(ctx, "SELECT $1::int + 1, pg_backend_pid()", i).Scan(&sumA, &pidA); err != nil {
				t.Fatal(err)
			}
			if err := b.QueryRow(ctx, "SELECT $1::int * 10, pg_backend_pid()", i).Scan(&sumB, &pidB); err != nil {
				t.Fatal(err)
			}
			if sumA != i+1 || sumB != i*10 {
				t.Fatalf("round %d: a got %d, b got %d", i, sumA, sumB)
			}
			shared = shared || pidA == pidB
		}
		if !shared {
			t.Fatal("two clients with named statements never shared a backend: they were pinned")
		}
		// a's statements reach a backend that never saw them: b holds
		// the idle one in a transaction.
		if _, err := b.Exec(ctx, "BEGIN"); err != nil {
			t.Fatal(err)
		}
		held := backendPID(ctx, t, b)
		var sum, pid int
		if err := a.QueryRow(ctx, "SELECT $1::int + 1, pg_backend_pid()", 41).Scan(&sum, &pid); err != nil || sum != 42 || pid == held {
			t.Fatalf("a beside b's transaction: %d on backend %d (b holds %d), %v", sum, pid, held, err)
		}
		if _, err := b.Exec(ctx, "COMMIT"); err != nil {
			t.Fatal(err)
		}
		// Errors and Close behave as on one backend.
		if _, err := a.Prepare(ctx, "broken", "SELEC 1"); pgCode(err) != "42601" {
			t.Fatalf("a statement that does not parse: %v, want 42601", err)
		}
		if _, err := a.Prepare(ctx, "double", "SELECT $1::int * 2"); err != nil {
			t.Fatal(err)
		}
		if res := a.PgConn().ExecPrepared(ctx, "double", [][]byte{[]byte("21")}, nil, nil).Read(); res.Err != nil || string(res.Rows[0][0]) != "42" {
			t.Fatalf("the named statement: %q, %v", res.Rows, res.Err)
		}
		// The error names the client's statement, as PostgreSQL's does,
		// not the backend's.
		if _, err := a.PgConn().Prepare(ctx, "double", "SELECT 3", nil); pgCode(err) != "42P05" || !strings.Contains(err.Error(), `prepared statement "double" already exists`) {
			t.Fatalf("a second Parse of a name in use: %v, want 42P05 naming \"double\"", err)
		}
		if err := a.Deallocate(ctx, "double"); err != nil {
			t.Fatal(err)
		}
		if res := a.PgConn().ExecPrepared(ctx, "double", [][]byte{[]byte("21")}, nil, nil).Read(); pgCode(res.Err) != "26000" {
			t.Fatalf("the statement after its Close: %v, want 26000", res.Err)
		}
		if err := a.QueryRow(ctx, "SELECT $1::int + 1", 1).Scan(&sum); err != nil || sum != 2 {
			t.Fatalf("after the errors: %d, %v", sum, err)
		}
	})
	t.Run("the unnamed statement follows the client", func(t *testing.T) {
		// lib/pq's way: Parse-Describe, then Bind-Execute in the next
		// request, which may get another backend, or one that holds
		// another client's unnamed statement.
		a := connectMode(ctx, t, url, pgx.QueryExecModeExec)
		b := connectMode(ctx, t, url, pgx.QueryExecModeExec)
		if _, err := a.PgConn().Prepare(ctx, "", "SELECT $1::int + 1", nil); err != nil {
			t.Fatal(err)
		}
		for i := range 5 {
			if _, err := b.PgConn().Prepare(ctx, "", "SELECT $1::int * 10, 'b'", nil); err != nil {
				t.Fatal(err)
			}
			res := a.PgConn().ExecPrepared(ctx, "", [][]byte{[]byte(strconv.Itoa(i))}, nil, nil).Read()
			if res.Err != nil || len(res.Rows) != 1 || len(res.Rows[0]) != 1 || string(res.Rows[0][0]) != strconv.Itoa(i+1) {
				t.Fatalf("round %d: a's unnamed statement gave %q, %v; want %d", i, res.Rows, res.Err, i+1)
			}
		}
		// A simple Query destroys the unnamed statement, as on PostgreSQL.
		if _, err := a.Exec(ctx, "SELECT 1", pgx.QueryExecModeSimpleProtocol); err != nil {
			t.Fatal(err)
		}
		if res := a.PgConn().ExecPrepared(ctx, "", [][]byte{[]byte("1")}, nil, nil).Read(); pgCode(res.Err) != "26000" {
			t.Fatalf("the unnamed statement after a simple Query: %q, %v; want 26000", res.Rows, res.Err)
		}
	})
	t.Run("backends keep a bounded number of statements", func(t *testing.T) {
		a := connectMode(ctx, t, url, pgx.QueryExecModeExec)
		const n = 1100                                  // past maxBackendStatements (1000)
		if _, err := a.Exec(ctx, "BEGIN"); err != nil { // one backend throughout
			t.Fatal(err)
		}
		for i := range n {
			if _, err := a.Prepare(ctx, fmt.Sprintf("s%d", i), fmt.Sprintf("SELECT %d AS bounded", i)); err != nil {
				t.Fatal(err)
			}
		}
		var kept int
		if err := a.QueryRow(ctx, "SELECT count(*) FROM pg_prepared_statements WHERE name LIKE 'freshet\\_%'").Scan(&kept); err != nil {
			t.Fatal(err)
		}
		if kept > 1000 || kept < 900 {
			t.Fatalf("the backend holds %d of freshet's statements, want at most 1000 (and most of them)", kept)
		}
		if _, err := a.Exec(ctx, "COMMIT"); err != nil {
			t.Fatal(err)
		}
		// The first ones were closed on the backend; the client's names
		// still work.
		for _, i := range []int{0, n - 1} {
			res := a.PgConn().ExecPrepared(ctx, fmt.Sprintf("s%d", i), nil, nil, nil).Read()
			if res.Err != nil || string(res.Rows[0][0]) != fmt.Sprint(i) {
				t.Fatalf("statement s%d: %q, %v", i, res.Rows, res.Err)
			}
		}
	})
	t.Run("temp table pins", func(t *testing.T) {
		a := connectMode(ctx, t, url, pgx.QueryExecModeSimpleProtocol)
		b := connectMode(ctx, t, url, pgx.QueryExecModeSimpleProtocol)
		if _, err := a.Exec(ctx, "CREATE TEMP TABLE pinned_here (i int)"); err != nil {
			t.Fatal(err)
		}
		pid := backendPID(ctx, t, a)
		for i := 0; i < 5; i++ {
			if got := backendPID(ctx, t, b); got == pid {
				t.Fatal("a pinned backend served another client")
			}
			if _, err := a.Exec(ctx, "INSERT INTO pinned_here VALUES (1)"); err != nil {
				t.Fatalf("temp table lost: %v", err)
			}
		}
	})
	t.Run("listen pins and notifications arrive", func(t *testing.T) {
		a := connectMode(ctx, t, url, pgx.QueryExecModeSimpleProtocol)
		b := connectMode(ctx, t, url, pgx.QueryExecModeSimpleProtocol)
		ch := testenv.UniqueName("ch")
		if _, err := a.Exec(ctx, "LISTEN "+ch); err != nil {
			t.Fatal(err)
		}
		if _, err := b.Exec(ctx, "NOTIFY "+ch+", 'hi'"); err != nil {
			t.Fatal(err)
		}
		wctx, wcancel := context.WithTimeout(ctx, 5*time.Second)
		defer wcancel()
		n, err := a.WaitForNotification(wctx)
		if err != nil || n.Payload != "hi" {
			t.Fatalf("notification: %+v, %v", n, err)
		}
	})
}

// TestPgwireTransactionPoolingDifferential runs the pgx script through
// transaction pooling in every exec mode, named statements (CacheStatement,
// the default) included.
func TestPgwireTransactionPoolingDifferential(t *testing.T) {
	p, _ := startPooledProxy(t, pgwire.Config{Mode: pgwire.TransactionMode})
	direct := testenv.PostgresURL(t)
	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeExec, pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeCacheStatement,
		pgx.QueryExecModeCacheDescribe, pgx.QueryExecModeDescribeExec} {
		t.Run(mode.String(), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			run := func(url string) *transcript {
				return runPgxScript(ctx, t, connectMode(ctx, t, url, mode), mode)
			}
			diffTranscripts(t, run(direct), run(p.url(t, direct)))
		})
	}
}

// TestPgwireTransactionPoolingPgbench runs pgbench through transaction
// pooling with more clients than backends are busy.
func TestPgwireTransactionPoolingPgbench(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	db := pgbenchDB(ctx, t, "1")
	p, _ := startPooledProxy(t, pgwire.Config{Mode: pgwire.TransactionMode})
	for _, mode := range []string{"simple", "extended", "prepared"} {
		t.Run(mode, func(t *testing.T) {
			out := pgbench(ctx, t, "-n", "-c", "8", "-j", "2", "-t", "100", "-M", mode, p.url(t, db))
			for _, want := range []string{"number of transactions actually processed: 800/800", "number of failed transactions: 0"} {
				if !strings.Contains(out, want) {
					t.Fatalf("pgbench output lacks %q:\n%s", want, out)
				}
			}
		})
	}
}
