package materialize

import (
	"context"
	"sync"
	"time"

	"github.com/freshetdb/freshet/schemas"
)

// watermark is the position up to which every transaction of the source
// has been applied, with the commit time of the marker that said so.
type watermark struct {
	mu   sync.Mutex
	pos  schemas.Position
	at   time.Time
	set  bool
	wake chan struct{} // closed and replaced on every advance
}

func newWatermark() *watermark { return &watermark{wake: make(chan struct{})} }

// advance moves the watermark to p (never back).
func (w *watermark) advance(p schemas.Progress) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.set && w.pos.Covers(p.Position) && !p.CommitTime.After(w.at) {
		return
	}
	if !w.set || !w.pos.Covers(p.Position) {
		w.pos = p.Position
	}
	if p.CommitTime.After(w.at) {
		w.at = p.CommitTime
	}
	w.set = true
	close(w.wake)
	w.wake = make(chan struct{})
}

// reset forgets the watermark: nothing is served until the next marker.
func (w *watermark) reset() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.set = false
	w.pos = schemas.Position{}
	w.at = time.Time{}
}

// get returns the watermark; ok is false before the first marker.
func (w *watermark) get() (schemas.Position, time.Time, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.pos, w.at, w.set
}

// waitFor waits until the watermark covers p, at most d; it reports
// whether it does.
func (w *watermark) waitFor(ctx context.Context, p schemas.Position, d time.Duration) bool {
	var timer *time.Timer
	for {
		w.mu.Lock()
		ok, wake := w.set && w.pos.Covers(p), w.wake
		w.mu.Unlock()
		if ok {
			return true
		}
		if d <= 0 {
			return false
		}
		if timer == nil {
			timer = time.NewTimer(d)
			defer timer.Stop()
		}
		select {
		case <-wake:
		case <-timer.C:
			return false
		case <-ctx.Done():
			return false
		}
	}
}
