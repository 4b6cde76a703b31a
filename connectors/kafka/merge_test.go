package kafka

import (
	"context"
	"io"
	"log/slog"
	"math"
	"testing"

	"github.com/freshetdb/freshet/schemas"
)

// The merge loop's rules, fed by hand (the partitions' readers are the
// faked seam; the integration tests run them against Kafka).

type collect struct{ evs []Event }

func (c *collect) Apply(_ context.Context, ev Event) error {
	c.evs = append(c.evs, ev)
	return nil
}

func testMerger(t *testing.T, start []resumePoint) (*merger, *collect) {
	t.Helper()
	h := &collect{}
	c := &Consumer{cfg: ConsumerConfig{Handler: h}, log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	return newMerger(c, start), h
}

func lsn(n uint64) schemas.Position { return schemas.Position{LSN: schemas.LSN(n)} }

func keyed(p int, off int64, at uint64, seq uint32) item {
	return item{partition: p, offset: off, rec: record{kind: kindChange, change: &schemas.Change{Table: "t", Op: schemas.OpCreate, Position: lsn(at), Seq: seq}}}
}

func wide(p int, off int64, at uint64) item {
	it := item{partition: p, offset: off, rec: record{kind: kindChange, change: &schemas.Change{Table: "t", Op: schemas.OpTruncate, Position: lsn(at)}}}
	it.release = make(chan struct{})
	return it
}

func mark(p int, off int64, at uint64) item {
	return item{partition: p, offset: off, rec: record{kind: kindProgress, progress: schemas.Progress{Position: lsn(at)}}}
}

func released(it item) bool {
	select {
	case <-it.release:
		return true
	default:
		return false
	}
}

func fresh(n int) []resumePoint {
	pts := make([]resumePoint, n)
	for i := range pts {
		pts[i] = resumePoint{offset: 0, next: -1}
	}
	return pts
}

func kinds(evs []Event) []EventKind {
	var out []EventKind
	for _, ev := range evs {
		out = append(out, ev.Kind)
	}
	return out
}

func TestMergeBarrierWaitsForEveryPartition(t *testing.T) {
	ctx := context.Background()
	m, h := testMerger(t, fresh(3))
	b0, b1, b2 := wide(0, 5, 20), wide(1, 7, 20), wide(2, 2, 20)
	for _, it := range []item{keyed(0, 4, 10, 0), b0, keyed(1, 6, 11, 0), b1} {
		if err := m.handle(ctx, it); err != nil {
			t.Fatal(err)
		}
	}
	if released(b0) || released(b1) || len(h.evs) != 2 {
		t.Fatalf("barrier passed before partition 2 reached it: %v", kinds(h.evs))
	}
	if err := m.handle(ctx, b2); err != nil {
		t.Fatal(err)
	}
	if !released(b0) || !released(b1) || !released(b2) {
		t.Fatal("barrier not released once every partition reached it")
	}
	if len(h.evs) != 3 || h.evs[2].Change.Op != schemas.OpTruncate {
		t.Fatalf("events %v, want two changes then one truncate", kinds(h.evs))
	}
	// A second copy (a restarted producer's) is a duplicate and passes at once.
	again := wide(0, 9, 20)
	if err := m.handle(ctx, again); err != nil {
		t.Fatal(err)
	}
	if !released(again) || len(h.evs) != 3 || m.c.stats.duplicates.Load() != 1 {
		t.Fatalf("second copy: released %v, %d events, %d duplicates", released(again), len(h.evs), m.c.stats.duplicates.Load())
	}
}

func TestMergeResumedPartitionCountsAsPastBarrier(t *testing.T) {
	ctx := context.Background()
	start := fresh(2)
	start[1] = resumePoint{offset: 40, marker: lsn(30), next: -1} // committed after marker 30
	start[0] = resumePoint{offset: 10, marker: lsn(15), next: -1}
	m, h := testMerger(t, start)
	b := wide(0, 12, 20)
	if err := m.handle(ctx, b); err != nil {
		t.Fatal(err)
	}
	if !released(b) || len(h.evs) != 1 {
		t.Fatalf("barrier at 20 stalled though partition 1 resumed past 30: %v", kinds(h.evs))
	}
}

func TestMergeWatermarkIsMinimumOverPartitions(t *testing.T) {
	ctx := context.Background()
	m, h := testMerger(t, fresh(2))
	steps := []struct {
		it   item
		want schemas.Position // watermark after the step; zero: none yet
	}{
		{mark(0, 0, 100), schemas.Position{}},
		{mark(1, 0, 50), lsn(50)},
		{mark(1, 1, 150), lsn(100)},
		{keyed(0, 1, 90, 0), lsn(100)}, // before partition 0's marker: a duplicate
		{mark(0, 2, 200), lsn(150)},
		{mark(0, 3, 200), lsn(150)}, // repeated marker
	}
	for i, s := range steps {
		if err := m.handle(ctx, s.it); err != nil {
			t.Fatal(err)
		}
		if m.c.watermark != s.want {
			t.Fatalf("step %d: watermark %s, want %s", i, m.c.watermark, s.want)
		}
	}
	var changes, marks int
	for _, ev := range h.evs {
		switch ev.Kind {
		case EventChange:
			changes++
		case EventWatermark:
			marks++
		}
	}
	if changes != 0 || marks != 3 {
		t.Errorf("%d changes and %d watermarks delivered, want 0 and 3", changes, marks)
	}
	if got := m.parts[0].commit; got.offset != 4 || got.marker != lsn(200) {
		t.Errorf("partition 0 would commit %d at %s, want 4 at %s", got.offset, got.marker, lsn(200))
	}
	if m.parts[0].seen != (seqPos{lsn(200), math.MaxUint32}) {
		t.Errorf("partition 0 seen %+v", m.parts[0].seen)
	}
}

func TestMergeResetDeliveredOnce(t *testing.T) {
	ctx := context.Background()
	m, h := testMerger(t, fresh(2))
	r := schemas.Reset{Source: "s", Reason: "slot dropped", Position: lsn(7)}
	for p := range 2 {
		if err := m.handle(ctx, item{partition: p, rec: record{kind: kindReset, reset: r}}); err != nil {
			t.Fatal(err)
		}
	}
	if len(h.evs) != 1 || h.evs[0].Kind != EventReset {
		t.Fatalf("events %v, want one reset", kinds(h.evs))
	}
}
