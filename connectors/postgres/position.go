package postgres

import (
	"context"
	"fmt"

	"github.com/freshetdb/freshet/schemas"
	"github.com/jackc/pgx/v5"
)

// PositionDB runs the position query; *pgxpool.Pool and *pgx.Conn
// satisfy it.
type PositionDB interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// Positions reads the origin's current WAL position, for read-your-writes:
// asked after a session's write has committed, the answer covers that
// write's commit. It implements materialize.PositionSource.
type Positions struct {
	DB PositionDB
}

// CurrentPosition returns pg_current_wal_lsn().
func (p Positions) CurrentPosition(ctx context.Context) (schemas.Position, error) {
	var s string
	if err := p.DB.QueryRow(ctx, "SELECT pg_current_wal_lsn()::text").Scan(&s); err != nil {
		return schemas.Position{}, fmt.Errorf("postgres: current wal position: %w", err)
	}
	lsn, err := schemas.ParseLSN(s)
	if err != nil {
		return schemas.Position{}, fmt.Errorf("postgres: current wal position: %w", err)
	}
	return schemas.Position{LSN: lsn}, nil
}
