package memory

import (
	"context"
	"errors"
	"sync"

	"github.com/freshetdb/freshet/ingest"
)

// ErrClosed is returned after Close.
var ErrClosed = errors.New("memory bus closed")

// Config configures a Bus.
type Config struct {
	// Capacity is how many batches the slowest subscriber may fall behind
	// before Publish waits for it; with no subscribers, how many recent
	// batches are retained for a late one. Default 1024.
	Capacity int
}

// Bus is an in-process ingest.Bus. Safe for concurrent use.
type Bus struct {
	cap    int
	mu     sync.Mutex
	log    []*ingest.Batch
	base   uint64 // offset of log[0]
	subs   map[*Subscription]struct{}
	wake   chan struct{} // closed and replaced whenever the log or a subscriber moves
	closed bool
}

var _ ingest.Bus = (*Bus)(nil)

// New returns an empty bus.
func New(cfg Config) (*Bus, error) {
	if cfg.Capacity < 0 {
		return nil, errors.New("memory: Capacity must not be negative")
	}
	if cfg.Capacity == 0 {
		cfg.Capacity = 1024
	}
	return &Bus{cap: cfg.Capacity, subs: map[*Subscription]struct{}{}, wake: make(chan struct{})}, nil
}

// Publish implements ingest.Bus: it waits while the slowest subscriber is
// Capacity batches behind, appends b, and reports it durable at once.
func (b *Bus) Publish(ctx context.Context, batch *ingest.Batch, done func(error)) error {
	b.mu.Lock()
	for !b.closed && b.behind() >= b.cap {
		wake := b.wake
		b.mu.Unlock()
		select {
		case <-wake:
		case <-ctx.Done():
			return ctx.Err()
		}
		b.mu.Lock()
	}
	if b.closed {
		b.mu.Unlock()
		return ErrClosed
	}
	b.log = append(b.log, batch)
	b.trim()
	b.signal()
	b.mu.Unlock()
	done(nil)
	return nil
}

// behind is how many batches the slowest subscriber has yet to read.
func (b *Bus) behind() int {
	end := b.base + uint64(len(b.log))
	worst := 0
	for s := range b.subs {
		worst = max(worst, int(end-s.next))
	}
	return worst
}

// trim drops batches every subscriber has read, keeping at most cap.
func (b *Bus) trim() {
	keepFrom := b.base + uint64(len(b.log))
	if len(b.log) > b.cap {
		keepFrom -= uint64(b.cap)
	} else {
		keepFrom = b.base
	}
	for s := range b.subs {
		keepFrom = min(keepFrom, s.next)
	}
	if n := int(keepFrom - b.base); n > 0 {
		clear(b.log[:n])
		b.log = b.log[n:]
		b.base = keepFrom
	}
}

func (b *Bus) signal() {
	close(b.wake)
	b.wake = make(chan struct{})
}

// Close wakes every waiter with ErrClosed.
func (b *Bus) Close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	b.signal()
}

// Subscribe starts reading at the oldest retained batch.
func (b *Bus) Subscribe() *Subscription {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := &Subscription{bus: b, next: b.base}
	b.subs[s] = struct{}{}
	return s
}

// Subscription reads a bus's batches in order. Not safe for concurrent use.
type Subscription struct {
	bus  *Bus
	next uint64
}

// Next returns the next batch, waiting for one.
func (s *Subscription) Next(ctx context.Context) (*ingest.Batch, error) {
	b := s.bus
	b.mu.Lock()
	for {
		if s.next < b.base+uint64(len(b.log)) {
			batch := b.log[s.next-b.base]
			s.next++
			b.trim()
			b.signal()
			b.mu.Unlock()
			return batch, nil
		}
		if b.closed {
			b.mu.Unlock()
			return nil, ErrClosed
		}
		wake := b.wake
		b.mu.Unlock()
		select {
		case <-wake:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		b.mu.Lock()
	}
}

// Close ends the subscription so it no longer holds publishers back.
func (s *Subscription) Close() {
	b := s.bus
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.subs, s)
	b.signal()
}
