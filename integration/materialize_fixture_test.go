package integration

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/freshetdb/freshet/connectors/memory"
	"github.com/freshetdb/freshet/connectors/postgres"
	"github.com/freshetdb/freshet/ingest"
	"github.com/freshetdb/freshet/internal/testenv"
	"github.com/freshetdb/freshet/materialize"
	"github.com/freshetdb/freshet/materialize/analyze"
	"github.com/freshetdb/freshet/materialize/cache"
	"github.com/freshetdb/freshet/schemas"
)

// matFixture is an origin table set streamed through the real change
// capture (slot, pgoutput, pipeline, memory bus) into a Materializer.
type matFixture struct {
	t    *testing.T
	name string
	pool *pgxpool.Pool // the replication role: owns the tables
	m    *materialize.Materializer
	pos  postgres.Positions
}

// startMaterializer creates the tables with ddl (use {name} for the
// unique prefix), sets up a publication and slot for them and starts
// capture into a materializer configured by cfg.
func startMaterializer(t *testing.T, tables []string, ddl string, cfg materialize.Config) *matFixture {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	f := &matFixture{t: t, name: testenv.UniqueName("mat")}
	pool, err := pgxpool.New(ctx, testenv.PostgresReplURL(t))
	if err != nil {
		t.Fatal(err)
	}
	f.pool = pool
	f.pos = postgres.Positions{DB: pool}
	pcfg := postgres.Config{
		URL: testenv.PostgresReplURL(t), Name: "origin", Slot: f.name + "_slot", Publication: f.name + "_pub",
		StatusInterval: 100 * time.Millisecond, ReceiveTimeout: 20 * time.Second,
		HeartbeatInterval: 20 * time.Millisecond, LagInterval: time.Second,
	}
	for _, tbl := range tables {
		pcfg.Tables = append(pcfg.Tables, "public."+f.table(tbl))
	}
	if _, err := pool.Exec(ctx, expand(ddl, f.name)); err != nil {
		t.Fatalf("ddl: %v", err)
	}
	super, err := pgx.Connect(ctx, testenv.PostgresURL(t))
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(context.Background())
	done := make(chan struct{}, 2)
	t.Cleanup(func() {
		stop()
		<-done
		<-done
		ctx := context.Background()
		for range 50 {
			if _, err := super.Exec(ctx, `SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1`, pcfg.Slot); err == nil {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		_, _ = super.Exec(ctx, "DROP PUBLICATION IF EXISTS "+pcfg.Publication)
		for _, tbl := range tables {
			_, _ = super.Exec(ctx, "DROP TABLE IF EXISTS "+f.table(tbl)+" CASCADE")
		}
		super.Close(ctx)
		f.m.Close()
		pool.Close()
	})
	report, err := postgres.Setup(ctx, pcfg, schemas.Position{})
	if err != nil {
		t.Fatalf("setup: %v", err)
	}
	var published []string
	for _, tr := range report.Tables {
		published = append(published, tr.Schema+"."+tr.Table)
	}
	loader, err := postgres.NewCatalogLoader(postgres.CatalogConfig{DB: pool})
	if err != nil {
		t.Fatal(err)
	}
	cfg.Visibility = postgres.Visibility{DB: pool}
	cfg.Loader = materialize.PublishedLoader{Loader: loader, Published: published}
	if f.m, err = materialize.New(cfg); err != nil {
		t.Fatal(err)
	}
	if err := f.m.LoadCatalog(ctx); err != nil {
		t.Fatal(err)
	}
	reader, err := postgres.NewReader(pcfg)
	if err != nil {
		t.Fatal(err)
	}
	bus, err := memory.New(memory.Config{})
	if err != nil {
		t.Fatal(err)
	}
	sub := bus.Subscribe()
	pipe, err := ingest.New(ingest.Config{Source: reader, Bus: bus, Name: pcfg.Name})
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		defer func() { done <- struct{}{} }()
		if err := pipe.Run(runCtx); err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("pipeline: %v", err)
		}
	}()
	go func() {
		defer func() { done <- struct{}{} }()
		if err := f.m.Run(runCtx, sub); err != nil {
			t.Errorf("materializer: %v", err)
		}
	}()
	f.catchUp(ctx)
	return f
}

func expand(ddl, name string) string { return strings.ReplaceAll(ddl, "{name}", name) }

func (f *matFixture) table(short string) string { return f.name + "_" + short }

// catchUp waits until the materializer has applied everything committed
// at the origin so far.
func (f *matFixture) catchUp(ctx context.Context) {
	f.t.Helper()
	p, err := f.pos.CurrentPosition(ctx)
	if err != nil {
		f.t.Fatal(err)
	}
	if !f.m.WaitFor(ctx, p, 20*time.Second) {
		f.t.Fatalf("watermark did not reach %s", p)
	}
}

// read answers sql with params through the materializer the way a front
// end does: a hit is the stored bytes; a miss asks the origin and fills.
// The response is the first column of the only row, as text.
func (f *matFixture) read(ctx context.Context, fence schemas.Position, sql string, params ...string) (string, bool, error) {
	res := f.m.Analyze(analyze.Input{SQL: sql, Role: "freshet_repl", Session: analyze.SessionKnown})
	if !res.Cacheable {
		f.t.Fatalf("%s: %s %s", sql, res.Reason, res.Detail)
	}
	k := cache.Key{Database: "postgres", Role: "freshet_repl", Statement: sql}
	p := &materialize.Params{}
	args := make([]any, len(params))
	for i, v := range params {
		k.Params = append(k.Params, []byte(v))
		p.Values = append(p.Values, []byte(v))
		args[i] = v
	}
	q := &materialize.Query{Key: cache.AppendKey(nil, &k), Analysis: res, Params: p, Fence: fence}
	e, tk, _ := f.m.Get(ctx, q)
	if e != nil {
		return string(e.Response()), true, nil
	}
	var out string
	err := f.pool.QueryRow(ctx, sql, args...).Scan(&out)
	if err != nil {
		f.m.Abandon(tk)
		return "", false, err
	}
	if tk != nil {
		f.m.Put(tk, []byte(out))
	}
	return out, false, nil
}
