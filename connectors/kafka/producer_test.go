package kafka

import (
	"context"
	"strings"
	"testing"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/freshetdb/freshet/ingest"
	"github.com/freshetdb/freshet/internal/testenv"
	"github.com/freshetdb/freshet/schemas"
)

func TestSealable(t *testing.T) {
	p := &Producer{cfg: ProducerConfig{BatchSize: 10}}
	msg := func(n int) kafkago.Message {
		return kafkago.Message{Value: []byte(strings.Repeat("x", n)), Headers: []kafkago.Header{{Key: headerKind, Value: []byte(kindChange)}}}
	}
	many := func(k, size int) []kafkago.Message {
		out := make([]kafkago.Message, k)
		for i := range out {
			out[i] = msg(size)
		}
		return out
	}
	for _, tc := range []struct {
		name string
		msgs []kafkago.Message
		want bool
	}{
		{"one small record", many(1, 100), true},
		{"exactly BatchSize records", many(10, 100), true},
		{"more than BatchSize records", many(11, 100), false},
		{"a quarter of BatchBytes", many(1, batchBytes/4), true},
		{"more than half of BatchBytes", many(2, batchBytes/4+1), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := p.sealable(tc.msgs); got != tc.want {
				t.Errorf("sealable = %v, want %v", got, tc.want)
			}
		})
	}
}

// TestSmallBatchIsOneWrite: a lone one-change batch is acknowledged after a
// single write that carries its marker, one kafka-go batch per partition
// (the change's partition gets the change and the marker), rather than a
// data write and then a marker write.
func TestSmallBatchIsOneWrite(t *testing.T) {
	const partitions = 3
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	brokers := testenv.KafkaBrokers(t)
	p, err := NewProducer(ctx, ProducerConfig{Brokers: brokers, Topic: testenv.UniqueName("freshet_onewrite"), Partitions: partitions})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = p.Close() }()
	cols := []schemas.Column{{Name: "id", Type: "int8", Family: schemas.FamilyInt, Key: true}}
	at := schemas.Position{LSN: 4096}
	b := &ingest.Batch{
		Changes:  []schemas.Change{{Source: "s", Schema: "public", Table: "t", Op: schemas.OpCreate, Columns: cols, After: []any{int64(1)}, Position: at}},
		Progress: schemas.Progress{Source: "s", Position: at, CommitTime: time.Now()},
	}
	_ = p.w.Stats() // reset kafka-go's counters
	done := make(chan error, 1)
	if err := p.Publish(ctx, b, func(err error) { done <- err }); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-ctx.Done():
		t.Fatal(ctx.Err())
	}
	// Batches, not requests: a new topic's first produce may be retried.
	st := p.w.Stats().BatchSize
	if st.Count != partitions || st.Sum != partitions+1 {
		t.Errorf("%d batches carrying %d records, want %d carrying %d", st.Count, st.Sum, partitions, partitions+1)
	}
}
