package ingest_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/freshetdb/freshet/ingest"
	"github.com/freshetdb/freshet/schemas"
)

type sourceFunc func(ctx context.Context, from schemas.Position, out ingest.Emitter) error

func (f sourceFunc) Stream(ctx context.Context, from schemas.Position, out ingest.Emitter) error {
	return f(ctx, from, out)
}

// holdBus keeps every batch and its done callback for the test to settle.
type holdBus struct {
	mu      sync.Mutex
	batches []*ingest.Batch
	dones   []func(error)
	arrived chan struct{}
}

func newHoldBus() *holdBus { return &holdBus{arrived: make(chan struct{}, 100)} }

func (b *holdBus) Publish(_ context.Context, batch *ingest.Batch, done func(error)) error {
	b.mu.Lock()
	b.batches = append(b.batches, batch)
	b.dones = append(b.dones, done)
	b.mu.Unlock()
	b.arrived <- struct{}{}
	return nil
}

func (b *holdBus) ack(i int, err error) {
	b.mu.Lock()
	done := b.dones[i]
	b.mu.Unlock()
	done(err)
}

func (b *holdBus) wait(t *testing.T, n int) {
	t.Helper()
	for range n {
		select {
		case <-b.arrived:
		case <-time.After(5 * time.Second):
			t.Fatal("batch never published")
		}
	}
}

func tx(lsn schemas.LSN, n int) ingest.Transaction {
	pos := schemas.Position{LSN: lsn}
	t := ingest.Transaction{Progress: schemas.Progress{Source: "s", Position: pos}}
	for i := range n {
		t.Changes = append(t.Changes, schemas.Change{Op: schemas.OpCreate, Position: pos, Seq: uint32(i)})
	}
	return t
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func newPipeline(t *testing.T, src ingest.Source, bus ingest.Bus, from schemas.Position, maxBatch int) *ingest.Pipeline {
	t.Helper()
	p, err := ingest.New(ingest.Config{Source: src, Bus: bus, Name: "s", From: from, MaxBatchChanges: maxBatch})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestDurableIsContiguous: a later batch acknowledged first must not move
// the durable position past an earlier one still pending.
func TestDurableIsContiguous(t *testing.T) {
	bus := newHoldBus()
	emitted := make(chan ingest.Emitter, 1)
	src := sourceFunc(func(ctx context.Context, _ schemas.Position, out ingest.Emitter) error {
		for _, lsn := range []schemas.LSN{10, 20, 30} {
			if err := out.Emit(ctx, tx(lsn, 1)); err != nil {
				return err
			}
			// One transaction per batch: wait until it is published.
			eventually(t, "published", func() bool { bus.mu.Lock(); defer bus.mu.Unlock(); return len(bus.batches) == int(lsn/10) })
		}
		emitted <- out
		<-ctx.Done()
		return ctx.Err()
	})
	p := newPipeline(t, src, bus, schemas.Position{LSN: 5}, 1)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- p.Run(ctx) }()
	out := <-emitted
	if out.Idle() {
		t.Fatal("Idle with three unacknowledged batches")
	}
	bus.ack(2, nil)
	bus.ack(1, nil)
	if got := p.Durable().LSN; got != 5 {
		t.Fatalf("durable = %d with the first batch pending, want 5", got)
	}
	bus.ack(0, nil)
	if got := p.Durable().LSN; got != 30 {
		t.Fatalf("durable = %d after all acks, want 30", got)
	}
	if !out.Idle() {
		t.Fatal("not Idle with everything acknowledged")
	}
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("Run = %v", err)
	}
}

