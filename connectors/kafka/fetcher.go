package kafka

import (
	"context"
	"errors"
	"fmt"
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
	conn    *kafkago.Conn
	maxWait time.Duration
	unwatch func() bool
}

// dialFetcher connects to the leader of topic/partition and positions the
// connection at offset; an offset outside the log is
// kafkago.OffsetOutOfRange. The connection is closed when ctx ends, which
// ends a fetch under way.
func dialFetcher(ctx context.Context, brokers []string, topic string, partition int, offset int64, maxWait time.Duration) (*fetcher, error) {
	var conn *kafkago.Conn
	err := errors.New("no brokers")
	for _, b := range brokers {
		if conn, err = kafkago.DialLeader(ctx, "tcp", b, topic, partition); err == nil {
			break
		}
	}
	if err != nil {
		return nil, fmt.Errorf("dial the leader of %s/%d: %w", topic, partition, err)
	}
	_ = conn.SetDeadline(time.Now().Add(fetchSlack))
	if _, err := conn.Seek(offset, kafkago.SeekAbsolute); err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("seek %s/%d to %d: %w", topic, partition, offset, err)
	}
	_ = conn.SetDeadline(time.Time{})
	return &fetcher{conn: conn, maxWait: maxWait, unwatch: context.AfterFunc(ctx, func() { _ = conn.Close() })}, nil
}

// fetch returns the next records, waiting up to maxWait for the first one.
// The whole response is read before anything is handed on, so a record
// held at a barrier does not hold the connection's read deadline.
func (f *fetcher) fetch() ([]kafkago.Message, error) {
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
