package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/freshetdb/freshet/ingest"
	"github.com/freshetdb/freshet/schemas"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// ErrSetup marks a server that cannot be streamed from as configured; the
// message says what to run.
var ErrSetup = errors.New("postgres setup")

// Identity is a table's REPLICA IDENTITY.
type Identity string

// The replica identities.
const (
	IdentityDefault Identity = "default"
	IdentityFull    Identity = "full"
	IdentityIndex   Identity = "index"
	IdentityNothing Identity = "nothing"
)

// TableReport says what change events for one published table will carry.
type TableReport struct {
	Schema, Table string
	Identity      Identity
	HasPrimaryKey bool
	// CompleteBefore is true when updates and deletes carry every old
	// column (REPLICA IDENTITY FULL).
	CompleteBefore bool
	// Advice says what to run when before-images are incomplete.
	Advice string
	// CanSelect reports whether the role may read the table, which fills
	// on a cache miss and snapshots need.
	CanSelect bool
	// Incomplete says which of the table's changes the publication leaves
	// out (an operation it does not publish, a row filter); reads of such
	// a table are never cached. Empty when it streams them all.
	Incomplete string
}

// SetupReport is what Setup found and did.
type SetupReport struct {
	WALLevel           string
	CreatedPublication bool
	CreatedSlot        bool
	CreatedDDLTrigger  bool
	// SlotPosition is the slot's confirmed flush LSN (the consistent point
	// of a slot just created).
	SlotPosition schemas.LSN
	Tables       []TableReport
}

