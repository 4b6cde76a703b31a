package integration

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	kafkago "github.com/segmentio/kafka-go"

	"github.com/freshetdb/freshet/connectors/kafka"
	"github.com/freshetdb/freshet/internal/region"
	"github.com/freshetdb/freshet/internal/testenv"
	"github.com/freshetdb/freshet/materialize"
)

// debeziumSource is a Debezium table topic for a real origin table, and
// the writes that keep the two in step: each origin update is followed by
// the record Debezium's PostgreSQL connector would produce for it
// (payload-only JSON converter output, as in connectors/kafka/testdata).
type debeziumSource struct {
	t      *testing.T
	super  *pgx.Conn
	table  string // unqualified, in schema public
	topic  string // pgsrv.public.<table>
	writer *kafkago.Writer
}

func newDebeziumSource(ctx context.Context, t *testing.T) *debeziumSource {
	t.Helper()
	name := testenv.UniqueName("dbz")
	super, err := pgx.Connect(ctx, testenv.PostgresURL(t))
	if err != nil {
		t.Fatal(err)
	}
	s := &debeziumSource{t: t, super: super, table: name + "_orders", topic: "pgsrv.public." + name + "_orders"}
	t.Cleanup(func() {
		_, _ = super.Exec(context.Background(), "DROP TABLE IF EXISTS "+s.table)
		super.Close(context.Background())
	})
	if _, err := super.Exec(ctx, "CREATE TABLE "+s.table+" (id int PRIMARY KEY, v int NOT NULL); INSERT INTO "+s.table+" VALUES (1, 10), (2, 20)"); err != nil {
		t.Fatal(err)
	}
	brokers := testenv.KafkaBrokers(t)
	p, err := kafka.NewProducer(ctx, kafka.ProducerConfig{Brokers: brokers, Topic: s.topic, Partitions: 2}) // creates the topic
	if err != nil {
		t.Fatal(err)
	}
	_ = p.Close()
	// Kafka Connect's default partitioner: by the record key's hash.
	s.writer = &kafkago.Writer{Addr: kafkago.TCP(brokers...), Topic: s.topic, RequiredAcks: kafkago.RequireAll,
		BatchTimeout: time.Millisecond, Balancer: &kafkago.Murmur2Balancer{}}
	t.Cleanup(func() { _ = s.writer.Close() })
	return s
}

// update sets row id to v at the origin and, when publish, writes the
// Debezium update event for it.
func (s *debeziumSource) update(ctx context.Context, id, v int, publish bool) {
	s.t.Helper()
	tx, err := s.super.Begin(ctx)
	if err != nil {
		s.t.Fatal(err)
	}
	var old int
	var xid int64
	if err := tx.QueryRow(ctx, "SELECT v, txid_current() FROM "+s.table+" WHERE id = $1", id).Scan(&old, &xid); err != nil {
		s.t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "UPDATE "+s.table+" SET v = $1 WHERE id = $2", v, id); err != nil {
		s.t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		s.t.Fatal(err)
	}
	if !publish {
		return
	}
	now := time.Now()
	value := fmt.Sprintf(`{"before":{"id":%d,"v":%d},"after":{"id":%d,"v":%d},`+
		`"source":{"version":"2.7.0.Final","connector":"postgresql","name":"pgsrv","ts_ms":%d,"ts_us":%d,"snapshot":"false","db":"freshet",`+
		`"sequence":"[null,\"%d\"]","schema":"public","table":"%s","txId":%d,"lsn":%d,"xmin":null},`+
		`"transaction":null,"op":"u","ts_ms":%d}`,
		id, old, id, v, now.UnixMilli(), now.UnixMicro(), 23907400+xid, s.table, uint32(xid), 23907400+xid, now.UnixMilli())
	s.write(ctx, fmt.Sprintf(`{"id":%d}`, id), value)
}

func (s *debeziumSource) write(ctx context.Context, key, value string) {
	s.t.Helper()
	if err := s.writer.WriteMessages(ctx, kafkago.Message{Key: []byte(key), Value: []byte(value)}); err != nil {
		s.t.Fatal(err)
	}
}

// startDebeziumRegion runs `freshet serve --region --debezium-topics` on
// s's topic; assumeLag is --debezium-assume-lag.
func startDebeziumRegion(ctx context.Context, t *testing.T, s *debeziumSource, assumeLag time.Duration) (*region.Node, *pgx.Conn) {
	t.Helper()
	node, err := region.New(region.Config{
		Region: testenv.UniqueName("dbzr"), Brokers: testenv.KafkaBrokers(t), DebeziumTopics: []string{s.topic},
		DebeziumAssumeLag: assumeLag, DebeziumFromBeginning: true, // the topic is the test's own
		Origin: testenv.PostgresURL(t), Listen: "127.0.0.1:0",
		CacheBytes: 16 << 20, CatalogInterval: -1,
	})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(context.Background())
	ready := make(chan string, 1)
	done := make(chan error, 1)
	go func() { done <- node.Run(runCtx, func(addr string) { ready <- addr }) }()
	t.Cleanup(func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("region: %v", err)
		}
	})
	var addr string
	select {
	case addr = <-ready:
	case err := <-done:
		t.Fatalf("region stopped: %v", err)
	case <-ctx.Done():
		t.Fatal("region did not start")
	}
	c, err := pgx.Connect(ctx, withHost(testenv.PostgresURL(t), addr))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return node, c
}

