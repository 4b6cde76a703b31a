package memory_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/freshetdb/freshet/connectors/memory"
	"github.com/freshetdb/freshet/ingest"
	"github.com/freshetdb/freshet/schemas"
)

func batch(lsn schemas.LSN) *ingest.Batch {
	return &ingest.Batch{Progress: schemas.Progress{Position: schemas.Position{LSN: lsn}}}
}

func TestSubscribersSeeBatchesInOrder(t *testing.T) {
	bus, err := memory.New(memory.Config{Capacity: 4})
	if err != nil {
		t.Fatal(err)
	}
	a, b := bus.Subscribe(), bus.Subscribe()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	go func() {
		for i := 1; i <= 10; i++ {
			if err := bus.Publish(ctx, batch(schemas.LSN(i)), func(error) {}); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	errc := make(chan error, 2)
	for _, s := range []*memory.Subscription{a, b} {
		go func() {
			for i := 1; i <= 10; i++ {
				got, err := s.Next(ctx)
				if err != nil {
					errc <- err
					return
				}
				if got.Progress.Position.LSN != schemas.LSN(i) {
					errc <- fmt.Errorf("batch %d has position %d", i, got.Progress.Position.LSN)
					return
				}
			}
			errc <- nil
		}()
	}
	for range 2 {
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}
}

// TestPublishWaitsForSlowSubscriber: backpressure instead of unbounded
// memory or dropped batches.
func TestPublishWaitsForSlowSubscriber(t *testing.T) {
	bus, err := memory.New(memory.Config{Capacity: 2})
	if err != nil {
		t.Fatal(err)
	}
	sub := bus.Subscribe()
	ctx := context.Background()
	for i := 1; i <= 2; i++ {
		if err := bus.Publish(ctx, batch(schemas.LSN(i)), func(error) {}); err != nil {
			t.Fatal(err)
		}
	}
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if err := bus.Publish(short, batch(3), func(error) { t.Error("acknowledged a batch it did not take") }); err == nil {
		t.Fatal("Publish did not wait for the subscriber two batches behind")
	}
	if _, err := sub.Next(ctx); err != nil {
		t.Fatal(err)
	}
	if err := bus.Publish(ctx, batch(3), func(error) {}); err != nil {
		t.Fatalf("Publish after the subscriber caught up: %v", err)
	}
	sub.Close()
	bus.Close()
	if err := bus.Publish(ctx, batch(4), func(error) {}); err == nil {
		t.Fatal("Publish after Close")
	}
}
