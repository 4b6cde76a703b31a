package integration

import (
	"context"
	"testing"
	"time"

	"github.com/freshetdb/freshet/internal/testenv"
	"github.com/freshetdb/freshet/serve/pgwire"
	"github.com/jackc/pgx/v5"
)

// TestPgwireVerifiedAuth: with an auth query, freshet checks the client's
// SCRAM proof itself against the origin's verifier.
func TestPgwireVerifiedAuth(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p, _ := startPooledProxy(t, pgwire.Config{})
	good := p.url(t, testenv.PostgresReplURL(t))
	conn, err := pgx.Connect(ctx, good)
	if err != nil {
		t.Fatalf("right password refused: %v", err)
	}
	var user string
	if err := conn.QueryRow(ctx, "SELECT current_user").Scan(&user); err != nil || user != "freshet_repl" {
		t.Fatalf("current_user %q, %v", user, err)
	}
	_ = conn.Close(ctx)
	for name, url := range map[string]string{
		"wrong password": withPassword(good, "wrong"),
		"no such role":   withPassword(good, "x") + "&user=freshet_no_such_role",
	} {
		t.Run(name, func(t *testing.T) {
			_, err := pgx.Connect(ctx, url)
			if got := pgCode(err); got != "28P01" {
				t.Fatalf("got %v (SQLSTATE %q), want 28P01", err, got)
			}
		})
	}
}

// TestPgwirePoolReuse: a backend is reused by the next session of the same
// role after a reset that clears the previous session's state, and a
// wrong password never gets it.
func TestPgwirePoolReuse(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p, pool := startPooledProxy(t, pgwire.Config{})
	url := p.url(t, testenv.PostgresReplURL(t))

	c1, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	var pid1 int
	if err := c1.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid1); err != nil {
		t.Fatal(err)
	}
	for _, sql := range []string{"SET application_name = 'dirty'", "CREATE TEMP TABLE left_behind (i int)", "LISTEN left_behind", "PREPARE left_behind AS SELECT 1"} {
		if _, err := c1.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	_ = c1.Close(ctx)
	waitIdle(t, pool, 1)

	if _, err := pgx.Connect(ctx, withPassword(url, "wrong")); pgCode(err) != "28P01" {
		t.Fatalf("wrong password with an idle backend: %v", err)
	}
	if pool.Idle() != 1 {
		t.Fatalf("a failed login took the idle backend (idle %d)", pool.Idle())
	}

	c2, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close(ctx)
	var pid2, temps, listens, prepared int
	var app string
	err = c2.QueryRow(ctx, `SELECT pg_backend_pid(), current_setting('application_name'),
		(SELECT count(*) FROM pg_class WHERE relname = 'left_behind' AND relpersistence = 't'),
		(SELECT count(*) FROM pg_listening_channels()),
		(SELECT count(*) FROM pg_prepared_statements WHERE from_sql)`).Scan(&pid2, &app, &temps, &listens, &prepared)
	if err != nil {
		t.Fatal(err)
	}
	if pid2 != pid1 {
		t.Fatalf("backend %d not reused (got %d)", pid1, pid2)
	}
	if app == "dirty" || temps != 0 || listens != 0 || prepared != 0 {
		t.Fatalf("reset left state: application_name %q, temp tables %d, listens %d, prepared %d", app, temps, listens, prepared)
	}
}

// TestPgwirePoolNoReuseInTransaction: a client that leaves inside a
// transaction does not hand its backend to anyone.
func TestPgwirePoolNoReuseInTransaction(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p, pool := startPooledProxy(t, pgwire.Config{})
	c, err := pgx.Connect(ctx, p.url(t, testenv.PostgresReplURL(t)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Exec(ctx, "BEGIN"); err != nil {
		t.Fatal(err)
	}
	_ = c.Close(ctx)
	time.Sleep(300 * time.Millisecond)
	if pool.Idle() != 0 {
		t.Fatalf("a backend left in a transaction was pooled")
	}
}

// TestPgwireDifferentialPooled runs the pgx script through the verified,
// pooled front end, twice on the same backend, against direct.
func TestPgwireDifferentialPooled(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	p, pool := startPooledProxy(t, pgwire.Config{})
	direct := testenv.PostgresURL(t)
	run := func(url string) *transcript {
		conn, err := pgx.Connect(ctx, url)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		return runPgxScript(ctx, t, conn, pgx.QueryExecModeCacheStatement)
	}
	want := run(direct)
	diffTranscripts(t, want, run(p.url(t, direct)))
	waitIdle(t, pool, 1)
	diffTranscripts(t, want, run(p.url(t, direct)))
}

func waitIdle(t *testing.T, pool interface{ Idle() int }, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for pool.Idle() != n {
		if time.Now().After(deadline) {
			t.Fatalf("pool holds %d idle backends, want %d", pool.Idle(), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestPgwirePoolDropsEndedBackends: an origin backend that the origin
// ends while it waits idle in the pool (pg_terminate_backend here; a
// restart, a failover or idle_session_timeout alike) is not lent again:
// the next session or transaction gets a live one, and its client sees
// nothing, as under PgBouncer.
func TestPgwirePoolDropsEndedBackends(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	super, err := pgx.Connect(ctx, testenv.PostgresURL(t))
	if err != nil {
		t.Fatal(err)
	}
	defer super.Close(ctx)
	terminate := func(t *testing.T, pid int) {
		t.Helper()
		if _, err := super.Exec(ctx, "SELECT pg_terminate_backend($1)", pid); err != nil {
			t.Fatal(err)
		}
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			var n int
			if err := super.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE pid = $1", pid).Scan(&n); err != nil {
				t.Fatal(err)
			}
			if n == 0 {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("backend %d still there after pg_terminate_backend", pid)
			}
		}
	}
	backend := func(t *testing.T, c *pgx.Conn) int {
		t.Helper()
		var pid int
		if err := c.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid); err != nil {
			t.Fatalf("a query after the origin ended an idle pooled backend: %v", err)
		}
		return pid
	}
	for _, mode := range []pgwire.Mode{pgwire.SessionMode, pgwire.TransactionMode} {
		t.Run(map[pgwire.Mode]string{pgwire.SessionMode: "session", pgwire.TransactionMode: "transaction"}[mode], func(t *testing.T) {
			p, pool := startPooledProxy(t, pgwire.Config{Mode: mode})
			url := p.url(t, testenv.PostgresReplURL(t))
			c1, err := pgx.Connect(ctx, url)
			if err != nil {
				t.Fatal(err)
			}
			ended := backend(t, c1)
			if mode == pgwire.SessionMode {
				_ = c1.Close(ctx) // its backend goes back to the pool
			}
			terminate(t, ended)
			c2, err := pgx.Connect(ctx, url)
			if err != nil {
				t.Fatalf("a login after the origin ended an idle pooled backend: %v", err)
			}
			defer c2.Close(ctx)
			if pid := backend(t, c2); pid == ended {
				t.Fatalf("got the ended backend %d", pid)
			}
			if n := pool.Ended(); n != 1 {
				t.Errorf("the pool counted %d ended backends, want 1", n)
			}
			if mode == pgwire.TransactionMode {
				backend(t, c1)
				_ = c1.Close(ctx)
			}
		})
	}
}
