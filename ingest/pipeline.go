package ingest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/freshetdb/freshet/schemas"
)

// Config configures a Pipeline.
type Config struct {
	// Source is the change stream to read. Required.
	Source Source
	// Bus receives the batches. Required.
	Bus Bus
	// Name is the source's configured name, used in reset events. Required.
	Name string
	// From is where the bus's own record ends (the last progress marker it
	// holds). Transactions the source re-sends up to From are dropped, and
	// the source starts there. Zero means the source's own saved position.
	From schemas.Position
	// MaxBatchChanges caps the changes gathered into one batch from
	// transactions that are already waiting. A single larger transaction
	// is still published whole. Default 4096.
	MaxBatchChanges int
	// QueueTransactions is how many committed transactions may wait for
	// the publisher before the source is held back. Default 1024.
	QueueTransactions int
	// MaxInFlight is how many published batches may await the bus's
	// acknowledgement before publishing waits. Default 64.
	MaxInFlight int
	// RetryBackoff is the first wait before streaming again after a
	// temporary source failure (a lost connection); it doubles up to 30s
	// while failures repeat. Default 1s; negative stops at the first
	// failure.
	RetryBackoff time.Duration
	// Logger receives operational messages; nil discards them.
	Logger *slog.Logger
}

// Pipeline moves a source's transactions to a bus in commit order and tells
// the source how far it may acknowledge: up to the highest commit position
// whose batch, and every batch before it, the bus has made durable.
//
// A Pipeline runs once; it is safe for concurrent use by its Source.
type Pipeline struct {
	cfg     Config
	log     *slog.Logger
	queue   chan Transaction
	tracker *tracker
	emitted atomic.Pointer[schemas.Position]
	dropped atomic.Uint64
}

var _ Emitter = (*Pipeline)(nil)

// New validates cfg and returns a pipeline ready to Run.
func New(cfg Config) (*Pipeline, error) {
	switch {
	case cfg.Source == nil:
		return nil, errors.New("ingest: Config.Source is required")
	case cfg.Bus == nil:
		return nil, errors.New("ingest: Config.Bus is required")
	case cfg.Name == "":
		return nil, errors.New("ingest: Config.Name is required")
	case cfg.MaxBatchChanges < 0 || cfg.QueueTransactions < 0 || cfg.MaxInFlight < 0:
		return nil, errors.New("ingest: limits must not be negative")
	}
	if cfg.MaxBatchChanges == 0 {
		cfg.MaxBatchChanges = 4096
	}
	if cfg.QueueTransactions == 0 {
		cfg.QueueTransactions = 1024
	}
	if cfg.MaxInFlight == 0 {
		cfg.MaxInFlight = 64
	}
	if cfg.RetryBackoff == 0 {
		cfg.RetryBackoff = time.Second
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	p := &Pipeline{
		cfg: cfg, log: log,
		queue:   make(chan Transaction, cfg.QueueTransactions),
		tracker: newTracker(cfg.From, cfg.MaxInFlight),
	}
	from := cfg.From
	p.emitted.Store(&from)
	return p, nil
}

// Run streams until ctx ends, the source fails, or the bus fails. It
// returns the first error; a source reset is published to the bus first
// and returned as a *ResetError.
func (p *Pipeline) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := p.publish(ctx); err != nil {
			cancel(err)
		}
	}()
	err := p.stream(ctx)
	if cause := context.Cause(ctx); cause != nil && !errors.Is(cause, context.Canceled) {
		err = cause // the bus failed first; the source only saw the cancellation
	}
	cancel(err)
	wg.Wait()
	var reset *ResetError
	if errors.As(err, &reset) {
		if perr := p.publishReset(context.WithoutCancel(ctx), reset.Reset); perr != nil {
			return errors.Join(err, perr)
		}
	}
	return err
}

// maxRetryBackoff caps the wait between reconnection attempts.
const maxRetryBackoff = 30 * time.Second

