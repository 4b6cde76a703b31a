package kafka_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/freshetdb/freshet/connectors/kafka"
	"github.com/freshetdb/freshet/internal/testenv"
	"github.com/freshetdb/freshet/schemas"
)

// createTopic makes a topic (with leaders) the way the producer does.
func createTopic(ctx context.Context, t *testing.T, brokers []string, topic string, partitions int) {
	t.Helper()
	p, err := kafka.NewProducer(ctx, kafka.ProducerConfig{Brokers: brokers, Topic: topic, Partitions: partitions})
	if err != nil {
		t.Fatal(err)
	}
	_ = p.Close()
}

// TestDebeziumRegion feeds a region from a Debezium table topic holding
// the golden vectors in Debezium's exact format, plus garbage: the region
// delivers the changes in order, skips the tombstone, reports the garbage
// with the table named by the topic, never reports a watermark, and after
// a restart goes on from its committed offsets.
func TestDebeziumRegion(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	brokers := testenv.KafkaBrokers(t)
	topic := testenv.UniqueName("pgsrv") + ".public.orders"
	createTopic(ctx, t, brokers, topic, 2)
	v := debeziumVectors(t)
	var msgs []kafkago.Message
	for _, name := range []string{"insert_with_schema", "update_toast_no_schema", "update_replica_identity_full", "delete", "tombstone", "truncate"} {
		msgs = append(msgs, kafkago.Message{Key: nilIfEmpty(v[name][0]), Value: nilIfEmpty(v[name][1])})
	}
	msgs = append(msgs, kafkago.Message{Key: []byte(`{"id":1}`), Value: []byte(`{"op":"c","source":`)})
	w := rawWriter(brokers, topic)
	defer func() { _ = w.Close() }()
	if err := w.WriteMessages(ctx, msgs...); err != nil {
		t.Fatal(err)
	}

	rec := newRecorder()
	cfg := kafka.DebeziumConfig{Brokers: brokers, Topics: []string{topic}, Region: topic, Handler: rec, FromBeginning: true, Logger: testLogger(t)}
	c, err := kafka.NewDebeziumConsumer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	stop := runDebezium(ctx, t, c)
	rec.waitFor(ctx, t, "six events", func(evs []kafka.Event, _ schemas.Position) bool { return len(evs) >= 6 })
	evs := rec.snapshot()
	var ops []schemas.Op
	for _, ev := range evs[:5] {
		if ev.Kind != kafka.EventChange {
			t.Fatalf("event %+v, want changes first", ev)
		}
		ops = append(ops, ev.Change.Op)
	}
	if want := []schemas.Op{"c", "u", "u", "d", "t"}; !slices.Equal(ops, want) {
		t.Errorf("ops %v, want %v", ops, want)
	}
	if inv := evs[5]; inv.Kind != kafka.EventInvalid || inv.Invalid.Table != "orders" || inv.Invalid.Offset != 6 {
		t.Errorf("garbage reported as %+v", inv)
	}
	if err := stop(); !errors.Is(err, context.Canceled) {
		t.Fatalf("stop: %v", err)
	}
	for _, ev := range rec.snapshot() {
		if ev.Kind == kafka.EventWatermark {
			t.Errorf("a Debezium region reported watermark %s", ev.Watermark.Position)
		}
	}

	if err := w.WriteMessages(ctx, kafkago.Message{Key: v["snapshot_read"][0], Value: v["snapshot_read"][1]}); err != nil {
		t.Fatal(err)
	}
	rec2 := newRecorder()
	cfg.Handler = rec2
	c2, err := kafka.NewDebeziumConsumer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	runDebezium(ctx, t, c2)
	rec2.waitFor(ctx, t, "the new record", func(evs []kafka.Event, _ schemas.Position) bool { return len(evs) >= 1 })
	time.Sleep(300 * time.Millisecond) // anything redelivered would show up by now
	evs = rec2.snapshot()
	if len(evs) != 1 || evs[0].Kind != kafka.EventChange || evs[0].Change.TxID != 760 {
		t.Errorf("after restart: %d events, first %+v; want only the snapshot read", len(evs), evs[0])
	}
}

func nilIfEmpty(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return b
}

func runDebezium(ctx context.Context, t *testing.T, c *kafka.DebeziumConsumer) (stop func() error) {
	ctx, cancel := context.WithCancel(ctx)
	res := make(chan error, 1)
	go func() {
		err := c.Run(ctx)
		if err != nil && ctx.Err() == nil {
			t.Errorf("debezium region stopped: %v", err)
		}
		res <- err
	}()
	var err error
	done := false
	stop = func() error {
		if !done {
			cancel()
			err, done = <-res, true
		}
		return err
	}
	t.Cleanup(func() { _ = stop() })
	return stop
}
