package integration

import (
	"context"
	"net/url"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/freshetdb/freshet/internal/embedded"
	"github.com/freshetdb/freshet/internal/front"
	"github.com/freshetdb/freshet/internal/testenv"
	"github.com/freshetdb/freshet/materialize"
)

// TestFreshetUpPoolSize: with --pool-size, transaction-pooled clients
// never hold more origin backends than the size, however many run
// transactions at once (the rest wait their turn); cached reads and
// logins need no backend, so they are answered while every backend is
// taken; a client
// that waits past --pool-wait-timeout is refused with 53300; one that
// cancels its request while it waits gets 57014 for it and goes on, and
// one that hangs up stops waiting, their requests never run.
func TestFreshetUpPoolSize(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	reg := prometheus.NewRegistry()
	f := startUpWith(t, []string{"t"}, clientsDDL, materialize.Hooks{}, 5*time.Second, func(_ *upFixture, cfg *embedded.Config) {
		cfg.Registerer = reg
		cfg.Clients = front.Clients{AuthURL: testenv.PostgresURL(t), TransactionPooling: true,
			PoolSize: 2, PoolWaitTimeout: time.Second}
	})
	app := f.name + "_app" // these clients' origin backends, in pg_stat_activity
	through := f.url() + "&application_name=" + url.QueryEscape(app)
	backends := func() int {
		var n int
		if err := f.super.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1", app).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}

	t.Run("eight clients share two backends", func(t *testing.T) {
		clients := make([]*pgx.Conn, 8)
		for i := range clients {
			clients[i] = mustConnect(ctx, t, through)
		}
		stop := make(chan struct{})
		peak := make(chan int, 1)
		go func() {
			most := 0
			for {
				select {
				case <-stop:
					peak <- most
					return
				case <-time.After(2 * time.Millisecond):
					most = max(most, backends())
				}
			}
		}()
		var wg sync.WaitGroup
		errs := make(chan error, len(clients))
		for _, c := range clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range 5 {
					// A transaction holds its backend to the end.
					tx, err := c.Begin(ctx)
					if err == nil {
						_, err = tx.Exec(ctx, "SELECT pg_sleep(0.02)")
					}
					if err == nil {
						err = tx.Commit(ctx)
					}
					if err != nil {
						errs <- err
						return
					}
				}
			}()
		}
		wg.Wait()
		close(stop)
		close(errs)
		for err := range errs {
			t.Errorf("transaction: %v", err)
		}
		if most := <-peak; most != 2 {
			t.Errorf("at most %d origin backends at once, want exactly the pool size, 2", most)
		}
		if got := metricValue(t, reg, "freshet_origin_pool_wait_seconds", map[string]string{"outcome": "got"}); got == 0 {
			t.Error("no client waited for a backend, yet eight ran transactions on two")
		}
	})

	t.Run("cached reads need no backend, the rest wait and give up", func(t *testing.T) {
		reader := mustConnect(ctx, t, through)
		readsAreCached(ctx, t, f, reader, 3)
		primer := connectMode(ctx, t, through, pgx.QueryExecModeSimpleProtocol)
		readsAreCached(ctx, t, f, primer, 4)
		var holders []pgx.Tx
		for range 2 {
			tx, err := mustConnect(ctx, t, through).Begin(ctx)
			if err == nil {
				_, err = tx.Exec(ctx, "SELECT 1")
			}
			if err != nil {
				t.Fatal(err)
			}
			holders = append(holders, tx)
		}
		if n := backends(); n != 2 {
			t.Fatalf("%d origin backends with two transactions open, want 2", n)
		}
		readsAreCached(ctx, t, f, reader, 3)
		if v := metricValue(t, reg, "freshet_origin_pool_open", nil); v != 2 {
			t.Errorf("freshet_origin_pool_open = %v, want 2", v)
		}
		// A login is greeted as the last backend opened for its
		// parameters was, and takes none: a client that arrives now is
		// served from the cache (the simple protocol prepares nothing).
		newcomer := connectMode(ctx, t, through, pgx.QueryExecModeSimpleProtocol)
		readsAreCached(ctx, t, f, newcomer, 4)
		waiter, leaver, canceller := mustConnect(ctx, t, through), mustConnect(ctx, t, through), mustConnect(ctx, t, through)
		waiting := func() float64 { return metricValue(t, reg, "freshet_origin_pool_waiting", nil) }
		waitFor := func(n float64) {
			for deadline := time.Now().Add(5 * time.Second); waiting() != n; time.Sleep(5 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatalf("freshet_origin_pool_waiting = %v, want %v", waiting(), n)
				}
			}
		}
		insert := func(id int) string {
			return "INSERT INTO " + f.table("t") + " VALUES (" + strconv.Itoa(id) + ", 0)"
		}

		// A client cancels its write while it waits: the wait ends with
		// 57014, as a cancelled statement does, the session goes on, and
		// the write never reaches the origin. Through the simple protocol
		// and the extended one (pgx prepares the statement with args).
		for _, write := range []func() error{
			func() error { _, err := canceller.Exec(ctx, insert(101)); return err },
			func() error {
				_, err := canceller.Exec(ctx, "INSERT INTO "+f.table("t")+" VALUES ($1, 0)", 102)
				return err
			},
		} {
			cancelled := make(chan error, 1)
			go func() { cancelled <- write() }()
			waitFor(1)
			if err := canceller.PgConn().CancelRequest(ctx); err != nil {
				t.Fatal(err)
			}
			select {
			case err := <-cancelled:
				if code := pgCode(err); code != "57014" {
					t.Fatalf("a write cancelled while it waited: %v (code %q), want 57014", err, code)
				}
			case <-time.After(700 * time.Millisecond):
				t.Fatal("the cancelled write still waits")
			}
			waitFor(0)
			if canceller.IsClosed() {
				t.Fatal("the cancel ended the session, not only its request")
			}
		}

		start := time.Now()
		_, err := waiter.Exec(ctx, "SELECT pg_backend_pid()")
		if code := pgCode(err); code != "53300" {
			t.Fatalf("a query with every backend taken: %v (code %q), want 53300 after the wait timeout", err, code)
		}
		if waited := time.Since(start); waited < time.Second {
			t.Errorf("refused after %s, want the 1s pool wait timeout", waited)
		}
		if got := metricValue(t, reg, "freshet_origin_pool_wait_seconds", map[string]string{"outcome": "gave_up"}); got == 0 {
			t.Error("the wait that timed out was not counted")
		}

		// A client that sends a write and hangs up while it waits: the
		// wait ends, and the write never reaches the origin.
		raw := leaver.PgConn().Conn()
		sql := insert(100) + "\x00"
		q := append([]byte{'Q', 0, 0, 0, byte(4 + len(sql))}, sql...)
		if _, err := raw.Write(q); err != nil {
			t.Fatal(err)
		}
		waitFor(1)
		_ = raw.Close()
		hungUp := time.Now()
		waitFor(0)
		if took := time.Since(hungUp); took > 700*time.Millisecond {
			t.Errorf("the wait ended %s after its client hung up, want well before the 1s wait timeout", took)
		}

		for _, tx := range holders {
			if err := tx.Commit(ctx); err != nil {
				t.Fatal(err)
			}
		}
		late := mustConnect(ctx, t, through)
		if _, err := late.Exec(ctx, "SELECT pg_backend_pid()"); err != nil {
			t.Fatalf("a query once the transactions ended: %v", err)
		}
		if _, err := canceller.Exec(ctx, "SELECT pg_backend_pid()"); err != nil {
			t.Fatalf("a query of the client whose requests were cancelled, once the transactions ended: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
		var n int
		if err := f.super.QueryRow(ctx, "SELECT count(*) FROM "+f.table("t")+" WHERE id IN (100, 101, 102)").Scan(&n); err != nil || n != 0 {
			t.Fatalf("rows of the writes cancelled or abandoned while waiting: %d, %v; want 0", n, err)
		}

		// The origin ends the idle backends (as a restart does): the next
		// transaction gets a new one, and the pool counts those it closed.
		var ended int
		if err := f.super.QueryRow(ctx, "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1 AND state = 'idle'", app).Scan(&ended); err != nil || ended == 0 {
			t.Fatalf("ended %d idle backends: %v", ended, err)
		}
		for deadline := time.Now().Add(5 * time.Second); backends() > 0; time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatal("the ended backends are still there")
			}
		}
		if _, err := late.Exec(ctx, "SELECT pg_backend_pid()"); err != nil {
			t.Fatalf("a query after the origin ended the idle backends: %v", err)
		}
		if got := metricValue(t, reg, "freshet_origin_pool_ended_total", nil); got < 1 {
			t.Errorf("freshet_origin_pool_ended_total = %v after %d idle backends were ended, want at least 1", got, ended)
		}
	})
}
