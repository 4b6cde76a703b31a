package kafka_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/freshetdb/freshet/connectors/kafka"
	"github.com/freshetdb/freshet/ingest"
	"github.com/freshetdb/freshet/internal/testenv"
	"github.com/freshetdb/freshet/schemas"
)

// TestIdleSourceMarkersAdvanceEveryRegion: heartbeats alone (batches
// without changes) move both regions' watermarks.
func TestIdleSourceMarkersAdvanceEveryRegion(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	brokers := testenv.KafkaBrokers(t)
	topic := testenv.UniqueName("freshet_idle")
	prod := newProducer(ctx, t, brokers, topic, 3)
	recs := []*recorder{newRecorder(), newRecorder()}
	for i, rec := range recs {
		runConsumer(ctx, t, kafka.ConsumerConfig{Brokers: brokers, Topic: topic, Region: topic + string(rune('a'+i)), Handler: rec, FromBeginning: true})
	}
	for i := 1; i <= 3; i++ {
		publishAll(ctx, t, prod, []*ingest.Batch{{Progress: schemas.Progress{Source: testSource, Position: pos(i), CommitTime: time.Now()}}})
		for _, rec := range recs {
			rec.waitWatermark(ctx, t, pos(i))
		}
	}
	for i, rec := range recs {
		if n := len(changesOf(rec.snapshot())); n != 0 {
			t.Errorf("region %d: %d changes from heartbeats", i, n)
		}
	}
}

// rawWriter writes records to partition 0 without the producer.
func rawWriter(brokers []string, topic string) *kafkago.Writer {
	return &kafkago.Writer{
		Addr: kafkago.TCP(brokers...), Topic: topic, RequiredAcks: kafkago.RequireAll, BatchTimeout: time.Millisecond,
		Balancer: kafkago.BalancerFunc(func(kafkago.Message, ...int) int { return 0 }),
	}
}

// TestMalformedRecordIsSkippedAndCounted puts garbage between two good
// transactions: the region reports both bad records (with their position
// in the topic, and the table when the record names it), counts them and
// goes on.
func TestMalformedRecordIsSkippedAndCounted(t *testing.T) {
	const per, keys = 4, 10
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	brokers := testenv.KafkaBrokers(t)
	topic := testenv.UniqueName("freshet_malformed")
	prod := newProducer(ctx, t, brokers, topic, 2)
	publishAll(ctx, t, prod, []*ingest.Batch{batchOf(txn(0, per, keys))})
	w := rawWriter(brokers, topic)
	defer func() { _ = w.Close() }()
	kind := func(k string) []kafkago.Header { return []kafkago.Header{{Key: "freshet-kind", Value: []byte(k)}} }
	err := w.WriteMessages(ctx,
		kafkago.Message{Value: []byte("\x00\x01 not json")},
		kafkago.Message{Headers: kind("change"), Value: []byte(`{"source":{"schema":"public","table":"items"},"op":"zz"}`)},
		kafkago.Message{Headers: kind("progress"), Value: []byte(`{"position":{"lsn":"nope"}}`)},
	)
	if err != nil {
		t.Fatal(err)
	}
	publishAll(ctx, t, prod, []*ingest.Batch{batchOf(txn(1, per, keys))})

	rec := newRecorder()
	_, c := runConsumer(ctx, t, kafka.ConsumerConfig{Brokers: brokers, Topic: topic, Region: topic, Handler: rec, FromBeginning: true})
	rec.waitWatermark(ctx, t, pos(1))
	evs := rec.snapshot()
	if n := len(changesOf(evs)); n != 2*per {
		t.Errorf("%d changes, want %d", n, 2*per)
	}
	var invalid []*kafka.DecodeError
	for _, ev := range evs {
		if ev.Kind == kafka.EventInvalid {
			invalid = append(invalid, ev.Invalid)
		}
	}
	if len(invalid) != 3 || c.Stats().Malformed != 3 {
		t.Fatalf("%d invalid events, %d counted; want 3", len(invalid), c.Stats().Malformed)
	}
	for _, de := range invalid {
		if de.Topic != topic || de.Partition != 0 || de.Offset < 0 {
			t.Errorf("invalid record reported at %s/%d@%d", de.Topic, de.Partition, de.Offset)
		}
	}
	if invalid[0].Table != "" || invalid[1].Schema != "public" || invalid[1].Table != "items" {
		t.Errorf("tables reported: %q, %q.%q", invalid[0].Table, invalid[1].Schema, invalid[1].Table)
	}
}

