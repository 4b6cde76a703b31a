package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	kafkago "github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/compress"

	"github.com/freshetdb/freshet/ingest"
	"github.com/freshetdb/freshet/schemas"
)

// ErrClosed is returned by Publish after Close.
var ErrClosed = errors.New("kafka producer closed")

// ProducerConfig configures a Producer.
type ProducerConfig struct {
	// Brokers are the bootstrap brokers, host:port. Required.
	Brokers []string
	// Topic is the source's topic. Required.
	Topic string
	// Partitions and ReplicationFactor are used when the topic has to be
	// created. Defaults 3 and 1. Every write puts a marker on every
	// partition and every region reads every partition, so each partition
	// adds a produce request and a fetch per write; more partitions only
	// spread decoding over more goroutines (ADR 0006).
	Partitions        int
	ReplicationFactor int
	// BatchTimeout is how long kafka-go waits to fill a batch for a
	// partition before sending it. The producer already hands kafka-go
	// everything that is waiting in one call (kafka-go assigns a call's
	// records to a partition's batch under a lock its timer also takes, so
	// the timer cannot cut a call's records in two), so this only adds
	// latency. Default 1µs; kafka-go's own default is 1s.
	BatchTimeout time.Duration
	// BatchSize is the most records kafka-go sends to one partition in one
	// request. Default 10000.
	BatchSize int
	// Compression of record batches. Default lz4.
	Compression compress.Compression
	// QueueBatches is how many batches Publish accepts before it waits for
	// Kafka. Default 256.
	QueueBatches int
	// WriteTimeout bounds one attempt to write to the broker. Default 10s.
	WriteTimeout time.Duration
	// Security is TLS and SASL for the brokers; zero: plaintext.
	Security Security
	// Logger receives operational messages; nil discards them.
	Logger *slog.Logger
}

// Producer is the ingest.Bus for one source's topic. It writes each
// batch's changes keyed by hash(table, primary key) with acks from every
// in-sync replica, and the batch's progress marker to every partition
// behind them: in the same write when each partition's share of it is one
// Kafka record batch (appended whole or not at all), else in the next write
// once Kafka acknowledged the data. Only then does it report the batch
// durable.
//
// A failed write poisons the producer: that batch and every later one
// report the error, because kafka-go has no idempotent producer and some
// records of the failed write may or may not be in Kafka. The ingest
// pipeline must restart from its durable position with a new Producer;
// consumers drop the duplicates this causes.
type Producer struct {
	cfg        ProducerConfig
	log        *slog.Logger
	w          *kafkago.Writer
	partitions int
	all        []int // 0 .. partitions-1
	queue      chan pending
	stop       chan struct{}
	wg         sync.WaitGroup // the writer goroutine
	publishing sync.WaitGroup // Publish calls under way

	mu     sync.Mutex
	failed error // the first write error; sticky
	closed bool

	hook stageHook // set by benchmarks before the first Publish

	// arena is where the writer goroutine carves record values and keys
	// from (see changeMessage). Bytes once carved are never written again,
	// so records of a finished write may share a chunk with the next.
	arena []byte
}

// batchBytes is kafka-go's BatchBytes: the most bytes of records it sends
// to one partition in one request. It stays under the broker's default
// message.max.bytes (1 MiB for a whole record batch): kafka-go counts
// records before compression, so a batch it builds always fits, whereas a
// larger limit could build a batch the broker refuses on every retry and
// stall the ingest for good.
const batchBytes = 960 << 10

type pending struct {
	b    *ingest.Batch
	done func(error)
}

var _ ingest.Bus = (*Producer)(nil)

// NewProducer validates cfg, creates the topic if it is missing and starts
// the writer.
func NewProducer(ctx context.Context, cfg ProducerConfig) (*Producer, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	n, err := ensureTopic(ctx, cfg.Security.client(cfg.Brokers, cfg.WriteTimeout), cfg.Topic, cfg.Partitions, cfg.ReplicationFactor)
	if err != nil {
		return nil, fmt.Errorf("kafka producer: %w", err)
	}
	p := &Producer{
		cfg: cfg, log: log, partitions: n,
		w: &kafkago.Writer{
			Addr:         kafkago.TCP(cfg.Brokers...),
			Transport:    cfg.Security.transport(),
			Topic:        cfg.Topic,
			Balancer:     &balancer{},
			RequiredAcks: kafkago.RequireAll, // the zero Writer would not wait for any ack
			BatchTimeout: cfg.BatchTimeout,
			BatchSize:    cfg.BatchSize,
			BatchBytes:   batchBytes,
			Compression:  cfg.Compression,
			WriteTimeout: cfg.WriteTimeout,
			ReadTimeout:  cfg.WriteTimeout,
			MaxAttempts:  3,
		},
		queue: make(chan pending, cfg.QueueBatches),
		stop:  make(chan struct{}),
	}
	for part := range n {
		p.all = append(p.all, part)
	}
	p.wg.Add(1)
	go p.run()
	return p, nil
}

