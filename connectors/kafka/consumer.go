package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/freshetdb/freshet/schemas"
)

// ConsumerConfig configures a Consumer.
type ConsumerConfig struct {
	// Brokers are the bootstrap brokers, host:port. Required.
	Brokers []string
	// Topic is the source's topic. Required.
	Topic string
	// Region names the regional node. Its offsets are stored under the
	// consumer group "freshet-region-" + Region, used for storage only:
	// every region reads every partition. Required.
	Region string
	// Handler applies what the consumer delivers. Required.
	Handler Handler
	// FromBeginning makes a region with no committed offsets read the
	// topic from its start; by default it starts at the end (an empty
	// cache needs no history, only the next markers).
	FromBeginning bool
	// CommitInterval is how often offsets are committed. Default 1s.
	CommitInterval time.Duration
	// MaxWait is how long a fetch waits on an idle partition. A record
	// written meanwhile is returned at once, so it costs no latency; a
	// longer wait means fewer requests while idle. Default 500ms.
	MaxWait time.Duration
	// Security is TLS and SASL for the brokers; zero: plaintext.
	Security Security
	// Logger receives operational messages; nil discards them.
	Logger *slog.Logger
}

// Consumer feeds one regional node from every partition of a source's
// topic: it reads each partition on its own, drops duplicates by position,
// holds records written to every partition until every partition reached
// them, and delivers the low watermark, the minimum over partitions of the
// last progress marker. See Handler for what it delivers.
type Consumer struct {
	cfg    ConsumerConfig
	log    *slog.Logger
	client *kafkago.Client
	group  string
	stats  consumerStats
	// watermark is the last one delivered; only Run's goroutine uses it.
	watermark schemas.Position
	hook      stageHook // set by benchmarks before Run
}

type consumerStats struct {
	changes, duplicates, malformed, purges, resyncs atomic.Uint64
}

// Stats are a Consumer's counters since it was created.
type Stats struct {
	Changes    uint64 // changes delivered
	Duplicates uint64 // records dropped as already delivered
	Malformed  uint64 // records skipped because they did not decode
	Purges     uint64 // times the region lost its offsets
	// Resyncs are fetch connections made again because kafka-go lost
	// its place in the broker's responses (see fetcher.fetch).
	Resyncs uint64
}

// ErrOffsetsLost marks the log line and purge of a region whose committed
// offsets are no longer in the topic.
var ErrOffsetsLost = errors.New("committed offsets are no longer in the topic")

// NewConsumer validates cfg.
func NewConsumer(cfg ConsumerConfig) (*Consumer, error) {
	switch {
	case len(cfg.Brokers) == 0:
		return nil, errors.New("kafka consumer: Brokers is required")
	case cfg.Topic == "":
		return nil, errors.New("kafka consumer: Topic is required")
	case cfg.Region == "":
		return nil, errors.New("kafka consumer: Region is required")
	case cfg.Handler == nil:
		return nil, errors.New("kafka consumer: Handler is required")
	case cfg.CommitInterval < 0 || cfg.MaxWait < 0:
		return nil, errors.New("kafka consumer: durations must not be negative")
	}
	cfg.CommitInterval = or(cfg.CommitInterval, time.Second)
	cfg.MaxWait = or(cfg.MaxWait, 500*time.Millisecond)
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Consumer{
		cfg: cfg, log: log.With("topic", cfg.Topic, "region", cfg.Region),
		client: regionClient(cfg.Brokers, cfg.Security),
		group:  regionGroup(cfg.Region),
	}, nil
}

// Stats returns the consumer's counters.
func (c *Consumer) Stats() Stats {
	return Stats{
		Changes: c.stats.changes.Load(), Duplicates: c.stats.duplicates.Load(),
		Malformed: c.stats.malformed.Load(), Purges: c.stats.purges.Load(), Resyncs: c.stats.resyncs.Load(),
	}
}

// Run delivers events until ctx ends or the Handler fails, committing
// offsets every CommitInterval and once more on the way out. Kafka
// failures (a broker down, a topic not there yet, leadership moving) are
// logged and retried with backoff; they never end Run.
func (c *Consumer) Run(ctx context.Context) error {
	var start []resumePoint
	lost := "" // why the region must purge before it goes on
	b := backoff{min: 100 * time.Millisecond, max: 5 * time.Second}
	for {
		var err error
		switch {
		case lost != "":
			if start, err = c.purgeFromLatest(ctx, lost); err == nil {
				lost = ""
			}
		case start == nil:
			start, err = c.startPoints(ctx)
		}
		if err == nil {
			start, err = c.session(ctx, start)
		}
		var he *handlerError
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case errors.As(err, &he):
			return he.err
		case errors.Is(err, ErrOffsetsLost):
			lost, start = err.Error(), nil
			continue
		case err == nil:
			b.reset()
			continue
		}
		c.log.Warn("kafka unavailable; retrying", "err", err, "in", b.delay())
		if !b.wait(ctx) {
			return ctx.Err()
		}
	}
}

// startPoints finds the topic's partitions and where each resumes.
func (c *Consumer) startPoints(ctx context.Context) ([]resumePoint, error) {
	n, err := partitionCount(ctx, c.client, c.cfg.Topic)
	if err != nil {
		return nil, err
	}
	return c.resumePoints(ctx, n)
}

// handlerError is the Handler's own failure, which ends Run.
type handlerError struct{ err error }

func (e *handlerError) Error() string { return e.err.Error() }