// Setup checks the server and prepares streaming: wal_level must be logical
// and the role must have REPLICATION; the publication and a persistent
// pgoutput slot are created when missing. When from is not zero the caller
// has streamed from this slot before, so a missing or invalidated slot is
// an *ingest.ResetError and is not re-created. Each published table's
// replica identity is reported.
func Setup(ctx context.Context, cfg Config, from schemas.Position) (*SetupReport, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	conn, err := pgconn.Connect(ctx, cfg.replicationURL())
	if err != nil {
		return nil, fmt.Errorf("%w: replication connect (the role needs LOGIN REPLICATION: ALTER ROLE ... REPLICATION; and pg_hba.conf must allow it): %w", ErrSetup, err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	rep := &SetupReport{}
	if rep.WALLevel, err = walLevel(ctx, conn); err != nil {
		return nil, err
	}
	if rep.CreatedPublication, err = ensurePublication(ctx, conn, cfg); err != nil {
		return nil, err
	}
	if rep.CreatedSlot, rep.SlotPosition, err = ensureSlot(ctx, conn, cfg, from); err != nil {
		return nil, err
	}
	if cfg.DDLTrigger {
		if rep.CreatedDDLTrigger, err = ensureDDLTrigger(ctx, conn, cfg); err != nil {
			return nil, err
		}
	}
	if rep.Tables, err = publishedTables(ctx, conn, cfg.Publication); err != nil {
		return nil, err
	}
	for _, t := range rep.Tables {
		if !t.CanSelect {
			cfg.Logger.Warn("no SELECT privilege", "table", t.Schema+"."+t.Table, "advice", "GRANT SELECT ON "+pgx.Identifier{t.Schema, t.Table}.Sanitize()+" TO the replication role")
		}
		if !t.CompleteBefore {
			cfg.Logger.Warn("incomplete before-images", "table", t.Schema+"."+t.Table, "identity", t.Identity, "advice", t.Advice)
		}
	}
	return rep, nil
}

func walLevel(ctx context.Context, conn *pgconn.PgConn) (string, error) {
	rows, err := simpleQuery(ctx, conn, `SHOW wal_level`)
	if err != nil || len(rows) != 1 {
		return "", fmt.Errorf("%w: SHOW wal_level: %v", ErrSetup, err)
	}
	if rows[0][0] != "logical" {
		return rows[0][0], fmt.Errorf("%w: wal_level is %q; run ALTER SYSTEM SET wal_level = logical; and restart PostgreSQL", ErrSetup, rows[0][0])
	}
	return rows[0][0], nil
}

func ensurePublication(ctx context.Context, conn *pgconn.PgConn, cfg Config) (bool, error) {
	rows, err := simpleQuery(ctx, conn, `SELECT 1 FROM pg_publication WHERE pubname = `+quoteLiteral(cfg.Publication))
	if err != nil {
		return false, fmt.Errorf("%w: read publication: %w", ErrSetup, err)
	}
	if len(rows) > 0 {
		return false, nil
	}
	sql := "CREATE PUBLICATION " + cfg.Publication + " FOR ALL TABLES"
	if len(cfg.Tables) > 0 {
		names := make([]string, len(cfg.Tables))
		for i, t := range cfg.Tables {
			names[i] = pgx.Identifier(strings.Split(t, ".")).Sanitize()
		}
		sql = "CREATE PUBLICATION " + cfg.Publication + " FOR TABLE " + strings.Join(names, ", ")
	}
	if _, err := simpleQuery(ctx, conn, sql); err != nil {
		return false, fmt.Errorf("%w: %s failed (FOR ALL TABLES needs a superuser, FOR TABLE needs ownership of each table; an administrator can run it instead): %w", ErrSetup, sql, err)
	}
	return true, nil
}

func ensureSlot(ctx context.Context, conn *pgconn.PgConn, cfg Config, from schemas.Position) (bool, schemas.LSN, error) {
	slot, err := readSlot(ctx, conn, cfg.Slot)
	if err != nil {
		return false, 0, err
	}
	if !slot.exists && from.IsZero() {
		lsn, err := createSlot(ctx, conn, cfg.Slot)
		return err == nil, lsn, err
	}
	r := &Reader{cfg: cfg}
	if err := r.checkSlot(slot, from); err != nil {
		var reset *ingest.ResetError
		if errors.As(err, &reset) {
			return false, 0, err
		}
		return false, 0, fmt.Errorf("%w: %w", ErrSetup, err)
	}
	return false, slot.confirmedFlush, nil
}

func publishedTables(ctx context.Context, conn *pgconn.PgConn, pub string) ([]TableReport, error) {
	rows, err := simpleQuery(ctx, conn, `SELECT p.schemaname, p.tablename, c.relreplident::text,
			EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary),
			has_table_privilege(c.oid, 'SELECT'), `+publicationGaps+`
		FROM pg_publication_tables p
		JOIN pg_publication pub ON pub.pubname = p.pubname
		JOIN pg_namespace n ON n.nspname = p.schemaname
		JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = p.tablename
		WHERE p.pubname = `+quoteLiteral(pub)+` ORDER BY 1, 2`)
	if err != nil {
		return nil, fmt.Errorf("%w: read published tables: %w", ErrSetup, err)
	}
	out := make([]TableReport, 0, len(rows))
	for _, row := range rows {
		t := TableReport{Schema: row[0], Table: row[1], HasPrimaryKey: row[3] == "t", CanSelect: row[4] == "t"}
		t.Identity, t.CompleteBefore, t.Advice = identityReport(row[0], row[1], row[2], t.HasPrimaryKey)
		t.Incomplete = incompleteReport(pub, row[5], row[6])
		if t.Incomplete != "" {
			t.Advice = strings.TrimSpace(t.Incomplete + " " + t.Advice)
		}
		out = append(out, t)
	}
	return out, nil
}

func identityReport(schema, table, relreplident string, hasPK bool) (Identity, bool, string) {
	name := pgx.Identifier{schema, table}.Sanitize()
	full := "ALTER TABLE " + name + " REPLICA IDENTITY FULL;"
	switch relreplident {
	case "f":
		return IdentityFull, true, ""
	case "i":
		return IdentityIndex, false, "before-images hold only the identity index's columns; for complete ones run " + full
	case "n":
		return IdentityNothing, false, "updates and deletes carry no old values; run " + full
	}
	if !hasPK {
		return IdentityDefault, false, "no primary key: PostgreSQL rejects UPDATE and DELETE on this published table; run " + full
	}
	return IdentityDefault, false, "before-images hold only the primary key, and only when it changed; for complete ones run " + full
}
