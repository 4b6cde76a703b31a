package kafka_test

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/freshetdb/freshet/connectors/kafka"
	"github.com/freshetdb/freshet/ingest"
	"github.com/freshetdb/freshet/schemas"
)

const testSource = "origin"

var testCols = []schemas.Column{
	{Name: "id", Type: "int8", Family: schemas.FamilyInt, Key: true},
	{Name: "version", Type: "int8", Family: schemas.FamilyInt},
}

// pos is the commit position of test transaction i.
func pos(i int) schemas.Position { return schemas.Position{LSN: schemas.LSN(1000 + 16*i)} }

// txn is test transaction i: it writes version i of `per` rows of
// public.items, chosen so that every key is written by many transactions.
func txn(i, per, keys int) ingest.Transaction {
	p := pos(i)
	at := time.Unix(1700000000, 0).Add(time.Duration(i) * time.Millisecond).UTC()
	tx := ingest.Transaction{Progress: schemas.Progress{Source: testSource, Position: p, CommitTime: at}}
	for j := range per {
		key := int64((i*7 + j*13) % keys)
		op := schemas.OpUpdate
		if i < keys {
			op = schemas.OpCreate
		}
		tx.Changes = append(tx.Changes, schemas.Change{
			Source: testSource, Schema: "public", Table: "items", Op: op, Columns: testCols,
			After: []any{key, int64(i)}, Position: p, Seq: uint32(j), TxID: uint32(i), CommitTime: at,
		})
	}
	return tx
}

func truncateTxn(i int, table string) ingest.Transaction {
	p := pos(i)
	return ingest.Transaction{
		Progress: schemas.Progress{Source: testSource, Position: p, CommitTime: time.Now().UTC()},
		Changes: []schemas.Change{{
			Source: testSource, Schema: "public", Table: table, Op: schemas.OpTruncate,
			Position: p, TxID: uint32(i),
		}},
	}
}

func batchOf(tx ingest.Transaction) *ingest.Batch {
	return &ingest.Batch{Changes: tx.Changes, Progress: tx.Progress}
}

// publishAll publishes the batches and waits for every done.
func publishAll(ctx context.Context, t *testing.T, p *kafka.Producer, batches []*ingest.Batch) {
	t.Helper()
	errs := make(chan error, len(batches))
	for _, b := range batches {
		if err := p.Publish(ctx, b, func(err error) { errs <- err }); err != nil {
			t.Fatalf("publish: %v", err)
		}
	}
	for range batches {
		select {
		case err := <-errs:
			if err != nil {
				t.Fatalf("batch not durable: %v", err)
			}
		case <-ctx.Done():
			t.Fatalf("waiting for acks: %v", ctx.Err())
		}
	}
}

// recorder is a Handler that keeps every event.
type recorder struct {
	mu        sync.Mutex
	events    []kafka.Event
	watermark schemas.Position
	changed   chan struct{}
}

func newRecorder() *recorder { return &recorder{changed: make(chan struct{})} }

func (r *recorder) Apply(_ context.Context, ev kafka.Event) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if ev.Kind == kafka.EventWatermark {
		if !ev.Watermark.Position.Covers(r.watermark) {
			return fmt.Errorf("watermark went back from %s to %s", r.watermark, ev.Watermark.Position)
		}
		r.watermark = ev.Watermark.Position
	}
	r.events = append(r.events, ev)
	close(r.changed)
	r.changed = make(chan struct{})
	return nil
}

// waitFor waits until cond holds over the recorded events.
func (r *recorder) waitFor(ctx context.Context, t *testing.T, what string, cond func(evs []kafka.Event, wm schemas.Position) bool) {
	t.Helper()
	for {
		r.mu.Lock()
		ok := cond(r.events, r.watermark)
		ch := r.changed
		n, wm := len(r.events), r.watermark
		r.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-ch:
		case <-ctx.Done():
			t.Fatalf("waiting for %s: %v (%d events, watermark %s)", what, ctx.Err(), n, wm)
		}
	}
}

func (r *recorder) waitWatermark(ctx context.Context, t *testing.T, p schemas.Position) {
	t.Helper()
	r.waitFor(ctx, t, "watermark "+p.String(), func(_ []kafka.Event, wm schemas.Position) bool { return wm.Covers(p) })
}

func (r *recorder) snapshot() []kafka.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]kafka.Event(nil), r.events...)
}

func changesOf(evs []kafka.Event) []*schemas.Change {
	var out []*schemas.Change
	for _, ev := range evs {
		if ev.Kind == kafka.EventChange {
			out = append(out, ev.Change)
		}
	}
	return out
}

// runConsumer runs a region's consumer until the test ends.
func runConsumer(ctx context.Context, t *testing.T, cfg kafka.ConsumerConfig) (stop func() error, c *kafka.Consumer) {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = testLogger(t)
	}
	c, err := kafka.NewConsumer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(ctx)
	res := make(chan error, 1)
	go func() {
		err := c.Run(ctx)
		if err != nil && ctx.Err() == nil {
			t.Errorf("region %s stopped: %v", cfg.Region, err)
		}
		res <- err
	}()
	var once sync.Once
	var rerr error
	stop = func() error {
		once.Do(func() {
			cancel()
			rerr = <-res
		})
		return rerr
	}
	t.Cleanup(func() { _ = stop() })
	return stop, c
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(b)))
	return len(b), nil
}
