package integration

import (
	"context"
	"net"
	"net/url"
	"testing"
	"time"

	"github.com/freshetdb/freshet/connectors/postgres"
	"github.com/freshetdb/freshet/internal/front"
	"github.com/freshetdb/freshet/internal/testenv"
	"github.com/freshetdb/freshet/serve/pgwire"
)

// proxy is a freshet PostgreSQL front end running in the test, in front of
// the test environment's PostgreSQL.
type proxy struct {
	srv  *pgwire.Server
	addr string
}

// startProxy starts a front end on a loopback port; a nil cfg.Connector is
// filled in with the test origin, reached as its URL says (plaintext). It
// stops when the test ends.
func startProxy(t testing.TB, cfg pgwire.Config) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return startProxyOn(t, cfg, ln)
}

// startProxyOn starts a front end serving ln (relaying to the test
// origin unless cfg has a Connector), stopped at the test's end.
func startProxyOn(t testing.TB, cfg pgwire.Config, ln net.Listener) *proxy {
	t.Helper()
	if cfg.Connector == nil {
		dialing, err := front.OriginDialing(testenv.PostgresURL(t))
		if err != nil {
			t.Fatal(err)
		}
		origin, err := postgres.NewOrigin(dialing)
		if err != nil {
			t.Fatal(err)
		}
		cfg.Connector = origin
	}
	srv, err := pgwire.New(cfg)
	if err != nil {
		_ = ln.Close()
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(context.Background(), ln) }()
	t.Cleanup(func() {
		_ = srv.Close()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("pgwire server did not stop")
		}
	})
	return &proxy{srv: srv, addr: ln.Addr().String()}
}

// startPooledProxy starts a front end that authenticates clients itself
// against the origin's SCRAM verifiers (auth query as the superuser) and
// reuses reset backends through an OriginPool.
func startPooledProxy(t testing.TB, cfg pgwire.Config) (*proxy, *postgres.OriginPool) {
	t.Helper()
	aq, err := postgres.NewAuthQuery(postgres.AuthQueryConfig{URL: testenv.PostgresURL(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(aq.Close)
	pool, err := postgres.NewOriginPool(postgres.PoolConfig{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	cfg.Verifiers, cfg.Pool = aq, pool
	return startProxy(t, cfg), pool
}

// url rewrites a test-environment URL to go through the proxy.
func (p *proxy) url(t testing.TB, direct string) string {
	t.Helper()
	u, err := url.Parse(direct)
	if err != nil {
		t.Fatal(err)
	}
	u.Host = p.addr
	return u.String()
}

// withSSLMode returns raw with its sslmode replaced.
func withSSLMode(t testing.TB, raw, mode string) string {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("sslmode", mode)
	u.RawQuery = q.Encode()
	return u.String()
}
