package integration

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/freshetdb/freshet/connectors/postgres"
	"github.com/freshetdb/freshet/internal/embedded"
	"github.com/freshetdb/freshet/internal/front"
	"github.com/freshetdb/freshet/internal/testenv"
	"github.com/freshetdb/freshet/materialize"
	"github.com/freshetdb/freshet/serve/pgwire"
)

const clientsDDL = `CREATE TABLE {name}_t (id int PRIMARY KEY, v int); INSERT INTO {name}_t SELECT g, g FROM generate_series(1, 10) g`

// TestFreshetUpTLSAndLimits: `freshet up` with a certificate, TLS required
// and a connection limit (--tls-cert, --tls-key, --require-tls,
// --max-client-conns) refuses plaintext, serves cached reads over TLS
// that a client verifies against the CA, and refuses a connection over
// the limit.
func TestFreshetUpTLSAndLimits(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	ca := newTestCA(t)
	f := startUpWith(t, []string{"t"}, clientsDDL, materialize.Hooks{}, 5*time.Second, func(_ *upFixture, cfg *embedded.Config) {
		cfg.Clients = front.Clients{TLSCert: ca.certFile, TLSKey: ca.keyFile, RequireTLS: true, MaxConns: 2}
	})
	verified := withSSLMode(t, f.url(), "verify-full") + "&sslrootcert=" + url.QueryEscape(ca.caFile)

	if _, err := pgx.Connect(ctx, withSSLMode(t, f.url(), "disable")); pgCode(err) != pgwire.CodeInvalidAuthorization {
		t.Fatalf("plaintext: %v, want 28000", err)
	}
	c1 := mustConnect(ctx, t, verified)
	if _, ok := c1.PgConn().Conn().(*tls.Conn); !ok {
		t.Fatalf("connection is %T, not TLS", c1.PgConn().Conn())
	}
	readsAreCached(ctx, t, f, c1, 7)

	mustConnect(ctx, t, verified)
	if _, err := pgx.Connect(ctx, verified); pgCode(err) != pgwire.CodeTooManyConnections {
		t.Fatalf("a third connection over a limit of 2: %v, want 53300", err)
	}
}

// TestFreshetUpTransactionPooling: with an auth user and transaction
// pooling (--auth-url, --pool-mode transaction) freshet checks passwords
// itself, and two clients that take turns share one origin backend, which
// session mode never does.
func TestFreshetUpTransactionPooling(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	f := startUpWith(t, []string{"t"}, clientsDDL, materialize.Hooks{}, 5*time.Second, func(_ *upFixture, cfg *embedded.Config) {
		cfg.Clients = front.Clients{AuthURL: testenv.PostgresURL(t), TransactionPooling: true}
	})
	good := withHost(testenv.PostgresReplURL(t), f.addr)
	if _, err := pgx.Connect(ctx, withPassword(good, "wrong")); pgCode(err) != "28P01" {
		t.Fatalf("wrong password: %v, want 28P01", err)
	}
	// pgx's default mode: named statements, which no longer pin a client
	// to its backend.
	c1, c2 := mustConnect(ctx, t, good), mustConnect(ctx, t, good)
	pid := func(c *pgx.Conn) int {
		var p int
		if err := c.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&p); err != nil {
			t.Fatal(err)
		}
		return p
	}
	if p1, p2 := pid(c1), pid(c2); p1 != p2 {
		t.Fatalf("clients taking turns ran on backends %d and %d; transaction pooling shares one", p1, p2)
	}
}

// readsAreCached reads row id of the fixture's table t three times over c
// and wants the last two served from the cache.
func readsAreCached(ctx context.Context, t *testing.T, f *upFixture, c *pgx.Conn, id int) {
	t.Helper()
	m := f.node.Materializer()
	before := m.Stats().Hits
	for range 3 {
		var v int
		if err := c.QueryRow(ctx, "SELECT v FROM "+f.table("t")+" WHERE id = $1", id).Scan(&v); err != nil || v != id {
			t.Fatalf("read of row %d: %d, %v", id, v, err)
		}
	}
	if hits := m.Stats().Hits - before; hits < 2 {
		t.Fatalf("%d cache hits of 3 reads, want at least 2", hits)
	}
}

