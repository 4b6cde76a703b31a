package integration

import (
	"context"
	"net/url"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/freshetdb/freshet/internal/testenv"
	"github.com/freshetdb/freshet/serve/pgwire"
	"github.com/jackc/pgx/v5"
)

// pgbenchDB creates a database of its own, initialised by pgbench -i
// directly against PostgreSQL, and returns its URL; it is dropped when the
// test ends.
func pgbenchDB(ctx context.Context, t testing.TB, scale string) string {
	t.Helper()
	db := ownDatabase(ctx, t, "pgbench")
	pgbench(ctx, t, "-i", "-q", "-s", scale, db)
	return db
}

// ownDatabase creates a database of the test's own, dropped at cleanup,
// and returns the superuser's URL of it: for what would disturb the
// other tests sharing the default one.
func ownDatabase(ctx context.Context, t testing.TB, prefix string) string {
	t.Helper()
	super := testenv.PostgresURL(t)
	conn, err := pgx.Connect(ctx, super)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	name := testenv.UniqueName(prefix)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c, err := pgx.Connect(ctx, super)
		if err != nil {
			t.Error(err)
			return
		}
		defer c.Close(ctx)
		if _, err := c.Exec(ctx, "DROP DATABASE "+name+" WITH (FORCE)"); err != nil {
			t.Error(err)
		}
	})
	u, _ := url.Parse(super)
	u.Path = "/" + name
	return u.String()
}

// pgbench runs the pgbench of the test environment and returns its output.
func pgbench(ctx context.Context, t testing.TB, args ...string) string {
	t.Helper()
	cmd := exec.CommandContext(ctx, filepath.Join(testenv.PostgresBinDir(t), "pgbench"), args...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("pgbench %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// TestPgwirePgbench runs pgbench's TPC-B-like script through freshet in
// each query mode: every transaction must complete, none may fail.
func TestPgwirePgbench(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	db := pgbenchDB(ctx, t, "1")
	p := startProxy(t, pgwire.Config{})
	for _, mode := range []string{"simple", "extended", "prepared"} {
		t.Run(mode, func(t *testing.T) {
			out := pgbench(ctx, t, "-n", "-c", "4", "-j", "2", "-t", "100", "-M", mode, p.url(t, db))
			for _, want := range []string{"query mode: " + mode, "number of transactions actually processed: 400/400", "number of failed transactions: 0"} {
				if !strings.Contains(out, want) {
					t.Fatalf("pgbench output lacks %q:\n%s", want, out)
				}
			}
		})
	}
}
