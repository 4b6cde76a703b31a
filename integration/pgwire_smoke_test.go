package integration

import (
	"context"
	"testing"
	"time"

	"github.com/freshetdb/freshet/internal/testenv"
	"github.com/freshetdb/freshet/serve/pgwire"
	"github.com/jackc/pgx/v5"
)

// TestPgwireSmoke connects through freshet, runs a query, and checks the
// client got the origin's real ParameterStatus values.
func TestPgwireSmoke(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p := startProxy(t, pgwire.Config{})
	direct, err := pgx.Connect(ctx, testenv.PostgresURL(t))
	if err != nil {
		t.Fatal(err)
	}
	defer direct.Close(ctx)
	conn, err := pgx.Connect(ctx, p.url(t, testenv.PostgresURL(t)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var n int
	if err := conn.QueryRow(ctx, "select $1::int + 1", 41).Scan(&n); err != nil || n != 42 {
		t.Fatalf("got %d, %v", n, err)
	}
	for _, name := range []string{"server_version", "server_encoding", "client_encoding", "DateStyle", "TimeZone",
		"integer_datetimes", "standard_conforming_strings", "IntervalStyle", "is_superuser", "session_authorization"} {
		want, got := direct.PgConn().ParameterStatus(name), conn.PgConn().ParameterStatus(name)
		if want == "" || got != want {
			t.Errorf("ParameterStatus %s: through freshet %q, direct %q", name, got, want)
		}
	}
}