// stream runs the source, and runs it again after a temporary failure,
// from the durable position: what it re-sends up to what was already
// emitted is dropped by Emit, so consumers see each transaction once.
func (p *Pipeline) stream(ctx context.Context) error {
	backoff := p.cfg.RetryBackoff
	for {
		from := p.cfg.From
		if d := p.Durable(); !d.IsZero() {
			from = d
		}
		began := time.Now()
		err := p.cfg.Source.Stream(ctx, from, p)
		if ctx.Err() != nil || backoff < 0 || !Temporary(err) {
			return err
		}
		if time.Since(began) > maxRetryBackoff {
			backoff = p.cfg.RetryBackoff // it had been streaming fine
		}
		p.log.Warn("source failed; streaming again", "err", err, "after", backoff, "from", from.String())
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			return err
		}
		backoff = min(2*backoff, maxRetryBackoff)
	}
}

// Temporary reports whether err says so (a Temporary() bool method
// anywhere in its chain): a failure worth streaming again after.
func Temporary(err error) bool {
	var t interface{ Temporary() bool }
	return errors.As(err, &t) && t.Temporary()
}

// Emit implements Emitter. Transactions at or before what was already
// emitted (the origin re-sends what it was not told is flushed) are
// dropped: consumers have them, with the same positions.
func (p *Pipeline) Emit(ctx context.Context, tx Transaction) error {
	last := p.emitted.Load()
	if !last.IsZero() && last.Covers(tx.Progress.Position) {
		p.dropped.Add(1)
		return nil
	}
	select {
	case p.queue <- tx:
	case <-ctx.Done():
		return context.Cause(ctx)
	}
	pos := tx.Progress.Position
	p.emitted.Store(&pos)
	return nil
}

// Durable implements Emitter.
func (p *Pipeline) Durable() schemas.Position { return p.tracker.position() }

// Idle implements Emitter.
func (p *Pipeline) Idle() bool { return *p.emitted.Load() == p.tracker.position() }

// Dropped counts re-sent transactions dropped as duplicates.
func (p *Pipeline) Dropped() uint64 { return p.dropped.Load() }

func (p *Pipeline) publish(ctx context.Context) error {
	for {
		var tx Transaction
		select {
		case tx = <-p.queue:
		case err := <-p.tracker.failed:
			return fmt.Errorf("bus: %w", err)
		case <-ctx.Done():
			return nil
		}
		b := p.gather(tx)
		if err := p.send(ctx, b); err != nil {
			return err
		}
	}
}

// gather starts a batch with tx and adds the transactions already queued,
// up to MaxBatchChanges.
func (p *Pipeline) gather(tx Transaction) *Batch {
	b := &Batch{Changes: tx.Changes, Progress: tx.Progress}
	for len(b.Changes) < p.cfg.MaxBatchChanges {
		select {
		case next := <-p.queue:
			b.Changes = append(b.Changes, next.Changes...)
			b.Progress = next.Progress
		default:
			return b
		}
	}
	return b
}

func (p *Pipeline) send(ctx context.Context, b *Batch) error {
	select {
	case p.tracker.space <- struct{}{}:
	case err := <-p.tracker.failed:
		return fmt.Errorf("bus: %w", err)
	case <-ctx.Done():
		return nil
	}
	seq := p.tracker.add(b.Progress.Position)
	if err := p.cfg.Bus.Publish(ctx, b, func(err error) { p.tracker.done(seq, err) }); err != nil {
		return fmt.Errorf("bus: publish batch ending at %s: %w", b.Progress.Position, err)
	}
	return nil
}

func (p *Pipeline) publishReset(ctx context.Context, r schemas.Reset) error {
	done := make(chan error, 1)
	b := &Batch{Reset: &r, Progress: schemas.Progress{Source: r.Source, Position: r.Position}}
	if err := p.cfg.Bus.Publish(ctx, b, func(err error) { done <- err }); err != nil {
		return fmt.Errorf("bus: publish reset: %w", err)
	}
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("bus: reset not durable: %w", err)
		}
		p.log.Error("source reset published; stopping until an operator decides", "source", r.Source, "reason", r.Reason)
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
