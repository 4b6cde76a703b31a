package analyze

// Result is the verdict on one statement. Its JSON form is what the golden
// files in testdata record.
type Result struct {
	Cacheable bool `json:"cacheable"`
	// ReadOnly is set when the statement cannot change the database
	// (every cacheable one, and reads the cache may not answer, such as
	// catalog queries or now()): a session needs no read-your-writes
	// fence after it. It does not depend on the session's state.
	ReadOnly bool `json:"read_only,omitempty"`
	// Reason and Detail are set when Cacheable is false; Detail names the
	// offending function, relation or node.
	Reason Reason `json:"reason,omitempty"`
	Detail string `json:"detail,omitempty"`
	// Fingerprint is pg_query's fingerprint: the query template, equal for
	// texts that differ only in constants. It identifies a template for
	// metrics; it is NOT a cache key (constants and column aliases, which
	// change the result, do not change it).
	Fingerprint uint64 `json:"-"`
	// StatementID, when not zero, names this verdict's (statement text,
	// search_path, role) for the life of the process: a [Memo] gives each
	// verdict it keeps a new one and never reuses it, so a cache key may
	// carry it in place of the text. Zero when not from a Memo.
	StatementID uint64 `json:"-"`
	// Names are the relation names (unqualified) the analysis looked up,
	// in the statement and in the views it expanded: a relation of one of
	// these names added, dropped or changed may change the verdict, and
	// nothing else can but a change of functions, operators or views.
	Names []string `json:"-"`
	// Tables are the schema-qualified base relations the result depends
	// on, sorted and unique (views expanded, partitions included).
	Tables []string `json:"tables,omitempty"`
	// Scans are the table scans, in walk order. A row of a table can
	// affect the result only if it satisfies every predicate of some scan
	// of that table; a scan without predicates depends on the whole table.
	Scans []Scan `json:"scans,omitempty"`
	// Joins are the equi-join column pairs between scans.
	Joins []Join `json:"joins,omitempty"`
}

// Scan is one occurrence of a base table in the statement.
type Scan struct {
	Table string `json:"table"`
	Alias string `json:"alias,omitempty"`
	// Via names the view or parent table through which the scan is read.
	Via string `json:"via,omitempty"`
	// Predicates are conjunctive: all hold for every row that matters.
	Predicates []Predicate `json:"predicates,omitempty"`
}

// Predicate is column = one of Values.
type Predicate struct {
	Column string `json:"column"`
	// Type is the column's type from the catalog (int4, text, ...), which
	// the dependency index normalizes values to.
	Type   string  `json:"type"`
	Values []Value `json:"values"`
}

// Value is a constant or a parameter compared with a column.
type Value struct {
	// Param is the 1-based $n; 0 for a constant.
	Param int `json:"param,omitempty"`
	// Array is set for = ANY($n): any element of the array parameter.
	Array bool `json:"array,omitempty"`
	// Const is the literal's text; Kind says how it was written
	// (integer, float, string, bool, bitstring).
	Const string `json:"const,omitempty"`
	Kind  string `json:"kind,omitempty"`
	// Cast is the type the value is explicitly cast to, if any.
	Cast string `json:"cast,omitempty"`
}

// Join is an equality between columns of two scans (ON or WHERE).
type Join struct {
	Left  ColumnRef `json:"left"`
	Right ColumnRef `json:"right"`
}

// ColumnRef is a column of one scan, identified by its index in Scans.
type ColumnRef struct {
	Scan   int    `json:"scan"`
	Table  string `json:"table"`
	Column string `json:"column"`
}
