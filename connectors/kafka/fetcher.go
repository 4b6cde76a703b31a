package kafka

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync/atomic"
	"time"

	kafkago "github.com/segmentio/kafka-go"
)

// fetchSlack is how much longer than MaxWait a fetch may take before its
// connection counts as dead.
const fetchSlack = 10 * time.Second

// fetcher reads one partition over its own connection to the partition's
// leader. It replaces kafka-go's Reader, whose client deadline equals
// MaxWait while it asks the broker to wait up to a quarter less: on a busy
// machine an idle partition's answer misses that deadline, the Reader
// drops the connection and dials again (tens to hundreds of ms during
// which nothing is read), and a few errors in a row add ReadBackoffMin.
// Here the broker is asked to wait MaxWait and the connection gets
// fetchSlack more; a record appended while a fetch waits comes back at once
// (MinBytes 1), so MaxWait costs no latency.
type fetcher struct {
	fetchTarget
	conn    *kafkago.Conn
	unwatch func() bool
	// resyncs, when set, counts the connections made again because
	// kafka-go lost its place in the responses (see fetch).
	resyncs *atomic.Uint64
}

// fetchTarget is the partition a fetcher reads and how.
type fetchTarget struct {
	brokers   []string
	topic     string
	partition int
	dialer    *kafkago.Dialer
	maxWait   time.Duration
}

// dialFetcher connects to the leader of the target partition and positions
// the connection at offset; an offset outside the log is
// kafkago.OffsetOutOfRange. The connection is closed when ctx ends, which
// ends a fetch under way.
func dialFetcher(ctx context.Context, t fetchTarget, offset int64) (*fetcher, error) {
	f := &fetcher{fetchTarget: t}
	if err := f.dial(ctx, offset); err != nil {
		return nil, err
	}
	return f, nil
}

func (f *fetcher) dial(ctx context.Context, offset int64) error {
	var conn *kafkago.Conn
	err := errors.New("no brokers")
	for _, b := range f.brokers {
		if conn, err = f.dialer.DialLeader(ctx, "tcp", b, f.topic, f.partition); err == nil {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("dial the leader of %s/%d: %w", f.topic, f.partition, err)
	}
	_ = conn.SetDeadline(time.Now().Add(fetchSlack))
	if _, err := conn.Seek(offset, kafkago.SeekAbsolute); err != nil {
		_ = conn.Close()
		return fmt.Errorf("seek %s/%d to %d: %w", f.topic, f.partition, offset, err)
	}
	_ = conn.SetDeadline(time.Time{})
	f.conn, f.unwatch = conn, context.AfterFunc(ctx, func() { _ = conn.Close() })
	return nil
}

// fetch returns the next records, waiting up to maxWait for the first one.
//
// kafka-go (v0.4.51, Conn.ReadBatchWith) takes a fetch response whose
// high-water mark equals the fetch offset for an empty one and leaves its
// record set unread on the connection. The broker sends exactly that when
// records are appended while it answers a long poll (it reads the
// high-water mark before the records), so the next response is read from
// the middle of those records: kafka-go finds the wrong correlation ID and
// fails with io.ErrNoProgress. Nothing was consumed, so the records are
// fetched again, at once, over a new connection; ending the reader instead
// cost a region 100-300 ms of freshness a few times a minute.
func (f *fetcher) fetch(ctx context.Context) ([]kafkago.Message, error) {
	msgs, err := f.fetchOnce()
	if !errors.Is(err, io.ErrNoProgress) {
		return msgs, err
	}
	offset, _ := f.conn.Offset()
	f.close()
	if f.resyncs != nil {
		f.resyncs.Add(1)
	}
	if err := f.dial(ctx, offset); err != nil {
		return nil, err
	}
	return f.fetchOnce()
}

// fetchOnce is one fetch request. The whole response is read before
// anything is handed on, so a record held at a barrier does not hold the
// connection's read deadline.
func (f *fetcher) fetchOnce() ([]kafkago.Message, error) {
	_ = f.conn.SetReadDeadline(time.Now().Add(f.maxWait + fetchSlack))
	b := f.conn.ReadBatchWith(kafkago.ReadBatchConfig{MinBytes: 1, MaxBytes: 16 << 20, MaxWait: f.maxWait})
	var msgs []kafkago.Message
	for {
		m, err := b.ReadMessage()
		if err != nil {
			break
		}
		msgs = append(msgs, m)
	}
	// kafka-go reports a fetch that found nothing new as RequestTimedOut.
	if err := b.Close(); err != nil && !errors.Is(err, kafkago.RequestTimedOut) {
		return nil, err
	}
	return msgs, nil
}

func (f *fetcher) close() {
	f.unwatch()
	_ = f.conn.Close()
}
