package kafka

import (
	"context"
	"errors"
	"testing"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/freshetdb/freshet/internal/testenv"
)

func newFetcherTopic(ctx context.Context, t *testing.T) (brokers []string, topic string) {
	t.Helper()
	brokers = testenv.KafkaBrokers(t)
	topic = testenv.UniqueName("freshet_fetcher")
	if _, err := ensureTopic(ctx, regionClient(brokers), topic, 1, 1); err != nil {
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

	f, err := dialFetcher(ctx, brokers, topic, 0, 0, 100*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		start := time.Now()
		msgs, err := f.fetch()
		if err != nil || len(msgs) != 0 {
			t.Fatalf("idle fetch: %d records, %v", len(msgs), err)
		}
		if took := time.Since(start); took < 50*time.Millisecond {
			t.Errorf("idle fetch came back after %v; the broker should wait about 100ms", took)
		}
	}
	f.close()

	f, err = dialFetcher(ctx, brokers, topic, 0, 0, 20*time.Second)
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
	msgs, err := f.fetch()
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
	f, err := dialFetcher(fctx, brokers, topic, 0, 0, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	defer f.close()
	time.AfterFunc(100*time.Millisecond, stop)
	start := time.Now()
	if _, err := f.fetch(); err == nil {
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
	_, err := dialFetcher(ctx, brokers, topic, 0, 42, time.Second)
	if !errors.Is(err, kafkago.OffsetOutOfRange) {
		t.Fatalf("dial at offset 42 of an empty partition: %v, want OffsetOutOfRange", err)
	}
}
