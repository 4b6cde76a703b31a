package testenv

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"
)

// DropSource removes what a test's change source left at the origin: its
// replication slot (retried for up to 5 s while a walsender still holds
// it), its publication and its tables. Errors are ignored: it is cleanup.
func DropSource(super *pgx.Conn, slot, publication string, tables ...string) {
	bg := context.Background()
	for range 50 {
		if _, err := super.Exec(bg, `SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1`, slot); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	_, _ = super.Exec(bg, "DROP PUBLICATION IF EXISTS "+pgx.Identifier{publication}.Sanitize())
	for _, t := range tables {
		_, _ = super.Exec(bg, "DROP TABLE IF EXISTS "+t+" CASCADE")
	}
}
