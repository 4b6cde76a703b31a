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

// The event trigger and its function. The function is SECURITY DEFINER so
// that any role's DDL can write the message, and swallows its own errors:
// it must never make a user's DDL fail. Commands only on temporary objects
// write none: an application making temporary tables at a high rate must
// not make every consumer reload its catalog as often (they are seen at
// the periodic reload, as before). DROPs always write one, temporary or
// not: ddl_command_end does not list what they dropped. The message
// carries the command tag, for the log.
const (
	tempSchema  = `(c.schema_name LIKE 'pg\_temp%' OR c.schema_name LIKE 'pg\_toast\_temp%')`
	ddlTrigger  = "freshet_ddl"
	ddlFunction = "public.freshet_ddl_message"
	ddlSetupSQL = `CREATE OR REPLACE FUNCTION ` + ddlFunction + `() RETURNS event_trigger
	LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS $$
BEGIN
	-- Skipped only when every command reported is on a temporary object;
	-- DROPs report none here (they come through sql_drop) and count.
	IF NOT (EXISTS (SELECT FROM pg_event_trigger_ddl_commands() c WHERE ` + tempSchema + `)
		AND NOT EXISTS (SELECT FROM pg_event_trigger_ddl_commands() c WHERE c.schema_name IS NULL OR NOT (` + tempSchema + `))) THEN
		PERFORM pg_logical_emit_message(true, '` + DDLPrefix + `', tg_tag);
	END IF;
EXCEPTION WHEN OTHERS THEN
	NULL;
END $$;
CREATE EVENT TRIGGER ` + ddlTrigger + ` ON ddl_command_end EXECUTE FUNCTION ` + ddlFunction + `()`
)

// ensureDDLTrigger creates the event trigger unless it exists. Creating it
// needs a superuser; without one freshet sees DDL, GRANT and REVOKE only
// at its next periodic catalog reload, and says so. It reports whether it
// created the trigger.
func ensureDDLTrigger(ctx context.Context, conn *pgconn.PgConn, cfg Config) (bool, error) {
	exists := func() (bool, error) {
		rows, err := simpleQuery(ctx, conn, `SELECT evtenabled FROM pg_event_trigger WHERE evtname = '`+ddlTrigger+`'`)
		if err != nil {
			return false, fmt.Errorf("%w: read event triggers: %w", ErrSetup, err)
		}
		if len(rows) > 0 && rows[0][0] == "D" {
			cfg.Logger.Warn("the DDL event trigger is disabled: schema, view, function and privilege changes are seen at the next periodic catalog reload",
				"advice", "ALTER EVENT TRIGGER "+ddlTrigger+" ENABLE")
		}
		return len(rows) > 0, nil
	}
	if ok, err := exists(); ok || err != nil {
		return false, err
	}
	_, err := simpleQuery(ctx, conn, ddlSetupSQL)
	if err == nil {
		return true, nil
	}
	if ok, _ := exists(); ok {
		return false, nil // another freshet made it meanwhile
	}
	cfg.Logger.Warn("no DDL event trigger: schema, view, function and privilege changes are seen at the next periodic catalog reload, not at their commit",
		"err", err, "advice", "a superuser can create it: "+ddlSetupSQL)
	return false, nil
}

// ddlMessage recognises the event trigger's messages.
func ddlMessage(msg pglogrepl.Message) (*pglogrepl.LogicalDecodingMessage, uint32, bool) {
	switch x := msg.(type) {
	case *pglogrepl.LogicalDecodingMessage:
		return x, 0, x.Transactional && x.Prefix == DDLPrefix
	case *pglogrepl.LogicalDecodingMessageV2:
		return &x.LogicalDecodingMessage, x.Xid, x.Transactional && x.Prefix == DDLPrefix
	}
	return nil, 0, false
}

// catalogChange adds a catalog change to the transaction the message
// belongs to.
func (a *assembler) catalogChange(xid uint32) error {
	return a.add(schemas.Change{Source: a.source, Op: schemas.OpCatalogChange}, xid)
}
