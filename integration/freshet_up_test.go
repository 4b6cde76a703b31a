package integration

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/freshetdb/freshet/internal/embedded"
	"github.com/freshetdb/freshet/internal/testenv"
	"github.com/freshetdb/freshet/materialize"
	"github.com/freshetdb/freshet/schemas"
)

// upFixture is an embedded freshet (the `freshet up` wiring) in front of
// the test environment's PostgreSQL, over tables of its own.
type upFixture struct {
	t      *testing.T
	name   string
	origin string // the superuser's URL of the origin database
	super  *pgx.Conn
	node   *embedded.Node
	addr   string

	stopOnce sync.Once
	stop     context.CancelFunc
	done     chan error
	runErr   error
}

// stopNode stops the node as SIGTERM stops `freshet up`, and returns
// what Run returned, once it did.
func (f *upFixture) stopNode() error {
	f.stopOnce.Do(func() {
		f.stop()
		f.runErr = <-f.done
	})
	return f.runErr
}

// startUp creates the tables with ddl ({name} is the unique prefix) and
// starts an embedded freshet publishing them.
func startUp(t *testing.T, tables []string, ddl string, hooks materialize.Hooks, bound time.Duration) *upFixture {
	t.Helper()
	return startUpWith(t, tables, ddl, hooks, bound, nil)
}

// startUpWith is startUp with a last word on the node's Config; setup
// runs after the DDL ({name} replaced), with the superuser connection.
func startUpWith(t *testing.T, tables []string, ddl string, hooks materialize.Hooks, bound time.Duration, setup func(f *upFixture, cfg *embedded.Config)) *upFixture {
	t.Helper()
	return startUpAt(t, testenv.PostgresURL(t), tables, ddl, hooks, bound, setup)
}

// startUpAt is startUpWith against the database of origin, a superuser's
// URL.
func startUpAt(t *testing.T, origin string, tables []string, ddl string, hooks materialize.Hooks, bound time.Duration, setup func(f *upFixture, cfg *embedded.Config)) *upFixture {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	f := &upFixture{t: t, name: testenv.UniqueName("up"), origin: origin}
	super, err := pgx.Connect(ctx, origin)
	if err != nil {
		t.Fatal(err)
	}
	f.super = super
	if _, err := super.Exec(ctx, strings.ReplaceAll(ddl, "{name}", f.name)); err != nil {
		t.Fatalf("ddl: %v", err)
	}
	var qualified []string
	for _, tbl := range tables {
		qualified = append(qualified, "public."+f.table(tbl))
	}
	cfg := embedded.Config{
		Origin: origin, Listen: "127.0.0.1:0", Slot: f.name + "_slot", Publication: f.name + "_pub",
		Tables: qualified, Heartbeat: 20 * time.Millisecond, StalenessBound: bound, Hooks: hooks,
		CacheBytes: 64 << 20,
		// Other tests create tables in the same database all the time:
		// a periodic reload would purge this cache under the test.
		CatalogInterval: -1,
	}
	if setup != nil {
		setup(f, &cfg)
	}
	node, err := embedded.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	f.node = node
	runCtx, stop := context.WithCancel(context.Background())
	ready := make(chan string, 1)
	done := make(chan error, 1)
	f.stop, f.done = stop, done
	go func() { done <- node.Run(runCtx, func(addr string) { ready <- addr }) }()
	t.Cleanup(func() {
		if err := f.stopNode(); err != nil {
			t.Errorf("freshet: %v", err)
		}
		bg := context.Background()
		for range 50 {
			if _, err := super.Exec(bg, `SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1`, f.name+"_slot"); err == nil {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		_, _ = super.Exec(bg, "DROP PUBLICATION IF EXISTS "+f.name+"_pub")
		for _, tbl := range tables {
			_, _ = super.Exec(bg, "DROP TABLE IF EXISTS "+f.table(tbl)+" CASCADE")
		}
		super.Close(bg)
	})
	select {
	case f.addr = <-ready:
	case err := <-done:
		done <- err // for the cleanup's stopNode
		t.Fatalf("freshet up: %v", err)
	case <-ctx.Done():
		t.Fatal("freshet up did not start")
	}
	f.waitWatermark(ctx)
	return f
}

func (f *upFixture) table(short string) string { return f.name + "_" + short }

// url is the superuser's URL pointed at freshet.
func (f *upFixture) url() string { return withHost(f.origin, f.addr) }

func (f *upFixture) connect(ctx context.Context) *pgx.Conn {
	f.t.Helper()
	c, err := pgx.Connect(ctx, f.url())
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

// waitWatermark waits until freshet has applied everything committed at
// the origin so far.
func (f *upFixture) waitWatermark(ctx context.Context) {
	f.t.Helper()
	var lsn string
	if err := f.super.QueryRow(ctx, "SELECT pg_current_wal_lsn()::text").Scan(&lsn); err != nil {
		f.t.Fatal(err)
	}
	p, err := schemas.ParseLSN(lsn)
	if err != nil {
		f.t.Fatal(err)
	}
	if !f.node.Materializer().WaitFor(ctx, schemas.Position{LSN: p}, 20*time.Second) {
		f.t.Fatalf("watermark did not reach %s", lsn)
	}
}
