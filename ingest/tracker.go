package ingest

import (
	"sync"
	"sync/atomic"

	"github.com/freshetdb/freshet/schemas"
)

// tracker turns out-of-order bus acknowledgements into the highest
// contiguously durable position. Safe for concurrent use.
type tracker struct {
	mu      sync.Mutex
	next    uint64 // sequence number of the next batch
	base    uint64 // sequence number of pending[0]
	pending []pendingBatch
	durable atomic.Pointer[schemas.Position]
	failed  chan error // receives the first failure
	space   chan struct{}
}

type pendingBatch struct {
	pos  schemas.Position
	done bool
}

func newTracker(from schemas.Position, maxInFlight int) *tracker {
	t := &tracker{failed: make(chan error, 1), space: make(chan struct{}, maxInFlight)}
	t.durable.Store(&from)
	return t
}

// add registers a batch about to be published, ending at pos. It blocks
// (via the caller's acquire) while too many batches are unacknowledged.
func (t *tracker) add(pos schemas.Position) uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	seq := t.next
	t.next++
	t.pending = append(t.pending, pendingBatch{pos: pos})
	return seq
}

// done records the bus's verdict on batch seq.
func (t *tracker) done(seq uint64, err error) {
	<-t.space
	if err != nil {
		select {
		case t.failed <- err:
		default:
		}
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if seq < t.base || seq-t.base >= uint64(len(t.pending)) {
		return // a second done for the same batch: a bus bug, but never move backwards
	}
	t.pending[seq-t.base].done = true
	n := 0
	for n < len(t.pending) && t.pending[n].done {
		n++
	}
	if n == 0 {
		return
	}
	pos := t.pending[n-1].pos
	t.durable.Store(&pos)
	t.pending = append(t.pending[:0], t.pending[n:]...)
	t.base += uint64(n)
}

func (t *tracker) position() schemas.Position { return *t.durable.Load() }
