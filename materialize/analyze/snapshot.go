package analyze

// Snapshot is an immutable, in-memory Catalog: the loader in
// connectors/postgres builds one from the origin, tests build one by hand.
type Snapshot struct {
	relations map[string]*Relation
	temp      map[string]bool
	functions map[string][]Function
	schemas   map[string]bool
	operators map[string]Volatility
	// memberships are the role memberships, which decide whose privileges
	// a role has; compared, never analyzed.
	memberships string
	settings    settingsFunctions
}

var _ Catalog = (*Snapshot)(nil)

// SnapshotData is the content of a Snapshot, also its JSON form.
type SnapshotData struct {
	Schemas   []string   `json:"schemas"`
	Relations []Relation `json:"relations"`
	Functions []Function `json:"functions"`
	// Operators maps a user-defined operator's name to the least
	// deterministic volatility among its implementations.
	Operators map[string]Volatility `json:"operators,omitempty"`
	// Memberships are the origin's role memberships as text: a GRANT of a
	// role changes them, and with them who may read what was cached.
	Memberships string `json:"memberships,omitempty"`
	// SettingsFunctions name the functions that may change a setting
	// PostgreSQL does not report (MayChangeSettings); SettingsTriggers is
	// set when one of them is a trigger or event trigger function.
	SettingsFunctions []string `json:"settings_functions,omitempty"`
	SettingsTriggers  bool     `json:"settings_triggers,omitempty"`
}

// NewSnapshot indexes d. Temporary relations are indexed by name only:
// which session owns one is not knowable from another session.
func NewSnapshot(d SnapshotData) *Snapshot {
	s := &Snapshot{
		relations:   make(map[string]*Relation, len(d.Relations)),
		temp:        map[string]bool{},
		functions:   make(map[string][]Function, len(d.Functions)),
		schemas:     map[string]bool{"pg_catalog": true},
		operators:   map[string]Volatility{},
		memberships: d.Memberships,
		settings:    newSettingsFunctions(d.SettingsFunctions, d.SettingsTriggers),
	}
	for _, n := range d.Schemas {
		s.schemas[n] = true
	}
	for i := range d.Relations {
		r := &d.Relations[i]
		s.schemas[r.Schema] = true
		if r.Temporary {
			s.temp[r.Name] = true
		}
		s.relations[r.QualifiedName()] = r
	}
	for _, f := range d.Functions {
		k := f.Schema + "." + f.Name
		s.functions[k] = append(s.functions[k], f)
	}
	for n, v := range d.Operators {
		s.operators[n] = v
	}
	return s
}

// Relation implements Catalog.
func (s *Snapshot) Relation(schema, name string) (*Relation, bool) {
	r, ok := s.relations[schema+"."+name]
	return r, ok
}

// TempRelationNamed implements Catalog.
func (s *Snapshot) TempRelationNamed(name string) bool { return s.temp[name] }

// Functions implements Catalog.
func (s *Snapshot) Functions(schema, name string) []Function {
	return s.functions[schema+"."+name]
}

// SchemaExists implements Catalog.
func (s *Snapshot) SchemaExists(schema string) bool { return s.schemas[schema] }

// OperatorVolatility implements Catalog.
func (s *Snapshot) OperatorVolatility(name string) (Volatility, bool) {
	v, ok := s.operators[name]
	return v, ok
}