// TestRegionResumesFromCommittedOffsets stops a region and starts it again
// with the same name: it goes on after its last committed marker and
// delivers nothing from before it.
func TestRegionResumesFromCommittedOffsets(t *testing.T) {
	const per, keys, half = 3, 20, 100
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	brokers := testenv.KafkaBrokers(t)
	topic := testenv.UniqueName("freshet_resume")
	prod := newProducer(ctx, t, brokers, topic, 3)
	var first, second []*ingest.Batch
	for i := range half {
		first = append(first, batchOf(txn(i, per, keys)))
		second = append(second, batchOf(txn(half+i, per, keys)))
	}
	publishAll(ctx, t, prod, first)

	rec := newRecorder()
	cfg := kafka.ConsumerConfig{Brokers: brokers, Topic: topic, Region: topic, Handler: rec, FromBeginning: true}
	stop, _ := runConsumer(ctx, t, cfg)
	rec.waitWatermark(ctx, t, pos(half-1))
	if err := stop(); !errors.Is(err, context.Canceled) {
		t.Fatalf("stop: %v", err)
	}
	publishAll(ctx, t, prod, second)

	rec2 := newRecorder()
	cfg.Handler = rec2
	runConsumer(ctx, t, cfg)
	rec2.waitWatermark(ctx, t, pos(2*half-1))
	evs := rec2.snapshot()
	if evs[0].Kind != kafka.EventWatermark || evs[0].Watermark.Position != pos(half-1) {
		t.Errorf("first event after restart: %+v, want the committed watermark %s", evs[0], pos(half-1))
	}
	changes := changesOf(evs)
	if len(changes) != half*per {
		t.Errorf("%d changes after restart, want %d", len(changes), half*per)
	}
	for _, c := range changes {
		if pos(half - 1).Covers(c.Position) {
			t.Fatalf("change at %s redelivered after restart at %s", c.Position, pos(half-1))
		}
	}
}

// TestRedeliveryAfterProducerRestartIsDropped: an ingest that restarts
// from its durable position republishes what Kafka already holds; a region
// delivers each change once.
func TestRedeliveryAfterProducerRestartIsDropped(t *testing.T) {
	const per, keys = 4, 25
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	brokers := testenv.KafkaBrokers(t)
	topic := testenv.UniqueName("freshet_redeliver")
	var before, after []*ingest.Batch
	for i := range 60 {
		before = append(before, batchOf(txn(i, per, keys)))
	}
	for i := 30; i < 100; i++ {
		after = append(after, batchOf(txn(i, per, keys)))
	}
	// The truncate at 45 is republished too: one copy must come out.
	before[45] = batchOf(truncateTxn(45, "items"))
	after[15] = batchOf(truncateTxn(45, "items"))
	p1 := newProducer(ctx, t, brokers, topic, 3)
	publishAll(ctx, t, p1, before)
	_ = p1.Close()
	p2 := newProducer(ctx, t, brokers, topic, 3)
	publishAll(ctx, t, p2, after)

	rec := newRecorder()
	_, c := runConsumer(ctx, t, kafka.ConsumerConfig{Brokers: brokers, Topic: topic, Region: topic, Handler: rec, FromBeginning: true})
	rec.waitWatermark(ctx, t, pos(99))
	changes := changesOf(rec.snapshot())
	if want := 99*per + 1; len(changes) != want {
		t.Errorf("%d changes, want %d", len(changes), want)
	}
	checkKeyOrder(t, "region", changes, pos(45))
	if c.Stats().Duplicates == 0 {
		t.Error("no duplicates counted")
	}
}

// TestWriteErrorIsNeverAcknowledged: a batch Kafka rejects (a record over
// the broker's message.max.bytes) reports the error, and so does every
// batch after it, though Kafka would accept those.
func TestWriteErrorIsNeverAcknowledged(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	brokers := testenv.KafkaBrokers(t)
	topic := testenv.UniqueName("freshet_poison")
	prod := newProducer(ctx, t, brokers, topic, 2)
	publishAll(ctx, t, prod, []*ingest.Batch{batchOf(txn(0, 2, 5))})

	huge := txn(1, 1, 5)
	cols := append([]schemas.Column{}, testCols...)
	cols = append(cols, schemas.Column{Name: "blob", Type: "text", Family: schemas.FamilyText})
	huge.Changes[0].Columns = cols
	// Random, so that compression cannot bring it under the limit.
	noise := make([]byte, 3<<20)
	_, _ = rand.Read(noise)
	huge.Changes[0].After = append(huge.Changes[0].After, hex.EncodeToString(noise))
	errs := make(chan error, 2)
	for _, b := range []*ingest.Batch{batchOf(huge), batchOf(txn(2, 2, 5))} {
		if err := prod.Publish(ctx, b, func(err error) { errs <- err }); err != nil {
			// Publish may already refuse the second batch: equally safe.
			errs <- err
		}
	}
	for i := range 2 {
		if err := <-errs; err == nil {
			t.Fatalf("batch %d acknowledged after a write error", i+1)
		}
	}
	if err := prod.Publish(ctx, batchOf(txn(3, 1, 5)), func(error) {}); err == nil {
		t.Fatal("Publish accepted a batch after a write error")
	}
}

