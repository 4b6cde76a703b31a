package analyze

// Reason says why a statement is not cacheable. The set is fixed (freshet
// counts tunneled statements per reason) and documented in
// ADRs/0003-query-analysis.md; never reuse or rename a value.
type Reason string

// Reasons. The zero Reason means cacheable.
const (
	ReasonSyntaxError        Reason = "syntax_error"        // pg_query could not parse it
	ReasonEmpty              Reason = "empty"               // no statement at all
	ReasonMultipleStatements Reason = "multiple_statements" // "SELECT 1; SELECT 2"
	ReasonNotSelect          Reason = "not_select"          // INSERT, SET, BEGIN, EXPLAIN, ...
	ReasonSelectInto         Reason = "select_into"         // SELECT ... INTO creates a table
	ReasonLockingClause      Reason = "locking_clause"      // FOR UPDATE/SHARE, anywhere
	ReasonDataModifyingCTE   Reason = "data_modifying_cte"  // WITH x AS (DELETE ... RETURNING)
	ReasonVolatileFunction   Reason = "volatile_function"   // random(), nextval(), user VOLATILE
	ReasonStableFunction     Reason = "stable_function"     // now(), current_setting(), user STABLE
	ReasonUnknownFunction    Reason = "unknown_function"    // not in the loaded catalog
	ReasonSQLValueFunction   Reason = "sql_value_function"  // CURRENT_TIMESTAMP, CURRENT_USER, ...
	ReasonTimeLiteral        Reason = "time_literal"        // 'now', 'today', ... read the clock
	ReasonSystemCatalog      Reason = "system_catalog"      // pg_catalog, information_schema, pg_toast
	ReasonTemporaryTable     Reason = "temporary_table"     // a temp relation (any session's name)
	ReasonUnknownRelation    Reason = "unknown_relation"    // not in the loaded catalog
	ReasonNotReplicated      Reason = "not_replicated"      // matview, foreign table, sequence
	ReasonRowSecurity        Reason = "row_security"        // RLS policies may read session state
	ReasonReadWriteTx        Reason = "read_write_transaction"
	ReasonSnapshotTx         Reason = "snapshot_transaction" // REPEATABLE READ/SERIALIZABLE
	ReasonSessionState       Reason = "session_state_unknown"
	ReasonUnsupported        Reason = "unsupported_syntax" // a node the walker does not allow
	ReasonTooComplex         Reason = "too_complex"        // nesting deeper than maxDepth
)

// Reasons lists every Reason, for metrics that pre-create their series.
var Reasons = []Reason{
	ReasonSyntaxError, ReasonEmpty, ReasonMultipleStatements, ReasonNotSelect,
	ReasonSelectInto, ReasonLockingClause, ReasonDataModifyingCTE,
	ReasonVolatileFunction, ReasonStableFunction, ReasonUnknownFunction,
	ReasonSQLValueFunction, ReasonTimeLiteral, ReasonSystemCatalog,
	ReasonTemporaryTable, ReasonUnknownRelation, ReasonNotReplicated,
	ReasonRowSecurity, ReasonReadWriteTx, ReasonSnapshotTx, ReasonSessionState,
	ReasonUnsupported, ReasonTooComplex,
}

// rejection carries a Reason through the walker as an error.
type rejection struct {
	reason Reason
	detail string
}

func (r *rejection) Error() string { return string(r.reason) + ": " + r.detail }

func reject(reason Reason, detail string) error { return &rejection{reason, detail} }
