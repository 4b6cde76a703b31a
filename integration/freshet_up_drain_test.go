package integration

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/freshetdb/freshet/internal/embedded"
	"github.com/freshetdb/freshet/internal/front"
	"github.com/freshetdb/freshet/internal/testenv"
	"github.com/freshetdb/freshet/materialize"
	"github.com/freshetdb/freshet/serve/pgwire"
)

// TestFreshetUpDrainsClients: a node told to stop (SIGTERM) with a
// shutdown timeout refuses new clients, ends an idle session (one parked
// in the event loop answering cache hits included) with 57P01, answers a
// query in flight before ending its session, and lets a transaction go on
// to its COMMIT, which lands, before ending that session too; then it
// stops, well before the timeout. In session mode, over TLS, and with
// transaction pooling.
func TestFreshetUpDrainsClients(t *testing.T) {
	for _, mode := range []string{"session mode", "TLS", "transaction pooling"} {
		t.Run(mode, func(t *testing.T) { testDrain(t, mode) })
	}
}

func testDrain(t *testing.T, mode string) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const timeout = 30 * time.Second
	pooled := mode == "transaction pooling"
	var ca *testCA
	f := startUpWith(t, []string{"t"}, clientsDDL, materialize.Hooks{}, 5*time.Second, func(f *upFixture, cfg *embedded.Config) {
		cfg.Clients = front.Clients{ShutdownTimeout: timeout}
		switch mode {
		case "TLS":
			ca = newTestCA(t)
			cfg.Clients.TLSCert, cfg.Clients.TLSKey, cfg.Clients.RequireTLS = ca.certFile, ca.keyFile, true
		case "transaction pooling":
			cfg.Clients.AuthURL, cfg.Clients.TransactionPooling = testenv.PostgresURL(t), true
			u, err := url.Parse(testenv.PostgresReplURL(t))
			if err != nil {
				t.Fatal(err)
			}
			f.superExec(context.Background(), "GRANT SELECT, UPDATE ON "+f.table("t")+" TO "+pgx.Identifier{u.User.Username()}.Sanitize())
		}
	})
	login := f.url()
	switch mode {
	case "TLS":
		login = withSSLMode(t, login, "verify-full") + "&sslrootcert=" + url.QueryEscape(ca.caFile)
	case "transaction pooling":
		login = withHost(testenv.PostgresReplURL(t), f.addr)
	}
	connect := func() *pgx.Conn {
		if pooled {
			return connectMode(ctx, t, login, pgx.QueryExecModeExec)
		}
		return mustConnect(ctx, t, login)
	}
	idle, busy, inTx := connect(), connect(), connect()
	if !pooled {
		readsAreCached(ctx, t, f, idle, 3)
		readsAreCached(ctx, t, f, idle, 3) // parked in the event loop by now
	}
	tx, err := inTx.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	f.mustTxExec(ctx, tx, "UPDATE {t} SET v = 100 WHERE id = 4")
	slept := make(chan error, 1)
	go func() {
		_, err := busy.Exec(ctx, "SELECT pg_sleep(0.5)")
		slept <- err
	}()
	time.Sleep(100 * time.Millisecond) // the sleep reached the origin

	if err := f.node.Ready(); err != nil {
		t.Fatalf("serving node not ready: %v", err)
	}
	start := time.Now()
	stopped := make(chan error, 1)
	go func() { stopped <- f.stopNode() }()
	refusesClients(ctx, t, login)
	if err := f.node.Ready(); !errors.Is(err, front.ErrStopping) {
		t.Fatalf("draining node's readiness: %v, want %v", err, front.ErrStopping)
	}

	if err := <-slept; err != nil {
		t.Fatalf("the query in flight at the drain: %v", err)
	}
	f.mustTxExec(ctx, tx, "UPDATE {t} SET v = 100 WHERE id = 5")
	if err := tx.Commit(ctx); err != nil {
		t.Fatalf("COMMIT during the drain: %v", err)
	}
	for name, c := range map[string]*pgx.Conn{"idle": idle, "answered": busy, "committed": inTx} {
		if _, err := c.Exec(ctx, "SELECT 1"); pgCode(err) != pgwire.CodeAdminShutdown {
			t.Errorf("%s session after the drain: %v, want 57P01", name, err)
		}
	}
	select {
	case err := <-stopped:
		if err != nil {
			t.Fatalf("freshet: %v", err)
		}
	case <-time.After(timeout / 2):
		t.Fatal("freshet did not stop once every session had ended")
	}
	t.Logf("drained and stopped in %v", time.Since(start).Round(time.Millisecond))
	var n int
	if err := f.super.QueryRow(ctx, f.sql("SELECT count(*) FROM {t} WHERE v = 100")).Scan(&n); err != nil || n != 2 {
		t.Fatalf("%d rows of the drained transaction committed, want 2 (%v)", n, err)
	}
}

