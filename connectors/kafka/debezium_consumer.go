package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/freshetdb/freshet/schemas"
)

// DebeziumConfig configures a DebeziumConsumer.
type DebeziumConfig struct {
	// Brokers are the bootstrap brokers, host:port. Required.
	Brokers []string
	// Topics are Debezium's table topics ("pgsrv.public.orders"). Required.
	Topics []string
	// Region names the regional node; offsets are stored under the group
	// "freshet-region-" + Region, for storage only. Required.
	Region string
	// Handler applies what the consumer delivers. Required.
	Handler Handler
	// FromBeginning makes a region with no committed offsets read the
	// topics from their start rather than their end.
	FromBeginning bool
	// CommitInterval is how often offsets are committed. Default 1s.
	CommitInterval time.Duration
	// MaxWait is how long a fetch waits on an idle partition. Default 100ms.
	MaxWait time.Duration
	// CaughtUpInterval, when positive, is how often the consumer asks the
	// broker for the end of every partition and, when it has delivered
	// everything up to them, delivers EventCaughtUp. Zero: never.
	CaughtUpInterval time.Duration
	// Security is TLS and SASL for the brokers; zero: plaintext.
	Security Security
	// Logger receives operational messages; nil discards them.
	Logger *slog.Logger
}

// DebeziumConsumer feeds a regional node from Debezium table topics. It
// delivers EventChange (per-key order), EventInvalid and EventPurge, and
// never EventWatermark: Debezium topics carry no progress markers, so
// there is no low watermark (ADR 0006 says what that means for freshness
// and read-your-writes). Redeliveries are not dropped, because a Debezium
// event's LSN is not ordered across transactions; applying an invalidation
// twice is harmless.
type DebeziumConsumer struct {
	cfg    DebeziumConfig
	log    *slog.Logger
	client *kafkago.Client
	group  string
	stats  consumerStats
	// newest is the latest commit time among delivered changes; used by
	// the loop goroutine only.
	newest time.Time
}

// NewDebeziumConsumer validates cfg.
func NewDebeziumConsumer(cfg DebeziumConfig) (*DebeziumConsumer, error) {
	switch {
	case len(cfg.Brokers) == 0:
		return nil, errors.New("debezium consumer: Brokers is required")
	case len(cfg.Topics) == 0:
		return nil, errors.New("debezium consumer: Topics is required")
	case cfg.Region == "":
		return nil, errors.New("debezium consumer: Region is required")
	case cfg.Handler == nil:
		return nil, errors.New("debezium consumer: Handler is required")
	case cfg.CommitInterval < 0 || cfg.MaxWait < 0 || cfg.CaughtUpInterval < 0:
		return nil, errors.New("debezium consumer: durations must not be negative")
	}
	cfg.CommitInterval = or(cfg.CommitInterval, time.Second)
	cfg.MaxWait = or(cfg.MaxWait, 100*time.Millisecond)
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &DebeziumConsumer{
		cfg: cfg, log: log.With("region", cfg.Region),
		client: regionClient(cfg.Brokers, cfg.Security),
		group:  regionGroup(cfg.Region),
	}, nil
}

// Stats returns the consumer's counters.
func (c *DebeziumConsumer) Stats() Stats {
	return Stats{Changes: c.stats.changes.Load(), Malformed: c.stats.malformed.Load(), Purges: c.stats.purges.Load(), Resyncs: c.stats.resyncs.Load()}
}

// Run delivers events until ctx ends or the Handler fails; Kafka failures
// are retried with backoff.
func (c *DebeziumConsumer) Run(ctx context.Context) error {
	var next map[string][]int64 // topic → partition → offset to read
	b := backoff{min: 100 * time.Millisecond, max: 5 * time.Second}
	for {
		var err error
		if next == nil {
			next, err = c.startOffsets(ctx)
		}
		if err == nil {
			err = c.session(ctx, next)
		}
		var he *handlerError
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case errors.As(err, &he):
			return he.err
		case errors.Is(err, ErrOffsetsLost):
			if next, err = c.purgeFromLatest(ctx, err.Error()); errors.As(err, &he) {
				return he.err
			}
		}
		if err != nil {
			c.log.Warn("kafka unavailable; retrying", "err", err, "in", b.delay())
			if !b.wait(ctx) {
				return ctx.Err()
			}
			continue
		}
		b.reset()
	}
}

