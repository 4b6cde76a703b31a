package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// keyLookup looks up primary keys on an ordinary connection of its own (the
// replication connection is busy streaming). It is needed only for tables
// with REPLICA IDENTITY FULL, whose Relation messages flag every column as
// part of the identity. Not safe for concurrent use.
type keyLookup struct {
	url  string
	conn *pgx.Conn
}

// primaryKey returns the names of relid's primary key columns; none when
// the table has no primary key.
func (c *keyLookup) primaryKey(ctx context.Context, relid uint32) (map[string]bool, error) {
	if c.conn == nil {
		conn, err := pgx.Connect(ctx, c.url)
		if err != nil {
			return nil, fmt.Errorf("catalog connect: %w", err)
		}
		c.conn = conn
	}
	rows, err := c.conn.Query(ctx, `SELECT a.attname FROM pg_index i
		JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
		WHERE i.indrelid = $1::oid AND i.indisprimary`, relid)
	if err != nil {
		c.close(ctx)
		return nil, fmt.Errorf("primary key of relation %d: %w", relid, err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		c.close(ctx)
		return nil, fmt.Errorf("primary key of relation %d: %w", relid, err)
	}
	keys := make(map[string]bool, len(names))
	for _, n := range names {
		keys[n] = true
	}
	return keys, nil
}

func (c *keyLookup) close(ctx context.Context) {
	if c.conn != nil {
		c.conn.Close(context.WithoutCancel(ctx))
		c.conn = nil
	}
}