// TestLostOffsetsPurgeAndStartFromLatest: a region whose committed offset
// is no longer in the log (here: past its end, as after a topic was
// recreated) is told to purge and goes on from the latest offsets.
func TestLostOffsetsPurgeAndStartFromLatest(t *testing.T) {
	const per, keys = 2, 10
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	brokers := testenv.KafkaBrokers(t)
	topic := testenv.UniqueName("freshet_lost")
	prod := newProducer(ctx, t, brokers, topic, 2)
	var old []*ingest.Batch
	for i := range 10 {
		old = append(old, batchOf(txn(i, per, keys)))
	}
	publishAll(ctx, t, prod, old)
	mustCommitOffsets(ctx, t, brokers, &kafkago.OffsetCommitRequest{
		GroupID: "freshet-region-" + topic, GenerationID: -1,
		Topics: map[string][]kafkago.OffsetCommit{topic: {{Partition: 0, Offset: 1_000_000}, {Partition: 1, Offset: 0}}},
	})

	rec := newRecorder()
	_, c := runConsumer(ctx, t, kafka.ConsumerConfig{Brokers: brokers, Topic: topic, Region: topic, Handler: rec})
	rec.waitFor(ctx, t, "a purge", func(evs []kafka.Event, _ schemas.Position) bool { return len(evs) > 0 })
	if ev := rec.snapshot()[0]; ev.Kind != kafka.EventPurge || !strings.Contains(ev.Reason, "no longer in the topic") {
		t.Fatalf("first event %+v, want a purge", ev)
	}
	var fresh []*ingest.Batch
	for i := 10; i < 20; i++ {
		fresh = append(fresh, batchOf(txn(i, per, keys)))
	}
	// The purge is delivered after the latest offsets were looked up, so
	// everything published now is after the region's new start.
	publishAll(ctx, t, prod, fresh)
	rec.waitWatermark(ctx, t, pos(19))
	for _, ch := range changesOf(rec.snapshot()) {
		if pos(9).Covers(ch.Position) {
			t.Fatalf("change at %s from before the purge delivered", ch.Position)
		}
	}
	if c.Stats().Purges != 1 {
		t.Errorf("%d purges counted, want 1", c.Stats().Purges)
	}
}

// mustCommitOffsets commits offsets for a group, retrying the errors Kafka
// calls retriable (a new group's coordinator may still be moving or loading
// when the test starts).
func mustCommitOffsets(ctx context.Context, t *testing.T, brokers []string, req *kafkago.OffsetCommitRequest) {
	t.Helper()
	client := &kafkago.Client{Addr: kafkago.TCP(brokers...)}
	deadline := time.Now().Add(20 * time.Second)
	for {
		err := commitOnce(ctx, client, req)
		if err == nil {
			return
		}
		var kerr kafkago.Error
		if !errors.As(err, &kerr) || !kerr.Temporary() || time.Now().After(deadline) {
			t.Fatalf("commit offsets: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func commitOnce(ctx context.Context, client *kafkago.Client, req *kafkago.OffsetCommitRequest) error {
	res, err := client.OffsetCommit(ctx, req)
	if err != nil {
		return err
	}
	for _, parts := range res.Topics {
		for _, p := range parts {
			if p.Error != nil {
				return p.Error
			}
		}
	}
	return nil
}

// TestLargeTransactionFitsTheBroker: one transaction whose records for a
// partition add up to several MiB, incompressible, is split into record
// batches the broker's default 1 MiB limit accepts, instead of one batch
// it would refuse on every retry.
func TestLargeTransactionFitsTheBroker(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	brokers := testenv.KafkaBrokers(t)
	topic := testenv.UniqueName("freshet_large_tx")
	prod := newProducer(ctx, t, brokers, topic, 1)
	tx := txn(0, 400, 400)
	cols := append([]schemas.Column{}, testCols...)
	cols = append(cols, schemas.Column{Name: "blob", Type: "text", Family: schemas.FamilyText})
	noise := make([]byte, 8<<10)
	for i := range tx.Changes {
		_, _ = rand.Read(noise)
		tx.Changes[i].Columns = cols
		tx.Changes[i].After = append(tx.Changes[i].After, hex.EncodeToString(noise))
	}
	publishAll(ctx, t, prod, []*ingest.Batch{batchOf(tx)})
}