// startOffsets reads the committed offsets, or starts at the beginning or
// end; offsets outside the log mean a purge.
func (c *DebeziumConsumer) startOffsets(ctx context.Context) (map[string][]int64, error) {
	next := map[string][]int64{}
	for _, topic := range c.cfg.Topics {
		n, err := partitionCount(ctx, c.client, topic)
		if err != nil {
			return nil, err
		}
		committed, err := fetchCommitted(ctx, c.client, c.group, topic, n)
		if err != nil {
			return nil, err
		}
		first, last, err := logBounds(ctx, c.client, topic, n)
		if err != nil {
			return nil, err
		}
		next[topic] = make([]int64, n)
		for p, rp := range committed {
			switch {
			case rp.offset < 0 && c.cfg.FromBeginning:
				next[topic][p] = first[p]
			case rp.offset < 0:
				next[topic][p] = last[p]
			case rp.offset < first[p] || rp.offset > last[p]:
				return c.purgeFromLatest(ctx, fmt.Sprintf("%v: %s/%d committed at %d, log holds [%d, %d)", ErrOffsetsLost, topic, p, rp.offset, first[p], last[p]))
			default:
				next[topic][p] = rp.offset
			}
		}
	}
	return next, nil
}

func (c *DebeziumConsumer) purgeFromLatest(ctx context.Context, reason string) (map[string][]int64, error) {
	next := map[string][]int64{}
	for _, topic := range c.cfg.Topics {
		n, err := partitionCount(ctx, c.client, topic)
		if err != nil {
			return nil, err
		}
		if _, next[topic], err = logBounds(ctx, c.client, topic, n); err != nil {
			return nil, err
		}
	}
	c.stats.purges.Add(1)
	c.log.Error("REGION PURGE: lost its place in the Debezium topics; purging and starting from the latest offsets", "reason", reason)
	if err := c.cfg.Handler.Apply(ctx, Event{Kind: EventPurge, Reason: reason}); err != nil {
		return nil, &handlerError{err}
	}
	return next, nil
}

type debeziumItem struct {
	topic     string
	partition int
	offset    int64
	msg       kafkago.Message
	err       error
}

// session reads every partition of every topic from next, which it keeps
// up to date, so a new session resumes where this one stopped.
func (c *DebeziumConsumer) session(ctx context.Context, next map[string][]int64) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	items := make(chan debeziumItem, 256)
	var wg sync.WaitGroup
	for topic, offs := range next {
		for p, off := range offs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c.readPartition(ctx, topic, p, off, items)
			}()
		}
	}
	err := c.loop(ctx, items, next)
	cancel()
	wg.Wait()
	if !errors.Is(err, ErrOffsetsLost) {
		if cerr := c.commit(context.WithoutCancel(ctx), next); cerr != nil {
			c.log.Warn("final offset commit failed", "err", cerr)
		}
	}
	return err
}

func (c *DebeziumConsumer) loop(ctx context.Context, items <-chan debeziumItem, next map[string][]int64) error {
	tick := time.NewTicker(c.cfg.CommitInterval)
	defer tick.Stop()
	var caughtUp <-chan time.Time
	if c.cfg.CaughtUpInterval > 0 {
		t := time.NewTicker(c.cfg.CaughtUpInterval)
		defer t.Stop()
		caughtUp = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
			if err := c.commit(ctx, next); err != nil {
				c.log.Warn("offset commit failed; will retry", "err", err)
			}
		case <-caughtUp:
			if err := c.reportCaughtUp(ctx, next); err != nil {
				return err
			}
		case it := <-items:
			switch {
			case errors.Is(it.err, kafkago.OffsetOutOfRange):
				return fmt.Errorf("%w: %s/%d: %v", ErrOffsetsLost, it.topic, it.partition, it.err)
			case it.err != nil:
				return fmt.Errorf("debezium consumer: %s/%d: %w", it.topic, it.partition, it.err)
			}
			if err := c.apply(ctx, it); err != nil {
				return &handlerError{err}
			}
			next[it.topic][it.partition] = it.offset + 1
		}
	}
}

