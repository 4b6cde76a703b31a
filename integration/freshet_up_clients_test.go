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
	m := f.node.Materializer()
	q := "SELECT v FROM " + f.table("t") + " WHERE id = $1"
	for range 3 {
		var v int
		if err := c1.QueryRow(ctx, q, 7).Scan(&v); err != nil || v != 7 {
			t.Fatalf("read over TLS: %d, %v", v, err)
		}
	}
	if hits := m.Stats().Hits; hits < 2 {
		t.Errorf("%d cache hits over TLS, want at least 2 of 3 reads", hits)
	}

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
	u, err := url.Parse(testenv.PostgresReplURL(t))
	if err != nil {
		t.Fatal(err)
	}
	u.Host = f.addr
	good := u.String()
	if _, err := pgx.Connect(ctx, withPassword(good, "wrong")); pgCode(err) != "28P01" {
		t.Fatalf("wrong password: %v, want 28P01", err)
	}
	// pgx's default statement cache parses named statements, which pin a
	// client to its backend; the unnamed statement does not.
	c1, c2 := connectMode(ctx, t, good, pgx.QueryExecModeExec), connectMode(ctx, t, good, pgx.QueryExecModeExec)
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
	c := mustConnect(ctx, t, f.url())
	m := f.node.Materializer()
	before := m.Stats().Hits
	q := "SELECT v FROM " + f.table("t") + " WHERE id = $1"
	for range 3 {
		var v int
		if err := c.QueryRow(ctx, q, 4).Scan(&v); err != nil || v != 4 {
			t.Fatalf("read: %d, %v", v, err)
		}
	}
	if hits := m.Stats().Hits - before; hits < 2 {
		t.Fatalf("%d cache hits of 3 reads with verified authentication, want at least 2", hits)
	}
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
	m := f.node.Materializer()
	before := m.Stats().Hits
	q := "SELECT v FROM " + f.table("t") + " WHERE id = $1"
	for range 3 {
		var v int
		if err := c.QueryRow(ctx, q, 9).Scan(&v); err != nil || v != 9 {
			t.Fatalf("read over the socket: %d, %v", v, err)
		}
	}
	if hits := m.Stats().Hits - before; hits < 2 {
		t.Fatalf("%d cache hits of 3 reads over the socket, want at least 2", hits)
	}
}
