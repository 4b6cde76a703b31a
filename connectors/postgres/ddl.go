package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/freshetdb/freshet/schemas"
)

// DDLPrefix is the prefix of the transactional logical messages freshet's
// event trigger writes at the end of every DDL command (GRANT and REVOKE
// included): in the stream they mark, at the command's commit position,
// that the catalog changed.
const DDLPrefix = "freshet_ddl"

// The event triggers and their function. The function is SECURITY
// DEFINER so that any role's DDL can write the message, and swallows its
// own errors: it must never make a user's DDL fail. Commands only on
// temporary objects write none: an application making and dropping
// temporary tables at a high rate must not make every consumer reload its
// catalog as often (they are seen at the periodic reload, as before) —
// unless a temporary relation takes the name of a permanent one: it then
// hides that relation from its session's unqualified names (pg_temp comes
// first in every search_path), and the catalog must know before the
// session's next read is answered. ddl_command_end does not list what a
// DROP removed, so DROPs are judged at sql_drop, by the objects dropped.
// The message carries the command tag, for the log.
const (
	ddlTrigger      = "freshet_ddl"
	ddlDropTrigger  = "freshet_ddl_drop"
	ddlFunction     = "public.freshet_ddl_message"
	tempSchema      = `(c.schema_name LIKE 'pg\_temp%' OR c.schema_name LIKE 'pg\_toast\_temp%')`
	ddlFunctionBody = `
BEGIN
	IF TG_EVENT = 'sql_drop' THEN
		IF EXISTS (SELECT FROM pg_event_trigger_dropped_objects() d WHERE NOT d.is_temporary) THEN
			PERFORM pg_logical_emit_message(true, '` + DDLPrefix + `', tg_tag);
		END IF;
	ELSIF (tg_tag NOT LIKE 'DROP %' OR tg_tag = 'DROP OWNED')
		AND NOT (EXISTS (SELECT FROM pg_event_trigger_ddl_commands() c WHERE ` + tempSchema + `)
			AND NOT EXISTS (SELECT FROM pg_event_trigger_ddl_commands() c WHERE c.schema_name IS NULL OR NOT (` + tempSchema + `))
			AND NOT EXISTS (SELECT FROM pg_event_trigger_ddl_commands() c JOIN pg_class t ON t.oid = c.objid
				WHERE c.classid = 'pg_class'::regclass
					AND EXISTS (SELECT FROM pg_class p WHERE p.relname = t.relname AND p.relpersistence <> 't'))) THEN
		PERFORM pg_logical_emit_message(true, '` + DDLPrefix + `', tg_tag);
	END IF;
EXCEPTION WHEN OTHERS THEN
	NULL;
END `
	ddlFunctionSQL = `CREATE OR REPLACE FUNCTION ` + ddlFunction + `() RETURNS event_trigger
	LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS $$` + ddlFunctionBody + `$$`
)

// ddlTriggerSQL creates or replaces the function (an older freshet's
// may be there) and creates the triggers missing.
func ddlTriggerSQL(missing []string) string {
	sql := ddlFunctionSQL
	for _, name := range missing {
		event := "ddl_command_end"
		if name == ddlDropTrigger {
			event = "sql_drop"
		}
		sql += ";\nCREATE EVENT TRIGGER " + name + " ON " + event + " EXECUTE FUNCTION " + ddlFunction + "()"
	}
	return sql
}

// ensureDDLTrigger creates the event triggers unless they exist. Creating
// them needs a superuser; without one freshet sees DDL, GRANT and REVOKE
// only at its next periodic catalog reload, and says so. It reports
// whether it created any.
func ensureDDLTrigger(ctx context.Context, conn *pgconn.PgConn, cfg Config) (bool, error) {
	missing := func() ([]string, error) {
		rows, err := simpleQuery(ctx, conn, `SELECT evtname, evtenabled FROM pg_event_trigger WHERE evtname IN ('`+ddlTrigger+`', '`+ddlDropTrigger+`')`)
		if err != nil {
			return nil, fmt.Errorf("%w: read event triggers: %w", ErrSetup, err)
		}
		have := map[string]bool{}
		for _, r := range rows {
			have[r[0]] = true
			if r[1] == "D" {
				cfg.Logger.Warn("a DDL event trigger is disabled: schema, view, function and privilege changes may be seen only at the next periodic catalog reload",
					"trigger", r[0], "advice", "ALTER EVENT TRIGGER "+r[0]+" ENABLE")
			}
		}
		var out []string
		for _, name := range []string{ddlTrigger, ddlDropTrigger} {
			if !have[name] {
				out = append(out, name)
			}
		}
		return out, nil
	}
	todo, err := missing()
	if err != nil {
		return false, err
	}
	if len(todo) == 0 {
		if current, err := ddlFunctionCurrent(ctx, conn); err != nil || current {
			return false, err
		}
	}
	sql := ddlTriggerSQL(todo)
	if _, err = simpleQuery(ctx, conn, sql); err == nil {
		return true, nil
	}
	if left, _ := missing(); len(left) == 0 {
		if current, _ := ddlFunctionCurrent(ctx, conn); current {
			return false, nil // another freshet made them meanwhile
		}
	}
	cfg.Logger.Warn("no DDL event trigger: schema, view, function and privilege changes are seen at the next periodic catalog reload, not at their commit",
		"err", err, "advice", "a superuser can create it: "+sql)
	return false, nil
}

// ddlFunctionCurrent reports whether the triggers' function is this
// freshet's.
func ddlFunctionCurrent(ctx context.Context, conn *pgconn.PgConn) (bool, error) {
	rows, err := simpleQuery(ctx, conn, `SELECT prosrc FROM pg_proc WHERE oid = to_regprocedure('`+ddlFunction+`()')`)
	if err != nil {
		return false, fmt.Errorf("%w: read the DDL trigger's function: %w", ErrSetup, err)
	}
	return len(rows) == 1 && rows[0][0] == ddlFunctionBody, nil
}

// ddlMessage recognises the event triggers' messages, and the xid of a
// streamed one's transaction.
func ddlMessage(msg pglogrepl.Message) (xid uint32, ok bool) {
	m, xid, ok := logicalMessage(msg)
	return xid, ok && m.Transactional && m.Prefix == DDLPrefix
}

// catalogChange adds a catalog change to the transaction the message
// belongs to.
func (a *assembler) catalogChange(xid uint32) error {
	return a.add(schemas.Change{Source: a.source, Op: schemas.OpCatalogChange}, xid)
}
