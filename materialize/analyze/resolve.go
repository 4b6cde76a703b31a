package analyze

import (
	"slices"
	"strings"

	pg_query "github.com/pganalyze/pg_query_go/v6"
)

// effectivePath is the list of schemas an unqualified name is looked up in,
// as PostgreSQL does it: "$user" replaced by the role, schemas that do not
// exist skipped, and pg_catalog searched first unless listed explicitly.
// pg_temp is left out: temporary relations are refused by name instead.
func effectivePath(sp []string, role string, cat Catalog) []string {
	if sp == nil {
		sp = []string{"$user", "public"}
	}
	out := make([]string, 0, len(sp)+1)
	hasCatalog := false
	for _, s := range sp {
		if s == "$user" {
			s = role
		}
		if s == "" || isTempSchema(s) || !cat.SchemaExists(s) {
			continue
		}
		if s == "pg_catalog" {
			hasCatalog = true
		}
		out = append(out, s)
	}
	if !hasCatalog {
		out = append([]string{"pg_catalog"}, out...)
	}
	return out
}

func isTempSchema(s string) bool {
	return s == "pg_temp" || strings.HasPrefix(s, "pg_temp_")
}

func isSystemSchema(s string) bool {
	return s == "pg_catalog" || s == "information_schema" || s == "pg_toast" ||
		strings.HasPrefix(s, "pg_toast_temp_")
}

// relation resolves a FROM-clause name to a relation that may be cached.
func (a *analyzer) relation(rv *pg_query.RangeVar) (*Relation, error) {
	name := rv.Relname
	if rv.Catalogname != "" {
		return nil, reject(ReasonUnsupported, "cross-database reference "+rv.Catalogname+"."+name)
	}
	rel, err := a.lookupRelation(rv.Schemaname, name)
	if err != nil {
		return nil, err
	}
	switch {
	case isSystemSchema(rel.Schema):
		return nil, reject(ReasonSystemCatalog, rel.QualifiedName())
	case rel.Temporary || isTempSchema(rel.Schema):
		return nil, reject(ReasonTemporaryTable, rel.QualifiedName())
	case rel.RowSecurity:
		return nil, reject(ReasonRowSecurity, rel.QualifiedName())
	}
	return rel, nil
}

func (a *analyzer) lookupRelation(schema, name string) (*Relation, error) {
	if !slices.Contains(a.res.Names, name) {
		a.res.Names = append(a.res.Names, name)
	}
	if schema != "" {
		if isTempSchema(schema) {
			return nil, reject(ReasonTemporaryTable, schema+"."+name)
		}
		if rel, ok := a.cat.Relation(schema, name); ok {
			return rel, nil
		}
		if isSystemSchema(schema) {
			return nil, reject(ReasonSystemCatalog, schema+"."+name)
		}
		return nil, reject(ReasonUnknownRelation, schema+"."+name)
	}
	if a.cat.TempRelationNamed(name) {
		return nil, reject(ReasonTemporaryTable, name)
	}
	for _, s := range a.path {
		if rel, ok := a.cat.Relation(s, name); ok {
			return rel, nil
		}
	}
	return nil, reject(ReasonUnknownRelation, name)
}

// functionVolatility is the least deterministic volatility among the
// overloads a call could resolve to. Argument types are not known here, so
// every overload with a compatible number of arguments counts (all of them
// when none is compatible): if any is volatile, the call is.
func (a *analyzer) functionVolatility(names []string, nargs int) (Volatility, error) {
	var cands []Function
	switch len(names) {
	case 1:
		for _, s := range a.path {
			cands = append(cands, a.cat.Functions(s, names[0])...)
		}
	case 2:
		cands = a.cat.Functions(names[0], names[1])
	default:
		return 0, reject(ReasonUnsupported, "function name "+strings.Join(names, "."))
	}
	full := strings.Join(names, ".")
	if len(cands) == 0 {
		return 0, reject(ReasonUnknownFunction, full)
	}
	worst, matched := Immutable, false
	for i := range cands {
		if cands[i].accepts(nargs) {
			matched = true
			if cands[i].Volatility.worse(worst) {
				worst = cands[i].Volatility
			}
		}
	}
	if !matched {
		for i := range cands {
			if cands[i].Volatility.worse(worst) {
				worst = cands[i].Volatility
			}
		}
	}
	return worst, nil
}
