package integration

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/freshetdb/freshet/internal/testenv"
	"github.com/freshetdb/freshet/serve/pgwire"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgproto3"
)

// TestPgwireLimits checks each limit ends the session with its SQLSTATE.
func TestPgwireLimits(t *testing.T) {
	t.Run("max client connections", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		p := startProxy(t, pgwire.Config{MaxClientConns: 2})
		url := p.url(t, testenv.PostgresURL(t))
		for i := 0; i < 2; i++ {
			c, err := pgx.Connect(ctx, url)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close(ctx)
		}
		_, err := pgx.Connect(ctx, url)
		if got := pgCode(err); got != pgwire.CodeTooManyConnections {
			t.Fatalf("third client: %v (SQLSTATE %q), want 53300", err, got)
		}
	})
	t.Run("idle timeout", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		p := startProxy(t, pgwire.Config{IdleTimeout: 300 * time.Millisecond})
		c, err := pgx.Connect(ctx, p.url(t, testenv.PostgresURL(t)))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close(ctx)
		// A query running longer than the idle timeout is not idleness.
		if _, err := c.Exec(ctx, "SELECT pg_sleep(0.6)"); err != nil {
			t.Fatalf("a busy session was cut by the idle timeout: %v", err)
		}
		time.Sleep(700 * time.Millisecond)
		_, err = c.Exec(ctx, "SELECT 1")
		if got := pgCode(err); got != pgwire.CodeIdleSessionTimeout {
			t.Fatalf("after idling: %v (SQLSTATE %q), want 57P05", err, got)
		}
	})
	t.Run("statement timeout", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		p := startProxy(t, pgwire.Config{StatementTimeout: 300 * time.Millisecond})
		c, err := pgx.Connect(ctx, p.url(t, testenv.PostgresURL(t)))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close(ctx)
		_, err = c.Exec(ctx, "SELECT pg_sleep(20)")
		if got := pgCode(err); got != "57014" {
			t.Fatalf("long statement: %v (SQLSTATE %q), want 57014", err, got)
		}
		var one int
		if err := c.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil {
			t.Fatalf("session unusable after statement timeout: %v", err)
		}
	})
	t.Run("max message size", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		p := startProxy(t, pgwire.Config{MaxMessageSize: 64 << 10})
		c, err := pgx.Connect(ctx, p.url(t, testenv.PostgresURL(t)))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close(ctx)
		if _, err := c.Exec(ctx, "SELECT length($1::text)", strings.Repeat("a", 32<<10)); err != nil {
			t.Fatalf("a message under the limit: %v", err)
		}
		_, err = c.Exec(ctx, "SELECT length($1::text)", strings.Repeat("a", 128<<10))
		if got := pgCode(err); got != pgwire.CodeProtocolViolation {
			t.Fatalf("a message over the limit: %v (SQLSTATE %q), want 08P01", err, got)
		}
	})
	t.Run("protocol violation after startup", func(t *testing.T) {
		p := startProxy(t, pgwire.Config{})
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c, err := pgx.Connect(ctx, p.url(t, testenv.PostgresURL(t)))
		if err != nil {
			t.Fatal(err)
		}
		raw := c.PgConn().Conn()
		if _, err := raw.Write([]byte{'z', 0, 0, 0, 4}); err != nil {
			t.Fatal(err)
		}
		fe := pgproto3.NewFrontend(raw, raw)
		_ = raw.SetDeadline(time.Now().Add(5 * time.Second))
		var code string
		for {
			msg, err := fe.Receive()
			if err != nil {
				break
			}
			if e, ok := msg.(*pgproto3.ErrorResponse); ok {
				code = e.Code
			}
		}
		if code != pgwire.CodeProtocolViolation {
			t.Fatalf("got SQLSTATE %q, want 08P01", code)
		}
	})
}