// TestBusFailureStops: a batch the bus cannot make durable stops the
// pipeline and the durable position stays before it.
func TestBusFailureStops(t *testing.T) {
	bus := newHoldBus()
	src := sourceFunc(func(ctx context.Context, _ schemas.Position, out ingest.Emitter) error {
		if err := out.Emit(ctx, tx(10, 2)); err != nil {
			return err
		}
		<-ctx.Done()
		return ctx.Err()
	})
	p := newPipeline(t, src, bus, schemas.Position{}, 0)
	errc := make(chan error, 1)
	go func() { errc <- p.Run(context.Background()) }()
	bus.wait(t, 1)
	boom := errors.New("broker down")
	bus.ack(0, boom)
	select {
	case err := <-errc:
		if !errors.Is(err, boom) {
			t.Fatalf("Run = %v, want the bus error", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("pipeline kept running after the bus failed")
	}
	if p.Durable().LSN != 0 {
		t.Fatalf("durable moved to %d past a failed batch", p.Durable().LSN)
	}
}

// TestRedeliveredTransactionsDropped: what the origin re-sends up to From
// (or up to what was already emitted) never reaches the bus again.
func TestRedeliveredTransactionsDropped(t *testing.T) {
	bus := &ackBus{}
	src := sourceFunc(func(ctx context.Context, _ schemas.Position, out ingest.Emitter) error {
		for _, lsn := range []schemas.LSN{5, 10, 15, 15, 12, 20} {
			if err := out.Emit(ctx, tx(lsn, 1)); err != nil {
				return err
			}
		}
		eventually(t, "20 is durable", func() bool { return out.Durable().LSN == 20 })
		return errors.New("source done")
	})
	p := newPipeline(t, src, bus, schemas.Position{LSN: 10}, 0)
	if err := p.Run(context.Background()); err == nil || err.Error() != "source done" {
		t.Fatalf("Run = %v", err)
	}
	var got []schemas.LSN
	for _, b := range bus.batches {
		for _, c := range b.Changes {
			got = append(got, c.Position.LSN)
		}
	}
	if len(got) != 2 || got[0] != 15 || got[1] != 20 || p.Dropped() != 4 {
		t.Fatalf("published %v, dropped %d; want [15 20] and 4 dropped", got, p.Dropped())
	}
}

// TestBatchesGatherWaitingTransactions: queued transactions share a batch,
// whose progress is the last one's position.
func TestBatchesGatherWaitingTransactions(t *testing.T) {
	bus := newHoldBus()
	release := make(chan struct{})
	block := &blockingBus{holdBus: bus, release: release}
	src := sourceFunc(func(ctx context.Context, _ schemas.Position, out ingest.Emitter) error {
		for lsn := schemas.LSN(1); lsn <= 5; lsn++ {
			if err := out.Emit(ctx, tx(lsn*10, 2)); err != nil {
				return err
			}
		}
		close(release)
		<-ctx.Done()
		return ctx.Err()
	})
	p := newPipeline(t, src, block, schemas.Position{}, 100)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = p.Run(ctx) }()
	eventually(t, "all changes published", func() bool {
		bus.mu.Lock()
		defer bus.mu.Unlock()
		n := 0
		for _, b := range bus.batches {
			n += len(b.Changes)
		}
		return n == 10
	})
	bus.mu.Lock()
	defer bus.mu.Unlock()
	last := bus.batches[len(bus.batches)-1]
	if len(bus.batches) > 2 || last.Progress.Position.LSN != 50 {
		t.Fatalf("%d batches, last ending at %d; want the waiting transactions gathered, ending at 50", len(bus.batches), last.Progress.Position.LSN)
	}
}

// blockingBus holds the first Publish until release, so transactions queue.
type blockingBus struct {
	*holdBus
	release chan struct{}
	once    sync.Once
}

func (b *blockingBus) Publish(ctx context.Context, batch *ingest.Batch, done func(error)) error {
	b.once.Do(func() { <-b.release })
	return b.holdBus.Publish(ctx, batch, done)
}

// TestResetIsPublished: a source reset reaches the bus before Run returns.
func TestResetIsPublished(t *testing.T) {
	bus := &ackBus{}
	want := schemas.Reset{Source: "s", Reason: "slot gone", Position: schemas.Position{LSN: 7}}
	src := sourceFunc(func(context.Context, schemas.Position, ingest.Emitter) error {
		return &ingest.ResetError{Reset: want}
	})
	p := newPipeline(t, src, bus, schemas.Position{LSN: 7}, 0)
	var reset *ingest.ResetError
	if err := p.Run(context.Background()); !errors.As(err, &reset) {
		t.Fatalf("Run = %v, want a ResetError", err)
	}
	if len(bus.batches) != 1 || bus.batches[0].Reset == nil || *bus.batches[0].Reset != want {
		t.Fatalf("bus got %+v, want the reset", bus.batches)
	}
}

type ackBus struct {
	mu      sync.Mutex
	batches []*ingest.Batch
}

func (b *ackBus) Publish(_ context.Context, batch *ingest.Batch, done func(error)) error {
	b.mu.Lock()
	b.batches = append(b.batches, batch)
	b.mu.Unlock()
	done(nil)
	return nil
}

func TestNewValidates(t *testing.T) {
	src := sourceFunc(func(context.Context, schemas.Position, ingest.Emitter) error { return nil })
	for name, cfg := range map[string]ingest.Config{
		"no source":      {Bus: &ackBus{}, Name: "s"},
		"no bus":         {Source: src, Name: "s"},
		"no name":        {Source: src, Bus: &ackBus{}},
		"negative limit": {Source: src, Bus: &ackBus{}, Name: "s", MaxInFlight: -1},
	} {
		if _, err := ingest.New(cfg); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

type tempErr struct{}

func (tempErr) Error() string   { return "connection lost" }
func (tempErr) Temporary() bool { return true }

// TestRetryFromDurable: after a temporary failure the source streams again
// from the durable position, and what it re-sends is dropped.
func TestRetryFromDurable(t *testing.T) {
	bus := &ackBus{}
	var froms []schemas.LSN
	calls := 0
	src := sourceFunc(func(ctx context.Context, from schemas.Position, out ingest.Emitter) error {
		froms = append(froms, from.LSN)
		calls++
		if calls == 1 {
			if err := out.Emit(ctx, tx(10, 1)); err != nil {
				return err
			}
			eventually(t, "10 durable", func() bool { return out.Durable().LSN == 10 })
			return fmt.Errorf("receive: %w", tempErr{})
		}
		for _, lsn := range []schemas.LSN{10, 20} { // 10 again: re-sent
			if err := out.Emit(ctx, tx(lsn, 1)); err != nil {
				return err
			}
		}
		eventually(t, "20 durable", func() bool { return out.Durable().LSN == 20 })
		return errors.New("permanent")
	})
	p, err := ingest.New(ingest.Config{Source: src, Bus: bus, Name: "s", RetryBackoff: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Run(context.Background()); err == nil || err.Error() != "permanent" {
		t.Fatalf("Run = %v, want the permanent error", err)
	}
	if len(froms) != 2 || froms[0] != 0 || froms[1] != 10 {
		t.Fatalf("streamed from %v, want [0 10]", froms)
	}
	n := 0
	for _, b := range bus.batches {
		n += len(b.Changes)
	}
	if n != 2 || p.Dropped() != 1 {
		t.Fatalf("%d changes published, %d dropped; want 2 and 1", n, p.Dropped())
	}
}