// waitStatus polls the region's status until ok.
func waitStatus(t *testing.T, node *region.Node, what string, ok func(region.Status) bool) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); !ok(node.Status()); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 30s; status %+v", what, node.Status())
		}
	}
}

// TestDebeziumRegionTunnelsByDefault: a region fed by Debezium topics has
// no watermark, so it answers every read from the origin (correct, never
// stale), says why in its status, still applies the changes it reads,
// and counts and skips a malformed record.
func TestDebeziumRegionTunnelsByDefault(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	s := newDebeziumSource(ctx, t)
	node, c := startDebeziumRegion(ctx, t, s, 0)
	m := node.Materializer()
	sel := "SELECT v FROM " + s.table + " WHERE id = $1"
	read := func(want int) {
		t.Helper()
		var v int
		if err := c.QueryRow(ctx, sel, 1).Scan(&v); err != nil || v != want {
			t.Fatalf("read %d, %v; want %d", v, err, want)
		}
	}
	for range 3 {
		read(10)
	}
	for i := 1; i <= 3; i++ {
		s.update(ctx, 1, 10+i, true)
		read(10 + i) // at once: the origin answers
	}
	waitStatus(t, node, "the three update events applied", func(st region.Status) bool {
		return st.Consumer.Changes == 3 && st.Cache != nil && st.Cache.Changes == 3
	})
	st := node.Status()
	if st.Freshness != "unknown" || st.FreshnessReason == "" || st.Watermark.Set || !st.Watermark.Stale {
		t.Errorf("status: freshness %q (%q), watermark %+v; want unknown with a reason, unset and stale", st.Freshness, st.FreshnessReason, st.Watermark)
	}
	if ms := m.Stats(); ms.Hits != 0 || ms.Bypassed[materialize.BypassNoWatermark] < 6 {
		t.Errorf("cache: %d hits, bypassed %v; want no hits and every read bypassed for %s", ms.Hits, ms.Bypassed, materialize.BypassNoWatermark)
	}
	s.write(ctx, `{"id":1}`, `{"op":"u","source":`)
	waitStatus(t, node, "the malformed record counted", func(st region.Status) bool {
		return st.Consumer.Malformed == 1 && st.Consumer.Invalid == 1
	})
	s.update(ctx, 1, 20, true) // and the region reads on past it
	waitStatus(t, node, "the record after the malformed one applied", func(st region.Status) bool { return st.Consumer.Changes == 4 })
	read(20)
}

// TestDebeziumRegionAssumedLag: with --debezium-assume-lag the region
// serves cached reads once it has read every partition to its end, a
// Debezium update event invalidates the cached row (until it arrives the
// region serves the old value: the lag is an estimate, not a bound), and
// a malformed record invalidates its table and is counted.
func TestDebeziumRegionAssumedLag(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	s := newDebeziumSource(ctx, t)
	node, c := startDebeziumRegion(ctx, t, s, time.Minute)
	m := node.Materializer()
	sel := "SELECT v FROM " + s.table + " WHERE id = $1"
	read := func(id, want int, wantHit bool) {
		t.Helper()
		before := m.Stats().Hits
		var v int
		if err := c.QueryRow(ctx, sel, id).Scan(&v); err != nil || v != want {
			t.Fatalf("row %d: read %d, %v; want %d", id, v, err, want)
		}
		if hit := m.Stats().Hits > before; hit != wantHit {
			t.Fatalf("row %d: hit = %v, want %v; stats %+v", id, hit, wantHit, m.Stats())
		}
	}
	read(1, 10, false) // no estimate before any event: tunneled
	s.update(ctx, 2, 21, true)
	waitStatus(t, node, "an estimate", func(st region.Status) bool { return st.Watermark.Set && !st.Watermark.Stale })
	if st := node.Status(); st.Freshness != "estimate" || st.FreshnessReason == "" || st.Watermark.Position != "" {
		t.Errorf("status: freshness %q (%q), position %q; want an estimate with a reason and no position", st.Freshness, st.FreshnessReason, st.Watermark.Position)
	}
	read(1, 10, false)
	read(1, 10, true)

	// The origin changes but its event is not produced yet: the region
	// serves the old value (what "not a bound" means) until it arrives.
	s.update(ctx, 1, 11, false)
	read(1, 10, true)
	invalidated := m.Stats().Invalidated
	s.write(ctx, `{"id":1}`, fmt.Sprintf(`{"before":{"id":1,"v":10},"after":{"id":1,"v":11},"source":{"connector":"postgresql","name":"pgsrv",`+
		`"ts_ms":%d,"schema":"public","table":"%s","txId":1,"lsn":1},"op":"u","ts_ms":%d}`, time.Now().UnixMilli(), s.table, time.Now().UnixMilli()))
	waitStatus(t, node, "the update event applied", func(st region.Status) bool { return st.Cache.Invalidated > invalidated })
	read(1, 11, false)
	read(1, 11, true)
	read(2, 21, false)
	read(2, 21, true)

	// A malformed record may hide a change of its table: the table goes.
	s.write(ctx, `{"id":2}`, `{"op":"u","source":`)
	waitStatus(t, node, "the malformed record counted", func(st region.Status) bool {
		return st.Consumer.Malformed == 1 && st.Consumer.Invalid == 1
	})
	read(1, 11, false)
	read(2, 21, false)
	read(2, 21, true)
}
