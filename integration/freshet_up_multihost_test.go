package integration

import (
	"context"
	"net/url"
	"testing"
	"time"

	"github.com/freshetdb/freshet/internal/embedded"
	"github.com/freshetdb/freshet/internal/testenv"
	"github.com/freshetdb/freshet/materialize"
)

// TestFreshetUpMultiHostOrigin: an origin URL listing several hosts
// (libpq's host=a,b) whose first cannot be reached: relayed sessions go to
// the next, as freshet's own connections do, reads are cached, and a
// client's cancel reaches the host its backend runs on.
func TestFreshetUpMultiHostOrigin(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	u, err := url.Parse(testenv.PostgresURL(t))
	if err != nil {
		t.Fatal(err)
	}
	u.Host = freePort(t) + "," + u.Host // nothing listens on the first
	f := startUpWith(t, []string{"t"}, clientsDDL, materialize.Hooks{}, 5*time.Second, func(_ *upFixture, cfg *embedded.Config) {
		cfg.Origin = u.String()
	})
	c := f.connect(ctx)
	readsAreCached(ctx, t, f, c, 6)
	cancelAfter(ctx, t, c, 300*time.Millisecond)
	start := time.Now()
	_, err = c.Exec(ctx, "SELECT pg_sleep(20)")
	if code := pgCode(err); code != "57014" {
		t.Fatalf("pg_sleep cancelled by the client: %v (SQLSTATE %q), want 57014 from the origin", err, code)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("the cancel took %v", took)
	}
	var one int
	if err := c.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil || one != 1 {
		t.Fatalf("the session after its cancel: %d, %v", one, err)
	}
}
