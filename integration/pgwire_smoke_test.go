package integration

import (
	"context"
	"testing"
	"time"

	"github.com/freshetdb/freshet/internal/testenv"
	"github.com/freshetdb/freshet/serve/pgwire"
	"github.com/jackc/pgx/v5"
)

func TestPgwireSmoke(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p := startProxy(t, pgwire.Config{})
	conn, err := pgx.Connect(ctx, p.url(t, testenv.PostgresURL(t)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var n int
	if err := conn.QueryRow(ctx, "select $1::int + 1", 41).Scan(&n); err != nil || n != 42 {
		t.Fatalf("got %d, %v", n, err)
	}
	t.Logf("server_version %s pid %d", conn.PgConn().ParameterStatus("server_version"), conn.PgConn().PID())
}
