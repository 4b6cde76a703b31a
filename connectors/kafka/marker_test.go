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

// TestMarkerNeverPrecedesItsData is ADR 0006's contract read straight off
// the log: on every partition, no change at or before a marker's position
// comes after that marker, and every partition ends with the last marker.
// Small writes carry their marker in the same record batch as their data;
// with a BatchSize of 4 kafka-go splits the writes and the marker must wait
// for the next one.
func TestMarkerNeverPrecedesItsData(t *testing.T) {
	const txs, per, keys, partitions = 120, 5, 30, 3
	for _, tc := range []struct {
		name      string
		batchSize int
	}{
		{"marker in the same record batch", 0},
		{"writes split by kafka-go", 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			brokers := testenv.KafkaBrokers(t)
			topic := testenv.UniqueName("freshet_marker")
			prod, err := kafka.NewProducer(ctx, kafka.ProducerConfig{Brokers: brokers, Topic: topic, Partitions: partitions, BatchSize: tc.batchSize})
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = prod.Close() }()
			var batches []*ingest.Batch
			for i := range txs {
				tx := txn(i, per, keys)
				if i == txs/2 {
					tx = truncateTxn(i, "items")
				}
				batches = append(batches, batchOf(tx))
			}
			// Half published one by one (lone writes), half at once (groups).
			for _, b := range batches[:txs/2] {
				publishAll(ctx, t, prod, []*ingest.Batch{b})
			}
			publishAll(ctx, t, prod, batches[txs/2:])

			changes := 0
			for p := range partitions {
				changes += checkPartitionLog(ctx, t, brokers, topic, p, pos(txs-1))
			}
			if want := (txs-1)*per + partitions; changes != want {
				t.Errorf("%d change records in the topic, want %d", changes, want)
			}
		})
	}
}

// checkPartitionLog reads partition p from the start and checks that no
// change at or before the latest marker follows it, and that the last
// record is a marker at last. It returns how many change records it read.
func checkPartitionLog(ctx context.Context, t *testing.T, brokers []string, topic string, p int, last schemas.Position) int {
	t.Helper()
	msgs := readAll(ctx, t, brokers, topic, p)
	var marker schemas.Position
	changes := 0
	for _, m := range msgs {
		switch kindOf(m) {
		case "progress":
			var pr schemas.Progress
			if err := json.Unmarshal(m.Value, &pr); err != nil {
				t.Fatal(err)
			}
			marker = pr.Position
		case "change":
			changes++
			c, err := schemas.UnmarshalChange(m.Value)
			if err != nil {
				t.Fatal(err)
			}
			if !marker.IsZero() && marker.Covers(c.Position) {
				t.Fatalf("partition %d offset %d: change at %s after marker %s", p, m.Offset, c.Position, marker)
			}
		}
	}
	if len(msgs) == 0 || kindOf(msgs[len(msgs)-1]) != "progress" || marker != last {
		t.Errorf("partition %d ends at marker %s (%d records), want a marker at %s last", p, marker, len(msgs), last)
	}
	return changes
}

// readAll returns every record of partition p.
func readAll(ctx context.Context, t *testing.T, brokers []string, topic string, p int) []kafkago.Message {
	t.Helper()
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
	defer func() { _ = r.Close() }()
	var out []kafkago.Message
	for int64(len(out)) < end {
		m, err := r.ReadMessage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, m)
	}
	return out
}
