package postgres_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/freshetdb/freshet/connectors/postgres"
	"github.com/freshetdb/freshet/ingest"
	"github.com/freshetdb/freshet/schemas"
)

// TestMissingSlotIsReset drops the slot between two runs: the restart must
// publish a reset for the source and stop, and must not create a new slot
// that would silently skip the changes made in between.
func TestMissingSlotIsReset(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	f := newFixture(t, "gone")
	f.exec(ctx, `CREATE TABLE `+f.table("gone")+` (id int PRIMARY KEY)`)
	if _, err := postgres.Setup(ctx, f.cfg, schemas.Position{}); err != nil {
		t.Fatal(err)
	}
	run := f.start(t, schemas.Position{})
	f.exec(ctx, `INSERT INTO `+f.table("gone")+` VALUES (1)`)
	got := run.collect(t, 30*time.Second, hasRow("gone", 1))
	pos := got[len(got)-1].Position
	run.stop()
	if err := run.wait(); !errors.Is(err, context.Canceled) {
		t.Fatalf("pipeline stopped with %v, want context.Canceled", err)
	}
	f.dropSlot(ctx)
	f.exec(ctx, `INSERT INTO `+f.table("gone")+` VALUES (2)`)

	_, err := postgres.Setup(ctx, f.cfg, pos)
	var reset *ingest.ResetError
	if !errors.As(err, &reset) || reset.Reset.Source != "origin" || reset.Reset.Position != pos {
		t.Fatalf("Setup after the slot was dropped: %v, want a ResetError for origin at %s", err, pos)
	}
	if f.slotExists(ctx) {
		t.Fatal("Setup re-created a slot that consumers had streamed from")
	}

	run = f.start(t, pos)
	if err := run.wait(); !errors.As(err, &reset) {
		t.Fatalf("pipeline over a dropped slot returned %v, want a ResetError", err)
	}
	b, err := run.sub.Next(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if b.Reset == nil || b.Reset.Source != "origin" || b.Reset.Position != pos || len(b.Changes) != 0 {
		t.Fatalf("bus got %+v, want only a reset of origin at %s", b, pos)
	}
	if f.slotExists(ctx) {
		t.Fatal("the reader re-created the slot")
	}
}

func (f *fixture) dropSlot(ctx context.Context) {
	f.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		_, err := f.super.Exec(ctx, `SELECT pg_drop_replication_slot($1)`, f.cfg.Slot)
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			f.t.Fatalf("drop slot: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (f *fixture) slotExists(ctx context.Context) bool {
	f.t.Helper()
	var n int
	if err := f.super.QueryRow(ctx, `SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1`, f.cfg.Slot).Scan(&n); err != nil {
		f.t.Fatal(err)
	}
	return n > 0
}