// backoff doubles a wait from min to max.
type backoff struct{ min, max, cur time.Duration }

func (b *backoff) delay() time.Duration { return max(b.cur, b.min) }

func (b *backoff) reset() { b.cur = 0 }

// wait sleeps the current delay and doubles it; false if ctx ended.
func (b *backoff) wait(ctx context.Context) bool {
	d := b.delay()
	b.cur = min(2*d, b.max)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// resumePoints decides where each partition starts: the committed offset,
// or (none committed) the start or end of the log; committed offsets that
// fell out of the log mean a purge and a start from the end.
func (c *Consumer) resumePoints(ctx context.Context, n int) ([]resumePoint, error) {
	committed, err := fetchCommitted(ctx, c.client, c.group, c.cfg.Topic, n)
	if err != nil {
		return nil, err
	}
	first, last, err := logBounds(ctx, c.client, c.cfg.Topic, n)
	if err != nil {
		return nil, err
	}
	for p, rp := range committed {
		switch {
		case rp.offset < 0 && c.cfg.FromBeginning:
			committed[p].offset = first[p]
		case rp.offset < 0:
			committed[p].offset = last[p]
		case rp.offset < first[p] || rp.offset > last[p]:
			reason := fmt.Sprintf("%v: partition %d committed at %d, log holds [%d, %d)", ErrOffsetsLost, p, rp.offset, first[p], last[p])
			return c.purgeFromLatest(ctx, reason)
		}
	}
	return committed, nil
}

// purgeFromLatest tells the handler to drop everything and restarts the
// region at the end of every partition, loudly.
func (c *Consumer) purgeFromLatest(ctx context.Context, reason string) ([]resumePoint, error) {
	n, err := partitionCount(ctx, c.client, c.cfg.Topic)
	if err != nil {
		return nil, err
	}
	_, last, err := logBounds(ctx, c.client, c.cfg.Topic, n)
	if err != nil {
		return nil, err
	}
	c.stats.purges.Add(1)
	c.log.Error("REGION PURGE: lost its place in the topic; purging and starting from the latest offsets", "reason", reason)
	if err := c.cfg.Handler.Apply(ctx, Event{Kind: EventPurge, Reason: reason}); err != nil {
		return nil, &handlerError{err}
	}
	pts := make([]resumePoint, n)
	for p := range pts {
		pts[p].offset, pts[p].next = last[p], -1
	}
	return pts, nil
}

// item is what a partition reader hands to the merge loop. A record
// written to every partition carries release: its reader waits until the
// merge loop closes it.
type item struct {
	partition int
	offset    int64
	rec       record
	err       error
	release   chan struct{}
}

// session reads every partition from start until ctx ends, the handler
// fails, a partition fails, or a partition's offset falls out of the log
// (ErrOffsetsLost). It returns where a next session resumes.
func (c *Consumer) session(ctx context.Context, start []resumePoint) ([]resumePoint, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	items := make(chan item, 256)
	var wg sync.WaitGroup
	for p, rp := range start {
		wg.Add(1)
		go func() {
			defer wg.Done()
			from := rp.offset
			if rp.next >= 0 {
				from = rp.next
			}
			c.readPartition(ctx, p, from, items)
		}()
	}
	m := newMerger(c, start)
	err := m.loop(ctx, items)
	cancel()
	wg.Wait()
	if !errors.Is(err, ErrOffsetsLost) {
		if cerr := m.commit(context.WithoutCancel(ctx)); cerr != nil {
			c.log.Warn("final offset commit failed", "err", cerr)
		}
	}
	return m.resumePoints(), err
}

// readPartition fetches one partition in order and hands each record to
// the merge loop, waiting at records that went to every partition.
func (c *Consumer) readPartition(ctx context.Context, p int, offset int64, out chan<- item) {
	f, err := dialFetcher(ctx, fetchTarget{brokers: c.cfg.Brokers, topic: c.cfg.Topic, partition: p, dialer: c.cfg.Security.dialer(), maxWait: c.cfg.MaxWait}, offset)
	if err != nil {
		if ctx.Err() == nil {
			send(ctx, out, item{partition: p, err: err})
		}
		return
	}
	defer f.close()
	f.resyncs = &c.stats.resyncs
	for {
		msgs, err := f.fetch(ctx)
		if err != nil {
			if ctx.Err() == nil {
				send(ctx, out, item{partition: p, err: err})
			}
			return
		}
		for i := range msgs {
			if !c.hand(ctx, p, &msgs[i], out) {
				return
			}
		}
	}
}

// hand decodes one record and gives it to the merge loop; a record written
// to every partition is held until the merge loop releases it. false if
// ctx ended.
func (c *Consumer) hand(ctx context.Context, p int, msg *kafkago.Message, out chan<- item) bool {
	it := item{partition: p, offset: msg.Offset}
	it.rec, it.err = decodeRecord(msg)
	if c.hook != nil && it.err == nil {
		c.hook(stageFetched, it.rec.kind, it.rec.position(), msg.Time)
	}
	if _, ok := header(msg, headerPartition); ok && it.err == nil && it.rec.kind == kindChange {
		it.release = make(chan struct{})
	}
	if !send(ctx, out, it) {
		return false
	}
	if it.release != nil {
		select {
		case <-it.release:
		case <-ctx.Done():
			return false
		}
	}
	return true
}

func send(ctx context.Context, out chan<- item, it item) bool {
	select {
	case out <- it:
		return true
	case <-ctx.Done():
		return false
	}
}
