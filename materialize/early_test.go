package materialize

import (
	"context"
	"testing"

	"github.com/freshetdb/freshet/ingest"
	"github.com/freshetdb/freshet/schemas"
)

// gateVisibility blocks WaitVisible until released, like an origin whose
// committing backend has not yet left the ProcArray.
type gateVisibility struct {
	asked chan struct{}
	open  chan struct{}
}

func (g *gateVisibility) WaitVisible(ctx context.Context, _ []uint32) error {
	g.asked <- struct{}{}
	select {
	case <-g.open:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// TestEarlyInvalidationKeepsTheGuard: a batch's entries stop being served
// as soon as it arrives, before its commits are visible; fills that ask
// the origin in that window are refused or invalidated once visibility is
// confirmed; the watermark waits for it.
func TestEarlyInvalidationKeepsTheGuard(t *testing.T) {
	gate := &gateVisibility{asked: make(chan struct{}, 1), open: make(chan struct{})}
	h := newHarness(t, Config{Visibility: gate})
	q5 := h.query("SELECT v FROM t WHERE id = 5")
	q6 := h.query("SELECT v FROM t WHERE id = 6")
	qAdmitted := h.query("SELECT v FROM t WHERE id = 5 AND v >= 0")
	if !h.fill(q5, "old") || !h.fill(q6, "other") {
		t.Fatal("fill refused")
	}
	before, _, _ := h.m.Watermark()

	c := update(5, 0, 1)
	c.Schema, c.Columns, c.TxID = "public", tColumns, 900
	c.Position = schemas.Position{LSN: before.LSN + 100}
	b := &ingest.Batch{Changes: []schemas.Change{c},
		Progress: schemas.Progress{Position: c.Position, CommitTime: h.clock.Now()}}
	applied := make(chan error, 1)
	go func() { applied <- h.m.Apply(context.Background(), b) }()
	<-gate.asked // Apply is waiting for visibility

	if _, ok := h.hit(q5); ok {
		t.Fatal("entry of the changed value served while its change awaits visibility")
	}
	if _, ok := h.hit(q6); !ok {
		t.Fatal("entry of another value lost")
	}
	// Both ask the origin now, which may not show the change yet.
	_, inFlight, _ := h.m.Get(context.Background(), q5)
	if inFlight == nil {
		t.Fatal("no ticket")
	}
	if !h.fill(qAdmitted, "maybe old") {
		t.Fatal("fill in the window refused before visibility was confirmed")
	}
	if w, _, _ := h.m.Watermark(); w != before {
		t.Fatalf("watermark moved to %s before visibility", w)
	}

	close(gate.open)
	if err := <-applied; err != nil {
		t.Fatal(err)
	}
	if h.m.Put(inFlight, []byte("maybe old")) {
		t.Fatal("fill begun before visibility was confirmed admitted after it")
	}
	if _, ok := h.hit(qAdmitted); ok {
		t.Fatal("entry filled before visibility was confirmed survived it")
	}
	if w, _, _ := h.m.Watermark(); !w.Covers(c.Position) {
		t.Fatalf("watermark %s does not cover the batch", w)
	}
	if !h.fill(q5, "new") {
		t.Fatal("fill after visibility refused")
	}
	if r, ok := h.hit(q5); !ok || r != "new" {
		t.Fatalf("after visibility: %q %v", r, ok)
	}
}
