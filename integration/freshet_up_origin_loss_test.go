package integration

import (
	"context"
	"testing"
	"time"

	"github.com/freshetdb/freshet/materialize"
)

// TestFreshetUpSurvivesLostOriginConnections: the origin ends freshet's
// replication connection and a client's backend (as a restart or a
// failover behind a stable address does). The node keeps running: the
// client gets 08006 and reconnects, the change stream resumes from the
// slot, a write made while it was down reaches the cache, and reads are
// served from the cache again.
func TestFreshetUpSurvivesLostOriginConnections(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	f := startUp(t, []string{"t"}, clientsDDL, materialize.Hooks{}, 5*time.Second)
	c := f.connect(ctx)
	readsAreCached(ctx, t, f, c, 3)
	var backend int
	if err := c.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&backend); err != nil {
		t.Fatal(err)
	}
	var ended int
	if err := f.super.QueryRow(ctx, `SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM (
		SELECT active_pid AS pid FROM pg_replication_slots WHERE slot_name = $1 UNION ALL SELECT $2) p`,
		f.name+"_slot", backend).Scan(&ended); err != nil || ended != 2 {
		t.Fatalf("ended %d of freshet's walsender and the client's backend: %v", ended, err)
	}
	f.superExec(ctx, "UPDATE "+f.table("t")+" SET v = 333 WHERE id = 3")
	// The origin's own 57P01, relayed, or freshet's 08006.
	if _, err := c.Exec(ctx, "SELECT 1"); pgCode(err) != "57P01" && pgCode(err) != "08006" {
		t.Fatalf("the client's session after its backend ended: %v, want 57P01 or 08006", err)
	}
	c = f.connect(ctx)
	deadline := time.Now().Add(30 * time.Second)
	for {
		var v int
		if err := c.QueryRow(ctx, "SELECT v FROM "+f.table("t")+" WHERE id = $1", 3).Scan(&v); err != nil {
			t.Fatalf("read after the reconnect: %v", err)
		}
		if v == 333 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("still reading v = %d 30s after the origin's write", v)
		}
		time.Sleep(20 * time.Millisecond)
	}
	f.waitWatermark(ctx)
	m := f.node.Materializer()
	before := m.Stats().Hits
	for range 3 {
		var v int
		if err := c.QueryRow(ctx, "SELECT v FROM "+f.table("t")+" WHERE id = $1", 3).Scan(&v); err != nil || v != 333 {
			t.Fatalf("read: %d, %v", v, err)
		}
	}
	if hits := m.Stats().Hits - before; hits < 2 {
		t.Fatalf("%d hits of 3 reads after the stream resumed, want at least 2", hits)
	}
	select {
	case err := <-f.done:
		f.done <- err
		t.Fatalf("the node stopped: %v", err)
	default:
	}
}
