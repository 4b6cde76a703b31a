package integration

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/freshetdb/freshet/internal/embedded"
	"github.com/freshetdb/freshet/internal/testenv"
)

// TestFreshetUpListenAddressInUse: freshet up on an address something else
// holds fails with the listener's error, after closing what it had
// opened. It used to panic: the cleanup closed the nil an error return
// leaves, not the front end being built.
func TestFreshetUpListenAddressInUse(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	name := testenv.UniqueName("busy")
	super, err := pgx.Connect(ctx, testenv.PostgresURL(t))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := super.Exec(ctx, "CREATE TABLE "+name+"_t (id int PRIMARY KEY)"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		bg := context.Background()
		_, _ = super.Exec(bg, "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1", name+"_slot")
		_, _ = super.Exec(bg, "DROP PUBLICATION IF EXISTS "+name+"_pub")
		_, _ = super.Exec(bg, "DROP TABLE IF EXISTS "+name+"_t")
		super.Close(bg)
	})
	node, err := embedded.New(embedded.Config{
		Origin: testenv.PostgresURL(t), Listen: busy.Addr().String(), Slot: name + "_slot", Publication: name + "_pub",
		Tables: []string{"public." + name + "_t"}, Heartbeat: time.Second, CacheBytes: 1 << 20, CatalogInterval: -1,
	})
	if err != nil {
		t.Fatal(err)
	}
	err = node.Run(ctx, func(string) { t.Error("freshet up says it is ready on an address in use") })
	if err == nil || !strings.Contains(err.Error(), "address already in use") {
		t.Fatalf("freshet up on an address in use: %v", err)
	}
}
