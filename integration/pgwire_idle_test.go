package integration

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/freshetdb/freshet/internal/testenv"
	"github.com/freshetdb/freshet/serve/pgwire"
	"github.com/jackc/pgx/v5/pgconn"
)

// idleClients is how many idle clients TestPgwireThousandIdleClients
// holds. In session mode each holds an origin backend: the test
// environment's PostgreSQL allows 1300 connections for this.
const idleClients = 1000

// TestPgwireThousandIdleClients holds 1,000 idle client connections
// through freshet while pgbench runs on top: pgbench must see no error
// and every idle client must still answer afterwards.
func TestPgwireThousandIdleClients(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	db := pgbenchDB(ctx, t, "1")
	p := startProxy(t, pgwire.Config{})
	url := p.url(t, testenv.PostgresURL(t))

	conns := make([]*pgconn.PgConn, idleClients)
	defer func() {
		for _, c := range conns {
			if c != nil {
				_ = c.Close(context.Background())
			}
		}
	}()
	var wg sync.WaitGroup
	errs := make(chan error, idleClients)
	sem := make(chan struct{}, 16)
	for i := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			c, err := pgconn.Connect(ctx, url)
			if err != nil {
				errs <- err
				return
			}
			conns[i] = c
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("opening %d idle clients: %v", idleClients, err)
	}
	if got := p.srv.Clients(); got < idleClients {
		t.Fatalf("freshet counts %d clients, want at least %d", got, idleClients)
	}

	out := pgbench(ctx, t, "-n", "-S", "-M", "prepared", "-c", "8", "-j", "2", "-t", "500", p.url(t, db))
	for _, want := range []string{"number of transactions actually processed: 4000/4000", "number of failed transactions: 0"} {
		if !strings.Contains(out, want) {
			t.Fatalf("pgbench with %d idle clients: output lacks %q:\n%s", idleClients, want, out)
		}
	}
	for i, c := range conns {
		if _, err := c.Exec(ctx, "SELECT 1").ReadAll(); err != nil {
			t.Fatalf("idle client %d after pgbench: %v", i, err)
		}
	}
}
