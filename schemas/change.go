package schemas

import "time"

// Op is what a change event did. The letters follow Debezium.
type Op string

// The ops. Truncate carries no rows; a schema change carries the new
// columns and no rows. A catalog change names no table: some DDL, GRANT
// or REVOKE committed at its position (what it changed is for consumers
// to read from the catalog).
const (
	OpCreate        Op = "c"
	OpUpdate        Op = "u"
	OpDelete        Op = "d"
	OpTruncate      Op = "t"
	OpSchemaChange  Op = "s"
	OpCatalogChange Op = "k"
)

// Valid reports whether op is one of the known ops.
func (op Op) Valid() bool {
	switch op {
	case OpCreate, OpUpdate, OpDelete, OpTruncate, OpSchemaChange, OpCatalogChange:
		return true
	}
	return false
}

// Column describes one column of a table as the source reported it.
type Column struct {
	Name string
	// Type is the source's type name ("int4", "_text", "mood"), or empty
	// when the source gave only an id the decoder does not know.
	Type string
	// OID is PostgreSQL's type id.
	OID uint32
	// Family says how values of the column are represented; Elem is the
	// element family of arrays and ranges.
	Family Family
	Elem   Family
	// Key marks the table's primary key columns (or, failing one, the
	// replica identity's).
	Key bool
}

// Change is one row change, truncate or schema change of one table, or a
// catalog change.
//
// Before and After, when present, have one value per entry of Columns, in
// that order. A value is nil for SQL NULL, Unchanged for a value the source
// did not send because it did not change, Absent for a column a partial
// image does not carry, or a value of the column's Family's Go type.
type Change struct {
	// Source is the configured name of the origin database.
	Source string
	Schema string
	Table  string
	Op     Op
	// Columns is the table's shape when the change was made.
	Columns []Column
	Before  []any
	After   []any
	// Position is the position of the transaction's commit; all changes of
	// a transaction share it. Seq numbers them within the transaction.
	Position   Position
	Seq        uint32
	TxID       uint32
	CommitTime time.Time
}

// Progress is a marker: every transaction of Source whose commit position is
// covered by Position has been published before it. CommitTime is a time
// at the source by which every commit acknowledged was covered: the commit
// time of that transaction, or the time an idle source's heartbeat was
// written. Never the time the marker was sent: a source that lags sends
// old positions, and consumers measure staleness from CommitTime.
type Progress struct {
	Source     string    `json:"source"`
	Position   Position  `json:"position"`
	CommitTime time.Time `json:"commit_time"`
}

// Reset says the source's history was lost (a dropped or invalidated
// replication slot, purged binlogs): consumers must purge everything derived
// from Source, because changes may be missing.
type Reset struct {
	Source string `json:"source"`
	Reason string `json:"reason"`
	// Position is the last position the source was known to be at.
	Position Position `json:"position"`
}