// apply decodes one record and hands it to the handler.
func (c *DebeziumConsumer) apply(ctx context.Context, it debeziumItem) error {
	ch, err := DecodeDebezium(it.msg.Key, it.msg.Value)
	if err != nil {
		de := &DecodeError{Topic: it.topic, Partition: it.partition, Offset: it.offset, Err: err}
		de.Schema, de.Table = tableOfTopic(it.topic)
		c.stats.malformed.Add(1)
		c.log.Error("skipping malformed Debezium record", "topic", de.Topic, "partition", de.Partition,
			"offset", de.Offset, "schema", de.Schema, "table", de.Table, "err", err)
		return c.cfg.Handler.Apply(ctx, Event{Kind: EventInvalid, Invalid: de})
	}
	if ch == nil {
		return nil // tombstone or logical message
	}
	c.stats.changes.Add(1)
	if ch.CommitTime.After(c.newest) {
		c.newest = ch.CommitTime
	}
	return c.cfg.Handler.Apply(ctx, Event{Kind: EventChange, Change: ch})
}

// reportCaughtUp delivers EventCaughtUp when every partition has been
// delivered up to its end as the broker reports it now. A broker that
// cannot say is not an error: the region just learns nothing this time.
func (c *DebeziumConsumer) reportCaughtUp(ctx context.Context, next map[string][]int64) error {
	for topic, offs := range next {
		_, end, err := logBounds(ctx, c.client, topic, len(offs))
		if err != nil {
			c.log.Debug("cannot read the end of the topic", "topic", topic, "err", err)
			return nil
		}
		for p, off := range offs {
			if off < end[p] {
				return nil
			}
		}
	}
	ev := Event{Kind: EventCaughtUp, Watermark: schemas.Progress{CommitTime: c.newest}}
	if err := c.cfg.Handler.Apply(ctx, ev); err != nil {
		return &handlerError{err}
	}
	return nil
}

// DebeziumTopicTable reads schema and table from Debezium's default topic
// name, prefix.schema.table; both are empty when the topic is not one.
func DebeziumTopicTable(topic string) (schema, table string) { return tableOfTopic(topic) }

// tableOfTopic reads schema and table from Debezium's default topic name,
// prefix.schema.table.
func tableOfTopic(topic string) (schema, table string) {
	parts := strings.Split(topic, ".")
	if len(parts) < 3 {
		return "", ""
	}
	return parts[len(parts)-2], parts[len(parts)-1]
}

func (c *DebeziumConsumer) readPartition(ctx context.Context, topic string, p int, offset int64, out chan<- debeziumItem) {
	send := func(it debeziumItem) bool {
		select {
		case out <- it:
			return true
		case <-ctx.Done():
			return false
		}
	}
	f, err := dialFetcher(ctx, fetchTarget{brokers: c.cfg.Brokers, topic: topic, partition: p, dialer: c.cfg.Security.dialer(), maxWait: c.cfg.MaxWait}, offset)
	if err != nil {
		if ctx.Err() == nil {
			send(debeziumItem{topic: topic, partition: p, err: err})
		}
		return
	}
	defer f.close()
	f.resyncs = &c.stats.resyncs
	for {
		msgs, err := f.fetch(ctx)
		if err != nil {
			if ctx.Err() == nil {
				send(debeziumItem{topic: topic, partition: p, err: err})
			}
			return
		}
		for _, msg := range msgs {
			if !send(debeziumItem{topic: topic, partition: p, offset: msg.Offset, msg: msg}) {
				return
			}
		}
	}
}

func (c *DebeziumConsumer) commit(ctx context.Context, next map[string][]int64) error {
	var errs []error
	for topic, offs := range next {
		pts := make([]resumePoint, len(offs))
		for p, off := range offs {
			pts[p] = resumePoint{offset: off}
		}
		errs = append(errs, commitOffsets(ctx, c.client, c.group, topic, pts))
	}
	return errors.Join(errs...)
}
