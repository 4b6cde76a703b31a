package postgres_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/freshetdb/freshet/connectors/postgres"
	"github.com/freshetdb/freshet/ingest"
	"github.com/freshetdb/freshet/schemas"
)

// recordingEmitter keeps every transaction and marker a stream emits, in
// order, with no pipeline between to merge them; everything is durable at
// once.
type recordingEmitter struct {
	mu      sync.Mutex
	emitted []ingest.Transaction
	durable schemas.Position
	commit  chan struct{} // closed at the first transaction with changes
}

func (e *recordingEmitter) Emit(_ context.Context, tx ingest.Transaction) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.emitted = append(e.emitted, tx)
	e.durable = tx.Progress.Position
	if len(tx.Changes) > 0 && e.commit != nil {
		close(e.commit)
		e.commit = nil
	}
	return nil
}

func (e *recordingEmitter) Durable() schemas.Position {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.durable
}

func (e *recordingEmitter) Idle() bool { return true }

// TestLaggingStreamMarkersClaimNoLaterTime starts the stream well after a
// heartbeat and a later commit were written, as a restarted ingest that
// catches up does. The heartbeat's marker comes before the commit, so it
// must not claim a time after that commit: a region trusting such a
// marker would serve results missing the commit as if they were fresh.
// Markers used to carry the time the walsender sent them.
func TestLaggingStreamMarkersClaimNoLaterTime(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	f := newFixture(t, "lag")
	f.exec(ctx, `CREATE TABLE `+f.table("lag")+` (id int PRIMARY KEY)`)
	if _, err := postgres.Setup(ctx, f.cfg, schemas.Position{}); err != nil {
		t.Fatal(err)
	}
	f.exec(ctx, postgres.HeartbeatSQL, postgres.HeartbeatPrefix)
	time.Sleep(300 * time.Millisecond)
	f.exec(ctx, `INSERT INTO `+f.table("lag")+` VALUES (1)`)
	time.Sleep(time.Second) // the stream starts a second after the commit

	reader, err := postgres.NewReader(f.cfg)
	if err != nil {
		t.Fatal(err)
	}
	out := &recordingEmitter{commit: make(chan struct{})}
	commit := out.commit
	sctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- reader.Stream(sctx, schemas.Position{}, out) }()
	select {
	case <-commit:
	case err := <-done:
		t.Fatalf("stream ended: %v", err)
	case <-ctx.Done():
		t.Fatal("the commit never came")
	}
	stop()
	if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
		t.Fatalf("stream: %v", err)
	}
	out.mu.Lock()
	defer out.mu.Unlock()
	var markers []schemas.Progress
	var tx schemas.Progress
	for _, e := range out.emitted {
		if len(e.Changes) > 0 {
			tx = e.Progress
			break
		}
		markers = append(markers, e.Progress)
	}
	if len(markers) == 0 {
		t.Fatal("no marker for the heartbeat written before the commit")
	}
	for _, p := range markers {
		if p.CommitTime.After(tx.CommitTime) {
			t.Errorf("marker at %s claims %s, after the commit at %s (%s) that it does not cover",
				p.Position, p.CommitTime.Format(time.StampMicro), tx.Position, tx.CommitTime.Format(time.StampMicro))
		}
	}
	t.Logf("%d markers before the commit, the first at %s claiming %s; the commit at %s",
		len(markers), markers[0].Position, markers[0].CommitTime.Format(time.StampMicro), tx.CommitTime.Format(time.StampMicro))
}
