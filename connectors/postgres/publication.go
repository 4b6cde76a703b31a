package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
)

// publicationGaps are two columns of a row of pg_publication_tables p
// joined to its pg_publication pub: the operations the publication does
// not publish (comma-separated) and the table's row filter, both empty
// when every change of the table is streamed. incompleteReport judges
// them, for setup's advice and for PublishedTables alike.
const publicationGaps = `concat_ws(', ', CASE WHEN NOT pub.pubinsert THEN 'INSERT' END, CASE WHEN NOT pub.pubupdate THEN 'UPDATE' END,
		CASE WHEN NOT pub.pubdelete THEN 'DELETE' END, CASE WHEN NOT pub.pubtruncate THEN 'TRUNCATE' END),
	coalesce(to_jsonb(p) ->> 'rowfilter', '')`

// incompleteReport says what a publication leaves out of a table's
// changes: the operations it does not publish, its row filter; "" when
// nothing.
func incompleteReport(pub, missing, rowFilter string) string {
	var parts []string
	if missing != "" {
		parts = append(parts, "publication "+pub+" does not publish "+missing)
	}
	if rowFilter != "" {
		parts = append(parts, "publication "+pub+" filters its rows WHERE "+rowFilter)
	}
	if len(parts) == 0 {
		return ""
	}
	return strings.Join(parts, "; ") + ": its reads are never cached."
}

// Querier is what PublishedTables reads through: a *pgxpool.Pool fits.
type Querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// PublishedTables lists the schema-qualified tables whose every change a
// publication streams; it fails if the publication does not exist. A
// publication that leaves out an operation (publish = 'insert, update')
// and a table with a row filter (PostgreSQL 15) are not complete: changes
// they leave out would never invalidate anything, so such tables are not
// listed and their reads are not cached.
func PublishedTables(ctx context.Context, db Querier, publication string) ([]string, error) {
	var exists bool
	if err := db.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_publication WHERE pubname = $1)`, publication).Scan(&exists); err != nil {
		return nil, fmt.Errorf("publication %q: %w", publication, err)
	}
	if !exists {
		return nil, fmt.Errorf("publication %q: %w", publication, ErrNoPublication)
	}
	rows, _ := db.Query(ctx, `SELECT p.schemaname || '.' || p.tablename, `+publicationGaps+`
		FROM pg_catalog.pg_publication_tables p JOIN pg_catalog.pg_publication pub ON pub.pubname = p.pubname
		WHERE p.pubname = $1 ORDER BY 1`, publication)
	var out []string
	var table, missing, rowFilter string
	_, err := pgx.ForEachRow(rows, []any{&table, &missing, &rowFilter}, func() error {
		if incompleteReport(publication, missing, rowFilter) == "" {
			out = append(out, table)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("publication %q: %w", publication, err)
	}
	return out, nil
}

// ErrNoPublication: the publication does not exist (yet: the ingest
// creates it).
var ErrNoPublication = errors.New("does not exist")
