package postgres

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/freshetdb/freshet/materialize"
	"github.com/freshetdb/freshet/materialize/analyze"
)

// CatalogDB is what the catalog loader needs from a connection or pool;
// *pgx.Conn and *pgxpool.Pool both satisfy it.
type CatalogDB interface {
	BeginTx(ctx context.Context, opts pgx.TxOptions) (pgx.Tx, error)
}

// CatalogConfig configures a CatalogLoader.
type CatalogConfig struct {
	// DB is the origin; required.
	DB CatalogDB
	// Logger receives one line per load; nil discards.
	Logger *slog.Logger
}

// CatalogLoader reads the origin's catalog for query analysis: every
// function's volatility (pg_proc, aggregates through their transition and
// final functions), relation kinds, persistence (temporary, unlogged) and
// row security
// (pg_class), columns with their types and collation determinism, view
// definitions, and partition and inheritance children. It implements
// materialize.CatalogLoader; call it at start and after schema changes.
// It is safe for concurrent use if DB is.
type CatalogLoader struct {
	db  CatalogDB
	log *slog.Logger
}

// NewCatalogLoader validates cfg.
func NewCatalogLoader(cfg CatalogConfig) (*CatalogLoader, error) {
	if cfg.DB == nil {
		return nil, errors.New("postgres catalog: DB is required")
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &CatalogLoader{db: cfg.DB, log: log}, nil
}

// LoadCatalog reads the catalog in one read-only REPEATABLE READ
// transaction, so all parts come from one snapshot, with an empty
// search_path, so view definitions come out schema-qualified.
func (l *CatalogLoader) LoadCatalog(ctx context.Context) (analyze.Catalog, error) {
	s, err := l.Load(ctx)
	if err != nil {
		return nil, err
	}
	return s, nil
}

// Load is LoadCatalog returning the concrete snapshot. A load that DDL
// running meanwhile made fail is tried again (catalogRaced).
func (l *CatalogLoader) Load(ctx context.Context) (*analyze.Snapshot, error) {
	for attempt := 1; ; attempt++ {
		s, err := l.load(ctx)
		if err == nil || attempt == catalogAttempts || !catalogRaced(err) {
			return s, err
		}
		l.log.Info("catalog load raced with DDL; loading again", "err", err, "attempt", attempt)
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(time.Duration(attempt) * 20 * time.Millisecond):
		}
	}
}

// catalogAttempts bounds the loads catalogRaced lets Load try.
const catalogAttempts = 5

// catalogRaced reports an error a catalog load gets when a relation it
// read in its snapshot is dropped before it is looked at closer:
// pg_get_viewdef and the like read the current catalog, not the snapshot
// ("could not open relation with OID", "cache lookup failed": XX000), or
// the relation is gone (42P01).
func catalogRaced(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && (pe.Code == "XX000" || pe.Code == "42P01")
}

