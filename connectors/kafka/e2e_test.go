package kafka_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/freshetdb/freshet/connectors/kafka"
	"github.com/freshetdb/freshet/ingest"
	"github.com/freshetdb/freshet/internal/testenv"
	"github.com/freshetdb/freshet/schemas"
)

func newProducer(ctx context.Context, t *testing.T, brokers []string, topic string, partitions int) *kafka.Producer {
	t.Helper()
	p, err := kafka.NewProducer(ctx, kafka.ProducerConfig{Brokers: brokers, Topic: topic, Partitions: partitions})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

// TestTwoRegionsReceiveEveryChangeInKeyOrder publishes transactions with a
// TRUNCATE in the middle and checks that two independent regions each get
// every change once, every key's versions in commit order, the truncate
// after everything before it and before everything after it, and the same
// final watermark.
func TestTwoRegionsReceiveEveryChangeInKeyOrder(t *testing.T) {
	const txs, per, keys, partitions, truncateAt = 300, 5, 40, 4, 150
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	brokers := testenv.KafkaBrokers(t)
	topic := testenv.UniqueName("freshet_e2e")
	prod := newProducer(ctx, t, brokers, topic, partitions)
	if prod.Partitions() != partitions {
		t.Fatalf("topic has %d partitions, want %d", prod.Partitions(), partitions)
	}

	var batches []*ingest.Batch
	for i := range txs {
		tx := txn(i, per, keys)
		if i == truncateAt {
			tx = truncateTxn(i, "items")
		}
		batches = append(batches, batchOf(tx))
	}
	regions := map[string]*recorder{"east": newRecorder(), "west": newRecorder()}
	for name, rec := range regions {
		runConsumer(ctx, t, kafka.ConsumerConfig{
			Brokers: brokers, Topic: topic, Region: name + "_" + topic, Handler: rec, FromBeginning: true,
		})
	}
	publishAll(ctx, t, prod, batches)

	last := pos(txs - 1)
	for name, rec := range regions {
		rec.waitWatermark(ctx, t, last)
		changes := changesOf(rec.snapshot())
		if want := (txs-1)*per + 1; len(changes) != want {
			t.Errorf("%s: %d changes, want %d", name, len(changes), want)
		}
		checkKeyOrder(t, name, changes, pos(truncateAt))
	}
	checkMarkersOnEveryPartition(ctx, t, brokers, topic, partitions, last)
}

// checkKeyOrder: every key's versions strictly increase, each change comes
// once, and the truncate separates what was before it from what was after.
func checkKeyOrder(t *testing.T, region string, changes []*schemas.Change, truncate schemas.Position) {
	t.Helper()
	latest := map[int64]int64{}
	truncated := false
	for _, c := range changes {
		if c.Op == schemas.OpTruncate {
			if truncated || c.Position != truncate {
				t.Fatalf("%s: unexpected truncate at %s", region, c.Position)
			}
			truncated = true
			continue
		}
		if truncated != c.Position.Covers(truncate) {
			t.Fatalf("%s: change at %s delivered on the wrong side of the truncate at %s (truncated=%v)", region, c.Position, truncate, truncated)
		}
		key, version := c.After[0].(int64), c.After[1].(int64)
		if prev, ok := latest[key]; ok && version <= prev {
			t.Fatalf("%s: key %d got version %d after %d", region, key, version, prev)
		}
		latest[key] = version
	}
	if !truncated {
		t.Fatalf("%s: truncate never delivered", region)
	}
}

// checkMarkersOnEveryPartition reads each partition raw and wants a
// progress marker at last on every one of them.
func checkMarkersOnEveryPartition(ctx context.Context, t *testing.T, brokers []string, topic string, partitions int, last schemas.Position) {
	t.Helper()
	for p := range partitions {
		conn, err := kafkago.DialLeader(ctx, "tcp", brokers[0], topic, p)
		if err != nil {
			t.Fatal(err)
		}
		end, err := conn.ReadLastOffset()
		_ = conn.Close()
		if err != nil {
			t.Fatal(err)
		}
		r := kafkago.NewReader(kafkago.ReaderConfig{Brokers: brokers, Topic: topic, Partition: p, MaxWait: 50 * time.Millisecond})
		found := false
		for off := int64(0); off < end && !found; off++ {
			m, err := r.ReadMessage(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if kindOf(m) != "progress" {
				continue
			}
			var pr schemas.Progress
			if err := json.Unmarshal(m.Value, &pr); err != nil {
				t.Fatal(err)
			}
			found = pr.Position == last
		}
		_ = r.Close()
		if !found {
			t.Errorf("partition %d has no progress marker at %s", p, last)
		}
	}
}

func kindOf(m kafkago.Message) string {
	for _, h := range m.Headers {
		if h.Key == "freshet-kind" {
			return string(h.Value)
		}
	}
	return ""
}
