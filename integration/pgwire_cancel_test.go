package integration

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/freshetdb/freshet/internal/testenv"
	"github.com/freshetdb/freshet/serve/pgwire"
	"github.com/jackc/pgx/v5"
)

// TestPgwireCancel cancels a pg_sleep from the client: the CancelRequest
// carries freshet's key, freshet forwards the origin's, and the client
// gets the origin's 57014 on a connection that stays usable.
func TestPgwireCancel(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p := startProxy(t, pgwire.Config{})
	conn, err := pgx.Connect(ctx, p.url(t, testenv.PostgresURL(t)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var originPID uint32
	if err := conn.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&originPID); err != nil {
		t.Fatal(err)
	}
	if originPID == conn.PgConn().PID() {
		t.Fatalf("the client sees the origin's pid %d: BackendKeyData was not replaced", originPID)
	}
	cancelAfter(ctx, t, conn, 300*time.Millisecond)
	start := time.Now()
	_, err = conn.Exec(ctx, "SELECT pg_sleep(20)")
	if got := pgCode(err); got != "57014" {
		t.Fatalf("pg_sleep: got %v (SQLSTATE %q), want 57014 after %v", err, got, time.Since(start))
	}
	var one int
	if err := conn.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil || one != 1 {
		t.Fatalf("connection unusable after cancel: %v", err)
	}
}

// cancelAfter sends c's CancelRequest after d, as a client cancelling a
// long query does.
func cancelAfter(ctx context.Context, t *testing.T, c *pgx.Conn, d time.Duration) {
	go func() {
		time.Sleep(d)
		if err := c.PgConn().CancelRequest(ctx); err != nil {
			t.Errorf("cancel request: %v", err)
		}
	}()
}

// TestPgwireClientVanishes drops a client in the middle of a long query:
// freshet must cancel it on the origin and close the backend.
func TestPgwireClientVanishes(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p := startProxy(t, pgwire.Config{})
	conn, err := pgx.Connect(ctx, p.url(t, testenv.PostgresURL(t)))
	if err != nil {
		t.Fatal(err)
	}
	var originPID uint32
	if err := conn.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&originPID); err != nil {
		t.Fatal(err)
	}
	// Send the query and drop the socket without a Terminate.
	raw := conn.PgConn().Conn()
	if _, err := raw.Write([]byte("Q\x00\x00\x00\x18SELECT pg_sleep(600)\x00")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	_ = raw.(*net.TCPConn).SetLinger(0)
	_ = raw.Close()

	super, err := pgx.Connect(ctx, testenv.PostgresURL(t))
	if err != nil {
		t.Fatal(err)
	}
	defer super.Close(ctx)
	deadline := time.Now().Add(10 * time.Second)
	for {
		var n int
		if err := super.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE pid = $1", originPID).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("origin backend %d still there 10 s after its client vanished", originPID)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
