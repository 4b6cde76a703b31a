package postgres_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/freshetdb/freshet/connectors/memory"
	"github.com/freshetdb/freshet/connectors/postgres"
	"github.com/freshetdb/freshet/ingest"
	"github.com/freshetdb/freshet/internal/testenv"
	"github.com/freshetdb/freshet/schemas"
	"github.com/jackc/pgx/v5"
)

// fixture is one source under test: its names, a superuser and a
// replication-role connection for the workload, and cleanup of the slot and
// publication.
type fixture struct {
	t     *testing.T
	name  string
	cfg   postgres.Config
	super *pgx.Conn
	repl  *pgx.Conn
}

func newFixture(t *testing.T, tables ...string) *fixture {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	name := testenv.UniqueName("cdc")
	f := &fixture{t: t, name: name}
	f.super = mustConnect(ctx, t, testenv.PostgresURL(t))
	f.repl = mustConnect(ctx, t, testenv.PostgresReplURL(t))
	f.cfg = postgres.Config{
		URL: testenv.PostgresReplURL(t), Name: "origin", Slot: name + "_slot", Publication: name + "_pub",
		StatusInterval: 100 * time.Millisecond, ReceiveTimeout: 20 * time.Second, LagInterval: 200 * time.Millisecond,
	}
	for _, tbl := range tables {
		f.cfg.Tables = append(f.cfg.Tables, "public."+f.table(tbl))
	}
	t.Cleanup(func() {
		ctx := context.Background()
		// The walsender may take a moment to let go of the slot.
		for range 50 {
			if _, err := f.super.Exec(ctx, `SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1`, f.cfg.Slot); err == nil {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		_, _ = f.super.Exec(ctx, `DROP PUBLICATION IF EXISTS `+f.cfg.Publication)
		f.super.Close(ctx)
		f.repl.Close(ctx)
	})
	return f
}

// table is the unique name of the test's table short.
func (f *fixture) table(short string) string { return f.name + "_" + short }

func (f *fixture) exec(ctx context.Context, sql string, args ...any) {
	f.t.Helper()
	if _, err := f.repl.Exec(ctx, sql, args...); err != nil {
		f.t.Fatalf("%s: %v", sql, err)
	}
}

func mustConnect(ctx context.Context, t *testing.T, url string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	return conn
}

// running is a pipeline streaming into a memory bus.
type running struct {
	pipe *ingest.Pipeline
	sub  *memory.Subscription
	errc chan error
	stop context.CancelFunc

	once sync.Once
	err  error
}

// wait returns the pipeline's result once it ends.
func (r *running) wait() error {
	r.once.Do(func() { r.err = <-r.errc })
	return r.err
}

func (f *fixture) start(t *testing.T, from schemas.Position) *running {
	t.Helper()
	_, r := f.startReader(t, from)
	return r
}

func (f *fixture) startReader(t *testing.T, from schemas.Position) (*postgres.Reader, *running) {
	t.Helper()
	reader, err := postgres.NewReader(f.cfg)
	if err != nil {
		t.Fatal(err)
	}
	bus, err := memory.New(memory.Config{})
	if err != nil {
		t.Fatal(err)
	}
	pipe, err := ingest.New(ingest.Config{Source: reader, Bus: bus, Name: f.cfg.Name, From: from})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{pipe: pipe, sub: bus.Subscribe(), errc: make(chan error, 1), stop: cancel}
	go func() { r.errc <- pipe.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		var reset *ingest.ResetError
		if err := r.wait(); err != nil && !errors.Is(err, context.Canceled) && !errors.As(err, &reset) {
			t.Errorf("pipeline: %v", err)
		}
	})
	return reader, r
}

// collect reads batches until until says stop, failing after the deadline.
func (r *running) collect(t *testing.T, timeout time.Duration, until func([]schemas.Change) bool) []schemas.Change {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var got []schemas.Change
	for !until(got) {
		b, err := r.sub.Next(ctx)
		if err != nil {
			t.Fatalf("waiting for changes: %v (after %d changes)", err, len(got))
		}
		got = append(got, b.Changes...)
	}
	return got
}

// confirmedFlush reads the slot's confirmed_flush_lsn.
func (f *fixture) confirmedFlush(ctx context.Context) schemas.LSN {
	f.t.Helper()
	var s string
	if err := f.super.QueryRow(ctx, `SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1`, f.cfg.Slot).Scan(&s); err != nil {
		f.t.Fatalf("read confirmed_flush_lsn: %v", err)
	}
	lsn, err := schemas.ParseLSN(s)
	if err != nil {
		f.t.Fatal(err)
	}
	return lsn
}
