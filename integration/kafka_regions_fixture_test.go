package integration

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/freshetdb/freshet/internal/ingestnode"
	"github.com/freshetdb/freshet/internal/region"
	"github.com/freshetdb/freshet/internal/testenv"
	"github.com/freshetdb/freshet/schemas"
)

// kafkaFixture is `freshet ingest` and regional nodes (`freshet serve
// --region`), in this process, between the test environment's PostgreSQL
// and Kafka, over tables of their own.
type kafkaFixture struct {
	t       *testing.T
	name    string
	brokers []string
	super   *pgx.Conn
	ingest  *ingestnode.Node
	regions []*regionNode
}

type regionNode struct {
	node *region.Node
	addr string
}

// startKafkaRegions creates the tables with ddl ({name} is the unique
// prefix), starts an ingest publishing them and n regions, and waits
// until every region has a watermark past the tables' creation.
func startKafkaRegions(t *testing.T, tables []string, ddl string, n int, bound time.Duration) *kafkaFixture {
	t.Helper()
	return startKafkaRegionsWith(t, tables, ddl, n, bound, nil)
}

// startKafkaRegionsWith is startKafkaRegions with a last word on the
// ingest's Config.
func startKafkaRegionsWith(t *testing.T, tables []string, ddl string, n int, bound time.Duration, setup func(*ingestnode.Config)) *kafkaFixture {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	f := &kafkaFixture{t: t, name: testenv.UniqueName("kr"), brokers: testenv.KafkaBrokers(t)}
	super, err := pgx.Connect(ctx, testenv.PostgresURL(t))
	if err != nil {
		t.Fatal(err)
	}
	f.super = super
	if _, err := super.Exec(ctx, expand(ddl, f.name)); err != nil {
		t.Fatalf("ddl: %v", err)
	}
	var qualified []string
	for _, tbl := range tables {
		qualified = append(qualified, "public."+f.table(tbl))
	}
	runCtx, stop := context.WithCancel(context.Background())
	var done []chan error
	t.Cleanup(func() {
		stop()
		for _, d := range done {
			if err := <-d; err != nil {
				t.Errorf("node: %v", err)
			}
		}
		names := make([]string, len(tables))
		for i, tbl := range tables {
			names[i] = f.table(tbl)
		}
		testenv.DropSource(super, f.name+"_slot", f.name+"_pub", names...)
		super.Close(context.Background())
	})
	icfg := ingestnode.Config{
		Source: testenv.PostgresURL(t), Brokers: f.brokers, Topic: f.name, Partitions: 3,
		Slot: f.name + "_slot", Publication: f.name + "_pub", Tables: qualified,
		Heartbeat: 20 * time.Millisecond, StatusInterval: 100 * time.Millisecond, MinBackoff: 100 * time.Millisecond,
	}
	if setup != nil {
		setup(&icfg)
	}
	f.ingest, err = ingestnode.New(icfg)
	if err != nil {
		t.Fatal(err)
	}
	d := make(chan error, 1)
	done = append(done, d)
	go func() { d <- f.ingest.Run(runCtx) }()
	for i := range n {
		node, err := region.New(region.Config{
			Region: f.name + "_" + string(rune('a'+i)), Brokers: f.brokers, Topic: f.name,
			Origin: testenv.PostgresURL(t), Publication: f.name + "_pub", Listen: "127.0.0.1:0",
			CacheBytes: 16 << 20, StalenessBound: bound,
			CatalogInterval: -1, // other tests' DDL would purge the cache under this one
		})
		if err != nil {
			t.Fatal(err)
		}
		ready := make(chan string, 1)
		d := make(chan error, 1)
		done = append(done, d)
		go func() { d <- node.Run(runCtx, func(addr string) { ready <- addr }) }()
		select {
		case addr := <-ready:
			f.regions = append(f.regions, &regionNode{node: node, addr: addr})
		case <-ctx.Done():
			t.Fatal("region did not start")
		}
	}
	for _, r := range f.regions {
		f.catchUp(ctx, r)
	}
	return f
}

func (f *kafkaFixture) table(short string) string { return f.name + "_" + short }

// originLSN is the origin's current WAL position.
func originLSN(ctx context.Context, t *testing.T, c *pgx.Conn) schemas.Position {
	t.Helper()
	var lsn string
	if err := c.QueryRow(ctx, "SELECT pg_current_wal_lsn()::text").Scan(&lsn); err != nil {
		t.Fatal(err)
	}
	p, err := schemas.ParseLSN(lsn)
	if err != nil {
		t.Fatal(err)
	}
	return schemas.Position{LSN: p}
}

// catchUp waits until region r has applied everything committed at the
// origin so far.
func (f *kafkaFixture) catchUp(ctx context.Context, r *regionNode) {
	f.t.Helper()
	p := originLSN(ctx, f.t, f.super)
	for r.node.Materializer() == nil {
		time.Sleep(10 * time.Millisecond)
	}
	if !r.node.Materializer().WaitFor(ctx, p, 30*time.Second) {
		f.t.Fatalf("region's watermark did not reach %s; status %+v", p, r.node.Status())
	}
}

// connect opens a client connection to region r as the superuser.
func (f *kafkaFixture) connect(ctx context.Context, r *regionNode) *pgx.Conn {
	f.t.Helper()
	c, err := pgx.Connect(ctx, withHost(testenv.PostgresURL(f.t), r.addr))
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

// withHost points a postgres:// URL at addr.
func withHost(u, addr string) string {
	at := strings.Index(u, "@")
	rest := u[at+1:]
	end := strings.IndexAny(rest, "/?")
	return u[:at+1] + addr + rest[end:]
}