func (cfg *ProducerConfig) defaults() error {
	switch {
	case len(cfg.Brokers) == 0:
		return errors.New("kafka producer: Brokers is required")
	case cfg.Topic == "":
		return errors.New("kafka producer: Topic is required")
	case cfg.Partitions < 0 || cfg.ReplicationFactor < 0 || cfg.BatchSize < 0 || cfg.QueueBatches < 0 ||
		cfg.BatchTimeout < 0 || cfg.WriteTimeout < 0:
		return errors.New("kafka producer: sizes and durations must not be negative")
	}
	cfg.Partitions = or(cfg.Partitions, 3)
	cfg.ReplicationFactor = or(cfg.ReplicationFactor, 1)
	cfg.BatchTimeout = or(cfg.BatchTimeout, time.Microsecond)
	cfg.BatchSize = or(cfg.BatchSize, 10000)
	cfg.QueueBatches = or(cfg.QueueBatches, 256)
	cfg.WriteTimeout = or(cfg.WriteTimeout, 10*time.Second)
	if cfg.Compression == 0 {
		cfg.Compression = compress.Lz4
	}
	return nil
}

func or[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// Partitions is the topic's partition count.
func (p *Producer) Partitions() int { return p.partitions }

// Publish implements ingest.Bus. It waits only while QueueBatches batches
// are already waiting for Kafka.
func (p *Producer) Publish(ctx context.Context, b *ingest.Batch, done func(error)) error {
	p.mu.Lock()
	closed, failed := p.closed, p.failed
	if !closed {
		p.publishing.Add(1)
		defer p.publishing.Done()
	}
	p.mu.Unlock()
	switch {
	case closed:
		return ErrClosed
	case failed != nil:
		return failed
	}
	select {
	case p.queue <- pending{b, done}:
		return nil
	case <-p.stop:
		return ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Close stops the writer after the queued batches and their markers are
// written (or fail).
func (p *Producer) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	p.mu.Unlock()
	close(p.stop)
	p.wg.Wait()
	// A Publish racing with Close may have queued after the writer left;
	// no Publish starts once closed is set.
	p.publishing.Wait()
	for {
		select {
		case pd := <-p.queue:
			pd.done(ErrClosed)
		default:
			return p.w.Close()
		}
	}
}

// run writes queued batches in order, one write at a time. A write
// carries the data of every batch waiting now and, when it is small enough
// to be appended atomically per partition, their progress marker: one
// acknowledged round trip per group. A larger write's marker goes at the
// front of the next one. An idle source's heartbeat goes out at once.
func (p *Producer) run() {
	defer p.wg.Done()
	var acked []pending // data durable; marker not yet
	for {
		group, open := p.gather(len(acked) == 0)
		if !open && len(group) == 0 && len(acked) == 0 {
			return
		}
		acked = p.writeGroup(acked, group)
	}
}

// gather takes every queued batch, waiting for the first one if wait is
// set. open is false once Close was called.
func (p *Producer) gather(wait bool) (group []pending, open bool) {
	if wait {
		select {
		case pd := <-p.queue:
			group = append(group, pd)
		case <-p.stop:
		}
	}
	for len(group) < cap(p.queue) {
		select {
		case pd := <-p.queue:
			group = append(group, pd)
		default:
			select {
			case <-p.stop:
				return group, false
			default:
				return group, true
			}
		}
	}
	return group, true
}

// writeGroup writes acked's last marker to every partition and group's
// data in one call, then reports acked's batches. group's own marker goes
// at the end of the same call when that is safe (see sealable), and group
// is reported too; otherwise group is returned: its data is durable, its
// marker goes with the next write. After a failure every batch, now and
// later, reports the error.
func (p *Producer) writeGroup(acked, group []pending) []pending {
	err := p.sticky()
	sealed := false
	if err == nil {
		p.trace(stageWrite, group)
		sealed, err = p.write(acked, group)
		if err != nil {
			err = summarize(err)
			p.mu.Lock()
			p.failed = fmt.Errorf("kafka producer: write to %s failed; restart from the durable position: %w", p.cfg.Topic, err)
			err = p.failed
			p.mu.Unlock()
			p.log.Error("kafka write failed; nothing later is acknowledged", "topic", p.cfg.Topic, "err", err)
		}
	}
	for _, pd := range acked {
		pd.done(err)
	}
	if err != nil || sealed {
		for _, pd := range group {
			pd.done(err)
		}
		return nil
	}
	return group
}

// trace tells the benchmarks' hook that batches reached stage.
func (p *Producer) trace(stage string, batches []pending) {
	if p.hook == nil {
		return
	}
	for _, pd := range batches {
		p.hook(stage, "", pd.b.Progress.Position, time.Time{})
	}
}

func (p *Producer) sticky() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.failed
}

// write sends the last progress marker of acked to every partition (acked's
// data is already durable), then group's data, then, if sealable, group's
// last marker to every partition; sealed says whether it did. Keyless
// changes and resets go to every partition in their place in the order.
func (p *Producer) write(acked, group []pending) (sealed bool, err error) {
	n := 2 * p.partitions // the markers
	for _, pd := range group {
		n += len(pd.b.Changes) // and one per keyed change: most of them
	}
	msgs, err := p.appendMarkers(make([]kafkago.Message, 0, n), acked)
	if err != nil {
		return false, err
	}
	for _, pd := range group {
		if msgs, err = p.appendBatch(msgs, pd.b); err != nil {
			return false, err
		}
	}
	if withMarkers, err := p.appendMarkers(msgs, group); err != nil {
		return false, err
	} else if len(withMarkers) > len(msgs) && p.sealable(withMarkers) {
		msgs, sealed = withMarkers, true
	}
	if len(msgs) == 0 {
		return false, nil
	}
	// kafka-go gives each partition's batch room for BatchSize records up
	// front (1.5 MB at the default 10000, per partition and write); no
	// partition's share of this write is larger than the write, so capping
	// it there changes no request. Only this goroutine writes, and kafka-go
	// reads BatchSize in WriteMessages' own goroutine.
	p.w.BatchSize = min(p.cfg.BatchSize, len(msgs))
	// WriteTimeout and MaxAttempts bound the write.
	return sealed, p.w.WriteMessages(context.Background(), msgs...)
}

// appendMarkers appends the last progress marker of batches, one copy per
// partition; nothing if no batch carries one.
func (p *Producer) appendMarkers(msgs []kafkago.Message, batches []pending) ([]kafkago.Message, error) {
	var progress *schemas.Progress
	for _, pd := range batches {
		if pd.b.Reset == nil && !pd.b.Progress.Position.IsZero() {
			progress = &pd.b.Progress
		}
	}
	if progress == nil {
		return msgs, nil
	}
	for part := range p.partitions {
		m, err := controlMessage(kindProgress, progress, part)
		if err != nil {
			return nil, err
		}
		msgs = append(msgs, m)
	}
	return msgs, nil
}

// sealable reports whether a marker may ride in the same write as the data
// it covers. kafka-go turns one partition's records of one WriteMessages
// call into one produce request and one Kafka record batch unless they
// exceed BatchSize records or BatchBytes, and the broker appends a record
// batch whole or not at all: a marker in the same record batch as the data
// before it is in the log exactly when that data is. Writes never overlap,
// so every earlier write was acknowledged. A write that kafka-go would split
// could land its marker's batch after the data's batch failed, so large
// writes send the marker in the next one instead. The bounds are checked on
// the whole write, which is at least any one partition's share of it.
func (p *Producer) sealable(msgs []kafkago.Message) bool {
	if len(msgs) > p.cfg.BatchSize {
		return false
	}
	var size int
	for i := range msgs {
		m := &msgs[i]
		size += len(m.Key) + len(m.Value) + recordOverhead
		for _, h := range m.Headers {
			size += len(h.Key) + len(h.Value) + recordOverhead
		}
	}
	return size <= batchBytes/2
}

// recordOverhead over-estimates what kafka-go counts toward BatchBytes for
// a record or header besides its key and value.
const recordOverhead = 64

// appendBatch encodes one batch's data records.
func (p *Producer) appendBatch(msgs []kafkago.Message, b *ingest.Batch) ([]kafkago.Message, error) {
	if b.Reset != nil {
		for part := range p.partitions {
			m, err := controlMessage(kindReset, b.Reset, part)
			if err != nil {
				return nil, err
			}
			msgs = append(msgs, m)
		}
		return msgs, nil
	}
	for i := range b.Changes {
		c := &b.Changes[i]
		targets := []int{-1}
		if broadcast(c) {
			targets = p.all
		}
		for _, part := range targets {
			var m kafkago.Message
			var err error
			m, p.arena, err = changeMessage(c, part, p.arena)
			if err != nil {
				return nil, fmt.Errorf("encode %s.%s at %s: %w", c.Schema, c.Table, c.Position, err)
			}
			msgs = append(msgs, m)
		}
	}
	return msgs, nil
}

// summarize shortens kafka-go's WriteErrors, which holds one error per
// record (thousands of copies of "connection refused"), to a count and the
// first distinct error.
func summarize(err error) error {
	var we kafkago.WriteErrors
	if !errors.As(err, &we) {
		return err
	}
	var first error
	failed := 0
	for _, e := range we {
		if e != nil {
			failed++
			if first == nil {
				first = e
			}
		}
	}
	return fmt.Errorf("%d of %d records not written: %w", failed, len(we), first)
}
