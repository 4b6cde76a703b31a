package postgres_test

import (
	"context"
	"testing"
	"time"

	"github.com/freshetdb/freshet/connectors/postgres"
	"github.com/freshetdb/freshet/schemas"
)

// TestReconnectAfterLostConnection kills the walsender twice mid-stream.
// The pipeline must stream again from the durable position with a fresh
// relation cache: every row arrives exactly once on the bus, in order, and
// the Relation messages the new session re-sends are not mistaken for
// schema changes.
func TestReconnectAfterLostConnection(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	f := newFixture(t, "recon")
	tbl := f.table("recon")
	f.exec(ctx, `CREATE TABLE `+tbl+` (id int PRIMARY KEY, v text)`)
	if _, err := postgres.Setup(ctx, f.cfg, schemas.Position{}); err != nil {
		t.Fatal(err)
	}
	run := f.start(t, schemas.Position{})
	const n = 300
	kills := 0
	for i := 1; i <= n; i++ {
		f.exec(ctx, `INSERT INTO `+tbl+` VALUES ($1, 'v')`, i)
		if i == 100 || i == 200 {
			// Wait for the reader to be connected, then cut it off.
			for {
				var killed bool
				err := f.super.QueryRow(ctx, `SELECT coalesce(bool_or(pg_terminate_backend(active_pid)), false)
					FROM pg_replication_slots WHERE slot_name = $1 AND active`, f.cfg.Slot).Scan(&killed)
				if err != nil {
					t.Fatal(err)
				}
				if killed {
					kills++
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
		}
	}
	got := run.collect(t, 30*time.Second, hasRow("recon", n))
	seen := map[int64]int{}
	for i, c := range got {
		if c.Op != schemas.OpCreate {
			t.Fatalf("change %d is %q; a reconnect must not look like a schema change", i, c.Op)
		}
		id := c.After[0].(int64)
		seen[id]++
		if i > 0 && id != got[i-1].After[0].(int64)+1 {
			t.Fatalf("row %d follows row %d", id, got[i-1].After[0])
		}
	}
	for id := int64(1); id <= n; id++ {
		if seen[id] != 1 {
			t.Fatalf("row %d arrived %d times, want once", id, seen[id])
		}
	}
	if kills != 2 {
		t.Fatalf("terminated the walsender %d times, want 2", kills)
	}
}
