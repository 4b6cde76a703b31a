package integration

import (
	"context"
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
// transaction pooling in the exec modes that use unnamed statements
// (named ones pin, which the session-mode tests already cover).
func TestPgwireTransactionPoolingDifferential(t *testing.T) {
	p, _ := startPooledProxy(t, pgwire.Config{Mode: pgwire.TransactionMode})
	direct := testenv.PostgresURL(t)
	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeExec, pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeCacheStatement} {
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