// TestFreshetUpDrainTimeout: a transaction still open when the shutdown
// timeout is up is ended with its session, and rolls back.
func TestFreshetUpDrainTimeout(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const timeout = time.Second
	f := startUpWith(t, []string{"t"}, clientsDDL, materialize.Hooks{}, 5*time.Second, func(_ *upFixture, cfg *embedded.Config) {
		cfg.Clients = front.Clients{ShutdownTimeout: timeout}
	})
	c := mustConnect(ctx, t, f.url())
	tx, err := c.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	f.mustTxExec(ctx, tx, "UPDATE {t} SET v = 100 WHERE id = 4")
	start := time.Now()
	if err := f.stopNode(); err != nil {
		t.Fatalf("freshet: %v", err)
	}
	if took := time.Since(start); took < timeout || took > timeout+10*time.Second {
		t.Fatalf("stopped in %v with a shutdown timeout of %v", took, timeout)
	}
	if err := tx.Commit(ctx); err == nil {
		t.Fatal("a COMMIT after the shutdown timeout succeeded")
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		var n int
		if err := f.super.QueryRow(ctx, f.sql("SELECT count(*) FROM {t} WHERE v = 100")).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			break // rolled back
		}
		if time.Now().After(deadline) {
			t.Fatal("the transaction cut off at the timeout is still visible")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// refusesClients waits until connecting to raw fails without reaching a
// session (the listener is closed).
func refusesClients(ctx context.Context, t *testing.T, raw string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := pgx.Connect(ctx, raw)
		if err != nil {
			var pe *pgconn.PgError
			if errors.As(err, &pe) {
				t.Fatalf("a client connecting during the drain got %v, want no connection", err)
			}
			return
		}
		c.Close(ctx)
		if time.Now().After(deadline) {
			t.Fatal("still accepting clients 10s into the drain")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// sql replaces {t} with the fixture's table t.
func (f *upFixture) sql(q string) string { return strings.ReplaceAll(q, "{t}", f.table("t")) }

func (f *upFixture) mustTxExec(ctx context.Context, tx pgx.Tx, q string) {
	f.t.Helper()
	if _, err := tx.Exec(ctx, f.sql(q)); err != nil {
		f.t.Fatalf("%s: %v", q, err)
	}
}

// TestFreshetUpProcessDrainsOnSIGTERM: the `freshet up` binary reports
// /ready while it serves; on SIGTERM it turns unready, lets an open
// transaction commit, ends the session with 57P01 and exits 0.
func TestFreshetUpProcessDrainsOnSIGTERM(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	bin := buildFreshet(t)
	super, name, table := processSource(ctx, t, "updrain", 10)
	listen, admin := freePort(t), freePort(t)
	up := startChild(t, bin, "up", "up", "--origin", testenv.PostgresURL(t), "--listen", listen, "--metrics", admin,
		"--slot", name+"_slot", "--publication", name+"_pub", "--shutdown-timeout", "60s")
	waitReady(ctx, t, admin, http.StatusOK, 60*time.Second)
	if code, body := httpGet(ctx, t, "http://"+admin+"/queries"); code != http.StatusOK || !strings.HasPrefix(body, "[") {
		t.Fatalf("/queries: %d %q, want a JSON list", code, body)
	}

	c := mustConnect(ctx, t, withHost(testenv.PostgresURL(t), listen))
	_, metrics := httpGet(ctx, t, "http://"+admin+"/metrics")
	for _, want := range []string{"\nfreshet_pgwire_clients 1\n", "\nfreshet_pgwire_startups_total{result=\"ok\"} 1\n"} {
		if !strings.Contains(metrics, want) {
			t.Fatalf("/metrics lacks %q:\n%s", want, grepLines(metrics, "freshet_pgwire_"))
		}
	}
	tx, err := c.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "UPDATE "+table+" SET ver = 1 WHERE id = 1"); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := up.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitReady(ctx, t, admin, http.StatusServiceUnavailable, 10*time.Second)
	if err := tx.Commit(ctx); err != nil {
		t.Fatalf("COMMIT during the drain: %v", err)
	}
	if _, err := c.Exec(ctx, "SELECT 1"); pgCode(err) != pgwire.CodeAdminShutdown {
		t.Fatalf("after the drain: %v, want 57P01", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- up.cmd.Wait() }()
	select {
	case err := <-exited:
		up.cmd = nil // reaped
		if err != nil {
			t.Fatalf("freshet up exited with %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("freshet up still running 30s after its last session ended")
	}
	t.Logf("SIGTERM to exit: %v", time.Since(start).Round(time.Millisecond))
	var ver int
	if err := super.QueryRow(ctx, "SELECT ver FROM "+table+" WHERE id = 1").Scan(&ver); err != nil || ver != 1 {
		t.Fatalf("the transaction committed during the drain: ver %d, %v; want 1", ver, err)
	}
}

// waitReady waits until the node's /ready answers code.
func waitReady(ctx context.Context, t *testing.T, admin string, code int, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	last := "no answer"
	for time.Now().Before(deadline) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+admin+"/ready", nil)
		if err != nil {
			t.Fatal(err)
		}
		if resp, err := http.DefaultClient.Do(req); err == nil {
			body, _ := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			if resp.StatusCode == code {
				return
			}
			last = fmt.Sprintf("%d %s", resp.StatusCode, body)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("/ready did not answer %d within %v; last: %s", code, within, last)
}

// httpGet returns the status and body of a GET of u.
func httpGet(ctx context.Context, t *testing.T, u string) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(body)
}
