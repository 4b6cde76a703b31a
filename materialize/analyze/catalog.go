package analyze

import "fmt"

// Volatility is pg_proc.provolatile: 'i' immutable, 's' stable, 'v'
// volatile. Only immutable functions may appear in a cacheable statement.
type Volatility byte

// Volatility values, as pg_proc stores them.
const (
	Immutable Volatility = 'i'
	Stable    Volatility = 's'
	Volatile  Volatility = 'v'
)

// worse reports whether v is less deterministic than w.
func (v Volatility) worse(w Volatility) bool { return rank(v) > rank(w) }

func rank(v Volatility) int {
	switch v {
	case Immutable:
		return 0
	case Stable:
		return 1
	default: // volatile and anything unknown
		return 2
	}
}

// RelKind is pg_class.relkind.
type RelKind byte

// Relation kinds, as pg_class stores them.
const (
	KindTable       RelKind = 'r'
	KindPartitioned RelKind = 'p'
	KindView        RelKind = 'v'
	KindMatView     RelKind = 'm'
	KindForeign     RelKind = 'f'
	KindSequence    RelKind = 'S'
)

// Column is one attribute of a relation.
type Column struct {
	Name string `json:"name"`
	// Type is the type's name as format_type prints it without typmod
	// (int4, text, varchar, uuid, ...); arrays end in "[]".
	Type string `json:"type"`
	// NondeterministicCollation is true when the column's collation
	// compares unequal strings as equal (case-insensitive ICU collations).
	NondeterministicCollation bool `json:"nondeterministic_collation,omitempty"`
}

// Relation is what analysis needs to know about one pg_class entry.
type Relation struct {
	Schema string  `json:"schema"`
	Name   string  `json:"name"`
	Kind   RelKind `json:"kind"`
	// Temporary is relpersistence = 't'.
	Temporary bool `json:"temporary,omitempty"`
	// Unlogged is relpersistence = 'u': its changes bypass the WAL, so
	// they never reach the change stream.
	Unlogged bool `json:"unlogged,omitempty"`
	// Unpublished marks a table outside the change stream's publication:
	// its changes never arrive, so nothing reading it may be cached.
	Unpublished bool `json:"unpublished,omitempty"`
	// RowSecurity is relrowsecurity: policies may read session settings
	// that are not part of the cache key.
	RowSecurity bool     `json:"row_security,omitempty"`
	Columns     []Column `json:"columns,omitempty"`
	// Definition is a view's query, rendered with an empty search_path so
	// that every name in it is schema-qualified.
	Definition string `json:"definition,omitempty"`
	// Children are the schema-qualified partitions and inheritance
	// children, recursively: a scan of the parent (without ONLY) reads
	// them, and the change stream reports changes under their names.
	Children []string `json:"children,omitempty"`
	// Privileges are the owners of and access privileges on the relation,
	// its schema and its columns, as text (an owner's privileges are
	// implicit while the ACL is the default), with the catalog rows'
	// versions (xmin), so that a GRANT undone between two reloads still
	// shows. Never analyzed: such a change changes the relation, so what
	// was cached by reading it is dropped at the next catalog reload
	// instead of served to a role that may no longer read it.
	Privileges string `json:"privileges,omitempty"`
}

// QualifiedName is schema.name.
func (r *Relation) QualifiedName() string { return r.Schema + "." + r.Name }

func (r *Relation) column(name string) (Column, bool) {
	for _, c := range r.Columns {
		if c.Name == name {
			return c, true
		}
	}
	return Column{}, false
}

// Function is one pg_proc entry (an overload).
type Function struct {
	Schema     string     `json:"schema"`
	Name       string     `json:"name"`
	NArgs      int        `json:"nargs"`
	NDefaults  int        `json:"ndefaults,omitempty"`
	Variadic   bool       `json:"variadic,omitempty"`
	Volatility Volatility `json:"volatility"`
	// Privileges are the function's access privileges, as text (see
	// Relation.Privileges).
	Privileges string `json:"privileges,omitempty"`
}

// accepts reports whether a call with n arguments could resolve to f.
func (f *Function) accepts(n int) bool {
	if f.Variadic && n >= f.NArgs-1 {
		return true
	}
	return n >= f.NArgs-f.NDefaults && n <= f.NArgs
}

// Catalog is the view of the origin's catalog that analysis needs. It is
// owned here and implemented by a loader in connectors/postgres; it must be
// reloaded after schema changes. Implementations must be safe for
// concurrent use.
type Catalog interface {
	// Relation returns the relation schema.name, if it exists.
	Relation(schema, name string) (*Relation, bool)
	// TempRelationNamed reports whether any session has a temporary
	// relation with that name: an unqualified name could resolve to it.
	TempRelationNamed(name string) bool
	// Functions returns every overload of schema.name.
	Functions(schema, name string) []Function
	// SchemaExists reports whether the schema exists (search_path skips
	// schemas that do not).
	SchemaExists(schema string) bool
	// OperatorVolatility is the least deterministic volatility of the
	// functions behind user-defined operators (outside pg_catalog) with
	// that name; ok is false when there is none.
	OperatorVolatility(name string) (v Volatility, ok bool)
}

// MarshalText writes the pg_proc letter.
func (v Volatility) MarshalText() ([]byte, error) { return []byte{byte(v)}, nil }

// UnmarshalText reads the pg_proc letter.
func (v *Volatility) UnmarshalText(b []byte) error {
	if len(b) != 1 {
		return fmt.Errorf("volatility %q: want one of i, s, v", b)
	}
	*v = Volatility(b[0])
	return nil
}

// MarshalText writes the pg_class letter.
func (k RelKind) MarshalText() ([]byte, error) { return []byte{byte(k)}, nil }

// UnmarshalText reads the pg_class letter.
func (k *RelKind) UnmarshalText(b []byte) error {
	if len(b) != 1 {
		return fmt.Errorf("relkind %q: want one letter", b)
	}
	*k = RelKind(b[0])
	return nil
}
