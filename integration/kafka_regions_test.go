package integration

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	kafkago "github.com/segmentio/kafka-go"
)

// TestKafkaRegionsFreshAndReadYourWrites: two regional nodes fed through
// Kafka both return an origin write's new value, a write through a region
// followed by a read through the same region sees the write every time,
// and reads are answered from each region's cache.
func TestKafkaRegionsFreshAndReadYourWrites(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	f := startKafkaRegions(t, []string{"kv"}, `
		CREATE TABLE {name}_kv (id int PRIMARY KEY, v int NOT NULL);
		INSERT INTO {name}_kv SELECT g, 0 FROM generate_series(1, 10) g;`, 2, 0)
	sel := "SELECT v FROM " + f.table("kv") + " WHERE id = $1"
	for ri, r := range f.regions {
		c := f.connect(ctx, r)
		for i := 1; i <= 60; i++ {
			id := 1 + i%5
			val := ri*1000 + i
			if _, err := c.Exec(ctx, "UPDATE "+f.table("kv")+" SET v = $1 WHERE id = $2", val, id); err != nil {
				t.Fatal(err)
			}
			var got int
			if err := c.QueryRow(ctx, sel, id).Scan(&got); err != nil {
				t.Fatal(err)
			}
			if got != val {
				t.Fatalf("region %d, iteration %d: read %d after writing %d through the same region", ri, i, got, val)
			}
			for range 2 { // rows 6..10 are never written: hits
				if err := c.QueryRow(ctx, sel, 6+i%5).Scan(&got); err != nil || got != 0 {
					t.Fatalf("row %d: %d, %v", 6+i%5, got, err)
				}
			}
		}
	}
	// A write at the origin reaches both regions, whose caches held the
	// old value.
	readers := []*pgx.Conn{f.connect(ctx, f.regions[0]), f.connect(ctx, f.regions[1])}
	for round := 1; round <= 5; round++ {
		for _, c := range readers {
			for range 2 {
				var v int
				if err := c.QueryRow(ctx, sel, 7).Scan(&v); err != nil || v != (round-1)*100 {
					t.Fatalf("round %d: read %d, %v; want %d", round, v, err, (round-1)*100)
				}
			}
		}
		if _, err := f.super.Exec(ctx, "UPDATE "+f.table("kv")+" SET v = $1 WHERE id = 7", round*100); err != nil {
			t.Fatal(err)
		}
		for ri, c := range readers {
			deadline := time.Now().Add(30 * time.Second)
			for v := -1; v != round*100; {
				if err := c.QueryRow(ctx, sel, 7).Scan(&v); err != nil {
					t.Fatal(err)
				}
				if time.Now().After(deadline) {
					t.Fatalf("region %d still returns %d, 30s after the origin wrote %d", ri, v, round*100)
				}
			}
		}
	}
	for _, r := range f.regions {
		if s := r.node.Materializer().Stats(); s.Hits == 0 || s.Fills == 0 {
			t.Errorf("region %s: %d hits, %d fills: the cache was not used", r.addr, s.Hits, s.Fills)
		}
	}
}

// TestKafkaRegionsIdleWatermark: with no writes at the origin, every
// region's watermark still moves (heartbeats become progress markers) and
// no region turns stale.
func TestKafkaRegionsIdleWatermark(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	f := startKafkaRegions(t, []string{"idle"}, `CREATE TABLE {name}_idle (id int PRIMARY KEY);`, 2, 2*time.Second)
	type mark struct {
		pos string
		at  time.Time
	}
	first := make([]mark, len(f.regions))
	for i, r := range f.regions {
		w := r.node.Status().Watermark
		first[i] = mark{w.Position, w.CommitTime}
	}
	time.Sleep(time.Second)
	for i, r := range f.regions {
		deadline := time.Now().Add(20 * time.Second)
		for {
			w := r.node.Status().Watermark
			if w.Set && w.Position != first[i].pos && w.CommitTime.After(first[i].at) && !w.Stale {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("region %d: watermark stuck at %+v (was %+v)", i, w, first[i])
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	_ = ctx
}

// TestKafkaRegionMalformedRecord: a record in the topic that does not
// decode but names its table is logged, counted and skipped; the region
// invalidates that table's cached results and keeps serving.
func TestKafkaRegionMalformedRecord(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	f := startKafkaRegions(t, []string{"m"}, `
		CREATE TABLE {name}_m (id int PRIMARY KEY, v int NOT NULL);
		INSERT INTO {name}_m VALUES (1, 10);`, 1, 0)
	r := f.regions[0]
	m := r.node.Materializer()
	c := f.connect(ctx, r)
	sel := "SELECT v FROM " + f.table("m") + " WHERE id = $1"
	read := func(wantHit bool) {
		t.Helper()
		before := m.Stats().Hits
		var v int
		if err := c.QueryRow(ctx, sel, 1).Scan(&v); err != nil || v != 10 {
			t.Fatalf("read: %d, %v", v, err)
		}
		if hit := m.Stats().Hits > before; hit != wantHit {
			t.Fatalf("hit = %v, want %v; stats %+v", hit, wantHit, m.Stats())
		}
	}
	read(false)
	read(true)
	w := &kafkago.Writer{Addr: kafkago.TCP(f.brokers...), Topic: f.name, RequiredAcks: kafkago.RequireAll, BatchTimeout: time.Millisecond,
		Balancer: kafkago.BalancerFunc(func(kafkago.Message, ...int) int { return 0 })}
	defer func() { _ = w.Close() }()
	bad := kafkago.Message{Headers: []kafkago.Header{{Key: "freshet-kind", Value: []byte("change")}},
		Value: []byte(`{"source":{"schema":"public","table":"` + f.table("m") + `"},"op":"zz"}`)}
	if err := w.WriteMessages(ctx, bad); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for r.node.Status().Consumer.Malformed == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the malformed record was never seen")
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The table's invalidation is held until the next marker after the
	// record, which may come after a marker that already covers the
	// origin's current position: wait for the invalidation itself.
	s := r.node.Status()
	for s.Cache.Invalidated == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the malformed record's table was never invalidated: %+v", s)
		}
		time.Sleep(20 * time.Millisecond)
		s = r.node.Status()
	}
	if s.Consumer.Invalid != 1 {
		t.Fatalf("status after the malformed record: %+v", s)
	}
	read(false) // its table was invalidated
	read(true)  // and the region goes on caching
	if _, err := f.super.Exec(ctx, "UPDATE "+f.table("m")+" SET v = 11 WHERE id = 1"); err != nil {
		t.Fatal(err)
	}
	f.catchUp(ctx, r)
	var v int
	if err := c.QueryRow(ctx, sel, 1).Scan(&v); err != nil || v != 11 {
		t.Fatalf("after an origin write: %d, %v", v, err)
	}
}