func mustConnect(ctx context.Context, t *testing.T, raw string) *pgx.Conn {
	t.Helper()
	c, err := pgx.Connect(ctx, raw)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

// TestOriginTLSFollowsTheURL: the relayed sessions reach the origin as
// the origin URL's sslmode says (front.OriginDialing, which freshet up and
// serve use): TLS verified against the cluster's certificate with
// verify-full, TLS with require and prefer (the test cluster offers it),
// plaintext with disable; verify-full against another CA refuses the
// session instead of going on in plaintext.
func TestOriginTLSFollowsTheURL(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	super := testenv.PostgresURL(t)
	for _, tt := range []struct {
		name, mode, rootCert string
		wantTLS, wantRefused bool
	}{
		{name: "verify-full", mode: "verify-full", rootCert: testenv.PostgresCA(t), wantTLS: true},
		{name: "require", mode: "require", wantTLS: true},
		{name: "prefer", mode: "prefer", wantTLS: true},
		{name: "disable", mode: "disable"},
		{name: "verify-full against another CA", mode: "verify-full", rootCert: newTestCA(t).caFile, wantRefused: true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			origin := withSSLMode(t, super, tt.mode)
			if tt.rootCert != "" {
				origin += "&sslrootcert=" + url.QueryEscape(tt.rootCert)
			}
			dialing, err := front.OriginDialing(origin)
			if err != nil {
				t.Fatal(err)
			}
			o, err := postgres.NewOrigin(dialing)
			if err != nil {
				t.Fatal(err)
			}
			p := startProxy(t, pgwire.Config{Connector: o})
			conn, err := pgx.Connect(ctx, p.url(t, super))
			if tt.wantRefused {
				if err == nil {
					conn.Close(ctx)
					t.Fatal("a session reached an origin whose certificate does not verify")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close(ctx)
			var ssl bool
			if err := conn.QueryRow(ctx, "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").Scan(&ssl); err != nil {
				t.Fatal(err)
			}
			if ssl != tt.wantTLS {
				t.Fatalf("the origin backend's connection uses TLS: %v, want %v", ssl, tt.wantTLS)
			}
		})
	}
}

// TestFreshetUpVerifiedAuthCaches: with an auth user in session mode
// (--auth-url), freshet checks the password itself and the reads are
// still cached, per role as always.
func TestFreshetUpVerifiedAuthCaches(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	f := startUpWith(t, []string{"t"}, clientsDDL, materialize.Hooks{}, 5*time.Second, func(_ *upFixture, cfg *embedded.Config) {
		cfg.Clients = front.Clients{AuthURL: testenv.PostgresURL(t)}
	})
	if _, err := pgx.Connect(ctx, withPassword(f.url(), "wrong")); pgCode(err) != "28P01" {
		t.Fatalf("wrong password: %v, want 28P01", err)
	}
	readsAreCached(ctx, t, f, mustConnect(ctx, t, f.url()), 4)
}

// TestFreshetUpUnixSocket: --listen given a socket path serves clients
// that name its directory and port, as libpq's do, cached reads included,
// and a socket file left behind by a process that is gone is replaced.
func TestFreshetUpUnixSocket(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dir := t.TempDir()
	sock := filepath.Join(dir, ".s.PGSQL.6499")
	stale, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	stale.(*net.UnixListener).SetUnlinkOnClose(false)
	_ = stale.Close() // the file stays, nothing answers
	f := startUpWith(t, []string{"t"}, clientsDDL, materialize.Hooks{}, 5*time.Second, func(_ *upFixture, cfg *embedded.Config) {
		cfg.Listen = sock
	})
	u, err := url.Parse(testenv.PostgresURL(t))
	if err != nil {
		t.Fatal(err)
	}
	pw, _ := u.User.Password()
	dsn := fmt.Sprintf("host=%s port=6499 user=%s password=%s dbname=%s sslmode=disable", dir, u.User.Username(), pw, strings.TrimPrefix(u.Path, "/"))
	c := mustConnect(ctx, t, dsn)
	if _, ok := c.PgConn().Conn().(*net.UnixConn); !ok {
		t.Fatalf("connection is %T, not a Unix socket", c.PgConn().Conn())
	}
	readsAreCached(ctx, t, f, c, 9)
}