func (l *CatalogLoader) load(ctx context.Context) (*analyze.Snapshot, error) {
	tx, err := l.db.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return nil, fmt.Errorf("postgres catalog: begin: %w", err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	if _, err := tx.Exec(ctx, "SET LOCAL search_path = ''"); err != nil {
		return nil, fmt.Errorf("postgres catalog: set search_path: %w", err)
	}
	var d analyze.SnapshotData
	steps := []struct {
		what string
		load func(context.Context, pgx.Tx, *analyze.SnapshotData) error
	}{
		{"schemas", loadSchemas}, {"relations", loadRelations}, {"columns", loadColumns},
		{"children", loadChildren}, {"functions", loadFunctions}, {"operators", loadOperators},
		{"role memberships", loadMemberships}, {"settings functions", loadSettingsFunctions},
	}
	for _, s := range steps {
		if err := s.load(ctx, tx, &d); err != nil {
			return nil, fmt.Errorf("postgres catalog: %s: %w", s.what, err)
		}
	}
	l.log.Info("catalog loaded", "relations", len(d.Relations), "functions", len(d.Functions), "operators", len(d.Operators))
	return analyze.NewSnapshot(d), nil
}

func loadSchemas(ctx context.Context, tx pgx.Tx, d *analyze.SnapshotData) error {
	rows, _ := tx.Query(ctx, "SELECT nspname::text FROM pg_catalog.pg_namespace")
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	d.Schemas = names
	return err
}

// systemSchemas keeps the catalogs' own columns and view bodies out of the
// snapshot: analysis refuses those relations by schema anyway.
const systemSchemas = "('pg_catalog', 'information_schema', 'pg_toast')"

func loadRelations(ctx context.Context, tx pgx.Tx, d *analyze.SnapshotData) error {
	err := savepoint(ctx, tx, func(tx pgx.Tx) error {
		_, err := queryRelations(ctx, tx, d, true)
		return err
	})
	if err == nil || !catalogRaced(err) {
		return err
	}
	// A view dropped after the snapshot was taken: pg_get_viewdef reads
	// the current catalog and fails. The definitions one by one, then,
	// leaving out the views that are gone.
	d.Relations = d.Relations[:0]
	oids, err := queryRelations(ctx, tx, d, false)
	if err != nil {
		return err
	}
	return loadViewDefinitions(ctx, tx, d, oids)
}

// queryRelations appends the relations to d, with the view definitions
// when defs is set, and returns their OIDs in the same order.
func queryRelations(ctx context.Context, tx pgx.Tx, d *analyze.SnapshotData, defs bool) ([]uint32, error) {
	rows, _ := tx.Query(ctx, `
		SELECT c.oid, n.nspname::text, c.relname::text, c.relkind::text, c.relpersistence = 't',
		       c.relpersistence = 'u', c.relrowsecurity,
		       CASE WHEN $1 AND c.relkind = 'v' AND n.nspname NOT IN `+systemSchemas+`
		            THEN pg_catalog.pg_get_viewdef(c.oid) ELSE '' END,
		       concat(c.xmin, ':', c.relowner, ':', c.relacl::text, '|', n.xmin, ':', n.nspowner, ':', n.nspacl::text, '|',
		              (SELECT max(a.xmin::text::bigint) || ':' || string_agg(a.attname || '=' || a.attacl::text, ',' ORDER BY a.attnum)
		               FROM pg_catalog.pg_attribute a WHERE a.attrelid = c.oid))
		FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
		WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S')`, defs)
	var r analyze.Relation
	var kind string
	var oid uint32
	var oids []uint32
	_, err := pgx.ForEachRow(rows, []any{&oid, &r.Schema, &r.Name, &kind, &r.Temporary, &r.Unlogged, &r.RowSecurity, &r.Definition, &r.Privileges}, func() error {
		r.Kind = analyze.RelKind(kind[0])
		d.Relations = append(d.Relations, r)
		oids = append(oids, oid)
		return nil
	})
	return oids, err
}

// loadViewDefinitions reads each view's definition on its own, leaving
// out the views dropped since the snapshot.
func loadViewDefinitions(ctx context.Context, tx pgx.Tx, d *analyze.SnapshotData, oids []uint32) error {
	kept := d.Relations[:0]
	for i, r := range d.Relations {
		if r.Kind != analyze.KindView || strings.Contains(systemSchemas, "'"+r.Schema+"'") {
			kept = append(kept, r)
			continue
		}
		var def *string
		err := savepoint(ctx, tx, func(tx pgx.Tx) error {
			return tx.QueryRow(ctx, "SELECT pg_catalog.pg_get_viewdef($1::oid)", oids[i]).Scan(&def)
		})
		switch {
		case err != nil && !catalogRaced(err):
			return err
		case err == nil && def != nil:
			r.Definition = *def
			kept = append(kept, r)
		}
	}
	d.Relations = kept
	return nil
}

// savepoint runs f in a savepoint of tx, so that its failure leaves tx
// usable.
func savepoint(ctx context.Context, tx pgx.Tx, f func(pgx.Tx) error) error {
	sp, err := tx.Begin(ctx)
	if err != nil {
		return err
	}
	if err := f(sp); err != nil {
		_ = sp.Rollback(ctx)
		return err
	}
	return sp.Commit(ctx)
}

func loadColumns(ctx context.Context, tx pgx.Tx, d *analyze.SnapshotData) error {
	index := make(map[string]*analyze.Relation, len(d.Relations))
	for i := range d.Relations {
		index[d.Relations[i].QualifiedName()] = &d.Relations[i]
	}
	rows, _ := tx.Query(ctx, `
		SELECT n.nspname::text, c.relname::text, a.attname::text, t.typname::text,
		       NOT COALESCE(coll.collisdeterministic, true)
		FROM pg_catalog.pg_attribute a
		JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
		JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
		JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
		LEFT JOIN pg_catalog.pg_collation coll ON coll.oid = a.attcollation
		WHERE a.attnum > 0 AND NOT a.attisdropped AND c.relkind IN ('r', 'p')
		  AND n.nspname NOT IN `+systemSchemas+`
		ORDER BY c.oid, a.attnum`)
	var schema, rel string
	var col analyze.Column
	_, err := pgx.ForEachRow(rows, []any{&schema, &rel, &col.Name, &col.Type, &col.NondeterministicCollation}, func() error {
		if r := index[schema+"."+rel]; r != nil {
			r.Columns = append(r.Columns, col)
		}
		return nil
	})
	return err
}

// loadChildren gives each relation all its descendants in pg_inherits
// (partitions and inheritance children, at any depth).
func loadChildren(ctx context.Context, tx pgx.Tx, d *analyze.SnapshotData) error {
	index := make(map[string]*analyze.Relation, len(d.Relations))
	for i := range d.Relations {
		index[d.Relations[i].QualifiedName()] = &d.Relations[i]
	}
	rows, _ := tx.Query(ctx, `
		WITH RECURSIVE d(parent, child) AS (
		    SELECT inhparent, inhrelid FROM pg_catalog.pg_inherits
		    UNION
		    SELECT d.parent, i.inhrelid FROM d JOIN pg_catalog.pg_inherits i ON i.inhparent = d.child)
		SELECT pn.nspname || '.' || pc.relname, cn.nspname || '.' || cc.relname
		FROM d
		JOIN pg_catalog.pg_class pc ON pc.oid = d.parent JOIN pg_catalog.pg_namespace pn ON pn.oid = pc.relnamespace
		JOIN pg_catalog.pg_class cc ON cc.oid = d.child JOIN pg_catalog.pg_namespace cn ON cn.oid = cc.relnamespace
		ORDER BY 1, 2`)
	var parent, child string
	_, err := pgx.ForEachRow(rows, []any{&parent, &child}, func() error {
		if r := index[parent]; r != nil {
			r.Children = append(r.Children, child)
		}
		return nil
	})
	return err
}

// loadFunctions reads every pg_proc entry. An aggregate is as volatile as
// the least deterministic of itself and its transition and final
// functions.
func loadFunctions(ctx context.Context, tx pgx.Tx, d *analyze.SnapshotData) error {
	rows, _ := tx.Query(ctx, `
		SELECT n.nspname::text, p.proname::text, p.pronargs::int, p.pronargdefaults::int,
		       p.provariadic <> 0, p.provolatile::text,
		       COALESCE(tf.provolatile::text, 'i'), COALESCE(ff.provolatile::text, 'i'), concat(p.xmin, ':', p.proacl::text)
		FROM pg_catalog.pg_proc p
		JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
		LEFT JOIN pg_catalog.pg_aggregate ag ON ag.aggfnoid = p.oid
		LEFT JOIN pg_catalog.pg_proc tf ON tf.oid = ag.aggtransfn
		LEFT JOIN pg_catalog.pg_proc ff ON ff.oid = ag.aggfinalfn`)
	var f analyze.Function
	var v, tv, fv string
	_, err := pgx.ForEachRow(rows, []any{&f.Schema, &f.Name, &f.NArgs, &f.NDefaults, &f.Variadic, &v, &tv, &fv, &f.Privileges}, func() error {
		f.Volatility = worstVolatility(v, tv, fv)
		d.Functions = append(d.Functions, f)
		return nil
	})
	return err
}

// loadOperators reads user-defined operators (outside pg_catalog), the
// only ones that can hide a volatile function behind a symbol.
func loadOperators(ctx context.Context, tx pgx.Tx, d *analyze.SnapshotData) error {
	rows, _ := tx.Query(ctx, `
		SELECT o.oprname::text, p.provolatile::text
		FROM pg_catalog.pg_operator o
		JOIN pg_catalog.pg_proc p ON p.oid = o.oprcode
		JOIN pg_catalog.pg_namespace n ON n.oid = o.oprnamespace
		WHERE n.nspname <> 'pg_catalog'`)
	d.Operators = map[string]analyze.Volatility{}
	var name, v string
	_, err := pgx.ForEachRow(rows, []any{&name, &v}, func() error {
		vs := []string{v}
		if prev, ok := d.Operators[name]; ok {
			vs = append(vs, string([]byte{byte(prev)}))
		}
		d.Operators[name] = worstVolatility(vs...)
		return nil
	})
	return err
}

// worstVolatility is the least deterministic of the pg_proc letters given;
// anything unrecognised counts as volatile.
func worstVolatility(vs ...string) analyze.Volatility {
	worst := analyze.Immutable
	for _, v := range vs {
		switch v {
		case "i":
		case "s":
			if worst == analyze.Immutable {
				worst = analyze.Stable
			}
		default:
			return analyze.Volatile
		}
	}
	return worst
}

var _ materialize.CatalogLoader = (*CatalogLoader)(nil)

// loadMemberships reads the role memberships, which decide whose
// privileges a role has.
func loadMemberships(ctx context.Context, tx pgx.Tx, d *analyze.SnapshotData) error {
	return tx.QueryRow(ctx, `SELECT COALESCE(string_agg(roleid::text || ':' || member::text, ',' ORDER BY roleid, member), '')
		FROM pg_catalog.pg_auth_members`).Scan(&d.Memberships)
}
