package postgres

import (
	"context"
	"fmt"
	"strings"

	"github.com/freshetdb/freshet/schemas"
	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgconn"
)

// slotInfo is a row of pg_replication_slots.
type slotInfo struct {
	exists         bool
	plugin         string
	walStatus      string // reserved, extended, unreserved or lost (PostgreSQL 13+)
	confirmedFlush schemas.LSN
}

// quoteLiteral quotes s as an SQL string literal. Replication connections
// only speak the simple query protocol, so there are no parameters.
func quoteLiteral(s string) string {
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}

// simpleQuery runs sql over the simple protocol and returns the text rows.
func simpleQuery(ctx context.Context, conn *pgconn.PgConn, sql string) ([][]string, error) {
	results, err := conn.Exec(ctx, sql).ReadAll()
	if err != nil {
		return nil, err
	}
	var rows [][]string
	for _, res := range results {
		if res.Err != nil {
			return nil, res.Err
		}
		for _, raw := range res.Rows {
			row := make([]string, len(raw))
			for i, v := range raw {
				row[i] = string(v)
			}
			rows = append(rows, row)
		}
	}
	return rows, nil
}

func readSlot(ctx context.Context, conn *pgconn.PgConn, name string) (slotInfo, error) {
	rows, err := simpleQuery(ctx, conn, `SELECT coalesce(plugin, ''), coalesce(wal_status, ''), coalesce(confirmed_flush_lsn::text, '0/0')
		FROM pg_replication_slots WHERE slot_name = `+quoteLiteral(name))
	if err != nil {
		return slotInfo{}, fmt.Errorf("postgres: read slot %q: %w", name, err)
	}
	if len(rows) == 0 {
		return slotInfo{}, nil
	}
	lsn, err := schemas.ParseLSN(rows[0][2])
	if err != nil {
		return slotInfo{}, fmt.Errorf("postgres: slot %q confirmed_flush_lsn: %w", name, err)
	}
	return slotInfo{exists: true, plugin: rows[0][0], walStatus: rows[0][1], confirmedFlush: lsn}, nil
}

// createSlot creates a persistent pgoutput slot.
func createSlot(ctx context.Context, conn *pgconn.PgConn, name string) (schemas.LSN, error) {
	res, err := pglogrepl.CreateReplicationSlot(ctx, conn, name, "pgoutput",
		pglogrepl.CreateReplicationSlotOptions{Mode: pglogrepl.LogicalReplication, SnapshotAction: "NOEXPORT_SNAPSHOT"})
	if err != nil {
		return 0, fmt.Errorf("postgres: create replication slot %q: %w", name, err)
	}
	lsn, err := schemas.ParseLSN(res.ConsistentPoint)
	if err != nil {
		return 0, fmt.Errorf("postgres: slot %q consistent point: %w", name, err)
	}
	return lsn, nil
}
