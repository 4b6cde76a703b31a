package kafka

import (
	"context"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"sync/atomic"
	"testing"
	"time"

	kafkago "github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/freshetdb/freshet/internal/testenv"
)

func newFetcherTopic(ctx context.Context, t *testing.T) (brokers []string, topic string) {
	t.Helper()
	brokers = testenv.KafkaBrokers(t)
	topic = testenv.UniqueName("freshet_fetcher")
	if _, err := ensureTopic(ctx, regionClient(brokers, Security{}), topic, 1, 1); err != nil {
		t.Fatal(err)
	}
	return brokers, topic
}

// TestFetcherLongPolls: an idle fetch waits MaxWait on the broker and comes
// back empty without an error, and a record written while a long fetch
// waits comes back at once.
func TestFetcherLongPolls(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	brokers, topic := newFetcherTopic(ctx, t)

	f, err := dialFetcher(ctx, fetchTarget{brokers: brokers, topic: topic, dialer: Security{}.dialer(), maxWait: 100 * time.Millisecond}, 0)
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		start := time.Now()
		msgs, err := f.fetch(ctx)
		if err != nil || len(msgs) != 0 {
			t.Fatalf("idle fetch: %d records, %v", len(msgs), err)
		}
		if took := time.Since(start); took < 50*time.Millisecond {
			t.Errorf("idle fetch came back after %v; the broker should wait about 100ms", took)
		}
	}
	f.close()

	f, err = dialFetcher(ctx, fetchTarget{brokers: brokers, topic: topic, dialer: Security{}.dialer(), maxWait: 20 * time.Second}, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.close()
	w := &kafkago.Writer{Addr: kafkago.TCP(brokers...), Topic: topic, RequiredAcks: kafkago.RequireAll, BatchTimeout: time.Millisecond}
	defer func() { _ = w.Close() }()
	go func() {
		time.Sleep(200 * time.Millisecond)
		_ = w.WriteMessages(ctx, kafkago.Message{Value: []byte("x")})
	}()
	start := time.Now()
	msgs, err := f.fetch(ctx)
	if err != nil || len(msgs) != 1 || string(msgs[0].Value) != "x" {
		t.Fatalf("fetch while a record is written: %d records, %v", len(msgs), err)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("the record came back after %v, not when it was written", took)
	}
}

// TestFetcherEndsWithContext: cancelling ctx ends a fetch that would wait
// a minute.
func TestFetcherEndsWithContext(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	brokers, topic := newFetcherTopic(ctx, t)
	fctx, stop := context.WithCancel(ctx)
	f, err := dialFetcher(fctx, fetchTarget{brokers: brokers, topic: topic, dialer: Security{}.dialer(), maxWait: time.Minute}, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.close()
	time.AfterFunc(100*time.Millisecond, stop)
	start := time.Now()
	if _, err := f.fetch(fctx); err == nil {
		t.Fatal("fetch on a cancelled context succeeded")
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("fetch ended %v after it began, long after its context", took)
	}
}

// TestFetcherOffsetOutsideLog: an offset past the end of the log is
// OffsetOutOfRange, which the consumer turns into a purge.
func TestFetcherOffsetOutsideLog(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	brokers, topic := newFetcherTopic(ctx, t)
	_, err := dialFetcher(ctx, fetchTarget{brokers: brokers, topic: topic, dialer: Security{}.dialer(), maxWait: time.Second}, 42)
	if !errors.Is(err, kafkago.OffsetOutOfRange) {
		t.Fatalf("dial at offset 42 of an empty partition: %v, want OffsetOutOfRange", err)
	}
}

// TestFetcherResyncsAfterRecordsTakenForEmpty: kafka-go takes a fetch
// response whose high-water mark equals the fetch offset for an empty one
// and leaves its records on the connection, which a real broker sends
// when records arrive while it answers a long poll. The fetcher must not
// fail on the misread response that follows: it reads the records again
// over a new connection. A fake broker (kfake) sends that response once.
func TestFetcherResyncsAfterRecordsTakenForEmpty(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const topic = "resync"
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, topic))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	brokers := c.ListenAddrs()
	w := &kafkago.Writer{Addr: kafkago.TCP(brokers...), Topic: topic, BatchTimeout: time.Millisecond}
	if err := w.WriteMessages(ctx, kafkago.Message{Value: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	_ = w.Close()
	c.ControlKey(int16(kmsg.Fetch), func(r kmsg.Request) (kmsg.Response, error, bool) {
		return recordsAtHighWaterMark(r.(*kmsg.FetchRequest), []byte("x")), nil, true
	})

	f, err := dialFetcher(ctx, fetchTarget{brokers: brokers, topic: topic, dialer: Security{}.dialer(), maxWait: 100 * time.Millisecond}, 0)
	if err != nil {
		t.Fatal(err)
	}
	var resyncs atomic.Uint64
	f.resyncs = &resyncs
	defer f.close()
	var got []kafkago.Message
	for i := 0; i < 3 && len(got) == 0; i++ {
		if got, err = f.fetch(ctx); err != nil {
			t.Fatalf("fetch %d: %v", i+1, err)
		}
	}
	if len(got) != 1 || string(got[0].Value) != "x" || got[0].Offset != 0 {
		t.Fatalf("fetched %+v, want the record x at offset 0", got)
	}
	if n := resyncs.Load(); n != 1 {
		t.Errorf("%d resyncs, want 1", n)
	}
}

// recordsAtHighWaterMark answers a fetch with one record at the fetch
// offset and a high-water mark equal to that offset.
func recordsAtHighWaterMark(req *kmsg.FetchRequest, value []byte) *kmsg.FetchResponse {
	resp := req.ResponseKind().(*kmsg.FetchResponse)
	for _, rt := range req.Topics {
		st := kmsg.NewFetchResponseTopic()
		st.Topic, st.TopicID = rt.Topic, rt.TopicID
		for _, rp := range rt.Partitions {
			sp := kmsg.NewFetchResponseTopicPartition()
			sp.Partition = rp.Partition
			sp.HighWatermark, sp.LastStableOffset = rp.FetchOffset, rp.FetchOffset
			sp.RecordBatches = recordBatch(rp.FetchOffset, value)
			st.Partitions = append(st.Partitions, sp)
		}
		resp.Topics = append(resp.Topics, st)
	}
	return resp
}

// recordBatch encodes a v2 record batch of one record at offset.
func recordBatch(offset int64, value []byte) []byte {
	rec := kmsg.Record{Value: value}
	rec.Length = int32(len(rec.AppendTo(nil)) - 1) // what follows the 1-byte length
	now := time.Now().UnixMilli()
	b := kmsg.RecordBatch{FirstOffset: offset, Magic: 2, FirstTimestamp: now, MaxTimestamp: now,
		ProducerID: -1, ProducerEpoch: -1, FirstSequence: -1, NumRecords: 1, Records: rec.AppendTo(nil)}
	raw := b.AppendTo(nil)
	binary.BigEndian.PutUint32(raw[8:12], uint32(len(raw)-12)) // Length: what follows it
	binary.BigEndian.PutUint32(raw[17:21], crc32.Checksum(raw[21:], crc32.MakeTable(crc32.Castagnoli)))
	return raw
}
